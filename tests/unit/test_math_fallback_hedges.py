"""The math verifier's last-number fallback (rule 4) reads a hedge between plain numbers at the end of a
completion ("So x = 2 or x = 3.") as the list "2, 3", as it already does for boxes and math spans. Read as
its last number, such a hedge scored 1 whenever the second guess was right, and a policy under GRPO learns
to write one. A list equals only a gold answer that lists the same values, so numbers listed as solutions
("The solutions are x = 2 and x = 3.") now equal the gold "2, 3". Each reading has a test of what it must
not read: ordinary endings where only the last number is the answer."""

from __future__ import annotations

import time

import pytest

from grpo_rewards.math_verifier.extract import extract_final_answer

# (completion, the answer read, with number words off and on)
HEDGES = [
    ("So x = 2 or x = 3.", "2, 3"),
    ("Therefore the result is 2 or 3.", "2, 3"),
    ("It could be 2, or maybe 3.", "2, 3"),
    ("The number of apples is either 2 or 3.", "2, 3"),
    ("x = 2 or 3", "2, 3"),
    ("so she has 2 or 3 left", "2, 3"),
    ("so she has 2 (or 3) left", "2, 3"),
    ("She has $2 or $3 left.", "2, 3"),
    ("So x = 2, 3, or 4.", "2, 3, 4"),
    ("So x = -1 or x = 4.", "-1, 4"),
    ("The probability is 1/2 or 1/3.", "1/2, 1/3"),
    ("So 50% or 60% of them.", "50%, 60%"),
    ("So x = 1 + 1 or 3", "1, 3"),  # an expression before "or" is still a hedge: 3 alone must not score
    # a number in words offered next to one in digits is a hedge too
    ("so she has 3 or four left.", "3, 4"),
    ("So x = 2 or x = three.", "2, 3"),
    ("So she has three or 4 left.", "3, 4"),
    # numbers listed as solutions or values
    ("The solutions are x = 2 and x = 3.", "2, 3"),
    ("The roots of f are 2, 3 and 5.", "2, 3, 5"),
    ("Possible values: 2 and 3", "2, 3"),
    ("So x = 2 and x = 3.", "2, 3"),  # one variable set to two values lists them
    ("So x = 2, x = 3.", "2, 3"),
    ("The two solutions: x = 2, and x = -3", "2, -3"),
]

# Endings where two numbers appear but only the last is the answer, as before.
LAST_NUMBER = [
    ("2 + 3 = 5", "5"),
    ("It takes between 2 and 3 hours, so 5", "5"),
    # Ambiguous, read as 3: "and kept" starts a second clause about another quantity, and most such endings
    # state the asked-for quantity last ("she ate 2 and has 3 left"); only a bare connective lists.
    ("she gave 2 and kept 3", "3"),
    ("she ate 2 and has 3 left", "3"),
    ("from 2 to 3", "3"),
    ("3 out of 4", "4"),
    ("Step 2 or step 3", "3"),
    ("The ratio is 2 to 3", "3"),
    ("2 and 3 make 5", "5"),
    ("page 2 or 3 of the book, the answer is 7", "7"),
    ("It takes between 2 and 3 hours.", "3"),  # "and" lists only solutions or values
    ("After day 2, 3 apples are left.", "3"),  # a bare comma lists nothing on its own
    ("Of the possible values, after 2 rounds, 3 remain", "3"),  # no list named: "values ... are" / "values:"
    ("So a = 2 or b = 3", "3"),  # two variables: the last one set is the answer, as for math spans
    ("So x = -2 or x = 3. Since x > 0, x = 3.", "3"),  # a later sentence settles the hedge
    ("It takes 2.5 hours, or 150 minutes.", "150"),  # a unit between the numbers: a restatement
    ("We get 1/2, or 0.5", "0.5"),  # one value stated twice
    ("It is 2 1/2, or 2.5", "2.5"),
    ("So 0.5, or 50%", "50%"),
    ("The solutions are x = 2 or x = 2.", "2"),
    ("She has 3 or three apples", "3"),
    ("She has 2 or one of them", "2"),  # "one of them" is no number
    ("She has 2 or more", "2"),
    ("Janet makes 12 dollars and 50 cents.", "12.50"),
    ("The area is 36 cm^2 or so", "36"),
]


@pytest.mark.parametrize(("completion", "answer"), HEDGES, ids=[c[:50] for c, _ in HEDGES])
@pytest.mark.parametrize("number_words", [False, True])
def test_a_hedge_or_list_of_plain_numbers_at_the_end_is_one_list_answer(completion: str, answer: str,
                                                                        number_words: bool) -> None:
    found = extract_final_answer(completion, number_words=number_words)
    assert found is not None and found.text == answer


@pytest.mark.parametrize(("completion", "answer"), LAST_NUMBER, ids=[c[:50] for c, _ in LAST_NUMBER])
@pytest.mark.parametrize("number_words", [False, True])
def test_two_numbers_joined_by_anything_but_a_list_connective_leave_the_last_one(completion: str, answer: str,
                                                                                 number_words: bool) -> None:
    found = extract_final_answer(completion, number_words=number_words)
    assert found is not None and found.text == answer


def test_a_listed_answer_says_so_in_its_source() -> None:
    """"numbers" tells a list from one number, as "boxes" does for boxes; a single number stays "number"."""
    listed = extract_final_answer("So x = 2 or x = 3.")
    single = extract_final_answer("So x = 3.")
    assert listed is not None and listed.source == "numbers"
    assert single is not None and single.source == "number"


@pytest.mark.parametrize("text", [
    "2 or " * 13_000 + "3", "x = 2 or x = " * 5_000 + "3", "2, " * 20_000 + "or 3",
    "The solutions are " + "2 and " * 10_000 + "3", "The solutions are " * 3_500 + "2 and 3",
    "2 or three " * 5_000, "three or " * 7_000 + "4", "(or " * 16_000 + "2 or 3", "or maybe " * 7_000 + "3",
    "x = " * 16_000 + "2 or 3", "2" + " " * 60_000 + "or 3", "roots are: " * 5_000 + "2, 3",
])
def test_the_list_reading_stays_fast_on_64_kib_of_hostile_text(text: str) -> None:
    # A quadratic pattern would take seconds to minutes here; the bound is loose for a busy machine.
    t0 = time.monotonic()
    for number_words in (False, True):
        extract_final_answer(text, number_words=number_words)
    assert time.monotonic() - t0 < 2.0
