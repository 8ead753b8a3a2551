"""SDPO's teacher context: which samples get a teacher, and the re-prompt the teacher reads.

Source: Hübotter et al. 2026, "Reinforcement Learning via Self-Distillation" (SDPO). The teacher is the
model itself, re-prompted with what it could not know while answering: the reward service's feedback on
this completion and/or a successful sibling completion of the same prompt. Pure string manipulation.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_TEACHER_INSTRUCTION = "Using the information above, solve the original problem again, correctly."
SOLUTION_HEADER = "A correct solution to this problem:"
FEEDBACK_HEADER = "Feedback on a previous attempt:"


def _role_content(message: Any) -> tuple[str, str]:
    """(role, content) of a {"role", "content"} mapping or an object with those attributes (ChatMessage)."""
    if isinstance(message, Mapping):
        return str(message["role"]), str(message["content"])
    return str(message.role), str(message.content)


def build_teacher_messages(
    prompt_messages: Sequence[Any],
    feedback: str | None,
    sibling_solution: str | None,
    instruction: str = DEFAULT_TEACHER_INSTRUCTION,
) -> list[dict[str, str]]:
    """The teacher's chat: the student's prompt with the privileged context added to its last user turn.

    The last user message's content becomes (parts without a value are left out, blank lines between):

        {original content}

        A correct solution to this problem:
        {sibling_solution}

        Feedback on a previous attempt:
        {feedback}

        {instruction}

    Every other message is copied unchanged (as {"role", "content"} dicts). The student's completion is
    then scored after this prompt (the chat template's generation prompt), token for token.

    Args:
        prompt_messages: the student's chat, {"role", "content"} mappings or ChatMessage objects; must
            contain a user message.
        feedback: the reward service's feedback on this completion, or None/"" for none.
        sibling_solution: a successful sibling's completion, or None/"" for none.
        instruction: the closing instruction.
    Returns:
        A new list of {"role", "content"} dicts.
    Raises:
        ValueError: when there is neither feedback nor a sibling solution, or no user message.
    """
    feedback = (feedback or "").strip()
    sibling_solution = (sibling_solution or "").strip()
    if not feedback and not sibling_solution:
        raise ValueError("a teacher prompt needs feedback or a sibling solution")
    messages = [dict(zip(("role", "content"), _role_content(m), strict=True)) for m in prompt_messages]
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        raise ValueError("the prompt has no user message to add the teacher context to")
    parts = [messages[last_user]["content"]]
    if sibling_solution:
        parts.append(f"{SOLUTION_HEADER}\n{sibling_solution}")
    if feedback:
        parts.append(f"{FEEDBACK_HEADER}\n{feedback}")
    parts.append(instruction)
    messages[last_user]["content"] = "\n\n".join(parts)
    return messages


@dataclass(frozen=True)
class TeacherContext:
    """What one sample's teacher sees, and why.

    feedback: the sample's own feedback to show the teacher, or None.
    sibling: index (in the input lists) of the successful sibling whose completion to show, or None.
    reason: "feedback+sibling", "feedback", "sibling" (a teacher), or why not: "reward_unavailable",
        "only_self_succeeded", "no_feedback_no_success".
    """

    feedback: str | None
    sibling: int | None
    reason: str

    @property
    def distilled(self) -> bool:
        """True when the sample gets a teacher."""
        return self.feedback is not None or self.sibling is not None


def choose_teacher_context(
    rewards: Sequence[float | None],
    feedbacks: Sequence[str | None],
    success_threshold: float,
    *,
    group_size: int | None = None,
    use_feedback: bool = True,
    use_siblings: bool = True,
    identities: Sequence[Hashable] | None = None,
) -> list[TeacherContext]:
    """Decide, per sample, which privileged context its teacher gets.

    Rules (SDPO): a sample is successful when its reward is known and >= success_threshold. A sample gets
    a teacher when it has non-blank feedback (use_feedback) or when a successful sibling other than
    itself exists in its group (use_siblings): a successful sample never gets its own completion as the
    demonstration. Among several successful siblings the one with the highest reward is chosen (ties:
    the lowest index). A sample whose reward could not be obtained gets no teacher (it is masked out of
    every loss), but it cannot be a sibling either.

    Args:
        rewards: per sample (N, group-contiguous), the total reward or None when unavailable.
        feedbacks: per sample, the reward services' feedback (None or "" for none).
        success_threshold: the reward at or above which a completion counts as a success.
        group_size: G; None treats the whole list as one group.
        use_feedback, use_siblings: switch either source off.
        identities: per sample, what makes two completions the same one (their token ids); a success
            identical to the sample is the sample itself, never its sibling (two identical successes
            showed each other's text: their own). None: every sample is distinct.
    Returns:
        One TeacherContext per sample, in order; `sibling` indexes the input lists.
    """
    n = len(rewards)
    if len(feedbacks) != n:
        raise ValueError(f"{n} rewards but {len(feedbacks)} feedbacks")
    g = group_size or max(n, 1)
    if n % g != 0:
        raise ValueError(f"{n} samples are not a whole number of groups of {g}")
    out: list[TeacherContext] = []
    for i in range(n):
        reward = rewards[i]
        if reward is None:
            out.append(TeacherContext(None, None, "reward_unavailable"))
            continue
        start = (i // g) * g
        successes = [
            j for j in range(start, start + g) if (r := rewards[j]) is not None and r >= success_threshold
        ]
        others = [j for j in successes if j != i and (identities is None or identities[j] != identities[i])]
        sibling = max(others, key=lambda j: (rewards[j], -j)) if use_siblings and others else None
        text = (feedbacks[i] or "").strip()
        feedback = text if use_feedback and text else None
        if feedback is not None and sibling is not None:
            reason = "feedback+sibling"
        elif feedback is not None:
            reason = "feedback"
        elif sibling is not None:
            reason = "sibling"
        elif use_siblings and i in successes and not others:  # it alone (or only its copies) succeeded
            reason = "only_self_succeeded"
        else:
            reason = "no_feedback_no_success"
        out.append(TeacherContext(feedback, sibling, reason))
    return out
