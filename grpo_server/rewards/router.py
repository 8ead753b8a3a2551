"""The reward router: RolloutGroups in, ScoredGroups out, by calling each prompt's reward backends.

For one step (`score`), every completion of every group is sent to each backend its prompt names. Items
for one backend are cut into batches of the backend's `max_batch_size` and sent by at most
`max_concurrency` worker threads per backend, all backends at once, from one thread pool (blocking
grpcio calls: simple to reason about, and a step's few hundred items need no event loop). Each Score call
has the entry's `timeout_seconds` as its deadline; UNAVAILABLE and RESOURCE_EXHAUSTED are retried with
jittered exponential backoff (a RetryInfo delay from the backend is honoured up to `backoff_max_s`); a
circuit breaker per backend fails calls fast after repeated failures.

Whatever cannot be scored becomes a BackendScore with `score=None` and the RewardStatus that says why,
so the completion is masked out of the loss and counted. It is never scored as 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from itertools import zip_longest
from typing import Protocol, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpo.reward.v1 import reward_pb2
from grpo_server.rewards.breaker import CircuitBreaker, CircuitState
from grpo_server.rewards.client import MAX_MESSAGE_BYTES, ChannelPool, call_metadata
from grpo_server.rewards.registry import BackendEntry, RegistrySnapshot, RewardRegistry
from grpo_server.types import (
    BackendScore,
    PromptRecord,
    RewardStatus,
    RolloutGroup,
    ScoredCompletion,
    ScoredGroup,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 64
# The largest score or step score magnitude the trainer takes. Rewards are summed, normalised (means and
# variances of squares) and held in float32: a finite double such as 1e300 overflows there to inf and
# NaN advantages, a non-finite loss that ends the run, and again after every restart. No reward model's
# scale comes near this bound; a result past it is masked as a backend bug, like a NaN.
MAX_ABS_SCORE = 1e12
# The proto's limit on ScoreResult.feedback (UTF-8 bytes). Longer feedback is cut to it: it goes into
# SDPO's re-prompts, and megabytes there make a teacher sequence that exhausts memory.
MAX_FEEDBACK_BYTES = 4096
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_RPC_TO_STATUS = {
    grpc.StatusCode.UNAVAILABLE: RewardStatus.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: RewardStatus.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RewardStatus.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INVALID_ARGUMENT: RewardStatus.INVALID_INPUT,
}
_ITEM_STATUS = {
    reward_pb2.SCORE_STATUS_OK: RewardStatus.OK,
    reward_pb2.SCORE_STATUS_INVALID_INPUT: RewardStatus.INVALID_INPUT,
    reward_pb2.SCORE_STATUS_TIMEOUT: RewardStatus.TIMEOUT,
    reward_pb2.SCORE_STATUS_RESOURCE_EXHAUSTED: RewardStatus.RESOURCE_EXHAUSTED,
    reward_pb2.SCORE_STATUS_INTERNAL: RewardStatus.INTERNAL,
}


class RouterObserver(Protocol):
    """Receives the router's measurements (the trainer's metrics implement it)."""

    def on_request(self, backend: str, seconds: float, code: str) -> None:
        """One Score attempt ended after `seconds`; `code` is "OK" or a gRPC status name."""

    def on_item_failure(self, backend: str, status: str) -> None:
        """One item got no usable score from `backend`; `status` is the RewardStatus value."""


@dataclass(frozen=True)
class _Job:
    """One (completion, backend) pair to score. `key` = (group index, completion index, backend)."""

    key: tuple[int, int, str]
    item: reward_pb2.ScoreItem
    has_code: bool


def build_score_item(prompt: PromptRecord, completion_text: str, item_id: str) -> reward_pb2.ScoreItem:
    """The grpo.reward.v1.ScoreItem for one completion of `prompt`."""
    item = reward_pb2.ScoreItem(
        id=item_id,
        prompt=[reward_pb2.Message(role=m.role, content=m.content) for m in prompt.messages],
        completion=completion_text,
        metadata=dict(prompt.metadata),
    )
    if prompt.answer is not None:
        item.answer = prompt.answer
    elif prompt.code is not None:
        c = prompt.code
        item.code.CopyFrom(reward_pb2.CodeTests(
            language=c.language, test_code=c.test_code, entry_point=c.entry_point,
            io_cases=[reward_pb2.IOCase(stdin=io.stdin, expected_stdout=io.expected_stdout) for io in c.io_cases],
            timeout_seconds=c.timeout_seconds,
        ))
    return item


def _failed(backend: str, status: RewardStatus, message: str, feedback: str = "", *, item: bool = False) -> BackendScore:
    return BackendScore(backend=backend, weight=1.0, status=status, score=None, feedback=feedback, message=message,
                        item_failure=item)


def _status_name(value: reward_pb2.ScoreStatus.ValueType) -> str:
    """The proto name of a ScoreStatus value; a value this trainer's proto does not name (a newer or broken
    backend's) is shown as a number rather than raising."""
    try:
        return reward_pb2.ScoreStatus.Name(value)
    except ValueError:
        return f"unknown status {value}"


def convert_result(backend: str, result: reward_pb2.ScoreResult, has_code: bool, completion_length: int) -> BackendScore:
    """One ScoreResult as a BackendScore (weight 1; the caller applies the prompt's weight).

    The score is kept for SCORE_STATUS_OK, and for SCORE_STATUS_TIMEOUT and SCORE_STATUS_RESOURCE_EXHAUSTED
    of a code item: the program ran past its own time or memory limit, the sandbox counts the tests it did
    not finish as failed, and its score stands. Masking them would spare such programs the negative
    advantage of a failure, so a policy could drift towards code that never finishes or exhausts memory.
    A non-finite score or step score masks the item as INTERNAL, and so do step scores that break the
    proto's rule for them (as many end offsets as step scores, non-decreasing, none negative, none past
    the completion's `completion_length` code points): the trainer could not place such steps. So does a
    score or step score beyond +-MAX_ABS_SCORE, which the trainer's arithmetic would overflow on.
    Feedback longer than the proto's MAX_FEEDBACK_BYTES is cut to it (see `cut_feedback`)."""
    status = _ITEM_STATUS.get(result.status, RewardStatus.INTERNAL)
    scored = status is RewardStatus.OK or (
        has_code and status in (RewardStatus.TIMEOUT, RewardStatus.RESOURCE_EXHAUSTED))
    feedback = cut_feedback(result.feedback)
    if not scored:
        message = result.status_message or f"backend returned {_status_name(result.status)}"
        return _failed(backend, status, _cut(message), feedback, item=True)
    if not math.isfinite(result.score):
        return _failed(backend, RewardStatus.INTERNAL, f"non-finite score {result.score!r}", feedback, item=True)
    for k, step in enumerate(result.step_scores):
        if not math.isfinite(step):
            return _failed(backend, RewardStatus.INTERNAL, f"non-finite step score {step!r} (step_scores[{k}])",
                           feedback, item=True)
    range_error = _score_range_error(result)
    if range_error:
        return _failed(backend, RewardStatus.INTERNAL, range_error, feedback, item=True)
    steps_error = _step_list_error(result, completion_length)
    if steps_error:
        return _failed(backend, RewardStatus.INTERNAL, _cut(steps_error), feedback, item=True)
    return BackendScore(
        backend=backend,
        weight=1.0,
        status=status,
        score=float(result.score),
        feedback=feedback,
        step_scores=tuple(result.step_scores),
        step_end_offsets=tuple(result.step_end_offsets),
        components=dict(result.components),
        message=_cut(result.status_message),
    )


def cut_feedback(feedback: str) -> str:
    """`feedback` cut to MAX_FEEDBACK_BYTES of UTF-8 (at a character boundary), with a note of how long it
    was; unchanged when it fits."""
    if len(feedback) <= MAX_FEEDBACK_BYTES // 4:  # at most 4 bytes a character: fits without encoding it
        return feedback
    data = feedback.encode("utf-8")
    if len(data) <= MAX_FEEDBACK_BYTES:
        return feedback
    kept = data[:MAX_FEEDBACK_BYTES].decode("utf-8", errors="ignore")
    return f"{kept}\n[feedback cut by the trainer: the backend sent {len(data)} bytes, at most {MAX_FEEDBACK_BYTES} are kept]"


def _cut(message: str, limit: int = 1000) -> str:
    """A backend's status message, at most `limit` characters (it goes into logs and failure reasons)."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _score_range_error(result: reward_pb2.ScoreResult) -> str:
    """Why `result`'s score or step scores are too large for the trainer to use, or ""."""
    if abs(result.score) > MAX_ABS_SCORE:
        return f"score {result.score!r} is outside -{MAX_ABS_SCORE:g}..{MAX_ABS_SCORE:g}"
    for k, s in enumerate(result.step_scores):
        if abs(s) > MAX_ABS_SCORE:
            return f"step score {s!r} (step_scores[{k}]) is outside -{MAX_ABS_SCORE:g}..{MAX_ABS_SCORE:g}"
    return ""


def _step_list_error(result: reward_pb2.ScoreResult, completion_length: int) -> str:
    """Why `result`'s step scores cannot be placed in a completion of `completion_length` code points, or ""."""
    scores, ends = result.step_scores, result.step_end_offsets
    if len(scores) != len(ends):
        return f"backend returned {len(scores)} step_scores but {len(ends)} step_end_offsets (they pair up)"
    if len(scores) > completion_length + 1:  # placing them costs the trainer time per step and token
        return (f"{len(scores)} step scores for a completion of {completion_length} code points: more steps "
                "than it has characters")
    if any(e < 0 or e > completion_length for e in ends):
        return (f"step_end_offsets {list(ends)} leave the completion's 0..{completion_length} code points")
    if any(b < a for a, b in zip(ends, ends[1:], strict=False)):
        return f"step_end_offsets {list(ends)} decrease (they must be non-decreasing)"
    return ""


def _target(entry: BackendEntry) -> tuple[str, bool]:
    """What makes a backend the same one for its breaker: a new address (or TLS setting) is a new backend."""
    return (entry.address, entry.tls)


class RewardRouter:
    """Scores rollout groups on the registry's backends (see the module docstring).

    Args:
        registry: the live registry; the router shows it its breaker states for listings.
        observer: gets one `on_request` per Score attempt and one `on_item_failure` per masked item.
        max_retries: retries of one batch after UNAVAILABLE or RESOURCE_EXHAUSTED (0 = no retry).
        backoff_base_s, backoff_max_s: retry k waits uniform(0.5, 1) * min(max, base * 2**k) seconds.
        breaker_failures: consecutive failed Score attempts that open a backend's breaker.
        breaker_reset_s: the longest an open breaker waits before letting one trial call through.
        breaker_first_reset_s: how long it waits the first time; each failed trial doubles the wait, up
            to breaker_reset_s (None: always breaker_reset_s).
        max_workers: Score calls in flight at once across all backends (the pool's threads).
        max_message_bytes: the largest ScoreRequest sent; batches are cut to fit it (the channels' limit).
    """

    def __init__(
        self,
        registry: RewardRegistry,
        *,
        observer: RouterObserver | None = None,
        max_retries: int = 3,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        breaker_first_reset_s: float | None = None,
        max_workers: int = 64,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.registry = registry
        self.max_message_bytes = max_message_bytes
        self.observer = observer
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        # Its own generator: the step loop re-seeds the module-level `random` at every step (for
        # reproducible sampling), which would make the jitter repeat step after step, and trainers with
        # one seed retry in lockstep.
        self._jitter = random.Random()
        self._breaker_failures = breaker_failures
        self._breaker_reset_s = breaker_reset_s
        self._breaker_first_reset_s = breaker_first_reset_s
        self._clock = clock
        self._pool = ChannelPool()
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="reward-call")
        self._lock = threading.Lock()
        self._breakers: dict[str, tuple[tuple[str, bool], CircuitBreaker]] = {}
        self._capped_logged: set[tuple[str, str, int, int]] = set()  # batch caps already logged
        self._closed = threading.Event()
        registry.attach_circuit_states(self.circuit_states)

    # ------------------------------------------------------------------------------------ public

    def score(self, groups: Sequence[RolloutGroup], snapshot: RegistrySnapshot) -> list[ScoredGroup]:
        """Score every completion of `groups` on its prompt's backends as `snapshot` defines them.

        Returns one ScoredGroup per group, in order, each completion with one BackendScore per RewardSpec
        of its prompt (in the prompt's order, weights applied). Blocks until every call has ended."""
        self._pool.forget_except(snapshot.entries)  # close the channels of backends deleted since
        jobs: dict[str, list[_Job]] = defaultdict(list)
        ids: dict[str, set[str]] = defaultdict(set)
        for gi, group in enumerate(groups):
            p = group.prompt
            prefix = _item_prefix(p.id)
            for ci, completion in enumerate(group.completions):
                item: reward_pb2.ScoreItem | None = None
                for backend in dict.fromkeys(s.backend for s in p.rewards):  # a backend named twice: one call
                    item_id = f"{prefix}/{ci}"
                    if item_id in ids[backend]:  # the same prompt id twice in one step: keep ids unique
                        item_id = f"{prefix}/{ci}#{gi}"
                    ids[backend].add(item_id)
                    if item is None:
                        item = build_score_item(p, completion.text, item_id)
                    one = reward_pb2.ScoreItem()
                    one.CopyFrom(item)
                    one.id = item_id
                    jobs[backend].append(_Job((gi, ci, backend), one, p.code is not None))

        raw: dict[tuple[int, int, str], BackendScore] = {}
        raw_lock = threading.Lock()

        def collect(scores: Mapping[tuple[int, int, str], BackendScore]) -> None:
            with raw_lock:
                raw.update(scores)

        workers: list[list[Callable[[], None]]] = []  # per backend, its workers
        for backend, backend_jobs in jobs.items():
            entry = snapshot.entries.get(backend)
            if entry is None:
                collect(self._fail_all(backend, backend_jobs, RewardStatus.UNKNOWN_BACKEND,
                                       f"backend {backend!r} is not in the registry (version {snapshot.version})"))
                continue
            batches, too_big = _batches(backend_jobs, self._batch_size(entry), self.max_message_bytes)
            if too_big:
                collect(self._fail_too_big(backend, too_big))
            queue = list(reversed(batches))
            queue_lock = threading.Lock()

            def worker(entry: BackendEntry = entry, queue: list[list[_Job]] = queue,
                       queue_lock: threading.Lock = queue_lock) -> None:
                while True:
                    with queue_lock:
                        if not queue:
                            return
                        batch = queue.pop()
                    collect(self._score_batch(entry, batch))

            workers.append([worker] * min(entry.max_concurrency, len(batches)))
        # Submitted round-robin across backends: each backend's first workers come before any backend's
        # later ones, so one backend with a high max_concurrency cannot take every thread of the pool
        # and hold the others' calls until its own queue is empty.
        futures = [self._executor.submit(w) for rank in zip_longest(*workers) for w in rank if w is not None]
        wait(futures)
        for f in futures:
            f.result()  # a bug in a worker must not pass silently

        out = []
        for gi, group in enumerate(groups):
            completions = []
            for ci, completion in enumerate(group.completions):
                specs = group.prompt.rewards
                if not specs:
                    scores: tuple[BackendScore, ...] = (
                        _failed("", RewardStatus.INVALID_INPUT, "the prompt names no reward backend"),
                    )
                else:
                    scores = tuple(self._weighted(raw[(gi, ci, s.backend)], s.weight) for s in specs)
                completions.append(ScoredCompletion(completion, scores))
            out.append(ScoredGroup(group, tuple(completions)))
        return out

    def _weighted(self, score: BackendScore, weight: float) -> BackendScore:
        """`score` with the prompt's `weight`; masked (INVALID_INPUT, the prompt's fault) when weight x score
        or weight x a step score is beyond +-MAX_ABS_SCORE: the API takes any finite weight, and one such
        as 1e308 overflows the trainer's sums to inf (NaN advantages, a non-finite loss)."""
        if score.score is None:
            return replace(score, weight=weight)
        for what, value in (("score", score.score), *(("step score", s) for s in score.step_scores)):
            if abs(weight * value) > MAX_ABS_SCORE:
                if self.observer is not None:
                    self.observer.on_item_failure(score.backend, RewardStatus.INVALID_INPUT.value)
                message = (f"the prompt's weight {weight:g} x {what} {value:g} is outside "
                           f"-{MAX_ABS_SCORE:g}..{MAX_ABS_SCORE:g}")
                log.warning("reward backend %r: masked: %s", score.backend, message)
                return replace(_failed(score.backend, RewardStatus.INVALID_INPUT, message, score.feedback, item=True),
                               weight=weight)
        return replace(score, weight=weight)

    def circuit_states(self) -> dict[str, str]:
        """Breaker state per backend of the registry that has been called at its current address:
        "closed", "open" or "half_open" (a backend moved to another address gets a fresh breaker on its
        next call, so the old address's breaker no longer speaks for it).

        A breaker due for its trial call that has had none for breaker_reset_s more (no step scored on
        that backend) gets a Describe call as its trial, in the background: it read "half_open" for as
        long as the backend got no traffic, and the backend-down alert fired and never cleared."""
        states = {}
        for name, entry in self.registry.snapshot().entries.items():
            breaker = self._known_breaker(entry)
            if breaker is None:
                continue
            if breaker.idle_trial_seconds() >= self._breaker_reset_s and not self._closed.is_set():
                with contextlib.suppress(RuntimeError):  # the pool shut down meanwhile: closing
                    self._executor.submit(self._probe, entry, breaker)
            states[name] = breaker.state.value
        return states

    def _probe(self, entry: BackendEntry, breaker: CircuitBreaker) -> None:
        """A breaker's trial call made with Describe (see circuit_states)."""
        if self._closed.is_set() or not breaker.allow():  # another trial went out meanwhile
            return
        if self.registry.describe(entry, refresh=True) is not None:
            breaker.record_success()
        else:
            breaker.record_failure()

    def seconds_until_trial(self, names: Iterable[str], snapshot: RegistrySnapshot) -> float:
        """How long every one of backends `names` (as `snapshot` defines them) still fails fast: the
        shortest time left until one of their open breakers lets a trial call through; 0 when any of them
        may be called now (its breaker closed or due for its trial, a backend never called, or one now
        at another address: a new backend)."""
        waits = []
        for name in names:
            entry = snapshot.entries.get(name)
            breaker = self._known_breaker(entry) if entry is not None else None
            if breaker is None:
                return 0.0
            waits.append(breaker.seconds_until_trial())
        return min(waits, default=0.0)

    def close(self) -> None:
        """Stop retry waits, finish in-flight calls and close the channels."""
        self._closed.set()
        self._executor.shutdown(wait=True)
        self._pool.close()

    # ---------------------------------------------------------------------------------- internals

    def _known_breaker(self, entry: BackendEntry) -> CircuitBreaker | None:
        """The breaker of `entry` at its current address; None when that backend has not been called."""
        with self._lock:
            known = self._breakers.get(entry.name)
        return known[1] if known is not None and known[0] == _target(entry) else None

    def _breaker(self, entry: BackendEntry) -> CircuitBreaker:
        target = _target(entry)
        with self._lock:
            known = self._breakers.get(entry.name)
            if known is None or known[0] != target:  # a new address is a new backend: a fresh breaker
                known = (target, CircuitBreaker(self._breaker_failures, self._breaker_reset_s, self._clock,
                                                first_reset_seconds=self._breaker_first_reset_s))
                self._breakers[entry.name] = known
            return known[1]

    def _batch_size(self, entry: BackendEntry) -> int:
        """Items per Score call: the entry's max_batch_size, but never more than the backend says it takes
        (Describe), whose refusal would mask every item of the call; 0 in the entry = the backend's own."""
        if self._breaker(entry).state is CircuitState.OPEN:  # down: don't spend a Describe deadline per step
            return entry.max_batch_size or DEFAULT_MAX_BATCH_SIZE
        desc = self.registry.describe(entry)
        backend_max = int(desc.capabilities.max_batch_size) if desc is not None else 0
        if entry.max_batch_size <= 0:
            return backend_max if backend_max > 0 else DEFAULT_MAX_BATCH_SIZE
        if 0 < backend_max < entry.max_batch_size:
            key = (entry.name, entry.address, entry.max_batch_size, backend_max)
            if key not in self._capped_logged:
                self._capped_logged.add(key)
                log.warning("reward backend %s takes at most %d items per call (its Describe); sending batches of "
                            "%d, not the registry's max_batch_size %d", entry.name, backend_max, backend_max,
                            entry.max_batch_size)
            return backend_max
        return entry.max_batch_size

    def _fail_all(self, backend: str, jobs: Sequence[_Job], status: RewardStatus,
                  message: str, *, item: bool = False) -> dict[tuple[int, int, str], BackendScore]:
        if self.observer is not None:
            for _ in jobs:
                self.observer.on_item_failure(backend, status.value)
        return {j.key: _failed(backend, status, message, item=item) for j in jobs}

    def _fail_too_big(self, backend: str, jobs: Sequence[_Job]) -> dict[tuple[int, int, str], BackendScore]:
        """Mask items that alone make a request over max_message_bytes: no call could carry them (the
        prompt's fault, like a refused item; the backend is not blamed)."""
        out = {}
        for j in jobs:
            if self.observer is not None:
                self.observer.on_item_failure(backend, RewardStatus.INVALID_INPUT.value)
            out[j.key] = _failed(backend, RewardStatus.INVALID_INPUT,
                                 f"the item is {j.item.ByteSize()} bytes: a Score request carries at most "
                                 f"{self.max_message_bytes}", item=True)
        log.warning("reward backend %r: %d items masked: each alone is over the %d-byte message limit", backend,
                    len(jobs), self.max_message_bytes)
        return out

    def _split(self, entry: BackendEntry, batch: Sequence[_Job], size: int,
               why: str) -> dict[tuple[int, int, str], BackendScore]:
        """Score `batch` again in parts of at most `size` items, one after another (the refusal was the
        request's size, not the backend's health or the items)."""
        log.warning("reward backend %r refused a batch of %d items (%s): sending it in parts of %d", entry.name,
                    len(batch), why, size)
        out: dict[tuple[int, int, str], BackendScore] = {}
        for start in range(0, len(batch), size):
            out.update(self._score_batch(entry, batch[start:start + size]))
        return out

    def _mask_refused(self, entry: BackendEntry, batch: Sequence[_Job],
                      refused: Mapping[int, str]) -> dict[tuple[int, int, str], BackendScore]:
        """Mask the items of `batch` a refusal named (index -> why) as the prompt's fault, and score the
        others again."""
        log.warning("reward backend %r refused %d of a batch's %d items (the first: %s): masked, the others sent "
                    "again", entry.name, len(refused), len(batch), next(iter(refused.values())))
        out: dict[tuple[int, int, str], BackendScore] = {}
        for i, why in refused.items():
            out.update(self._fail_all(entry.name, [batch[i]], RewardStatus.INVALID_INPUT,
                                      f"Score INVALID_ARGUMENT: {why}", item=True))
        rest = [j for i, j in enumerate(batch) if i not in refused]
        if rest:
            out.update(self._score_batch(entry, rest))
        return out

    def _described_size(self, entry: BackendEntry) -> int:
        """The backend's Describe max_batch_size, asked again now, 0 when it gives none."""
        desc = self.registry.describe(entry, refresh=True)
        return int(desc.capabilities.max_batch_size) if desc is not None else 0

    def _backoff(self, attempt: int, error: grpc.RpcError) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * self._jitter.uniform(0.5, 1.0)
        hinted = _retry_delay(error)
        if hinted is not None:
            delay = max(delay, min(hinted, self.backoff_max_s))
        return delay

    def _score_batch(self, entry: BackendEntry, batch: Sequence[_Job]) -> dict[tuple[int, int, str], BackendScore]:
        """One batch to one backend, with retries; every job of the batch gets a BackendScore."""
        name = entry.name
        breaker = self._breaker(entry)
        request = reward_pb2.ScoreRequest(items=[j.item for j in batch])
        try:
            stub = self._pool.stub(entry)
        except OSError as exc:  # a TLS file it cannot read: like an unreadable token file, an outage
            return self._fail_all(name, batch, RewardStatus.UNAVAILABLE, str(exc))
        attempt = 0
        last_error = ""
        while True:
            if self._closed.is_set():
                return self._fail_all(name, batch, RewardStatus.UNAVAILABLE, "the router is closing")
            if not breaker.allow():
                cause = f" (last error: {last_error})" if last_error else ""
                return self._fail_all(name, batch, RewardStatus.UNAVAILABLE,
                                      f"circuit breaker open for {name!r} after repeated failures{cause}")
            try:
                metadata = call_metadata(entry)
            except (OSError, ValueError) as exc:
                breaker.release()
                return self._fail_all(name, batch, RewardStatus.UNAVAILABLE, f"cannot read the token file: {exc}")
            started = time.monotonic()
            try:
                response = stub.Score(request, timeout=entry.timeout_seconds, metadata=metadata)
            except OSError as exc:  # its channel, closed by a swap meanwhile, reopened on TLS files now gone
                breaker.release()
                return self._fail_all(name, batch, RewardStatus.UNAVAILABLE, str(exc))
            except grpc.RpcError as exc:
                code = exc.code()
                last_error = f"{code.name}: {exc.details()}"
                self._observe(name, time.monotonic() - started, code.name)
                if code is grpc.StatusCode.RESOURCE_EXHAUSTED and _too_large(exc):
                    # The request is over a message limit (the trainer's send limit or the backend's
                    # receive limit): the request's fault, which no retry mends. Halve it until it fits;
                    # an item that alone is too large is masked as the prompt's fault.
                    breaker.release()
                    if len(batch) > 1:
                        return self._split(entry, batch, (len(batch) + 1) // 2, "message too large")
                    return self._fail_all(name, batch, RewardStatus.INVALID_INPUT,
                                          f"Score {code.name}: {exc.details()}", item=True)
                if code is grpc.StatusCode.INVALID_ARGUMENT:
                    breaker.release()  # our request was bad; the backend is healthy
                    named = _refused_items(exc, len(batch))
                    if named:
                        # The items it names are those prompts' fault: masked, and the rest sent again (one
                        # bad prompt masked every prompt of its batch, each counted an attempt).
                        return self._mask_refused(entry, batch, named)
                    if len(batch) > 1:
                        # A batch cut before the backend could be described (Describe failed and is
                        # cached for a while), or by an answer from before the backend was redeployed with
                        # a smaller limit, may be over the backend's limit: ask it now.
                        size = self._described_size(entry)
                        if 0 < size < len(batch):
                            return self._split(entry, batch, size, f"Describe max_batch_size {size}")
                else:
                    breaker.record_failure()
                if code in _RETRYABLE and attempt < self.max_retries:
                    delay = self._backoff(attempt, exc)
                    log.info("reward backend %r: %s, retry %d in %.2fs", name, code.name, attempt + 1, delay)
                    attempt += 1
                    self._closed.wait(delay)  # close() cuts the wait short; the loop head then fails the batch
                    continue
                status = _RPC_TO_STATUS.get(code, RewardStatus.INTERNAL)
                tries = f" after {attempt + 1} attempts" if attempt else ""
                return self._fail_all(name, batch, status, f"Score {code.name}{tries}: {exc.details()}")
            self._observe(name, time.monotonic() - started, "OK")
            results = response.results
            if len(results) != len(batch):
                breaker.record_failure()
                return self._fail_all(name, batch, RewardStatus.INTERNAL,
                                      f"backend returned {len(results)} results for {len(batch)} items")
            breaker.record_success()
            by_id: dict[str, reward_pb2.ScoreResult] = {}
            for r in results:
                by_id.setdefault(r.id, r)
            out: dict[tuple[int, int, str], BackendScore] = {}
            refused: list[str] = []  # results the backend called OK that the trainer cannot use
            cut: list[int] = []  # the UTF-8 sizes of feedback cut to MAX_FEEDBACK_BYTES
            for job in batch:
                result = by_id.get(job.item.id)
                if result is None:
                    score = _failed(name, RewardStatus.INTERNAL, f"no result for item id {job.item.id!r}")
                else:
                    score = convert_result(name, result, job.has_code, len(job.item.completion))
                    if score.score is None and result.status == reward_pb2.SCORE_STATUS_OK:
                        refused.append(f"{job.item.id!r}: {score.message}")
                    if score.feedback != result.feedback:
                        cut.append(len(result.feedback.encode("utf-8")))
                if score.score is None and self.observer is not None:
                    self.observer.on_item_failure(name, score.status.value)
                out[job.key] = score
            if refused:
                log.warning("reward backend %r: %d of %d results masked as unusable, the first %s", name,
                            len(refused), len(batch), refused[0])
            if cut:
                log.warning("reward backend %r sent feedback of %d bytes (the longest of %d over the limit) where "
                            "the proto allows %d: cut to that", name, max(cut), len(cut), MAX_FEEDBACK_BYTES)
            return out

    def _observe(self, backend: str, seconds: float, code: str) -> None:
        if self.observer is not None:
            self.observer.on_request(backend, seconds, code)


def _batches(jobs: Sequence[_Job], size: int, max_bytes: int) -> tuple[list[list[_Job]], list[_Job]]:
    """`jobs` in order, cut into batches of at most `size` items whose ScoreRequest is at most `max_bytes`
    (each item costs its size plus its field's tag and length prefix); the jobs that alone are over
    `max_bytes` come back apart (no request can carry them)."""
    batches: list[list[_Job]] = []
    too_big: list[_Job] = []
    current: list[_Job] = []
    current_bytes = 0
    for job in jobs:
        n = job.item.ByteSize()
        cost = 1 + _varint_size(n) + n
        if cost > max_bytes:
            too_big.append(job)
            continue
        if current and (len(current) >= size or current_bytes + cost > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(job)
        current_bytes += cost
    if current:
        batches.append(current)
    return batches, too_big


def _varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _too_large(error: grpc.RpcError) -> bool:
    """Whether a RESOURCE_EXHAUSTED is gRPC's message size limit ("Sent/Received message larger than max"),
    which says the request is too large, not that the backend is overloaded."""
    return "larger than max" in (error.details() or "")


_Detail = TypeVar("_Detail", error_details_pb2.RetryInfo, error_details_pb2.BadRequest)


def _detail(error: grpc.RpcError, message: type[_Detail]) -> _Detail | None:
    """The first `message` (a google.rpc error detail type) in a call's google.rpc.Status details; None
    when there is none or the trailer or the detail cannot be read (a backend's corrupt detail is no hint:
    it ended the run)."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        for detail in status.details if status is not None else ():
            if detail.Is(message.DESCRIPTOR):
                out = message()
                detail.Unpack(out)
                return out
    except Exception:  # noqa: BLE001 - malformed details just mean none
        return None
    return None


def _retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay (seconds) in a call's google.rpc.Status details, if any."""
    info = _detail(error, error_details_pb2.RetryInfo)
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9 if info is not None else None


def _refused_items(error: grpc.RpcError, count: int) -> dict[int, str]:
    """The items an INVALID_ARGUMENT's BadRequest names (`items[i]...`), index -> what is wrong; empty
    when it names none (or its details cannot be read)."""
    bad = _detail(error, error_details_pb2.BadRequest)
    named: dict[int, list[str]] = defaultdict(list)
    for v in bad.field_violations if bad is not None else ():
        m = _ITEM_FIELD.match(v.field)
        if m and int(m.group(1)) < count:
            named[int(m.group(1))].append(f"{v.field}: {v.description}")
    return {i: "; ".join(whys) for i, whys in named.items()}


_ITEM_FIELD = re.compile(r"items\[(\d+)\]")
# An item id is the prompt's id, "/", the completion's index, and "#<group>" when the prompt id repeats in
# the step; the reward services take at most 256 bytes (the proto's rule, grpo_rewards.common.validation).
_ITEM_PREFIX_BYTES = 200


def _item_prefix(prompt_id: str) -> str:
    """The prompt id as an item id starts, short enough that the item id fits the services' 256 bytes: a
    longer one is cut and a digest of the whole added, so that two long ids stay apart (prompt ids are
    printable ASCII: a character is a byte)."""
    if len(prompt_id) <= _ITEM_PREFIX_BYTES:
        return prompt_id
    return f"{prompt_id[:_ITEM_PREFIX_BYTES - 17]}~{hashlib.sha256(prompt_id.encode()).hexdigest()[:16]}"
