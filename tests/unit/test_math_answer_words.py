"""The math verifier's answer extraction for answers models write in words, as a trailing tuple, as a
GSM8K "#### X" line, as a hedge between boxes, after "not", or next to an approximation. Pure string work:
what `extract_final_answer` takes for the answer decides the reward, and a false 1.0 teaches the policy
to repeat the trick, so every reading added here has a test of what it must not read."""

from __future__ import annotations

import time

import pytest

from grpo_rewards.math_verifier.extract import extract_choice, extract_final_answer, gold_is_number
from grpo_rewards.math_verifier.number_words import phrase_value


@pytest.mark.parametrize(("phrase", "digits"), [
    ("zero", "0"), ("one", "1"), ("Ten", "10"), ("twelve", "12"), ("nineteen", "19"), ("twenty", "20"),
    ("twenty-five", "25"), ("twenty five", "25"), ("ninety-nine", "99"), ("one hundred", "100"),
    ("one hundred and twenty", "120"), ("two hundred five", "205"), ("nine hundred ninety-nine", "999"),
    ("negative five", "-5"), ("one half", "1/2"), ("two-thirds", "2/3"), ("three quarters", "3/4"),
    ("three fourths", "3/4"), ("ten tenths", "10/10"),
])
def test_a_number_phrase_is_its_digits(phrase: str, digits: str) -> None:
    assert phrase_value(phrase) == digits


@pytest.mark.parametrize("phrase", [
    "ten thousand", "a hundred", "a half", "third", "minus five", "twenty-five apples", "one and a half",
    "eleventy", "", "10",
])
def test_what_is_not_exactly_one_number_phrase_has_no_value(phrase: str) -> None:
    assert phrase_value(phrase) is None


# (completion, the answer read with number words on)
WORD_ANSWERS = [
    ("The answer is ten.", "10"),
    ("**Answer:** twelve", "12"),
    ("The final answer is twenty-five dollars.", "25"),
    ("The answer is: **ten (10)**", "10"),
    ("\\boxed{seven}", "7"),
    ("Tom had 15 apples and gave away 5, so she has ten apples left.", "10"),
    ("After giving them all away, she has zero apples left.", "0"),
    ("So he has 12 apples. Actually, no wait, he has ten.", "10"),
    ("Ten", "10"),
    ("**Five**", "5"),
    ("We get 1 solution. Therefore there is exactly one.", "1"),
    ("So two thirds of the class passed, and the answer is two-thirds.", "2/3"),
    # a number word that is not the final answer: the digits after it are
    ("She has three boxes with 4 pens each, so 3 * 4 = 12 pens in total.", "12"),
    ("There are three boxes. Answer: 12", "12"),
    ("There are two ways to do this. The first gives 7.", "7"),
    # trailing words that use a number word for something else: the earlier digits are the answer
    ("The total is 12 apples. Let me double-check each one.", "12"),
    ("She has 6 cookies, one for each friend.", "6"),  # an unlabelled "one" is a pronoun, not the answer
    ("Each of them paid 4 dollars, two each for the tickets.", "4"),  # a share, not the answer
    ("The total is 12. Let me know if you have any other questions about this one!", "12"),
    ("She has 12 apples.\nLet me know if you need further clarification on any of the two steps.", "12"),
    ("The total is 12. Let me know if you want me to explain step two.", "12"),
    ("So the total is 12.\nThis completes part three.", "12"),
    ("So she has 12 apples, two more than Tom.", "12"),
    ("It took 7 hours, or more than ten.", "7"),
]


@pytest.mark.parametrize(("completion", "answer"), WORD_ANSWERS, ids=[c[:50] for c, _ in WORD_ANSWERS])
def test_number_words_are_read_as_the_final_answer_only_where_they_are_it(completion: str, answer: str) -> None:
    found = extract_final_answer(completion, number_words=True)
    assert found is not None and found.text == answer


@pytest.mark.parametrize("completion", [
    "The answer is ten thousand.",  # "thousand" is more number, not a unit
    "The answer is one of the options above.",
    "The answer is between five and ten.",
    "The recipe needs one and a half cups of flour.",
    "She was one of the winners.",
    "No one knows.",
    "Let me solve this one step at a time.",
    "The answer is ten percent.",
])
def test_a_number_word_that_is_not_an_exact_answer_is_not_read_as_a_number(completion: str) -> None:
    found = extract_final_answer(completion, number_words=True)
    assert found is None or not found.text.lstrip("-").isdigit()


def test_number_words_stay_words_unless_asked_for() -> None:
    """The scorer asks only for a plain-number gold: "ten" may equal 10, never `x = 10` or `10\\%`."""
    found = extract_final_answer("The answer is ten.")
    assert found is not None and found.text == "ten"
    assert extract_final_answer("so she has ten apples left.") is None


@pytest.mark.parametrize(("completion", "answer"), [
    ("**Answer:** The farmer has 15 cows.", "15"),
    ("Answer: She pays $18 in total.", "18"),
    ("Answer: The total cost is $1,250.", "1,250"),
    ("The answer is the number 7", "7"),
    ("Final answer: five apples (5).", "5"),
    ("Answer: She has ten apples", "10"),
    # not a plain statement of one number: kept as written, so it equals no number
    ("Answer: She needs at least 5 boxes", "She needs at least 5 boxes"),
    ("The answer is that it is impossible to have 5 cows.", "that it is impossible to have 5 cows"),
    ("Answer: Step 1 is wrong", "Step 1 is wrong"),
    ("Answer: Tom has 5 and Mary 7", "Tom has 5 and Mary 7"),
    ("Answer: I don't know, maybe 5", "I don't know, maybe 5"),
    ("Answer: It could be 5", "It could be 5"),
    ("Answer: The farmer has 15 cows and 3 pigs.", "The farmer has 15 cows and 3 pigs"),
])
def test_a_short_sentence_that_ends_in_a_number_states_that_number(completion: str, answer: str) -> None:
    found = extract_final_answer(completion, number_words=True)
    assert found is not None and found.text == answer


@pytest.mark.parametrize(("gold", "is_number"), [
    ("10", True), ("-7", True), ("1,000", True), ("3.5", True), ("\\$18", True), ("3/4", True),
    ("\\frac{1}{2}", True), ("$\\dfrac{2}{3}$", True), ("x = 10", False), ("10\\%", False), ("(2, 3)", False),
    ("\\sqrt{2}", False), ("B", False), ("10 \\text{ cm}", False),
])
def test_only_a_plain_number_gold_answer_lets_number_words_count(gold: str, is_number: bool) -> None:
    assert gold_is_number(gold) is is_number


# (completion, the answer read)
FALLBACK_ANSWERS = [
    ("Solving both equations gives x = 2 and y = 3. The point is (2, 3).", "(2, 3)"),
    ("The interval is [1, 3).", "[1, 3)"),
    ("The total is (1,000)", "1,000"),  # a thousands separator, not a tuple
    ("f(1, 2) = 7", "7"),
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72\nThis uses 2 steps.", "72"),
    ("#### $\\frac{1}{2}$", "\\frac{1}{2}"),
    ("#### Step 1: Add\nThe total is 7.\n#### 2. Check\nIt checks out.", "7"),  # headings, not answers
    ("Step 1: 3 * 4 = 12\nStep 2: Done", "12"),
    ("1. Janet has 16 eggs.\n2. She eats 4.\n**3.** Sells the rest", "4"),
    ("The probability is 1/3 ≈ 0.333.", "1/3"),
    ("The probability is $\\frac{1}{3}$ ≈ 0.333.", "\\frac{1}{3}"),
    ("The area is 3.14 * 2^2 ≈ 12.57", "12.57"),  # no exact value right before the sign
    ("1 - 5/36 ≈ 0.86", "0.86"),  # 5/36 is only part of the expression
    ("x ≈ 0.86", "0.86"),
]


@pytest.mark.parametrize(("completion", "answer"), FALLBACK_ANSWERS, ids=[c[:50] for c, _ in FALLBACK_ANSWERS])
def test_tuples_gsm8k_lines_step_numbers_and_approximations(completion: str, answer: str) -> None:
    found = extract_final_answer(completion)
    assert found is not None and found.text == answer


# (completion, the answer read): boxes listed or offered together make one list answer; a later box
# after a correction replaces the earlier one.
BOXES = [
    ("The answer is \\boxed{5} or \\boxed{6}.", "5, 6"),
    ("It could be $\\boxed{5}$ or $\\boxed{6}$", "5, 6"),
    ("\\boxed{5}, \\boxed{6}", "5, 6"),
    ("\\boxed{5}\n\n\\boxed{6}", "5, 6"),
    ("x = \\boxed{5} or x = \\boxed{6}", "5, 6"),
    ("The answer is \\boxed{5}. Alternatively, it could be \\boxed{6}.", "5, 6"),
    ("\\boxed{2}, \\boxed{2}", "2"),
    ("I first thought \\boxed{41} but it is \\boxed{42}", "42"),
    ("The answer is \\boxed{5}. But wait, I need to double-check. Actually it is \\boxed{6}.", "6"),
    ("\\boxed{41}\n\nWait, I made an error. The correct answer is \\boxed{42}.", "42"),
    ("(a) \\boxed{5}\n(b) \\boxed{6}", "6"),
    ("\\boxed{5} " + "and then some more reasoning " * 10 + "maybe \\boxed{6}", "6"),  # too far apart
]


@pytest.mark.parametrize(("completion", "answer"), BOXES, ids=[c[:50] for c, _ in BOXES])
def test_a_hedge_between_boxes_is_one_list_answer_and_a_correction_is_the_last_box(completion: str,
                                                                                   answer: str) -> None:
    found = extract_final_answer(completion)
    assert found is not None and found.text == answer


@pytest.mark.parametrize(("completion", "letter"), [
    ("\\boxed{A} or \\boxed{B}", None),
    ("\\boxed{(A)}, \\boxed{(B)}", None),
    ("The answer is (A) or (B)", None),
    ("The answer is A and C", None),
    ("The answer is (B), since (A) fails.", "B"),
    ("Final answer: c) 12", "C"),
])
def test_a_hedge_between_choices_settles_on_none(completion: str, letter: str | None) -> None:
    found = extract_choice(completion)
    assert (found.text if found else None) == letter


@pytest.mark.parametrize(("completion", "answer"), [
    ("The answer is not 5, it is 6.", "6"),
    ("The answer is not 5. It is 6.", "6"),
    ("The answer is not 5 but 6", "6"),
    ("The answer is **not** 5; Answer: 6", "6"),
    ("The answer is not twenty five. It is six.", "6"),
    ("The answer is not 5.", None),
    ("The answer is 6. Some say the answer is not 6.", None),
    ("The answer is not only 5 but also 6.", "not only 5"),  # negates nothing: a hedge, as written
])
def test_a_negated_value_is_not_the_answer(completion: str, answer: str | None) -> None:
    found = extract_final_answer(completion, number_words=True)
    assert (found.text if found else None) == answer


@pytest.mark.parametrize("text", [
    "(1, " * 16_000, "\\boxed{1} or " * 5_000, "one " * 16_000, "The answer is ten " + "a" * 65_000 + "!",
    "#### " + "1 " * 32_000 + "x", "1/3 ≈ " * 10_000 + "0.3", "\n1. a" * 13_000, "The answer is not " * 3_500,
    "The answer is 5" + ", and " * 10_000 + "she",
])
def test_the_new_readings_stay_fast_on_64_kib_of_hostile_text(text: str) -> None:
    # A quadratic pattern would take seconds to minutes here; the bound is loose for a busy machine.
    t0 = time.monotonic()
    for number_words in (False, True):
        extract_final_answer(text, number_words=number_words)
    assert time.monotonic() - t0 < 2.0
