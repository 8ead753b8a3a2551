"""English number words as digits: "ten" -> "10", "twenty-five" -> "25", "one hundred and twenty" -> "120",
"negative five" -> "-5", "two thirds" -> "2/3". Pure string work, a small closed table.

The table covers what chat models write as a final answer: zero to nineteen, the tens, their hyphenated or
spaced compounds, whole hundreds up to "nine hundred ninety-nine", a leading "negative", and simple
fractions (a numerator from one to ten and a denominator from "half" to "tenth(s)"). Nothing else: no
"thousand" or "million" (a phrase that goes on with one is not read at all, so "ten thousand" never
becomes 10), no ordinals on their own ("the third day" is not 3 or 1/3), no "a half" or "a dozen", and
no "minus" ("ten minus three" must not end in the answer -3).

Checked PyPI first: `word2number` (last release 2017) reads any text that holds a number word ("seven
apples and a pear" -> 7), which is what a reward must not do; `text2num` is well kept but a compiled
multi-language parser for finding numbers in running text, more than a fixed answer phrase needs.
"""

from __future__ import annotations

import re

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
# Denominators, singular and plural ("one third", "two thirds"; models write either).
_DENOMINATOR = {"half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4,
                "fourths": 4, "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7, "sevenths": 7,
                "eighth": 8, "eighths": 8, "ninth": 9, "ninths": 9, "tenth": 10, "tenths": 10}


def _alternation(words: list[str]) -> str:
    # Longest first, so that "seventeen" is not read as "seven" (the \b after the phrase would backtrack
    # anyway; this keeps the first try the right one).
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


_DIGIT = _alternation(_UNITS[1:10])
_BELOW_100 = rf"(?:{_alternation(_TENS)}(?:[- ]{_DIGIT})?|{_alternation(_UNITS)})"
_HUNDREDS = rf"{_DIGIT}[- ]hundred(?:(?: and)? {_BELOW_100})?"
_FRACTION = rf"(?:{_DIGIT}|ten)[- ]{_alternation(list(_DENOMINATOR))}"
# One number phrase: a fraction first (so "one half" is not "one"), then hundreds, then below 100. Each part
# is a fixed alternation with at most one optional tail: linear time.
NUMBER_PHRASE = rf"\b(?:negative )?(?:{_FRACTION}|{_HUNDREDS}|{_BELOW_100})\b"
_PHRASE = re.compile(NUMBER_PHRASE, re.IGNORECASE)
# The words of the table, to tell a unit ("ten apples") from more number ("ten and two").
WORDS = frozenset(_VALUE) | frozenset(_DENOMINATOR) | {"hundred", "negative"}


def find_number_phrases(text: str) -> list[re.Match[str]]:
    """Every number phrase in `text`, in order (case-insensitive, whole words only)."""
    return list(_PHRASE.finditer(text))


def phrase_value(phrase: str) -> str | None:
    """The digits of one whole number phrase (`"Twenty-five"` -> `"25"`, `"two thirds"` -> `"2/3"`,
    `"negative one hundred and one"` -> `"-101"`), or None when `phrase` is not exactly one."""
    if not _PHRASE.fullmatch(phrase):
        return None
    words = re.split(r"[- ]+", phrase.lower())
    sign = ""
    if words[0] == "negative":
        sign, words = "-", words[1:]
    if words[-1] in _DENOMINATOR:
        return f"{sign}{_VALUE[words[0]]}/{_DENOMINATOR[words[-1]]}"
    total = 0
    for w in words:
        if w == "hundred":
            total *= 100
        elif w != "and":
            total += _VALUE[w]
    return f"{sign}{total}"
