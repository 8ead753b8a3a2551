"""SDPO's teacher re-prompts for prompts and feedback they cannot be built from: a prompt of a system
message alone (the API takes it; the re-prompt goes into the last user message) and a re-prompt the chat
template rejects. Either raised out of teacher_rows, which failed the step and ended the run (and, with the
prompt requeued at its place, every run after a restart). Now that completion gets no teacher, counted as
sdpo/no_teacher_masked, and the other completions are distilled."""

from __future__ import annotations

from typing import Any

from grpo_server.training.sdpo import SdpoSettings, teacher_rows
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
)


def _group(pid: str, messages: tuple[ChatMessage, ...], feedback: str, start: int) -> ScoredGroup:
    prompt = PromptRecord(id=pid, messages=messages, rewards=(RewardSpec("a", 1.0),), answer="2")
    completions = tuple(Completion((start + k, 9), (-0.1, -0.2), f"c{k}", "stop") for k in range(2))
    scored = tuple(ScoredCompletion(c, (BackendScore("a", 1.0, RewardStatus.OK, 0.0, feedback=feedback),))
                   for c in completions)
    return ScoredGroup(RolloutGroup(prompt, (1, 2), completions), scored)


def _encode(messages: list[dict[str, Any]]) -> list[int]:
    if "REJECT" in messages[-1]["content"]:
        raise RuntimeError("the template rejects this content")  # as jinja2's raise_exception does
    return [len(m["content"]) for m in messages]


def test_a_prompt_without_a_user_message_and_a_rejected_reprompt_get_no_teacher() -> None:
    groups = [
        _group("system-only", (ChatMessage("system", "Write two."),), "wrong: expected 2", 10),
        _group("rejected", (ChatMessage("user", "Write two."),), "REJECT me", 20),
        _group("fine", (ChatMessage("user", "Write two."),), "wrong: expected 2", 30),
    ]
    rows, metrics = teacher_rows(groups, [0.0] * 6, SdpoSettings(), 2, _encode)
    assert set(rows.prompts) == {(1, 2, 30, 9), (1, 2, 31, 9)}  # only "fine"'s completions
    assert metrics["sdpo/no_teacher_masked"] == 4 / 6
    assert metrics["sdpo/distilled_fraction"] == 2 / 6
    assert rows.normalizer == 4.0
