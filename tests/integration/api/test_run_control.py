"""RunControl on its own: the shared state the loop and the API meet at (threads, no server)."""

from __future__ import annotations

import threading
import time

import pytest

from grpo_server.control import PAUSE_KEY, ControlError, RunControl, RunState
from grpo_server.types import StepReport, StepState


def report(step: int, state: StepState = StepState.COMPLETED) -> StepReport:
    return StepReport(step, state, 0.0, None if state is StepState.RUNNING else 1.0, {}, "hf", ())


def test_starts_starting_and_not_ready() -> None:
    c = RunControl()
    assert c.state is RunState.STARTING and not c.ready and not c.pause_requested and not c.draining
    c.set_ready()
    assert c.ready


def test_failed_and_draining_stick_against_a_late_loop_update() -> None:
    c = RunControl()
    c.set_state("draining")
    c.set_state("training")
    assert c.state is RunState.DRAINING and c.draining
    c.fail("boom")
    c.set_state(RunState.IDLE)
    assert c.state is RunState.FAILED and c.error == "boom"


def test_a_failure_message_over_several_lines_is_kept_on_one() -> None:
    """A tokenizer's error lists what it tried, a line each; the run's error is shown on one line."""
    c = RunControl()
    c.fail("ValueError: Couldn't instantiate the backend tokenizer from one of: \n(1) a `tokenizers` file, \n"
           "(2) a slow tokenizer\n\tYou need sentencepiece")
    assert c.error == ("ValueError: Couldn't instantiate the backend tokenizer from one of: (1) a `tokenizers` "
                       "file, (2) a slow tokenizer You need sentencepiece")


def test_a_pause_waiting_on_a_busy_store_does_not_hold_up_the_others(tmp_path) -> None:
    """gRPC runs a stream's end callback (interrupt_waits) on its one polling thread: a pause that waited
    for the store while holding the lock the callback takes stalled every call of the server."""
    from grpo_server.store import Store

    store = Store(tmp_path / "store")
    c = RunControl(store=store)
    held, release = threading.Event(), threading.Event()

    def long_transaction() -> None:
        with store._lock:  # another writer holding the store, as a long transaction or a slow fsync does
            held.set()
            release.wait(10)

    threading.Thread(target=long_transaction, daemon=True).start()
    assert held.wait(5)
    pausing = threading.Thread(target=c.request_pause)
    pausing.start()
    time.sleep(0.2)  # the pause now waits for the store
    started = time.monotonic()
    c.interrupt_waits()
    assert c.state is RunState.STARTING and not c.pause_requested  # and reads answer too
    assert time.monotonic() - started < 0.5
    release.set()
    pausing.join(5)
    assert c.pause_requested and store.get_value(PAUSE_KEY) is True
    store.close()


def test_unknown_state_name_is_an_error() -> None:
    with pytest.raises(ValueError):
        RunControl().set_state("sleeping")


def test_wait_while_paused_returns_when_resumed() -> None:
    c = RunControl()
    c.request_pause()
    c.set_state("paused")
    threading.Timer(0.1, c.resume).start()
    started = time.monotonic()
    assert c.wait_while_paused(timeout=10) is False
    assert time.monotonic() - started < 5
    assert c.state is RunState.IDLE


def test_wait_while_paused_times_out_while_still_paused() -> None:
    c = RunControl()
    c.request_pause()
    assert c.wait_while_paused(timeout=0.05) is True


def test_pause_is_refused_once_the_run_is_over() -> None:
    c = RunControl()
    c.set_state("finished")
    with pytest.raises(ControlError, match="finished"):
        c.request_pause()


def test_wait_for_work_wakes_on_notify_and_on_close() -> None:
    c = RunControl()
    assert c.wait_for_work(timeout=0.02) is False
    threading.Timer(0.05, c.notify_work).start()
    assert c.wait_for_work(timeout=10) is True
    threading.Timer(0.05, c.close).start()
    assert c.wait_for_work(timeout=10) is True


def test_step_events_are_numbered_and_waitable() -> None:
    c = RunControl()
    assert c.event_seq == 0
    threading.Timer(0.05, lambda: c.notify_step(report(1, StepState.RUNNING))).start()
    events, missed = c.wait_for_step(0, timeout=10)
    assert [(n, r.step, r.state) for n, r in events] == [(1, 1, StepState.RUNNING)] and not missed
    c.notify_step(report(1))
    events, _ = c.events_after(1)
    assert [(n, r.state) for n, r in events] == [(2, StepState.COMPLETED)]
    assert c.wait_for_step(2, timeout=0.02) == ([], False)


def test_a_reader_that_fell_out_of_the_window_is_told_so() -> None:
    c = RunControl(history=2)
    for s in range(1, 5):
        c.notify_step(report(s))
    events, missed = c.events_after(1)  # events 2 was dropped: only 3 and 4 are kept
    assert [n for n, _ in events] == [3, 4] and missed
    assert c.events_after(2) == (events, False)
