"""Benchmarks (`make bench` runs `python -m bench.run_all`). Not tests: they print numbers and assert
nothing about speed. Results and the machine they came from: docs/benchmarks.md.

This module holds the small helpers the benchmark scripts share: what machine this is, free ports,
the peak resident memory of a process tree, and starting the real servers as subprocesses.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, core count, load averages (1, 5, 15 min), Python and torch versions, UTC time."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }


def load_average() -> float:
    """The 1-minute load average (the machine is shared: print it beside every timing)."""
    return round(os.getloadavg()[0], 2)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (for servers whose CLI needs a number)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeakRss:
    """Samples the resident memory (bytes) of a process and all its descendants every `interval_s`
    seconds on a thread and keeps the peak of their sum. `exclude`: pids whose subtrees are not
    counted (a reward service the process started, measured on its own)."""

    def __init__(self, pid: int, interval_s: float = 0.2, exclude: tuple[int, ...] = ()) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.exclude = set(exclude)
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def sample(self) -> int:
        """The current RSS sum of the tree, bytes."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        skip: set[int] = set()
        for p in procs:
            if p.pid in self.exclude:
                skip.add(p.pid)
                with contextlib.suppress(psutil.NoSuchProcess):
                    skip.update(c.pid for c in p.children(recursive=True))
        total = 0
        for p in procs:
            if p.pid in skip:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.sample())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_json(path: Path | None, result: Any) -> None:
    """Write `result` as indented JSON to `path` (its folder created), or nothing when `path` is None."""
    if path is None:
        return
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def self_peak_rss_bytes() -> int:
    """Peak RSS of this process (getrusage, bytes) and, separately, its waited-for children's maximum."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def wait_ready(app: Any, timeout_s: float) -> None:
    """Wait until `app` (a started TrainerApp) is ready; raise at once with its error when loading failed
    (it sets `failed`, never `ready`: a failed load was waited on for the whole timeout, 15 minutes)."""
    deadline = time.monotonic() + timeout_s
    while not app.ready.wait(0.2):
        if app.failed:
            raise RuntimeError(f"the trainer failed to start: {app.failed}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the trainer did not become ready within {timeout_s:.0f} s")


def wait_for_grpc(address: str, timeout_s: float = 120.0) -> None:
    """Block until a gRPC server at `address` answers health checks as SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = exc
            time.sleep(0.2)
    raise TimeoutError(f"{address} did not become SERVING within {timeout_s:.0f} s ({last})")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the benchmark dies, even by SIGKILL (Linux prctl
    PR_SET_PDEATHSIG), so that no reward service outlives an OOM-killed benchmark."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))


def start_service(entry: str, *flags: str, log: Path | None = None, metrics: bool = False,
                  port: int = 0) -> tuple[subprocess.Popen[bytes], str, int]:
    """A reward service (`grpo-reward-*` entry point `entry`, with `flags`) as its own process on loopback
    port `port` (0: a free one), its stderr appended to `log` (or dropped), with a metrics port when
    `metrics`. Returns (process, address, metrics port or 0) once it answers health checks."""
    port = port or free_port()
    metrics_port = free_port() if metrics else 0
    command = [str(BIN / entry), "--listen", f"127.0.0.1:{port}", *flags]
    if metrics:
        command += ["--metrics-listen", f"127.0.0.1:{metrics_port}"]
    with open(log, "ab") if log is not None else contextlib.nullcontext() as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                stderr=err if err is not None else subprocess.DEVNULL, preexec_fn=_die_with_parent)
    address = f"127.0.0.1:{port}"
    try:
        wait_for_grpc(address)
    except BaseException:
        stop_process(proc)
        raise
    return proc, address, metrics_port


def start_math_verifier(workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    """The real math verifier (`grpo-reward-math`) as its own process on a free loopback port."""
    proc, address, _ = start_service("grpo-reward-math", "--workers", str(workers))
    return proc, address


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 60.0) -> None:
    """SIGTERM, wait, then SIGKILL if it did not exit."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sum_problems(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (question, answer) pairs "What is a+b? Answer with just the number." with 1 <= a, b <= 99,
    the same for every benchmark given the same seed."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        out.append((f"What is {a}+{b}? Answer with just the number.", str(a + b)))
    return out


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that a benchmark stopped by `kill` or a timeout still runs its
    clean-up (stops the reward services and trainers it started)."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
