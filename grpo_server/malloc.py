"""Keep glibc's heap from holding on to freed tensors.

glibc serves allocations below its mmap threshold from heaps (one arena per thread that allocates) and
above it with mmap, which it hands back to the kernel on free. The threshold starts at 128 KiB and, by
default, rises to the size of any mmapped block that is freed, up to 32 MiB. A trainer frees blocks of
every size each step (activations, gradients, optimizer temporaries, the rollout engine's buffers), so
after a step or two nearly every tensor comes from a heap, and freed heap memory mostly stays with the
process: resident memory grows well past what is live. A fixed threshold turns that adjustment off:
blocks above it are mmapped and returned when freed.

Blocks below the threshold still come from heaps, and a heap keeps the free pages between live blocks
until `malloc_trim` hands them back; the torch engine calls `trim()` before each micro-batch, when the
previous one's activations (or the rollout's buffers) have just been freed.

Measured on the GRPO step benchmark (SmolLM2-135M, 8 x 8 completions, bench/bench_step.py, float32, one
run each): peak RSS 5.42 GiB with glibc's defaults, 4.99 GiB with a fixed 1 MiB threshold, 4.79 GiB with
the trims as well, step time unchanged (16.3-16.8 s). Lower thresholds saved a little more (4.63 GiB at
128 KiB) but cost a fifth of the step time in page faults (19.6 s). See docs/benchmarks.md.

The trainer (`grpo-server`, every DeepSpeed rank, the benchmarks' in-process trainer) fixes it at 1 MiB
when it starts. glibc's own environment variable `MALLOC_MMAP_THRESHOLD_` (bytes), when set, is left to
glibc: an operator chooses another value with it. Only glibc is touched (other C libraries have no
`mallopt` with these meanings).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
ENV_OVERRIDE = "MALLOC_MMAP_THRESHOLD_"


DEFAULT_THRESHOLD = 1 << 20  # 1 MiB: SmolLM2's larger activations and every weight-sized buffer


def set_mmap_threshold(threshold_bytes: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold_bytes` for the rest of the process. Returns whether it was
    set: not when `threshold_bytes` is 0 (leave glibc's default), when the environment sets
    MALLOC_MMAP_THRESHOLD_, or when the C library is not glibc."""
    if threshold_bytes <= 0:
        return False
    if ENV_OVERRIDE in os.environ:
        log.info("malloc: %s=%s from the environment is kept", ENV_OVERRIDE, os.environ[ENV_OVERRIDE])
        return False
    if not _is_glibc():
        return False
    ok = bool(_libc().mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(threshold_bytes)))
    if ok:
        log.info("malloc: mmap threshold fixed at %d KiB", threshold_bytes // 1024)
    else:  # glibc refuses values above its maximum
        log.warning("malloc: glibc refused an mmap threshold of %d bytes", threshold_bytes)
    return ok


def trim() -> None:
    """Return the free pages of every heap to the kernel (glibc's malloc_trim(0)); nothing elsewhere.
    Takes milliseconds."""
    if _is_glibc():
        _libc().malloc_trim(ctypes.c_size_t(0))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


@functools.cache
def _is_glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"
