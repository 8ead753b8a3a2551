"""A circuit breaker per reward backend.

CLOSED: calls go through; `failures` consecutive failed calls open it. OPEN: calls fail fast (their items
are masked) until `reset_seconds` have passed, then HALF_OPEN: exactly one trial call goes through; its
success closes the breaker, its failure opens it again for another `reset_seconds`.
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
        reset_seconds: how long it stays open before letting one trial call through.
        clock: monotonic seconds; injectable so tests can move time.
    """

    def __init__(self, failures: int = 5, reset_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic):
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if reset_seconds <= 0:
            raise ValueError(f"reset_seconds must be > 0, got {reset_seconds}")
        self._threshold = failures
        self._reset = reset_seconds
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
            if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._reset:
                return CircuitState.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a call may go out now. In HALF_OPEN only one trial call is allowed at a time; a caller
        that got True must report the outcome with `record_success` or `record_failure`."""
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return True
            if self._state is CircuitState.OPEN:
                if self._clock() - self._opened_at < self._reset:
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

    def record_failure(self) -> None:
        """A call failed: count it; open the breaker at the threshold, or again after a failed trial."""
        with self._lock:
            self._consecutive += 1
            self._trial_in_flight = False
            if self._state is CircuitState.HALF_OPEN or self._consecutive >= self._threshold:
                self._state = CircuitState.OPEN
                self._opened_at = self._clock()

    def release(self) -> None:
        """A call that was allowed did not happen or says nothing about health (the request was bad):
        let another trial through without changing the counts."""
        with self._lock:
            self._trial_in_flight = False
