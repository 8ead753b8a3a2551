"""A circuit breaker per reward backend.

CLOSED: calls go through; `failures` consecutive failed calls open it. OPEN: calls fail fast (their items
are masked) for `first_reset_seconds`, then HALF_OPEN: exactly one trial call goes through; its success
closes the breaker, its failure opens it again for twice as long as the last time, at most
`reset_seconds`. A backend back after a restart of a few seconds is called again a few seconds later;
one that stays down gets a trial call every `reset_seconds`. A breaker due for its trial that gets no call
for `reset_seconds` more (nothing to score on that backend) is tried by the router with a Describe call
(RewardRouter.circuit_states), so that it does not read "half_open" for as long as the backend is idle.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class CircuitState(enum.Enum):
    """The breaker's view of a backend (grpo.trainer.v1.CircuitState without the prefix)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe consecutive-failure breaker.

    Args:
        failures: consecutive failed calls that open the breaker (>= 1).
        reset_seconds: the longest it stays open before letting one trial call through.
        clock: monotonic seconds; injectable so tests can move time.
        first_reset_seconds: how long it stays open the first time (after failures while closed); each
            failed trial doubles it, up to `reset_seconds`. None, or more than `reset_seconds`: always
            `reset_seconds`.
    """

    def __init__(self, failures: int = 5, reset_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 first_reset_seconds: float | None = None):
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if reset_seconds <= 0:
            raise ValueError(f"reset_seconds must be > 0, got {reset_seconds}")
        if first_reset_seconds is not None and first_reset_seconds <= 0:
            raise ValueError(f"first_reset_seconds must be > 0, got {first_reset_seconds}")
        self._threshold = failures
        self._reset = reset_seconds
        self._first_reset = min(first_reset_seconds or reset_seconds, reset_seconds)
        self._open_for = self._first_reset  # the current opening's length
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        """The current state (OPEN turns into HALF_OPEN once the reset time has passed)."""
        with self._lock:
            if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._open_for:
                return CircuitState.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a call may go out now. In HALF_OPEN only one trial call is allowed at a time; a caller
        that got True must report the outcome with `record_success` or `record_failure`."""
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return True
            if self._state is CircuitState.OPEN:
                if self._clock() - self._opened_at < self._open_for:
                    return False
                self._state = CircuitState.HALF_OPEN
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        """A call got a usable answer: close the breaker and forget past failures."""
        with self._lock:
            self._state = CircuitState.CLOSED
            self._consecutive = 0
            self._trial_in_flight = False
            self._open_for = self._first_reset

    def record_failure(self) -> None:
        """A call failed: count it; open the breaker at the threshold, or again after a failed trial."""
        with self._lock:
            self._consecutive += 1
            self._trial_in_flight = False
            if self._state is CircuitState.HALF_OPEN:  # the trial failed: open again, for longer
                self._open_for = min(self._reset, self._open_for * 2)
            elif self._state is CircuitState.CLOSED and self._consecutive >= self._threshold:
                self._open_for = self._first_reset
            else:
                return
            self._state = CircuitState.OPEN
            self._opened_at = self._clock()

    def idle_trial_seconds(self) -> float:
        """How long an open breaker has been due for its trial call without one going out (no traffic to
        the backend); 0 when it is not due, or its trial is in flight."""
        with self._lock:
            if self._state is CircuitState.CLOSED or self._trial_in_flight:
                return 0.0
            return max(0.0, self._clock() - self._opened_at - self._open_for)

    def seconds_until_trial(self) -> float:
        """How long calls still fail fast: the time left until an OPEN breaker lets its trial call
        through; 0 when a call may go out now (CLOSED, or the reset time has passed)."""
        with self._lock:
            if self._state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self._open_for - (self._clock() - self._opened_at))

    def release(self) -> None:
        """A call that was allowed did not happen or says nothing about health (the request was bad):
        let another trial through without changing the counts."""
        with self._lock:
            self._trial_in_flight = False
