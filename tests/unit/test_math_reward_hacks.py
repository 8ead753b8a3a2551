"""Completions a policy under GRPO could write to score 1 without committing to one answer, found by playing
that policy against the math verifier's extraction, and what each now reads as.

A hedge written inside one answer ("3 (or 4)", "3? 4?", "\\boxed{3 \\\\ 4}") was read as one of its values:
math-verify keeps the last row of a line break and the last of "3? 4?", and a closing remark in parentheses
was dropped as if it were "7 (seven)". Each is now the list it offers, which equals only a gold answer that
lists the same values, as listed boxes, spans and numbers already do. A bound ("\\geq 3", "x ≥ 3") was read
as its number; it is now an inequality. Each reading has a test of what it must not read: a value restated
("1/2 (or 0.5)", "5 km (or 5000 m)"), a remark ("7 (seven)"), a question answered ("after 3 days? 12"),
a matrix's rows."""

from __future__ import annotations

import time

import pytest

from grpo_rewards.math_verifier.extract import (
    drop_invisible,
    extract_choice,
    extract_final_answer,
    unicode_math,
)

# (completion, the answer read: with number words off and on alike)
HEDGES = [
    ("The answer is 3 (or 4).", "3, 4"),
    ("The answer is 3 (or maybe 4).", "3, 4"),
    ("**Answer:** 3 (possibly 4)", "3, 4"),
    ("The answer is 3 (or 4 if we count the first day).", "3, 4"),
    ("The answer is 10 apples (or 12).", "10, 12"),
    ("\\boxed{3 (or 4)}", "3, 4"),
    ("The answer is 3? 4?", "3, 4"),
    ("Answer: 3? or 4?", "3, 4"),
    ("3? 4? 5?", "3, 4, 5"),
    ("Is it 3? Or 4?", "3, 4"),
    ("\\boxed{3 \\\\ 4}", "3, 4"),
    ("\\boxed{x = 3 \\\\ x = 4}", "x = 3, x = 4"),
]

# A bound is an inequality, which equals no number (the scorer writes a bound gold answer the same way).
BOUNDS = [
    ("\\boxed{\\geq 3}", "x \\geq 3"),
    ("\\boxed{\\le 3}", "x \\le 3"),
    ("The answer is ≥ 3.", "x ≥ 3"),
    ("The answer is > 2", "x > 2"),
    ("So the number of boxes is x ≥ 3", "x ≥ 3"),
    ("so n \\geq 5", "x \\geq 5"),
]

# Readings that must not change: one value restated, a closing remark, a question and its answer, rows of a
# matrix, a value after a bound that is not the last number.
UNCHANGED = [
    ("The answer is 1/2 (or 0.5).", "1/2"),
    ("The answer is 5 km (or 5000 m).", "5"),
    ("The answer is 3 (or three).", "3"),
    ("The answer is 7 (seven).", "7"),
    ("The answer is 12 (since 3 * 4 = 12).", "12"),
    ("How many apples are left after 3 days? 12", "12"),
    ("How many apples are left after 3 days? 12.", "12"),
    ("What is 1 + 1? 2", "2"),
    ("\\boxed{\\begin{pmatrix} 3 \\\\ 4 \\end{pmatrix}}", "\\begin{pmatrix} 3 \\\\ 4 \\end{pmatrix}"),
    ("\\boxed{\\left(3, 4\\right)}", "\\left(3, 4\\right)"),
    ("\\boxed{\\left\\lfloor 3.5 \\right\\rfloor}", "\\left\\lfloor 3.5 \\right\\rfloor"),
    ("Since x ≥ 3, the smallest value is 3", "3"),
    ("The answer is x \\geq 3.", "x \\geq 3"),
]

# An "Answer:" line after "the answer is": the answer stated last is the one the completion settles on.
LATER_LABEL = [
    ("So the answer is 12. Wait, let me recheck the second step.\n\n**Final Answer:** 14", "14"),
    ("The answer is 3.\nAnswer: 4", "4"),
    ("The answer is 5.\n\n**Answer:** The farmer has 5 cows.", "5"),
    # "the answer is" after the label still wins, and a Markdown heading after it is no label
    ("Answer: Let's think step by step. 2 + 3 = 5, so the answer is 5.", "5"),
    ("The answer is 5.\n\n#### Step 2: Check", "5"),
]


@pytest.mark.parametrize("number_words", [False, True])
@pytest.mark.parametrize("text,expected", HEDGES + BOUNDS + UNCHANGED + LATER_LABEL)
def test_final_answer_reading(text, expected, number_words):
    found = extract_final_answer(text, number_words)
    assert found is not None
    assert found.text == expected


@pytest.mark.parametrize("text,expected", [
    ("Answer: B C", None),
    ("The answer is B, C", None),
    ("Answer: (B) (C)", None),
    ("Answer: B/C", None),
    ("Answer: B", "B"),
    ("Answer: B. A is wrong because it double counts.", "B"),
    ("**Answer:** (B) 12", "B"),
    ("The answer is B because the others fail.", "B"),
])
def test_choice_naming_two_letters_settles_on_none(text, expected):
    """'B C' named two choices and read as B: it scored 1 against B whichever the policy meant."""
    found = extract_choice(text)
    assert (found.text if found else None) == expected


@pytest.mark.parametrize("text,expected", [
    ("\\boxed{3\u200b4}", "\\boxed{34}"),
    ("\\boxed{3}\u2060\\boxed{4}", "\\boxed{3}\\boxed{4}"),
    ("x\u00ad = 5\ufeff", "x = 5"),
    ("plain ASCII stays", "plain ASCII stays"),
])
def test_invisible_characters_dropped(text, expected):
    """A zero-width space inside '34' hid the number from math-verify (a right answer scored 0), and one
    between two boxes hid that they are listed together."""
    assert drop_invisible(text) == expected


def test_boxes_joined_by_an_invisible_character_are_a_list():
    found = extract_final_answer(drop_invisible("\\boxed{3}\u200b\\boxed{4}"))
    assert found is not None and found.text == "3, 4"


@pytest.mark.parametrize("text,expected", [("𝟑", "3"), ("𝟙𝟚", "12"), ("٣", "3"), ("३.५", "3.5"), ("x²", "x^{2}"), ("３", "3")])
def test_digits_of_other_scripts_are_read(text, expected):
    """'\\boxed{𝟑}' (a mathematical bold digit) is 3: extraction found it as a digit and math-verify did not read
    it, so a right answer scored 0. Superscripts stay exponents."""
    assert unicode_math(text) == expected


@pytest.mark.parametrize("text", [
    "3? " * 20000,
    "The answer is 3" + " (or 4" * 10000,
    "\\boxed{" + "3 \\\\ " * 1000 + "}",
    "so x " + "≥ " * 20000 + "3",
    "Answer: " + "B " * 30000,
    "The answer is 1. " + "Answer: " * 5000,
])
def test_new_rules_stay_linear(text):
    start = time.perf_counter()
    extract_final_answer(text, True)
    extract_choice(text)
    assert time.perf_counter() - start < 1.0
