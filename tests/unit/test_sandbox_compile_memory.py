"""The code sandbox service's memory while it compiles a large test code's asserts.

The service rewrites and compiles each distinct test code itself (executor ``_compile_uncached``), up to
``--max-code-bytes`` (1 MiB) of it. The rewrite used to copy a try/except template per assert and
peaked at about 2,500 times the test code's size: 512 KB of one-line asserts took the service to
1.2-1.3 GiB, and 1 MiB to 2.4-2.6 GiB of the chart's 4 GiB pod limit. Each case runs in a fresh
interpreter and reads the kernel's high-water mark of its resident memory, which counts the C parser's
and compiler's memory too (tracemalloc sees neither).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

CHILD = r"""
import json, sys
from grpo_rewards.code_sandbox.executor import _compile_uncached

def status(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))

head, line, size = sys.argv[1].replace("\\n", "\n"), sys.argv[2].replace("\\n", "\n"), int(sys.argv[3])
test_code = head + line * ((size - len(head)) // len(line))
before = status("VmRSS")
code, table = _compile_uncached(test_code)
print(json.dumps({"peak": status("VmHWM") - before, "asserts": len(table), "compiled": code is not None}))
"""

MIB = 1024 * 1024


@pytest.mark.parametrize(("head", "line"), [
    ("", "assert c(0)==0\\n"),                       # one-line asserts at the top of the module
    ("def check(c):\\n", " assert c(0)==0\\n"),      # thousands of asserts in one check()
], ids=["module-level", "one-function"])
def test_compiling_512_kb_of_asserts_stays_far_below_a_gib(head: str, line: str) -> None:
    size = 512 * 1024
    out = subprocess.run([sys.executable, "-c", CHILD, head, line, str(size)],
                         capture_output=True, text=True, check=True, timeout=300)
    result = json.loads(out.stdout)
    n_asserts = (size - len(head.replace("\\n", "\n"))) // len(line.replace("\\n", "\n"))
    assert result["compiled"] and result["asserts"] == n_asserts > 30_000
    # ~400-420 MiB now (bench/bench_sandbox_compile.py); the copied template took 1,225-1,300 MiB.
    assert result["peak"] < 700 * MIB, f"compiling 512 KB of asserts peaked at {result['peak'] / MIB:.0f} MiB"
