"""The one interface a reward backend implements to be served by the harness.

The harness (`grpo_rewards.common.server`) owns everything about gRPC: listening, auth, validation,
limits, metrics, health and graceful drain. A backend only turns a validated batch of items into
results. Keeping that boundary narrow is what lets the math verifier, the code sandbox and the reward
model share one bootstrap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable

from grpo.reward.v1 import reward_pb2


@runtime_checkable
class Scorer(Protocol):
    """A reward backend, as the harness sees it.

    Contract for `score`:
    - It is called from a gRPC worker thread with a batch the harness has already validated (non-empty,
      at most `--max-batch` items, unique non-empty ids, fields within size limits, reference kinds in
      `describe().capabilities.reference_kinds`). Several calls may run at once (up to
      `--max-concurrency`), so it must be thread-safe; it may block.
    - It returns exactly one `ScoreResult` per item, in item order, each echoing its item's `id`.
    - A problem with one item (unparseable answer, a program that timed out, an input too long for this
      backend) is that item's `status`, never an exception. An exception escaping `score` is logged
      with its traceback and turned into SCORE_STATUS_INTERNAL results for the whole batch; the server
      keeps serving.
    - It may stop early once `call_abandoned()` is set (the client is gone), returning a scoreless
      result for each item it did not finish: nobody will read them.
    """

    def describe(self) -> reward_pb2.DescribeResponse:
        """Name, version and capabilities. Called once at start; `capabilities.max_batch_size` is
        overwritten by the harness with the `--max-batch` it enforces."""
        ...

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        """Score a validated batch: one result per item, same order, ids echoed."""
        ...

    def close(self) -> None:
        """Release workers, models and temporary files. Called once, after the server has drained."""
        ...


def result_for(item: reward_pb2.ScoreItem, status: int, message: str = "") -> reward_pb2.ScoreResult:
    """A scoreless result for `item` with the given `ScoreStatus` and a short machine-oriented message."""
    return reward_pb2.ScoreResult(id=item.id, status=status, status_message=message)  # type: ignore[arg-type]


_ABANDONED: ContextVar[threading.Event | None] = ContextVar("grpo_reward_call_abandoned", default=None)


def call_abandoned() -> threading.Event:
    """For a backend's `score`: an Event set once the Score call it is serving has ended for its client
    (the deadline passed, the client cancelled, or the server stopped before the call finished). Work left
    for that call is wasted: a backend with queued or long work can check it and stop (the reward model
    drops the call's texts that have not reached the model yet). Outside a Score call it is never set."""
    event = _ABANDONED.get()
    return event if event is not None else threading.Event()


@contextmanager
def serving_call(abandoned: threading.Event) -> Iterator[None]:
    """Make `abandoned` what `call_abandoned()` returns on this thread while the block runs (the harness
    wraps each `score` call in this)."""
    token = _ABANDONED.set(abandoned)
    try:
        yield
    finally:
        _ABANDONED.reset(token)
