"""Dynamic micro-batching: items from concurrent Score calls share forward passes.

One thread owns the model. It takes the first waiting text, then gathers more for up to `wait_s` or
until `micro_batch` texts are waiting, and scores them together. Under load, batches fill at once;
a lone request waits at most `wait_s` longer than its own forward pass.

A batch whose `fn` raises is run again in halves, down to single inputs, so that only an input that
fails on its own gets the exception: one bad text (or one too large for memory alongside the others)
does not fail the texts batched with it. One failing input among n costs about 2·log2(n) more calls.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Runs `fn(batch) -> results` (one result per input, same order) on batches gathered across callers."""

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], *, micro_batch: int = 16, wait_s: float = 0.005,
                 name: str = "micro-batcher") -> None:
        if micro_batch < 1 or wait_s < 0:
            raise ValueError("micro_batch must be >= 1 and wait_s >= 0")
        self.fn = fn
        self.micro_batch = micro_batch
        self.wait_s = wait_s
        self.batch_sizes: list[int] = []  # recent batch sizes, for tests and the benchmark
        self._queue: queue.Queue[tuple[T, Future[R]] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit_many(self, inputs: Sequence[T]) -> list[Future[R]]:
        """Queue inputs; each future resolves to its result, or to the exception `fn` raised on that input
        alone. A future cancelled before its batch starts is skipped (never given to `fn`)."""
        if self._closed:
            raise RuntimeError("batcher is closed")
        futures: list[Future[R]] = []
        for x in inputs:
            f: Future[R] = Future()
            self._queue.put((x, f))
            futures.append(f)
        return futures

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if first[1].cancelled():  # its caller is gone
                continue
            batch = [first]
            deadline = time.monotonic() + self.wait_s
            stop = False
            while len(batch) < self.micro_batch:
                left = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if not nxt[1].cancelled():
                    batch.append(nxt)
            self._execute(batch)
            if stop:
                return

    def _execute(self, batch: list[tuple[T, Future[R]]]) -> None:
        live = [(x, f) for x, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        self.batch_sizes = (self.batch_sizes + [len(live)])[-1000:]
        self._call(live)

    def _call(self, live: list[tuple[T, Future[R]]]) -> None:
        """Resolve `live`'s futures from one call of `fn`; if it fails, from calls on each half in turn, so
        that only inputs failing on their own get the exception."""
        try:
            results = list(self.fn([x for x, _ in live]))
            if len(results) != len(live):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} inputs")
        except Exception as exc:
            if len(live) == 1:
                log.exception("micro-batch input failed on its own")
                live[0][1].set_exception(exc)
                return
            log.warning("micro-batch of %d failed (%s: %s); retrying it in halves", len(live),
                        type(exc).__name__, exc)
        else:
            for (_, f), r in zip(live, results, strict=True):
                f.set_result(r)
            return
        # Retried outside the `except` block, so that the failed call's traceback (and the tensors its frames
        # hold: the point of retrying a batch that ran out of memory) is released first.
        half = len(live) // 2
        self._call(live[:half])
        self._call(live[half:])

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join()
