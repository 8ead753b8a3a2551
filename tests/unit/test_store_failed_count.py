"""Store.requeue_step says how many prompts it moved to FAILED, so the trainer can count each prompt
given up on exactly once (grpo_prompts_failed_total)."""

from __future__ import annotations

from pathlib import Path

from grpo_server.store import Store
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec

BIG = 10**9


def rec(pid: str) -> PromptRecord:
    return PromptRecord(id=pid, messages=(ChatMessage("user", f"What is {pid}?"),),
                        rewards=(RewardSpec("math", 1.0),), answer="42")


def test_requeue_step_returns_the_number_of_prompts_it_failed(tmp_path: Path) -> None:
    s = Store(tmp_path, max_attempts=2)
    try:
        s.submit([rec("a"), rec("b")], None, BIG)
        s.lease(2, step=1)
        assert s.requeue_step(1, count_attempt=True) == 0  # first attempt: both back in the queue
        s.lease(2, step=2)
        assert s.requeue_step(2, count_attempt=False) == 0  # an outage: no attempt, nothing failed
        s.lease(2, step=3)
        s.submit([rec("c"), rec("d")], None, BIG)
        assert s.requeue_step(3, count_attempt=True) == 2  # second counted attempt: a and b given up on
        assert s.requeue_step(3, count_attempt=True) == 0  # nothing leased by step 3 any more: no double count
        assert s.counts()[PromptState.FAILED] == 2
        s.lease(2, step=4)  # c and d: one attempt each, not failed
        assert s.requeue_step(4, count_attempt=True) == 0
        s.lease(2, step=5)
        assert s.requeue_step(5, count_attempt=True, reason="rejected") == 2
        assert s.counts()[PromptState.FAILED] == 4 and s.queue_depth() == 0
    finally:
        s.close()


def test_prompts_that_reach_max_attempts_at_different_times_are_counted_when_they_do(tmp_path: Path) -> None:
    s = Store(tmp_path, max_attempts=2)
    try:
        s.submit([rec("a"), rec("b")], None, BIG)
        s.lease(2, step=1)
        assert s.requeue_step(1, count_attempt=True) == 0
        s.submit([rec("c")], None, BIG)
        # Step 2 leases a and b again (their second attempt) while c waits behind them.
        s.lease(2, step=2)
        assert s.requeue_step(2, count_attempt=True) == 2
        assert s.lease(1, step=3)[0].id == "c"
        assert s.requeue_step(3, count_attempt=True) == 0  # c's first attempt
        assert s.counts()[PromptState.FAILED] == 2
    finally:
        s.close()
