"""grpo_server.malloc: free heap pages go back to the kernel (trim), and a dead cache's pages (release_pages)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")

TRIM_CHILD = r"""
import ctypes, ctypes.util, json
from grpo_server import malloc
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
before = rss_mib()
# 4,000 blocks of 64 KiB (below any mmap threshold: heap memory), every other one freed, then the last
# one kept so the heap's top cannot shrink on its own.
blocks = [libc.malloc(64 << 10) for _ in range(4000)]
for b in blocks:
    ctypes.memset(b, 1, 64 << 10)
for b in blocks[:-1:2]:
    libc.free(b)
freed = rss_mib()
malloc.trim()
print(json.dumps({"before": before, "freed": freed, "trimmed": rss_mib()}))
"""


def test_trim_hands_free_heap_pages_back():
    out = subprocess.run(
        [sys.executable, "-c", TRIM_CHILD], capture_output=True, text=True, check=True, timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    # 2,000 freed blocks of 64 KiB (125 MiB) sit between live ones: resident until the trim.
    assert r["freed"] - r["before"] > 200, r
    assert r["freed"] - r["trimmed"] > 100, r


def test_release_pages_hands_a_tensors_pages_back_and_they_read_as_zeros() -> None:
    import torch

    from grpo_server.malloc import release_pages

    cache = torch.ones(32 << 20, dtype=torch.uint8)  # 32 MiB, every page written
    released = release_pages(cache)
    assert released >= (32 << 20) - 2 * 4096
    assert int(cache.sum()) <= 2 * 4096  # only the two partial end pages keep their ones
    cache.fill_(3)  # usable again: pages come back on the write
    assert int(cache.sum()) == 3 * (32 << 20)
