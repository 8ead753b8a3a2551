"""grpo_rewards.common.reasoning.answer_part: what every reward backend takes for the answer of a
reasoning model's completion."""

from __future__ import annotations

import pytest

from grpo_rewards.common.reasoning import UNCLOSED, answer_part


@pytest.mark.parametrize(("completion", "text", "where"), [
    ("<think>3 + 4 = 7</think>\nThe answer is 7.", "\nThe answer is 7.", "after </think>"),
    ("<think>a</think> b <think>c</think> d", " d", "after </think>"),  # after the last one
    ("3 + 4 = 7\n</think>\n\n7", "\n\n7", "after </think>"),  # the prompt opened <think>
    ("\n <think>3 + 4 = 7, so the answer is 7", "", UNCLOSED),  # cut off inside the block
    ("The answer is 7.", "The answer is 7.", ""),
    ("I will <think> later. The answer is 7.", "I will <think> later. The answer is 7.", ""),  # not an opening
])
def test_the_answer_part(completion: str, text: str, where: str) -> None:
    part = answer_part(completion)
    assert (part.text, part.where, part.unclosed) == (text, where, where == UNCLOSED)
