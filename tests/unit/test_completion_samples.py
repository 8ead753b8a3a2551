"""The completions a step keeps for reading (grpo_server.training.samples) and how the store keeps them:
one of each prompt in turn, text cut at a character boundary, a masked reward and a failed backend said
as such; kept with the step's report, replaced when the step number runs again, dropped after
samples_keep_steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from grpo.trainer.v1 import trainer_pb2
from grpo_server.api.convert import sample_to_proto
from grpo_server.store import Store
from grpo_server.training.samples import TEXT_BYTES, completion_samples, cut
from grpo_server.types import (
    BackendScore,
    ChatMessage,
    Completion,
    PromptRecord,
    RewardSpec,
    RewardStatus,
    RolloutGroup,
    ScoredCompletion,
    ScoredGroup,
    StepReport,
    StepState,
)


def group(pid: str, texts: list[str], scores: list[float | None]) -> ScoredGroup:
    prompt = PromptRecord(pid, (ChatMessage("user", "q"),), (RewardSpec("math", 2.0),), answer="4")
    completions = tuple(Completion(tuple(range(len(t))), tuple(0.0 for _ in t), t, "stop") for t in texts)
    scored = tuple(
        ScoredCompletion(c, (BackendScore("math", 2.0, RewardStatus.OK if s is not None else RewardStatus.UNAVAILABLE,
                                          s, feedback="expected 4" if s is not None else "",
                                          message="" if s is not None else "circuit open"),))
        for c, s in zip(completions, scores, strict=True))
    return ScoredGroup(RolloutGroup(prompt, (1, 2), completions), scored)


def test_one_completion_of_each_prompt_in_turn() -> None:
    groups = [group("a", ["a0", "a1", "a2"], [1.0, 0.0, 0.0]), group("b", ["b0", "b1", "b2"], [0.0] * 3)]
    picked = [(s["prompt_id"], s["index"], s["text"]) for s in completion_samples(groups, 5)]
    assert picked == [("a", 0, "a0"), ("b", 0, "b0"), ("a", 1, "a1"), ("b", 1, "b1"), ("a", 2, "a2")]
    assert completion_samples(groups, 0) == [] and completion_samples([], 4) == []
    assert len(completion_samples(groups, 64)) == 6


def test_a_sample_carries_the_weighted_reward_and_each_backends_answer() -> None:
    ok, masked = completion_samples([group("a", ["4", "?"], [1.0, None])], 2)
    assert (ok["reward"], ok["reward_valid"], ok["completion_tokens"], ok["finish_reason"]) == (2.0, True, 1, "stop")
    assert ok["scores"] == [{"backend": "math", "weight": 2.0, "score": 1.0, "scored": True, "status": "ok",
                             "feedback": "expected 4", "message": ""}]
    assert (masked["reward"], masked["reward_valid"]) == (0.0, False)
    assert masked["scores"][0]["scored"] is False and masked["scores"][0]["status"] == "unavailable"
    assert masked["scores"][0]["message"] == "circuit open"
    proto = sample_to_proto(masked)
    assert isinstance(proto, trainer_pb2.CompletionSample) and proto.scores[0].message == "circuit open"
    # A field a later trainer wrote is ignored, not an error.
    assert sample_to_proto({**ok, "later_field": 1}).text == "4"


def test_a_non_finite_score_is_not_a_score() -> None:
    g = group("a", ["x"], [1.0])
    bad = ScoredCompletion(g.completions[0].completion, (BackendScore("math", 1.0, RewardStatus.OK, math.nan),))
    (s,) = completion_samples([ScoredGroup(g.rollout, (bad,))], 1)
    assert s["reward_valid"] is False and s["scores"][0]["scored"] is False and s["scores"][0]["score"] == 0.0


@pytest.mark.parametrize("text", ["a" * (TEXT_BYTES + 10), "é" * TEXT_BYTES, "x" + "😀" * (TEXT_BYTES // 4)])
def test_long_text_is_cut_at_a_character_boundary(text: str) -> None:
    short, was_cut = cut(text, TEXT_BYTES)
    assert was_cut and len(short.encode()) <= TEXT_BYTES and text.startswith(short)
    assert len(short.encode()) > TEXT_BYTES - 4
    (s,) = completion_samples([group("a", [text], [0.0])], 1)
    assert s["text"] == short and s["text_truncated"] is True
    assert cut("short", TEXT_BYTES) == ("short", False)


def report(step: int, started: float, state: StepState = StepState.COMPLETED) -> StepReport:
    return StepReport(step, state, started, started + 1, {}, "hf", ("a",))


def test_the_store_keeps_samples_with_their_run_of_the_step(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    try:
        samples = completion_samples([group("a", ["a0", "a1"], [1.0, 0.0])], 2)
        first = report(1, 100.0)
        store.record_step(report(1, 100.0, StepState.RUNNING))
        assert store.step_samples(first) == []
        store.record_step(first, samples=samples, keep_sample_steps=10)
        assert store.step_samples(first) == samples
        # The same number run again (after a crash) starts later: the old run's samples never show with
        # it, and its own replace them.
        again = report(1, 200.0)
        store.record_step(again)
        assert store.step_samples(again) == []
        store.record_step(again, samples=samples[:1], keep_sample_steps=10)
        assert store.step_samples(again) == samples[:1] and store.step_samples(first) == []
    finally:
        store.close()
    store = Store(tmp_path / "store")  # durable
    try:
        assert store.step_samples(report(1, 200.0)) == samples[:1]
    finally:
        store.close()


def test_samples_of_older_steps_are_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    try:
        samples = completion_samples([group("a", ["a0"], [1.0])], 1)
        for step in range(1, 6):
            store.record_step(report(step, float(step)), samples=samples, keep_sample_steps=3)
        kept = [step for step in range(1, 6) if store.step_samples(report(step, float(step)))]
        assert kept == [3, 4, 5]
        assert store.get_step(1) is not None  # the report itself stays
    finally:
        store.close()
