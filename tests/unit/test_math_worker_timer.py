"""The math verifier worker's one interval timer per item, at the moment the item's work ends."""

from __future__ import annotations

import signal

import pytest

from grpo_rewards.math_verifier import worker


def test_an_alarm_that_fires_as_the_timer_is_disarmed_is_a_timeout_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer was disarmed in a `finally` outside the `except ItemTimeout`: an alarm delivered after the
    verification ended and before that line escaped verify_pair, and the gRPC call was never answered
    (the whole batch lost at the client's deadline). Here the first disarm delivers the pending alarm, as
    the kernel does when the budget ends at that instant."""
    real = signal.setitimer
    fired: list[bool] = []

    def setitimer(which: int, seconds: float, interval: float = 0.0) -> tuple[float, float]:
        if seconds == 0 and not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGALRM)  # runs the worker's handler: ItemTimeout, here
        return real(which, seconds, interval)

    monkeypatch.setattr(worker.signal, "setitimer", setitimer)
    verdict = worker.verify_pair("1/2", "0.5", 30.0)
    assert fired and verdict == worker.Verdict(equal=False, timed_out=True)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is not worker._alarm  # the handler before the call is back


def test_verdicts_within_the_budget_are_kept() -> None:
    assert worker.verify_pair("1/2", "0.5", 30.0) == worker.Verdict(equal=True)
    assert worker.verify_pair("1/2", "0.25", 30.0) == worker.Verdict(equal=False)
