"""RunControl: the run's state, shared by the training loop (which changes it) and the API (which reads
it, asks for pause/resume, and streams step reports). Thread-safe; every wait is on one Condition.

The loop calls set_state / notify_step / fail and waits with wait_while_paused / wait_for_work; the API
calls request_pause / resume / notify_work and streams with wait_for_step. Waits take timeouts so that
a waiter also notices shutdown (`close`).

Given the store, the pause request is durable: request_pause records it and resume clears it before
either takes effect, and a RunControl built on the same store after a restart starts with the pause
requested, so a paused run stays paused until someone resumes it (see `PAUSE_KEY`).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from grpo_server.types import StepReport

if TYPE_CHECKING:
    from grpo_server.store import Store

log = logging.getLogger(__name__)

PAUSE_KEY = "run_control.pause_requested"
"""The store's run_values key of a requested pause: true while paused, absent otherwise."""


class RunState(enum.Enum):
    """The run as a whole (grpo.trainer.v1.RunState without the prefix)."""

    STARTING = "starting"
    IDLE = "idle"
    TRAINING = "training"
    PAUSED = "paused"
    DRAINING = "draining"
    FAILED = "failed"
    FINISHED = "finished"


class ControlError(Exception):
    """A run-control request that does not apply in the run's current state (FAILED_PRECONDITION)."""


# States a pause or resume cannot change: the run is over or shutting down.
_TERMINAL = frozenset({RunState.DRAINING, RunState.FAILED, RunState.FINISHED})


class RunControl:
    """The run's shared state. All methods are thread-safe.

    Step reports are kept as numbered events (a bounded window of `history` of them) so that a stream
    can ask for "everything after event k" without missing a report that arrives while it sends.

    store: where a pause request is kept across restarts (Store.get_value / set_value under
    `PAUSE_KEY`). With one, the control starts paused when the store says a pause was requested and not
    resumed, and request_pause / resume write the store before they take effect (a failed write raises
    and changes nothing). Without one (tests, tools), pause lives in memory only.
    """

    def __init__(self, history: int = 1024, *, store: Store | None = None) -> None:
        self._cond = threading.Condition()
        # Serialises pause and resume across their store write, which must not happen under _cond: gRPC
        # runs a stream's end callback (interrupt_waits, which takes _cond) on its one polling thread, so a
        # write waiting on a busy store under _cond stalled every call of the server.
        self._pause_lock = threading.Lock()
        self._state = RunState.STARTING
        self._store = store
        self._pause_requested = bool(store.get_value(PAUSE_KEY)) if store is not None else False
        if self._pause_requested:
            log.warning("the run was paused before this start and stays paused: no step runs until "
                        "ResumeTraining (grpo resume)")
        self._error = ""
        self._waiting = ("", 0.0)  # what holds the next step back (set_waiting), and when it should end
        self._ready = False
        self._closed = False
        self._events: deque[tuple[int, StepReport]] = deque(maxlen=history)
        self._seq = 0  # number of the latest event; 0 before any
        self._work_gen = 0  # bumped by notify_work / wake

    # ---------------------------------------------------------------------------------- state

    @property
    def state(self) -> RunState:
        """The run's current state."""
        with self._cond:
            return self._state

    @property
    def error(self) -> str:
        """Why the run failed ("" unless FAILED)."""
        with self._cond:
            return self._error

    @property
    def waiting_for(self) -> str:
        """What holds the next step back besides the queue ("" when nothing), with the seconds left when
        set_waiting was given a deadline."""
        with self._cond:
            reason, until = self._waiting
        if reason and until:
            return f"{reason} in {max(until - time.monotonic(), 0.0):.1f} s"
        return reason

    def set_waiting(self, reason: str, until: float = 0.0) -> None:
        """Say what the loop waits for before its next step ("" clears it); `until` (time.monotonic())
        is when the wait should end, reported as the seconds left."""
        with self._cond:
            self._waiting = (reason, until if reason else 0.0)

    @property
    def pause_requested(self) -> bool:
        """True from request_pause until resume: the loop starts no new step meanwhile."""
        with self._cond:
            return self._pause_requested

    @property
    def draining(self) -> bool:
        """True once the run is shutting down (state DRAINING)."""
        with self._cond:
            return self._state is RunState.DRAINING

    @property
    def ready(self) -> bool:
        """True once the model and engines are loaded (health turns SERVING then)."""
        with self._cond:
            return self._ready

    @property
    def closed(self) -> bool:
        """True after close(): streams end."""
        with self._cond:
            return self._closed

    def set_ready(self, ready: bool = True) -> None:
        """Mark the model loaded (or not)."""
        with self._cond:
            self._ready = ready
            self._cond.notify_all()

    def set_state(self, state: RunState | str) -> None:
        """Set the run's state (a RunState or its value, such as "training"). FAILED and DRAINING stick:
        a later IDLE/TRAINING/PAUSED from a loop that has not noticed yet is ignored."""
        new = state if isinstance(state, RunState) else RunState(state)
        with self._cond:
            if self._state is RunState.FAILED and new is not RunState.FAILED:
                return
            if self._state is RunState.DRAINING and new not in (RunState.FAILED, RunState.DRAINING):
                return
            self._state = new
            if new is not RunState.IDLE:  # what an idle run waited for is over
                self._waiting = ("", 0.0)
            self._cond.notify_all()

    def fail(self, error: str) -> None:
        """The run cannot go on: state FAILED with the reason (on one line, see `one_line`)."""
        with self._cond:
            self._state = RunState.FAILED
            self._error = one_line(error)
            self._cond.notify_all()

    # ---------------------------------------------------------------------------- pause/resume

    def request_pause(self) -> None:
        """Ask the loop to pause after the step in progress; with a store, the request outlives a
        restart. Idempotent. Raises ControlError when the run is draining, failed or finished."""
        with self._pause_lock:  # the store first: a failed write changes nothing, and a pause racing
            # a resume ends the same way in memory and in the store
            self._refuse_if_over("pause")
            if self._store is not None:
                self._store.set_value(PAUSE_KEY, True)
            with self._cond:
                self._pause_requested = True
                self._cond.notify_all()

    def resume(self) -> None:
        """Undo a pause (or a pending pause request), in the store too. Idempotent on a running run.
        Raises ControlError when the run is draining, failed or finished."""
        with self._pause_lock:
            self._refuse_if_over("resume")
            if self._store is not None:
                self._store.set_value(PAUSE_KEY, None)
            with self._cond:
                self._pause_requested = False
                if self._state is RunState.PAUSED:
                    self._state = RunState.IDLE  # the loop sets TRAINING when it starts the next step
                self._work_gen += 1
                self._cond.notify_all()

    def _refuse_if_over(self, what: str) -> None:
        """ControlError when the run is draining, failed or finished."""
        with self._cond:
            if self._state in _TERMINAL:
                raise ControlError(f"cannot {what}: the run is {self._state.value}")

    def wait_while_paused(self, timeout: float | None = None) -> bool:
        """Block while a pause is requested, at most `timeout` seconds (or until wake/close).
        Returns True when still paused."""
        with self._cond:
            gen = self._work_gen
            self._cond.wait_for(
                lambda: not self._pause_requested or self._closed or self._work_gen != gen, timeout
            )
            return self._pause_requested

    # ------------------------------------------------------------------------------------ work

    def notify_work(self) -> None:
        """New prompts were queued: wake a loop waiting for work."""
        with self._cond:
            self._work_gen += 1
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake every waiter (the loop is stopping, or something changed)."""
        self.notify_work()

    def wait_for_work(self, timeout: float | None = None) -> bool:
        """Block until notify_work/wake/close or `timeout` seconds. Returns True when woken."""
        with self._cond:
            gen = self._work_gen
            return self._cond.wait_for(lambda: self._work_gen != gen or self._closed, timeout)

    # ----------------------------------------------------------------------------------- steps

    @property
    def event_seq(self) -> int:
        """The number of the latest step event (0 before any)."""
        with self._cond:
            return self._seq

    def notify_step(self, report: StepReport) -> int:
        """Publish a step report (RUNNING when a step starts, then its final state). Returns its event
        number."""
        with self._cond:
            self._seq += 1
            self._events.append((self._seq, report))
            self._cond.notify_all()
            return self._seq

    def events_after(self, seq: int) -> tuple[list[tuple[int, StepReport]], bool]:
        """(events numbered after `seq`, oldest first; True when some were already dropped from the
        bounded window, so the caller must catch up from the store)."""
        with self._cond:
            return self._events_after(seq)

    def _events_after(self, seq: int) -> tuple[list[tuple[int, StepReport]], bool]:
        out = [(n, r) for n, r in self._events if n > seq]
        first_kept = self._events[0][0] if self._events else self._seq + 1
        missed = seq + 1 < first_kept and self._seq > seq
        return out, missed

    def wait_for_step(
        self, after_seq: int, timeout: float | None = None, *, until: Callable[[], bool] | None = None
    ) -> tuple[list[tuple[int, StepReport]], bool]:
        """Block until there are step events after `after_seq`, `timeout` seconds pass, close(), or
        `until()` is true when interrupt_waits() wakes the waiters. Returns events_after(after_seq)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._seq <= after_seq and not self._closed and not (until is not None and until()):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._events_after(after_seq)

    def interrupt_waits(self) -> None:
        """Wake every wait_for_step to check its `until` (a stream whose client went away)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Shut down: every wait returns now and streams end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def one_line(text: str) -> str:
    """`text` with each run of whitespace, line breaks included, as one space: an exception's message
    may span lines (a tokenizer's list of what it tried), and a run or step error is shown on one line
    (`grpo status`, the log's one line per record)."""
    return " ".join(text.split())
