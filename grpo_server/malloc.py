"""Hand the heap's free pages back to the kernel between micro-batches.

glibc serves allocations below its mmap threshold from heaps (one arena per thread that allocates), and
that threshold slides up, to 32 MiB, each time a larger mmapped block is freed. A trainer frees blocks of
every size each step (the rollout's buffers, each micro-batch's activations, optimizer temporaries), so
after a step or two nearly every tensor comes from a heap, and a heap keeps its free pages resident:
resident memory grows well past what is live. `trim()` (glibc's `malloc_trim(0)`) returns them; the
torch engine calls it before each micro-batch, when the previous one's activations (or the rollout's
buffers) have just been freed.

Measured on the GRPO step benchmark (SmolLM2-135M, 8 x 8 completions, bench/bench_step.py, one run each
unless noted): peak RSS 5.38 -> 4.83 GiB in float32 (step 16.2 -> 16.3 s) and 5.31-5.33 -> 4.79-4.86
GiB in bfloat16 (two runs each; step 9.4-9.9 -> 9.8-11.7 s, within the machine's noise but perhaps a
little dearer: pages handed back are faulted in again). Fixing the mmap threshold at 1 MiB instead
(mallopt) saved as much memory but made bfloat16 steps slower (10.4-12.6 s: every block over 1 MiB is
mapped and zeroed anew), so it is not done; glibc's own `MALLOC_MMAP_THRESHOLD_` environment variable
remains for operators who want it. Only glibc is touched; elsewhere `trim()` does nothing.

`release_pages(tensor)` hands a tensor's pages back outright (madvise), for a cache whose contents are
dead between uses: the vLLM engine's KV cache on CPU, between rollouts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

import torch


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


MADV_DONTNEED = 4  # Linux's value on every architecture torch ships for


def release_pages(tensor: torch.Tensor) -> int:
    """Hand the whole pages of a CPU tensor's storage back to the kernel (madvise MADV_DONTNEED): they
    stop counting as resident, and read as zeros when next touched. Only for memory whose contents are
    not needed again (a cache that is rewritten before it is read). Returns the bytes released; 0 off
    Linux, for a tensor that is not on the CPU, or when the kernel refuses."""
    if platform.system() != "Linux" or tensor.device.type != "cpu":
        return 0
    storage = tensor.untyped_storage()
    page = _page_size()
    start = -(-storage.data_ptr() // page) * page
    end = (storage.data_ptr() + storage.nbytes()) // page * page
    if end <= start:
        return 0
    libc = _libc()
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED) != 0:
        return 0
    return end - start


def resident_bytes(tensor: torch.Tensor) -> int:
    """Bytes of a CPU tensor's storage the kernel holds resident now (mincore, whole pages, the partial
    pages at either end included); 0 off Linux or when the kernel refuses."""
    if platform.system() != "Linux" or tensor.device.type != "cpu":
        return 0
    storage = tensor.untyped_storage()
    page = _page_size()
    start = storage.data_ptr() // page * page
    length = storage.data_ptr() + storage.nbytes() - start
    vec = (ctypes.c_ubyte * (-(-length // page)))()
    libc = _libc()
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    if libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vec) != 0:
        return 0
    return sum(v & 1 for v in vec) * page


@functools.cache
def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")
