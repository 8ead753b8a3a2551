"""A fixed set of daemon threads that run the sandbox's items.

Not ``concurrent.futures.ThreadPoolExecutor``: the interpreter joins its threads when it exits, so an
item still compiling its tests, or waiting on a sandbox, when the drain ran out kept the service alive
past ``--drain-seconds`` (and ``shutdown(wait=True)`` waited for it as well). Daemon threads do not hold
the exit up; the sandboxes they wait on are killed by the scorer's ``close()``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class DaemonWorkers:
    """``workers`` daemon threads taking tasks in submission order. Thread-safe."""

    def __init__(self, workers: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                        for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """A future of ``fn(*args)``, run on the next free thread. Raises RuntimeError once closed."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the workers are closed")
            self._tasks.put((future, fn, args))
        return future

    def close(self) -> None:
        """Cancel the tasks not started yet and end each thread after its current task. Returns at once:
        a running task is not waited for."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        for _ in self.threads:
            self._tasks.put(None)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # the caller's future carries it
                future.set_exception(exc)
            else:
                future.set_result(result)
