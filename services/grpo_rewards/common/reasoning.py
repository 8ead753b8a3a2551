"""The answer part of a reasoning model's completion, read the same way by every backend.

DeepSeek-R1 and Qwen3 (thinking) write `<think>…</think>` and then the answer. What the reasoning tried
is not the answer: the math verifier, the code sandbox and the reward model look only at the text after
the last `</think>`. A completion that opens `<think>` (after whitespace) and never closes it, cut off
by the length limit, has no answer at all. One without either tag is all answer (a model without a
reasoning block, or a template that opened `<think>` in the prompt and a completion cut off inside it:
nothing tells that one apart).
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN, THINK_END = "<think>", "</think>"


@dataclass(frozen=True)
class AnswerPart:
    """`text`: what a backend scores. `where`: how it was found, for feedback: "after </think>", "the
    <think> block is never closed", or "" (the whole completion)."""

    text: str
    where: str

    @property
    def unclosed(self) -> bool:
        return self.where == UNCLOSED


UNCLOSED = f"the {THINK_OPEN} block is never closed"


def answer_part(completion: str) -> AnswerPart:
    """The part of `completion` that is its answer (see the module's docstring)."""
    _, closed, after = completion.rpartition(THINK_END)
    if closed:
        return AnswerPart(after, f"after {THINK_END}")
    if completion.lstrip().startswith(THINK_OPEN):
        return AnswerPart("", UNCLOSED)
    return AnswerPart(completion, "")
