"""grpo_server.malloc: a fixed glibc mmap threshold returns freed buffers to the kernel."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from grpo_server import malloc

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")

# In a fresh interpreter: free one 30 MiB block (with glibc's sliding threshold this lifts the threshold
# to 30 MiB), then allocate 100 blocks of 4 MiB, touch them, and free all but the last (which pins the top
# of the heap, so a heap cannot shrink back). Prints the resident memory left, MiB.
CHILD = r"""
import ctypes, ctypes.util, json, sys
from grpo_server import malloc
if sys.argv[1] == "fixed":
    assert malloc.set_mmap_threshold(1 << 20)
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
big = libc.malloc(30 << 20); ctypes.memset(big, 1, 30 << 20); libc.free(big)
before = rss_mib()
blocks = [libc.malloc(4 << 20) for _ in range(100)]
for b in blocks:
    ctypes.memset(b, 1, 4 << 20)
for b in blocks[:-1]:
    libc.free(b)
print(json.dumps({"before": before, "after": rss_mib()}))
"""


def _retained_mib(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["after"] - result["before"])


def test_a_fixed_threshold_returns_freed_blocks_that_the_default_keeps():
    default = _retained_mib("default")
    fixed = _retained_mib("fixed")
    # 99 freed blocks of 4 MiB: glibc's default keeps them resident; the fixed threshold unmaps them.
    assert default > 300, default
    assert fixed < 40, fixed


def test_zero_and_the_environment_leave_glibc_alone(monkeypatch):
    assert malloc.set_mmap_threshold(0) is False
    monkeypatch.setenv(malloc.ENV_OVERRIDE, "262144")
    assert malloc.set_mmap_threshold(1 << 20) is False
    monkeypatch.delenv(malloc.ENV_OVERRIDE)
    assert malloc.set_mmap_threshold(1 << 20) is True


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
