"""From a sandbox run's events to score, status and feedback (pure aggregation)."""

from __future__ import annotations

import pytest

from grpo.reward.v1 import reward_pb2
from grpo_rewards.code_sandbox.executor import RunRecord
from grpo_rewards.code_sandbox.extract import extract_code
from grpo_rewards.code_sandbox.scoring import verdict_from_run

PLAN = {"e": "plan", "asserts": [[2, False], [3, False], [5, True]], "io": 2}


def verdict(*events: dict, killed: str = "", exit_code: int = 0, stderr: str = "", scoring: str = "fraction"):
    run = RunRecord(events=list(events), exit_code=exit_code, killed=killed, stderr=stderr)
    return verdict_from_run(run, scoring=scoring, timeout_s=2.0, max_output_bytes=1024)  # type: ignore[arg-type]


def test_done_asserts_pass_unless_seen_failing() -> None:
    v = verdict(PLAN, {"e": "fail", "t": 1, "fb": "test 2 failed"}, {"e": "done", "part": "asserts"},
                {"e": "pass", "t": 3}, {"e": "fail", "t": 4, "fb": "io"}, {"e": "done", "part": "io"})
    assert (v.tests_passed, v.tests_total) == (3, 5)
    assert v.score == pytest.approx(0.6)
    assert v.status == reward_pb2.SCORE_STATUS_OK
    assert v.feedback == "test 2 failed"


def test_all_or_nothing() -> None:
    events = (PLAN, {"e": "done", "part": "asserts"}, {"e": "pass", "t": 3}, {"e": "pass", "t": 4})
    assert verdict(*events, scoring="all_or_nothing").score == 1.0
    partial = (PLAN, {"e": "done", "part": "asserts"}, {"e": "pass", "t": 3})
    assert verdict(*partial, scoring="all_or_nothing").score == 0.0


def test_unfinished_run_credits_only_what_it_reached() -> None:
    # Assert 0 held; the loop assert (2) held once but its loop never finished; then the host killed it.
    v = verdict(PLAN, {"e": "held", "t": 0}, {"e": "held", "t": 2}, killed="timeout", exit_code=-9)
    assert (v.tests_passed, v.tests_total) == (1, 5)
    assert v.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert "timed out after 2 s" in v.feedback


def test_a_settled_loop_counts() -> None:
    v = verdict(PLAN, {"e": "settle", "t": [2]}, {"e": "abort", "fb": "check() stopped"})
    assert v.tests_passed == 1
    assert v.feedback == "check() stopped"


def test_memory_error_is_resource_exhausted() -> None:
    v = verdict(PLAN, {"e": "memory"}, {"e": "fail", "t": 0, "fb": "MemoryError"}, {"e": "done", "part": "asserts"})
    assert v.status == reward_pb2.SCORE_STATUS_RESOURCE_EXHAUSTED


def test_cpu_limit_kill_is_a_timeout() -> None:
    assert verdict(PLAN, exit_code=128 + 24).status == reward_pb2.SCORE_STATUS_TIMEOUT


def test_output_flood_is_reported_and_fails_what_was_unfinished() -> None:
    v = verdict(PLAN, {"e": "held", "t": 0}, killed="output", exit_code=-9)
    assert v.output_exceeded
    assert v.tests_passed == 1
    assert v.feedback.startswith("the program wrote more than 1024 bytes")


def test_no_plan_means_the_sandbox_failed() -> None:
    v = verdict(exit_code=1, stderr="bwrap: No permissions to create new namespace")
    assert v.status == reward_pb2.SCORE_STATUS_INTERNAL
    assert "No permissions" in v.status_message


def test_invalid_tests_are_invalid_input() -> None:
    v = verdict({"e": "invalid", "fb": "test_code does not compile"})
    assert v.status == reward_pb2.SCORE_STATUS_INVALID_INPUT


def test_forged_test_ids_out_of_range_are_ignored() -> None:
    v = verdict(PLAN, {"e": "pass", "t": 99}, {"e": "held", "t": 0})
    assert (v.tests_passed, v.tests_total) == (1, 5)


@pytest.mark.parametrize(("completion", "expected"), [
    ("def f():\n    return 1", "def f():\n    return 1"),
    ("Sure:\n```python\nx = 1\n```\nDone.", "x = 1\n"),
    ("```py\nx = 1\n", "x = 1\n"),  # cut off inside the fence
    ("```\nx = 2\n```", "x = 2\n"),
    ("```bash\nls\n```", ""),
    ("```python\ndef add(a, b):\n    return a + b\n```\n```python\nprint(add(1, 2))\n```", "def add(a, b):\n    return a + b\n"),
])
def test_code_extraction(completion: str, expected: str) -> None:
    assert extract_code(completion, "add") == expected


def test_without_an_entry_point_the_last_python_block_wins() -> None:
    assert extract_code("```python\na = 1\n```\n```python\nb = 2\n```") == "b = 2\n"
