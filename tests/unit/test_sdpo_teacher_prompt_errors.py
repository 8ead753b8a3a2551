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


def test_a_teacher_sequence_longer_than_the_model_context_gets_no_teacher() -> None:
    """The re-prompt carries up to 4 KiB of feedback per backend and a sibling's whole completion, so the
    teacher sequence (re-prompt + the completion's own tokens) can outgrow the model's positions: a model
    with learned position embeddings fails on it (ending the step), a rotary one scores the completion at
    positions it never trained on. Such a row gets no teacher, counted in sdpo/no_teacher_too_long."""
    def encode_chars(messages: list[dict[str, Any]]) -> list[int]:  # one token per character
        return [ord(ch) for m in messages for ch in m["content"]]

    groups = [
        _group("long", (ChatMessage("user", "Write two."),), "x" * 60, 10),
        _group("short", (ChatMessage("user", "Write two."),), "x" * 57, 20),
    ]
    settings = SdpoSettings(use_siblings=False)
    short_len = len(teacher_rows(groups[1:], [0.0] * 2, settings, 2, encode_chars)[0].prompts[(1, 2, 20, 9)])
    context = short_len + 2  # the short re-prompt and its 2-token completion fit exactly; 3 more do not
    rows, metrics = teacher_rows(groups, [0.0] * 4, settings, 2, encode_chars, context=context)
    assert set(rows.prompts) == {(1, 2, 20, 9), (1, 2, 21, 9)}
    assert metrics["sdpo/no_teacher_too_long"] == 2 / 4
    assert metrics["sdpo/no_teacher_masked"] == 0.0
    assert metrics["sdpo/distilled_fraction"] == 2 / 4
    unbounded, _ = teacher_rows(groups, [0.0] * 4, settings, 2, encode_chars)
    assert len(unbounded.prompts) == 4
