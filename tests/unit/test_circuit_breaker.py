"""The per-backend circuit breaker, with a clock the test moves."""

from __future__ import annotations

import pytest

from grpo_server.rewards.breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_counts_down_to_its_trial() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=2, reset_seconds=30.0, clock=clock)
    b.record_failure()
    assert b.state is CircuitState.CLOSED and b.seconds_until_trial() == 0.0
    b.record_failure()
    assert b.state is CircuitState.OPEN and not b.allow()
    assert b.seconds_until_trial() == pytest.approx(30.0)
    clock.now += 12.5
    assert b.seconds_until_trial() == pytest.approx(17.5)
    clock.now += 17.5
    assert b.seconds_until_trial() == 0.0 and b.state is CircuitState.HALF_OPEN
    assert b.allow() and not b.allow()  # one trial call at a time
    assert b.seconds_until_trial() == 0.0  # the trial is under way: calls are not failing fast for a reset


def test_a_failed_trial_opens_it_for_a_whole_reset_again_and_a_success_closes_it() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_seconds=10.0, clock=clock)
    b.record_failure()
    clock.now += 10.0
    assert b.allow()
    b.record_failure()
    assert b.state is CircuitState.OPEN and b.seconds_until_trial() == pytest.approx(10.0)
    clock.now += 10.0
    assert b.allow()
    b.record_success()
    assert b.state is CircuitState.CLOSED and b.seconds_until_trial() == 0.0


def test_a_success_between_failures_resets_the_count() -> None:
    b = CircuitBreaker(failures=2, reset_seconds=5.0, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state is CircuitState.CLOSED


@pytest.mark.parametrize(("failures", "reset", "first"), [(0, 1.0, None), (1, 0.0, None), (1, -1.0, None),
                                                          (1, 1.0, 0.0), (1, 1.0, -2.0)])
def test_bad_settings_are_refused(failures: int, reset: float, first: float | None) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=failures, reset_seconds=reset, first_reset_seconds=first)


def test_each_failed_trial_doubles_the_wait_up_to_the_reset_and_a_success_starts_over() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_seconds=10.0, clock=clock, first_reset_seconds=2.0)
    waits = []
    b.record_failure()
    for _ in range(5):
        waits.append(b.seconds_until_trial())
        clock.now += waits[-1]
        assert b.allow()
        b.record_failure()  # the trial failed
    assert waits == [2.0, 4.0, 8.0, 10.0, 10.0]
    clock.now += 10.0
    assert b.allow()
    b.record_success()
    b.record_failure()
    assert b.seconds_until_trial() == 2.0  # a new outage starts from the first wait


def test_a_late_failure_while_open_does_not_push_the_trial_back() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_seconds=10.0, clock=clock, first_reset_seconds=2.0)
    b.record_failure()
    clock.now += 1.5
    b.record_failure()  # a call that went out before the breaker opened, failing now
    assert b.seconds_until_trial() == pytest.approx(0.5)


def test_a_first_wait_longer_than_the_reset_is_the_reset() -> None:
    b = CircuitBreaker(failures=1, reset_seconds=3.0, clock=Clock(), first_reset_seconds=5.0)
    b.record_failure()
    assert b.seconds_until_trial() == 3.0
