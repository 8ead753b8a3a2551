"""Self-corrections after the last box, and choice letters a completion rules out.

The text after the last `\\boxed{}` was never read: "\\boxed{3}. Wait, that's wrong, it is 4." read 3, so against
the gold 4 the corrected answer scored 0 and against the gold 3 the retracted one scored 1. Under GRPO that
teaches a policy never to correct itself once it has boxed. A correction marker after the box followed by a new
value now wins; a retraction that states nothing new is no answer. A box followed by ordinary text, or by a check
that confirms it, still reads as the box.

With a choice gold, the last "(X)" anywhere counted even when negated: "It is not (B)." read B. A letter the
completion rules out ("not (B)", "(B) is wrong") is now never its answer."""

from __future__ import annotations

import time

import pytest

from grpo_rewards.math_verifier.extract import extract_choice, extract_final_answer

# (completion, the answer read: with number words off and on alike)
CORRECTED = [
    ("\\boxed{3}. Wait, that's wrong, it is 4.", "4"),
    ("\\boxed{3}. Wait, that's wrong. It is 4.", "4"),
    ("\\boxed{3}. Actually, it should be 4.", "4"),
    ("\\boxed{3}. Actually, it's 4 apples.", "4"),
    ("\\boxed{3}\n\nHmm, wait. That's not right. It is $4$.", "4"),
    ("$\\boxed{3}$. But wait, I made a mistake, so 4.", "4"),
    ("\\boxed{3}. Correction: 4", "4"),
    ("\\boxed{3}. **Correction:** $x = 4$", "x = 4"),
    ("\\boxed{3}.\n\nActually, the answer is 4.", "4"),
    ("\\boxed{3}\n\nLet me reconsider. 2 + 2 = 4, so the answer is 4 because ...", "4"),
    ("\\[\\boxed{3}\\]\nI made a mistake: 2 + 2 = 4.\n\n**Final Answer:** 4", "4"),
    ("\\boxed{3}. Wait, the answer is not 3, it is 4.", "4"),
    ("\\boxed{3}. Wait, it is 4. So the answer is 5.", "5"),  # the answer stated last
    ("\\boxed{3}. Actually, the answer is 3 or 4.", "3 or 4"),  # a hedge after the box scores against neither
    ("\\boxed{3}. Wait, that's wrong, it is 4. Let me recheck, it is 5.", "5"),
    ("\\boxed{3}. Wait, that's wrong, it is 4, no wait, it is 5", "5"),
    ("\\boxed{3}. Wait, that's wrong. No, it is 3.", "3"),  # retracted, then restated
]

# A retraction that states no new value: the completion settles on nothing.
RETRACTED = [
    "\\boxed{3}. Wait, that's wrong.",
    "\\boxed{3}\n\nHmm, that is incorrect.",
    "\\boxed{3}. Oops, I made a mistake somewhere.",
    "\\boxed{3}. Correction: the count above is off.",
    "\\boxed{3}. Wait, the answer is not 3.",
    "\\boxed{3}. Wait, that's wrong. Let me redo it: 2 + 2 =",  # cut off mid-correction
    "\\boxed{3}. Wait, it is 4. Hmm, that's wrong.",  # the new value retracted in turn
    "\\boxed{3}. Actually, the answer is 4. Hmm, that's wrong.",
]

# The box stands: ordinary text, a check that confirms it, a weak marker with no new value, or words where a
# value would be.
BOX_STANDS = [
    ("\\boxed{3}. This makes sense because 1 + 2 = 3.", "3"),
    ("\\boxed{3} apples in total, 2 fewer than 5", "3"),
    ("\\boxed{3}. Wait, let me verify: 1 + 2 = 3.", "3"),
    ("\\boxed{3}. Let me recheck: 1 + 2 = 3, so 3 is correct.", "3"),
    ("\\boxed{3}\n\nWait, is it 4? No, 1 + 2 = 3.", "3"),
    ("\\boxed{3}. Actually, the answer is correct.", "3"),
    ("\\boxed{3}. Actually, it is the only solution.", "3"),
    ("\\boxed{3}. Wait, it's 1 + 2 = 3.", "3"),  # a computation, not a new value
    ("\\boxed{5}. Wait, so x = 5 and y = 2.", "5"),
    ("\\boxed{3}. A common mistake is to add 4; that's wrong.", "3"),  # "that's wrong" starts no sentence
    ("\\boxed{3}. If you got 4, that's wrong because the first day counts.", "3"),
    ("\\boxed{3}\n\nAnswer: 4", "3"),  # a label after a box, no correction marker: rule 1 as before
    ("\\boxed{3}. I hope it is correct.", "3"),
    ("I first thought \\boxed{41} but it is \\boxed{42}. This is right.", "42"),
]


@pytest.mark.parametrize("number_words", [False, True])
@pytest.mark.parametrize("text,expected", CORRECTED + BOX_STANDS)
def test_a_correction_after_the_last_box_wins_and_ordinary_text_does_not(text, expected, number_words):
    """Each CORRECTED completion read 3 (its box) before; each BOX_STANDS one must still read its box."""
    found = extract_final_answer(text, number_words)
    assert found is not None
    assert found.text == expected


@pytest.mark.parametrize("number_words", [False, True])
@pytest.mark.parametrize("text", RETRACTED)
def test_a_retraction_with_no_new_value_is_no_answer(text, number_words):
    """'\\boxed{3}. Wait, that's wrong.' disowns 3: reading 3 scored 1 against the gold 3 for an answer the
    completion calls wrong, and a completion cut off mid-correction committed to nothing."""
    assert extract_final_answer(text, number_words) is None


def test_number_words_after_a_marker_are_read_against_a_plain_number_gold():
    """'it is four' states 4 only where number words are read (a plain-number gold); elsewhere the box stands."""
    text = "\\boxed{3}. Actually, it is four."
    found_words, found_plain = extract_final_answer(text, True), extract_final_answer(text, False)
    assert found_words is not None and found_words.text == "4"
    assert found_plain is not None and found_plain.text == "3"


@pytest.mark.parametrize("text,expected", [
    ("It is not (B).", None),
    ("not (B)", None),
    ("The answer is not (B).", None),
    ("Answer: (B) is wrong", None),
    ("(A), (B) and (D) are wrong.", None),
    ("Neither (A) nor (B) works.", None),
    ("We can rule out (B).", None),
    ("Options: (A) 3, (B) 4. It is not (B).", "A"),  # B ruled out later is not read from the echoed option
    ("(A) is wrong, (B) is wrong, so the answer is (C)", "C"),
    ("(A) is wrong, (B) is wrong, so (C).", "C"),
    ("(A), (B) and (D) are wrong, so (C).", "C"),
    ("The answer is (B), not (C).", "B"),
    ("It is (C), not (B).", "C"),
    ("It is (C) rather than (B).", "C"),
    ("The answer is not (B), it is (C).", "C"),
    ("(C) is correct. (A) is wrong because it double counts. (B) is wrong too.", "C"),
    ("(C) is correct, (B) is not.", "C"),
    ("(B) can't be right, so (D)", "D"),
    ("\\boxed{(B)}. Wait, that's wrong.", None),  # the retracted box's letter is not read from the text either
    ("\\boxed{(B)}. Wait, that's wrong, it is (C).", "C"),
    ("\\boxed{B}. Actually, the answer is C.", "C"),
    ("\\boxed{(B)}. Wait, that's wrong, (C) is right.", "C"),
    ("\\boxed{B}. This is because (A) and (C) fail.", "B"),
])
def test_a_choice_letter_ruled_out_is_not_the_answer(text, expected):
    """'It is not (B).' read B: the last '(X)' anywhere counted, negated or not."""
    found = extract_choice(text)
    assert (found.text if found else None) == expected


KIB_64 = 65536


def _seconds(text: str) -> float:
    """The least of three timings of reading `text` every way the scorer does (noise only adds time)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        extract_final_answer(text, True)
        extract_final_answer(text, False)
        extract_choice(text)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("make", [
    lambda n: "\\boxed{3}. " + ("Wait, " * n)[:n],
    lambda n: "\\boxed{3}. " + ("Wait. " * n)[:n],
    lambda n: "\\boxed{3}. " + ("Wait, it is " * n)[:n],
    lambda n: "\\boxed{3}. " + ("Wait, it is 4 " * n)[:n],
    lambda n: "\\boxed{3}. " + ("Correction: " * n)[:n],
    lambda n: "\\boxed{3}" + ("That's wrong. " * n)[:n],
    lambda n: "\\boxed{3}" + (". " * n)[:n],
    lambda n: "\\boxed{3}" + " " * n + "wait",
    lambda n: "\\boxed{3}. " + ("hmm, " * n)[:n] + "wait, it is 4",
    lambda n: "\\boxed{3}. Wait" + "," * n,
    lambda n: "\\boxed{3}. Wait, " + ("so " * n)[:n],
    lambda n: "\\boxed{3}. Wait, " + ("the answer is " * n)[:n],
    lambda n: ("\\boxed{3}. Wait, that's wrong, it is 4. " * n)[:n],
    lambda n: ("not (B) " * n)[:n],
    lambda n: ("(B) " * n)[:n],
    lambda n: ("(A), " * n)[:n] + " are wrong",
    lambda n: ("(A) and " * n)[:n] + " are wrong",
    lambda n: ("rule " * n)[:n] + "(B)",
    lambda n: "not" + " " * n + "(B)",
    lambda n: "(B)" + " " * n + "is wrong",
], ids=range(20))
def test_corrections_and_negated_choices_stay_linear(make):
    """64 KiB of markers, connectives or letters must not stall the server (a quadratic chain of markers took
    46 s here before it was made one pass). Four times the text takes about four times as long (a quadratic
    pass sixteen); the ratio of two timings in one run holds on a loaded machine, where a bound of 1 s on
    the 64 KiB reading alone failed at 1.05 s (0.12 s unloaded)."""
    quarter, whole = _seconds(make(KIB_64 // 4)), _seconds(make(KIB_64))
    assert whole < 5.0, whole
    assert whole < 10 * max(quarter, 0.005), (quarter, whole)


@pytest.mark.parametrize("make", [
    lambda n: "The sum is 5." + " " * n + "x",
    lambda n: " " * n + "x",
    lambda n: "It is 5.\n" + " " * n + "x",
    lambda n: "It is 5!" + "\t" * n + "x",
    lambda n: "It is 5." + " *" * (n // 2) + "x",
    lambda n: "It is 5\n" + "- " * (n // 2) + "x",
], ids=["full-stop-spaces", "spaces", "indent", "tabs", "stars", "dashes"])
def test_answer_labels_stay_linear_after_runs_of_spaces(make):
    """A run of spaces after a full stop or a line break, before no label at all: the label pattern tried
    every split of the run among three quantifiers (600 spaces: 1.5 s; 2000: 72 s, in the server process,
    past --item-timeout). Four times the text takes about four times as long."""
    quarter, whole = _seconds(make(KIB_64 // 4)), _seconds(make(KIB_64))
    assert whole < 5.0, whole
    assert whole < 10 * max(quarter, 0.005), (quarter, whole)
