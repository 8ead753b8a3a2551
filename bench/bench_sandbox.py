"""Benchmark: what the code sandbox's isolation costs, next to a bare ``python3 -c`` subprocess.

    .venv/bin/python bench/bench_sandbox.py [--runs 60] [--workers 2]

Every row runs the same small HumanEval-style job (``add`` and three asserts) except the first, an
empty program. All rows are measured in the same run, one after another, on the same machine:

- ``bare python3 -c pass``: the cost of starting an interpreter at all.
- ``bare python3 -c job``: the job's program + tests + ``check(add)`` with no isolation and no runner,
  with the interpreter's default start-up (``site`` and its ``.pth`` files processed).
- ``bare python3 -I -S -c job``: the same job with the interpreter flags the sandbox starts its own
  interpreter with (``-I -S``: no ``site``, no user environment), so the like-for-like baseline: the
  ratio against it is what isolation and the runner cost, not what skipping ``site`` saves.
- ``runner, no isolation``: the in-sandbox runner (assert rewriting, events) started directly, with the
  same interpreter flags as in the sandbox.
- ``isolated python3 -S -c pass`` / ``bare python3 -S -c pass``: an empty program with and without the
  sandbox's isolation (setpriv/prlimit, bubblewrap, seccomp) and the interpreter flags the sandbox
  uses: the cost of isolation alone.
- ``sandbox``: the full path the service takes per item: setpriv/prlimit, bubblewrap with every
  namespace, seccomp, the runner, event collection.
- ``sandbox, runner from source``: the same with the runner started from its source, compiled in every
  sandbox, as before 2026-12-07 (the service now ships it compiled when the interpreter inside runs its
  bytecode version).

Latency: one call at a time, the rows interleaved (a shared machine's load then weighs on all alike);
``exec/s`` is 1 / mean latency; ``/s at N workers`` runs the same count on N threads. The tail column is
the p99 only with at least 100 runs per row; with fewer it is the slowest run and is labelled ``max``.
Needs bubblewrap; run as root for the per-slot uids the service uses in production.
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from grpo_rewards.code_sandbox.config import SandboxConfig  # noqa: E402
from grpo_rewards.code_sandbox.executor import (  # noqa: E402
    INNER_DIR,
    INNER_FILES,
    SANDBOX_CODE_DIR,
    Job,
    Sandbox,
    _compile_tests,
)

PROGRAM = "def add(a, b):\n    return a + b\n"
TESTS = ("def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n"
         "    assert candidate(-1, 5) == 4\n")


P99_MIN_SAMPLES = 100  # below this the nearest-rank p99 is the maximum itself


def tail_label(samples: int) -> str:
    """What ``measure``'s ``tail`` is for ``samples`` runs: the p99, or (with too few runs for one) the max."""
    return "p99" if samples >= P99_MIN_SAMPLES else "max"


def measure(rows: list[tuple[str, Callable[[], object]]], runs: int, workers: int) -> dict[str, dict[str, float]]:
    """Per row: p50 and tail latency (ms) of ``runs`` sequential calls, and calls/s sequential and with
    ``workers`` threads. ``tail`` is the nearest-rank p99 with at least 100 runs, else the slowest run
    (``tail_label``). The sequential calls are interleaved row by row, so that the load of a shared
    machine shifting during the run weighs on every row alike."""
    latencies: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _, fn in rows:
        fn()  # warm the page cache
    for _ in range(runs):
        for name, fn in rows:
            t0 = time.perf_counter()
            fn()
            latencies[name].append(time.perf_counter() - t0)
    out = {}
    for name, fn in rows:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            started = time.perf_counter()
            list(pool.map(lambda _, call=fn: call(), range(runs)))
            concurrent = runs / (time.perf_counter() - started)
        lat = sorted(latencies[name])
        # nearest rank: the ceil(0.99 n)-th value (int(0.99 n) took the slowest of 100 as their p99)
        tail = lat[math.ceil(0.99 * len(lat)) - 1] if len(lat) >= P99_MIN_SAMPLES else lat[-1]
        out[name] = {"p50": statistics.median(lat) * 1e3, "tail": tail * 1e3,
                     "seq": len(lat) / sum(lat), "conc": concurrent}
    return out


def runner_without_isolation(python: str, sandbox: Sandbox, job_bytes_for: Callable[[int], bytes]) -> Callable[[], object]:
    """The runner as the sandbox starts it (its bytecode, when the service ships it), from a directory
    holding the files the sandbox gets."""
    runner_dir = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    atexit.register(shutil.rmtree, runner_dir, True)
    for name, data in sandbox.inner_files.items():
        (runner_dir / name).write_bytes(data)
    runner = str(runner_dir / Path(sandbox.runner_path).name)

    def run() -> object:
        r, w = os.pipe()
        try:
            proc = subprocess.run([python, "-I", "-B", "-S", runner], input=job_bytes_for(w),
                                  capture_output=True, pass_fds=(w,), check=True)
        finally:
            os.close(w)
            events = os.read(r, 1 << 16)
            os.close(r)
        assert b'"done"' in events, (events, proc.stderr)
        return proc

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--python", default="/usr/bin/python3")
    args = parser.parse_args(argv)

    import marshal

    config = SandboxConfig(workers=args.workers, python=args.python)
    sandbox = Sandbox(config)
    job = Job(code=PROGRAM, test_code=TESTS, entry_point="add", timeout_s=10.0)

    # The runner as it started before 2026-12-07: from its source, compiled again in every sandbox.
    from_source = Sandbox(config)
    from_source.inner_files = {name: (INNER_DIR / name).read_bytes() for name in INNER_FILES}
    from_source.runner_path = f"{SANDBOX_CODE_DIR}/runner.py"

    def sandboxed(box: Sandbox = sandbox) -> object:
        record = box.run(job)
        assert any(e["e"] == "done" for e in record.events), record
        return record

    compiled, asserts = _compile_tests(TESTS)  # as the service sends it (same interpreter inside)

    def job_bytes_for(fd: int) -> bytes:
        """The job as the executor frames it: its length, the job, then the io cases' expected outputs."""
        first = marshal.dumps({"code": PROGRAM, "test_code": TESTS, "entry_point": "add", "io_cases": [],
                               "test_compiled": compiled, "test_asserts": asserts,
                               "timeout_s": 10.0, "max_output_bytes": 65536, "feedback_bytes": 2048,
                               "python": args.python, "events_fd": fd})
        return len(first).to_bytes(8, "little") + first + marshal.dumps([])

    rows = [
        ("bare python3 -c pass", lambda: subprocess.run([args.python, "-c", "pass"], check=True)),
        ("bare python3 -c job", lambda: subprocess.run(
            [args.python, "-c", PROGRAM + TESTS + "check(add)\n"], check=True)),
        ("bare python3 -I -S -c job", lambda: subprocess.run(
            [args.python, "-I", "-S", "-c", PROGRAM + TESTS + "check(add)\n"], check=True)),
        ("bare python3 -S -c pass", lambda: subprocess.run([args.python, "-I", "-S", "-c", "pass"], check=True)),
        ("isolated python3 -S -c pass", lambda: sandbox.run_isolated([args.python, "-I", "-S", "-c", "pass"])),
        ("runner, no isolation", runner_without_isolation(args.python, sandbox, job_bytes_for)),
        ("sandbox", sandboxed),
        ("sandbox, runner from source", lambda: sandboxed(from_source)),
    ]
    results = measure(rows, args.runs, args.workers)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {platform.platform()}")
    print(f"runs per row: {args.runs}; python inside: {args.python}; "
          f"bwrap: {subprocess.run(['bwrap', '--version'], capture_output=True, text=True).stdout.strip()}")
    print()
    tail = f"{tail_label(args.runs)} ms"
    header = f"| {'mode':<29} | {'p50 ms':>7} | {tail:>7} | {'exec/s':>7} | {f'/s at {args.workers} workers':>16} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, r in results.items():
        print(f"| {name:<29} | {r['p50']:>7.1f} | {r['tail']:>7.1f} | {r['seq']:>7.1f} | {r['conc']:>16.1f} |")
    p50 = {name: r["p50"] for name, r in results.items()}
    print()
    print(f"isolation alone (isolated / bare python3 -S -c pass): "
          f"{p50['isolated python3 -S -c pass'] / p50['bare python3 -S -c pass']:.2f}x")
    print(f"sandbox / runner without isolation: {p50['sandbox'] / p50['runner, no isolation']:.2f}x")
    print(f"sandbox / bare python3 -I -S -c job (like for like: the sandbox's interpreter flags): "
          f"{p50['sandbox'] / p50['bare python3 -I -S -c job']:.2f}x")
    print(f"sandbox / bare python3 -c job (default start-up, with site; the ratio published before 2026-12-07): "
          f"{p50['sandbox'] / p50['bare python3 -c job']:.2f}x")
    print(f"sandbox / bare python3 -c pass: {p50['sandbox'] / p50['bare python3 -c pass']:.2f}x")
    print(f"sandbox with the runner from source / bare python3 -I -S -c job: "
          f"{p50['sandbox, runner from source'] / p50['bare python3 -I -S -c job']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
