"""Benchmark: peak memory and time of compiling a test code's asserts, as the code sandbox does.

    .venv/bin/python bench/bench_sandbox_compile.py [--sizes 128K,512K,1M] [--shapes top,check,data]
                                                    [--asserts PATH] [--plain]

The code sandbox service rewrites every assert of an item's test code (``inner/asserts.py``
``instrument``) and compiles the result before the item runs (``executor._compile_uncached``): with
``--max-code-bytes`` at 1 MiB that is up to ~60,000 asserts, and the service's memory peaks meanwhile.
Each row runs in a fresh interpreter that generates the test code, then instruments, compiles and
marshals it; the peak is the kernel's high-water mark of its resident memory (``VmHWM``, C allocations
included, which tracemalloc does not see), less what the process held just before. Phases are
cumulative: the peak so far after parsing, after rewriting and after compiling.

Shapes (test code of about the given size):

- ``top``: one-line asserts at module level, ``assert c(0)==0`` (15 bytes each: the most asserts);
- ``check``: the same inside one ``def check(c):`` (HumanEval/MBPP style, one function);
- ``data``: a few asserts on large literals, ``assert c([0, 1, ...]) == [...]`` (8 KB a line).

``--asserts PATH`` measures another ``asserts.py`` (for example the one of an earlier commit:
``git show REV:services/grpo_rewards/code_sandbox/inner/asserts.py > /tmp/asserts_old.py``);
``--plain`` adds a row per case for ``compile()`` of the test code as it is (no rewriting), for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ASSERTS = ROOT / "services" / "grpo_rewards" / "code_sandbox" / "inner" / "asserts.py"

# Runs in the child: argv = shape, size in bytes, path of asserts.py or "" for a plain compile().
CHILD = r"""
import importlib.util, json, marshal, sys, time

def status(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)

def generate(shape, size):
    if shape == "data":
        row = ", ".join(str(i) for i in range(1500))
        line = "    assert c([" + row + "]) == [" + row + "]\n"
        head = "def check(c):\n"
    elif shape == "check":
        line, head = " assert c(0)==0\n", "def check(c):\n"
    else:
        line, head = "assert c(0)==0\n", ""
    return head + line * ((size - len(head)) // len(line))

shape, size, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if path:
    spec = importlib.util.spec_from_file_location("asserts_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parse = module.ast.parse
    calls = {"parse": None}
    def timed_parse(*a, **k):  # the end of parsing, seen from inside instrument()
        tree = parse(*a, **k)
        if calls["parse"] is None:
            calls["parse"] = (time.perf_counter(), status("VmHWM"))
        return tree
    module.ast.parse = timed_parse
source = generate(shape, size)
base = status("VmRSS")
t0 = time.perf_counter()
if path:
    tree, table = module.instrument(source)
    t_rewrite, hwm_rewrite = time.perf_counter(), status("VmHWM")
    code = compile(tree, "test.py", "exec")
    n_asserts = len(table)
else:
    code = compile(source, "test.py", "exec")
    n_asserts = source.count("assert ")
    t_rewrite, hwm_rewrite = t0, base
    calls = {"parse": (t0, base)}
blob = marshal.dumps(code)
t_end, hwm_end = time.perf_counter(), status("VmHWM")
t_parse, hwm_parse = calls["parse"]
print(json.dumps({
    "bytes": len(source.encode()), "asserts": n_asserts, "base": base,
    "parse": hwm_parse - base, "rewrite": hwm_rewrite - base, "peak": hwm_end - base,
    "t_parse": t_parse - t0, "t_rewrite": t_rewrite - t0, "t_total": t_end - t0, "marshal": len(blob)}))
"""


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024 * 1024}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def run_case(shape: str, size: int, asserts: str) -> dict:
    """One fresh interpreter instrumenting and compiling one generated test code."""
    out = subprocess.run([sys.executable, "-c", CHILD, shape, str(size), asserts],
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128K,512K,1M", help="test code sizes (bytes, K or M suffix)")
    parser.add_argument("--shapes", default="top,check", help="top, check, data (comma-separated)")
    parser.add_argument("--asserts", default=str(DEFAULT_ASSERTS), help="the asserts.py to measure")
    parser.add_argument("--plain", action="store_true", help="also compile() the test code as it is")
    args = parser.parse_args(argv)
    mib = 1024 * 1024
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; asserts.py: {args.asserts}")
    print("| shape | size | asserts | variant | peak MiB (parse / rewrite / compile) | peak / size | "
          "seconds (parse / rewrite / total) | marshalled MiB |")
    print("|---|---|---|---|---|---|---|---|")
    variants = [("instrument", args.asserts)] + ([("plain compile", "")] if args.plain else [])
    for shape in args.shapes.split(","):
        for size_text in args.sizes.split(","):
            for name, path in variants:
                r = run_case(shape, parse_size(size_text), path)
                print(f"| {shape} | {size_text} | {r['asserts']} | {name} | "
                      f"{r['peak'] / mib:.0f} ({r['parse'] / mib:.0f} / {r['rewrite'] / mib:.0f} / {r['peak'] / mib:.0f}) | "
                      f"{r['peak'] / r['bytes']:.0f}x | {r['t_parse']:.2f} / {r['t_rewrite']:.2f} / {r['t_total']:.2f} | "
                      f"{r['marshal'] / mib:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
