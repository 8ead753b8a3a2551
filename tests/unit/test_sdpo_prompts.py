"""SDPO's teacher context: the re-prompt text exactly, and who gets a teacher."""

from __future__ import annotations

import pytest

from grpo_server.algorithm import DEFAULT_TEACHER_INSTRUCTION, build_teacher_messages, choose_teacher_context
from grpo_server.types import ChatMessage

PROMPT = [
    {"role": "system", "content": "You are a careful solver."},
    {"role": "user", "content": "What is 2 + 3?"},
]


def test_re_prompt_with_sibling_and_feedback_is_built_exactly() -> None:
    messages = build_teacher_messages(PROMPT, "Expected 5, found 6.", "2 + 3 = 5. The answer is 5.")
    assert messages[0] == PROMPT[0]
    assert messages[1] == {
        "role": "user",
        "content": (
            "What is 2 + 3?\n\n"
            "A correct solution to this problem:\n2 + 3 = 5. The answer is 5.\n\n"
            "Feedback on a previous attempt:\nExpected 5, found 6.\n\n"
            "Using the information above, solve the original problem again, correctly."
        ),
    }
    assert PROMPT[1]["content"] == "What is 2 + 3?"  # the input is not modified


def test_re_prompt_leaves_out_the_missing_part_and_takes_a_custom_instruction() -> None:
    only_feedback = build_teacher_messages(PROMPT, "  Expected 5.  ", None, instruction="Try again.")
    assert (
        only_feedback[1]["content"]
        == "What is 2 + 3?\n\nFeedback on a previous attempt:\nExpected 5.\n\nTry again."
    )
    only_sibling = build_teacher_messages(PROMPT, "", "5")
    assert only_sibling[1]["content"] == (
        f"What is 2 + 3?\n\nA correct solution to this problem:\n5\n\n{DEFAULT_TEACHER_INSTRUCTION}"
    )


def test_re_prompt_goes_into_the_last_user_turn_and_accepts_chat_messages() -> None:
    chat = [
        ChatMessage("user", "first"),
        ChatMessage("assistant", "reply"),
        ChatMessage("user", "second"),
    ]
    messages = build_teacher_messages(chat, "wrong", None)
    assert [m["content"] for m in messages[:2]] == ["first", "reply"]
    assert messages[2]["content"].startswith("second\n\nFeedback on a previous attempt:\nwrong")


def test_re_prompt_needs_some_context_and_a_user_turn() -> None:
    with pytest.raises(ValueError, match="feedback or a sibling"):
        build_teacher_messages(PROMPT, None, "  ")
    with pytest.raises(ValueError, match="user message"):
        build_teacher_messages([{"role": "system", "content": "x"}], "f", None)


def test_teacher_selection_rules_on_a_hand_example() -> None:
    # Three groups of 4; success means reward >= 0.9.
    rewards = [1.0, 0.0, 0.5, None, 1.0, 1.0, 0.9, 0.0, 0.0, 0.0, 0.2, None]
    feedbacks = ["", "Expected 5, found 6.", "", "timeout", "", "", None, "", "", " ", "", ""]
    ctx = choose_teacher_context(rewards, feedbacks, success_threshold=0.9, group_size=4)
    got = [(c.feedback, c.sibling, c.reason) for c in ctx]
    assert got[:4] == [
        (None, None, "only_self_succeeded"),  # the only success is itself: no teacher
        ("Expected 5, found 6.", 0, "feedback+sibling"),
        (None, 0, "sibling"),  # 0.5 is below the threshold: a failure with a successful sibling
        (None, None, "reward_unavailable"),  # its feedback is ignored: the sample is masked out
    ]
    # Group 2: successes 4 (1.0), 5 (1.0), 6 (0.9): each takes the highest-reward success other than
    # itself, ties going to the lowest index.
    assert [(c.sibling, c.reason) for c in ctx[4:8]] == [
        (5, "sibling"),
        (4, "sibling"),
        (4, "sibling"),
        (4, "sibling"),
    ]
    assert [c.reason for c in ctx[8:]] == ["no_feedback_no_success"] * 3 + ["reward_unavailable"]
    distilled = [i for i, c in enumerate(ctx) if c.distilled]
    assert distilled == [1, 2, 4, 5, 6, 7]


def test_a_success_identical_to_the_sample_is_the_sample_itself() -> None:
    """Two successes with the same text each took the other as its sibling: a re-prompt showing their
    own text as the solution. Another success with a different text is still shown."""
    rewards, feedbacks = [1.0, 1.0, 0.0, 1.0], ["", "", "", ""]
    same = choose_teacher_context(rewards[:3], feedbacks[:3], 1.0, identities=["42", "42", "17"])
    assert [(c.sibling, c.reason) for c in same] == [(None, "only_self_succeeded"), (None, "only_self_succeeded"),
                                                     (0, "sibling")]
    other = choose_teacher_context(rewards, feedbacks, 1.0, identities=["42", "42", "17", "6*7"])
    assert [c.sibling for c in other] == [3, 3, 0, 0]


def test_sources_can_be_switched_off() -> None:
    rewards, feedbacks = [1.0, 0.0], ["", "wrong"]
    no_fb = choose_teacher_context(rewards, feedbacks, 1.0, use_feedback=False)
    assert [(c.feedback, c.sibling) for c in no_fb] == [(None, None), (None, 0)]
    no_sib = choose_teacher_context(rewards, feedbacks, 1.0, use_siblings=False)
    assert [(c.feedback, c.sibling, c.reason) for c in no_sib] == [
        (None, None, "no_feedback_no_success"),
        ("wrong", None, "feedback"),
    ]


def test_mismatched_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="feedbacks"):
        choose_teacher_context([1.0], [], 1.0)
    with pytest.raises(ValueError, match="groups"):
        choose_teacher_context([1.0, 0.0, 0.0], ["", "", ""], 1.0, group_size=2)
