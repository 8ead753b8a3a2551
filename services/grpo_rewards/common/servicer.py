"""The `RewardService` servicer: validate, apply the concurrency limit, call the backend, count.

No scoring logic lives here; a `Scorer` does that. Errors map to gRPC status codes:
INVALID_ARGUMENT (+ google.rpc.BadRequest) for malformed requests, RESOURCE_EXHAUSTED over the
concurrency limit, UNAVAILABLE while draining. A backend exception becomes INTERNAL item results.
A call whose client is gone before it is answered (deadline passed, cancelled) is counted as
DEADLINE_EXCEEDED or CANCELLED, and the backend is told through `call_abandoned()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc

from .metrics import ServiceMetrics, status_label
from .scorer import Scorer, result_for, serving_call
from .validation import Limits, UndecodableRequest, validate_request

log = logging.getLogger(__name__)


def bad_request_status(message: str, violations: Sequence[error_details_pb2.BadRequest.FieldViolation]):
    """A grpc.Status for INVALID_ARGUMENT carrying a google.rpc.BadRequest with `violations`."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=list(violations)))
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])
    )


class RewardServicer(reward_pb2_grpc.RewardServiceServicer):
    """Serves one `Scorer` under the harness's limits.

    `draining` is set by the server's stop sequence: from then on new Score calls get UNAVAILABLE (the
    trainer's router retries them elsewhere) while calls already admitted finish.
    """

    def __init__(self, scorer: Scorer, limits: Limits, max_concurrency: int, metrics: ServiceMetrics,
                 max_response_bytes: int | None = None) -> None:
        self.scorer = scorer
        # gRPC's send limit (--max-message-bytes): a larger answer fails in gRPC after the handler returned.
        self.max_response_bytes = max_response_bytes
        self.limits = limits
        self.metrics = metrics
        self.max_concurrency = max_concurrency
        self.draining = threading.Event()
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self._active = 0
        self._idle = threading.Condition(self._lock)
        described = reward_pb2.DescribeResponse()
        described.CopyFrom(scorer.describe())
        # The harness enforces the batch limit, so it is the one the backend advertises.
        described.capabilities.max_batch_size = limits.max_batch
        self.description = described
        self.reference_kinds = frozenset(described.capabilities.reference_kinds)

    # -- drain support -------------------------------------------------------------------------------
    @property
    def active(self) -> int:
        """Score calls admitted and not yet finished (validated, scored or refused past the drain check)."""
        with self._lock:
            return self._active

    def start_draining(self) -> None:
        """Refuse Score calls from now on. A call is admitted under the same lock (`_admit`), so one that
        passed the check is already counted in `active` when the drain waits for it: checking first and
        counting after validation let a drain see 0 calls and stop the server under an admitted one."""
        with self._lock:
            self.draining.set()

    def _admit(self) -> bool:
        """Count a new Score call as active; False (nothing counted) when draining."""
        with self._lock:
            if self.draining.is_set():
                return False
            self._active += 1
            return True

    def _leave(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no Score call is in flight or `timeout` seconds pass; True when idle."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    # -- RPCs ----------------------------------------------------------------------------------------
    def Describe(self, request: reward_pb2.DescribeRequest, context: grpc.ServicerContext):
        return self.description

    def Score(self, request: reward_pb2.ScoreRequest | UndecodableRequest, context: grpc.ServicerContext):
        started = time.perf_counter()
        code = "OK"
        # Set when the call ends for its client: a deadline, a cancellation or the server stopping. (gRPC
        # also runs the callback after a normal answer, by which time it no longer matters.)
        abandoned = threading.Event()
        if not context.add_callback(abandoned.set):  # already over
            abandoned.set()
        try:
            if not self._admit():
                code = "UNAVAILABLE"
                context.abort(grpc.StatusCode.UNAVAILABLE, "server is draining; retry on another replica")
            try:
                if isinstance(request, UndecodableRequest):  # see validation.parse_score_request
                    code = "INVALID_ARGUMENT"
                    bad = error_details_pb2.BadRequest.FieldViolation(field=request.field,
                                                                      description=request.description)
                    context.abort_with_status(bad_request_status(
                        f"invalid request: {request.field}: {request.description}", [bad]))
                    return reward_pb2.ScoreResponse()  # not reached: abort_with_status raises
                violations = validate_request(request, self.limits, self.reference_kinds)
                if violations:
                    code = "INVALID_ARGUMENT"
                    first = violations[0]
                    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
                    context.abort_with_status(
                        bad_request_status(f"invalid request: {first.field}: {first.description}{more}", violations)
                    )
                if not self._slots.acquire(blocking=False):
                    code = "RESOURCE_EXHAUSTED"
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"at the concurrency limit of {self.max_concurrency} Score calls; retry with backoff")
                try:
                    self.metrics.in_flight.inc()
                    self.metrics.batch_items.observe(len(request.items))
                    results = [] if abandoned.is_set() else self._score(request.items, abandoned)
                finally:
                    self.metrics.in_flight.dec()
                    self._slots.release()
            finally:
                self._leave()
            if abandoned.is_set():
                # Nobody will read this answer: count the code the client saw, not OK, and no items.
                remaining = context.time_remaining()
                code = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
                return reward_pb2.ScoreResponse()
            response = reward_pb2.ScoreResponse(results=results)
            size = response.ByteSize()
            if self.max_response_bytes is not None and size > self.max_response_bytes:
                # gRPC would refuse to send it (RESOURCE_EXHAUSTED "Sent message larger than max") after this
                # handler had counted the call OK and its items scored: the whole batch lost, counted scored.
                code = "RESOURCE_EXHAUSTED"
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"the results of these {len(results)} items take {size} bytes, more than this service "
                              f"sends in one message (--max-message-bytes {self.max_response_bytes}): send fewer "
                              "items per call")
            for r in results:
                self.metrics.items.labels(status=status_label(r.status)).inc()
            return response
        except BaseException:
            # An abort above set `code` first; anything else escaping reaches the client as UNKNOWN.
            if code == "OK":
                code = "UNKNOWN"
            raise
        finally:
            self.metrics.requests.labels(code=code).inc()
            self.metrics.latency.observe(time.perf_counter() - started)

    def _score(self, items: Sequence[reward_pb2.ScoreItem], abandoned: threading.Event) -> list[reward_pb2.ScoreResult]:
        """The backend's results, or INTERNAL results for the whole batch when it fails or breaks the
        one-result-per-item contract. `abandoned` is what the backend's `call_abandoned()` returns."""
        try:
            with serving_call(abandoned):
                results = list(self.scorer.score(items))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a backend bug must not take the server down
            # BaseException too: one that is not an Exception (a timeout signal's, say) escaping a gRPC
            # handler leaves the call unanswered until the client's deadline, the whole batch lost.
            log.exception("scorer %s failed on a batch of %d items", self.description.name, len(items))
            return [result_for(it, reward_pb2.SCORE_STATUS_INTERNAL, f"backend error: {type(exc).__name__}")
                    for it in items]
        if len(results) != len(items) or any(r.id != it.id for r, it in zip(results, items, strict=False)):
            log.error("scorer %s broke the contract: %d results for %d items or ids out of order",
                      self.description.name, len(results), len(items))
            return [result_for(it, reward_pb2.SCORE_STATUS_INTERNAL, "backend returned mismatched results")
                    for it in items]
        for r in results:
            if r.status == reward_pb2.SCORE_STATUS_UNSPECIFIED:
                r.status = reward_pb2.SCORE_STATUS_INTERNAL
                r.status_message = r.status_message or "backend left the status unspecified"
        return results
