"""The math verifier's answer extraction for final answers as chat models write them on GSM8K and MATH: a
percentage "of the total", one value in digits and words ("3 or three"), ratios and clock times, a Unicode
minus sign, mixed numbers, unit exponents, thousands grouped by spaces, dollars and cents, and answers
listed in words or math spans. A wrong reading here is a wrong reward, so each reading has a test of what
it must not read."""

from __future__ import annotations

import time

import pytest

from grpo_rewards.math_verifier.extract import extract_final_answer

# (completion, the answer read with number words on, as the scorer reads it for a plain-number gold)
READINGS = [
    # a percentage followed by words is the percentage; followed by a number it is an expression
    ("The answer is 50% of the total.", "50%"),
    ("The answer is 25\\% of the cookies.", "25\\%"),
    ("Answer: 50 percent of the students", "50%"),
    ("**Answer:** Kylie pays 25% of the price.", "25%"),
    ("The answer is 50% of 80.", "50% of 80"),
    ("The answer is 50% or more.", "50% or more"),
    ("The answer is 10 percent", "10 percent"),
    # one value in digits and in words is its digits; two values are a hedge, kept as written
    ("The answer is 3 or three.", "3"),
    ("The answer is three, or 3.", "3"),
    ("\\boxed{3 (three)}", "3"),
    # a remark restating or explaining the boxed answer is dropped, as after "The answer is"
    ("\\boxed{5 km (or 5000 m)}", "5"),
    ("\\boxed{12 (since 3 * 4 = 12)}", "12"),
    # an answer label after a sentence, not only at a line's start (the docs' own example)
    ("So the answer is 12. Wait, let me recheck. **Final Answer:** 14", "14"),
    ("We get x = 3 and y = 4. Final answer: 3 apples, as y = 4", "3"),
    ("The answer is 3 (three) apples.", "3"),
    ("The answer is three apples (3 apples).", "3"),
    ("The answer is twenty-five (25) dollars.", "25"),
    ("The answer is 3 or four.", "3 or four"),
    ("The answer is three or 4.", "three or 4"),
    ("The answer is 3 or 4.", "3 or 4"),
    ("The answer is 3 or three or four.", "3 or three or four"),
    ("\\boxed{3 (four)}", "3 (four)"),
    ("\\boxed{\\text{seven}}", "7"),
    # ratios and clock times are one number, not their last part
    ("The ratio of boys to girls is 3:2.", "3:2"),
    ("They will arrive at 3:45 pm.", "3:45"),
    ("Step 2: Done", None),
    # a Unicode minus sign, and "negative" before digits
    ("The final temperature is −5°C.", "−5"),
    ("The answer is negative 3 degrees.", "-3"),
    # mixed numbers as math-verify reads them ("2 1/2" is neither 5/2 nor 1/2 there)
    ("She needs 2 1/2 cups of flour.", "2\\frac{1}{2}"),
    ("She bought 3 and 1/4 pounds of beef.", "3\\frac{1}{4}"),
    ("So 12 - 2 1/2 = 9 1/2.", "9\\frac{1}{2}"),
    ("The answer is -2 1/2.", "-2\\frac{1}{2}"),
    ("She needs 2 ½ cups of flour.", "2½"),
    ("So we get 3 4/2", "4/2"),  # an improper fraction after a number is no mixed number
    # the exponent of a unit is not the answer
    ("The area is 36 cm^2.", "36"),
    ("The area is 36 m^{2}.", "36"),
    ("The answer is 36 cm².", "36"),
    ("The answer is 60 km/h.", "60"),
    # thousands grouped by a space, a narrow no-break space or `\,`
    ("The answer is 1 000.", "1000"),
    ("The total is 12 500 dollars.", "12500"),
    ("The total comes to 12\u202f500 dollars.", "12500"),
    ("The answer is 1\\,000.", "1000"),
    ("The numbers are 1 2 3", "3"),
    # dollars and cents, and scientific notation with the letter x
    ("Janet makes 12 dollars and 50 cents.", "12.50"),
    ("It costs 3 dollars and 5 cents.", "3.05"),
    ("It takes 2 hours and 30 minutes.", "30"),  # not money: left as it was (see the docs)
    ("The answer is 1.2 x 10^3.", "1.2 \\times 10^3"),
    # answers listed in words or in math spans at the end are one list answer
    ("The answers are 2 and 3.", "2 and 3"),
    ("The answers are x = 2 and x = 3.", "x = 2 and x = 3"),
    ("Both answers are correct, so the total is 5.", "5"),
    ("So $x=-1$ or $x=4$.", "x=-1, x=4"),
    ("The primes are $2$, $3$, and $5$.", "2, 3, 5"),
    ("Therefore, $a = 2$ and $b = 3$.", "b = 3"),  # two variables set: the last one is the answer
    ("We know $x = 2$. So the answer follows from $x = 3$.", "x = 3"),
]


@pytest.mark.parametrize(("completion", "answer"), READINGS, ids=[c[:50] for c, _ in READINGS])
def test_final_answers_as_chat_models_write_them(completion: str, answer: str | None) -> None:
    found = extract_final_answer(completion, number_words=True)
    assert (found.text if found else None) == answer


@pytest.mark.parametrize("text", [
    "111 " * 16_000 + "1111", "1 " * 32_000 + "/", "1 and " * 10_000 + "1/", "$1$ or " * 9_000 + "$2$",
    "3 or three " * 5_000, "The answer is " + "3 or " * 10_000 + "three", "1" + " " * 60_000 + "x 10^3",
    "2 ½ " * 20_000, "3:4:5:" * 10_000, "cm^" * 20_000 + "2", "dollars and " * 5_000 + "5 cents",
    "The answer is 1" + "\\,000" * 10_000, "The answers are " * 4_000,
])
def test_the_new_readings_stay_fast_on_64_kib_of_hostile_text(text: str) -> None:
    # A quadratic pattern would take seconds to minutes here; the bound is loose for a busy machine.
    t0 = time.monotonic()
    for number_words in (False, True):
        extract_final_answer(text, number_words=number_words)
    assert time.monotonic() - t0 < 2.0
