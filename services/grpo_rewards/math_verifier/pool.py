"""A pool of verifier processes with a hard per-item deadline.

Each worker is its own single-process `ProcessPoolExecutor` (forkserver context, math-verify preloaded),
so one that overruns can be killed and replaced without failing the items other workers are running:
a shared multi-process executor turns one killed worker into a BrokenProcessPool for everyone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .worker import Verdict, verify_pair, warm_up

log = logging.getLogger(__name__)

# After the in-worker timer should have fired, how long to wait before killing the process: covers
# work in C that ignores signals, and the worker's own reply.
KILL_GRACE_SECONDS = 1.0

# The verdict of an item asked for after the pool was closed (the server is stopping).
CLOSED = Verdict(equal=False, error="the verifier is shutting down")


_PROC = os.path.isdir("/proc/self")  # Linux: a process's state is readable there


def _exited(pid: int) -> bool:
    """True when process `pid` has exited: gone from /proc, or a zombie not yet reaped. False where there
    is no /proc to ask (then only the executor's own view counts)."""
    if not _PROC:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False


def _ignore_sigint() -> None:
    """Ctrl-C reaches the whole process group; the server drains and then stops its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Worker:
    """One worker process behind a one-process executor; `restart` kills and replaces it."""

    def __init__(self, ctx: multiprocessing.context.BaseContext, index: int) -> None:
        self.ctx = ctx
        self.index = index
        self.executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=self.ctx, initializer=_ignore_sigint)

    def submit(self, gold: str, answer: str, budget_s: float) -> Future[Verdict]:
        return self.executor.submit(verify_pair, gold, answer, budget_s)

    def processes(self) -> dict[int, Any]:
        """pid -> process of its executor. ProcessPoolExecutor (Python 3.11) has no public way to kill a
        busy worker; its process map, None once shut down, is the only handle on the process."""
        return dict(getattr(self.executor, "_processes", None) or {})

    def dead(self) -> bool:
        """True when its process has exited (killed from outside, out of memory), whether or not the
        executor has noticed yet: an item submitted now would fail as if it had killed the worker. The
        kernel is asked too: a forkserver child's exit code reaches `exitcode` only once the forkserver
        has reaped it and passed the status on, a moment after the process is gone."""
        return bool(getattr(self.executor, "_broken", False)) or any(
            proc.exitcode is not None or _exited(pid) for pid, proc in self.processes().items())

    def restart(self) -> None:
        old = self.executor
        for proc in self.processes().values():
            proc.kill()
        old.shutdown(wait=False, cancel_futures=True)
        self.executor = self._new()

    def close(self) -> None:
        for proc in self.processes().values():
            proc.kill()
        self.executor.shutdown(wait=True, cancel_futures=True)


class VerifierPool:
    """`workers` verifier processes; `verify(gold, answer)` blocks until a worker is free and returns its
    Verdict within about `item_timeout_s` + KILL_GRACE_SECONDS of starting. Thread-safe."""

    def __init__(self, workers: int, item_timeout_s: float, start_method: str = "forkserver") -> None:
        ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # Every worker (and every replacement) forks from a server that has math-verify imported.
            ctx.set_forkserver_preload(["grpo_rewards.math_verifier.worker", "math_verify", "sympy"])
        self.item_timeout_s = item_timeout_s
        self.restarts = 0
        self._closed = False
        self._free: queue.Queue[_Worker] = queue.Queue()
        self._all = [_Worker(ctx, i) for i in range(workers)]
        self._lock = threading.Lock()
        warm = [w.executor.submit(warm_up) for w in self._all]
        for f in warm:
            f.result(timeout=120)
        for w in self._all:
            self._free.put(w)

    def verify(self, gold: str, answer: str) -> Verdict:
        """Compare on a free worker; a worker that overruns is killed and replaced (timed_out Verdict)."""
        worker = self._free.get()
        try:
            try:
                if self._closed:
                    return CLOSED
                if worker.dead():
                    raise BrokenProcessPool
                future = worker.submit(gold, answer, self.item_timeout_s)
            except BrokenProcessPool:  # raised by submit too when it dies between the check and the call
                # It died while idle (killed from outside, out of memory): nothing of this item ran yet.
                log.error("verifier worker %d died while idle; replacing it", worker.index)
                if not self._replace(worker):
                    return CLOSED
                future = worker.submit(gold, answer, self.item_timeout_s)
            except RuntimeError:  # "cannot schedule new futures after shutdown": close() came in between
                if self._closed:
                    return CLOSED
                raise
            try:
                return future.result(timeout=self.item_timeout_s + KILL_GRACE_SECONDS)
            except FutureTimeout:
                log.warning("verifier worker %d overran %.1f s; killing and replacing it",
                            worker.index, self.item_timeout_s)
                self._replace(worker)
                return Verdict(equal=False, timed_out=True)
            except BrokenProcessPool:
                if self._closed:  # close() killed it
                    return CLOSED
                log.error("verifier worker %d died while verifying an item; replacing it", worker.index)
                self._replace(worker)
                return Verdict(equal=False, error="verifier worker process died")
        finally:
            self._free.put(worker)

    def _replace(self, worker: _Worker) -> bool:
        """Kill and restart `worker`; False (nothing started) once the pool is closed: a worker started
        after close() would outlive the server, and keep the forkserver and resource tracker alive with it."""
        with self._lock:
            if self._closed:
                return False
            self.restarts += 1
            worker.restart()
            return True

    def worker_pids(self) -> list[int]:
        """Process ids of the live worker processes (for operators and tests)."""
        return [pid for w in self._all for pid, proc in w.processes().items() if proc.exitcode is None]

    def close(self) -> None:
        """Stop every worker process, and start none after: an item still being verified (its worker
        killed here) or verified later gets CLOSED."""
        with self._lock:  # after a _replace in progress, before any later one
            self._closed = True
            for w in self._all:
                w.close()
