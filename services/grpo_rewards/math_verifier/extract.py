"""Finding the final answer in a model's completion. Pure string work: no sympy, no math-verify.

Order of preference (the first rule that finds something wins):
1. the last `\\boxed{...}` / `\\fbox{...}` (balanced braces). Boxes just before it that are only listed
   with it ("\\boxed{5} or \\boxed{6}", "x = \\boxed{2}, y = \\boxed{3}") or offered as an alternative
   ("\\boxed{5}. Alternatively, it could be \\boxed{6}") are part of the answer, which is then the list
   "5, 6": a hedge equals a gold answer only when the gold lists the same values. A correction after the
   last box wins over it: a marker that starts a sentence there ("Wait", "Actually", "Correction", "I made a
   mistake", "That's wrong", "Let me recheck", or one following such a marker in its sentence: "Wait, that's
   wrong"), then a new value, restated right after a marker (", it is 4", ". It should be 4", ", so 4",
   "Correction: 4") or found by rules 2 and 3 after the first marker ("Actually, the answer is 4"); the one
   stated last counts. A marker that calls the box wrong ("that's wrong", "I made a mistake", "correction",
   "the answer is not 3") with no new value leaves no answer; "wait", "actually" or "let me recheck" with none
   leave the box, as ordinary text after it does (see `_correction_after_box`);
2. the last "the (final) answer is X" (or "the answers are X" when X starts with a value: "2 and 3",
   "x = 2 and x = 3"); when X starts with "not" ("the answer is not 5, it is 6"), the
   answer is what rules 3 and 4 find after the negated value, or none;
3. the last "Answer: X" / "Final answer: X" (Markdown bold allowed), or a GSM8K-style line "#### X" whose
   X holds no words; such a label after the last "the answer is" wins over it ("The answer is 12. Wait,
   ... **Final Answer:** 14" is 14);
4. whichever ends last in the text: the last LaTeX math span (`$...$`, `\\(...\\)`, `\\[...\\]`), with
   the spans just before it that only list it ("$x = -1$ or $x = 4$", "$2$, $3$ and $5$": the list
   "x = -1, x = 4"; spans that set different variables are not listed), the last tuple or interval of
   numbers (`(2, 3)`, `[1, 3)`), or the last number (`-1,234.5`, `−5`, `3/4`, `12%`, `3:2`, `3:45`, `12 500`,
   `2 1/2`, `2 and 1/2`, `2 ½`; see `_NUMBER_CORE`) that is not a list marker ("2. Check the sum") or the
   exponent of a unit ("cm^2"); a number after `≈` / `\\approx` gives way to the value it approximates
   ("1/3 ≈ 0.333" is 1/3), and "12 dollars and 50 cents" is 12.50. With `number_words`, a number word
   ends the text too when it is the last thing before at most four plain words ("so she has ten apples
   left."). The numbers just before the last one that are only listed with it, in digits or words, are
   part of the answer, which is then the list "2, 3" as for boxes: "or" lists ("x = 2 or x = 3", "2, or
   maybe 3", "2 or three", "2, 3 or 4"), "and" and a bare comma only in a sentence that names solutions or
   values ("The solutions are x = 2 and x = 3") or when one variable is set to both ("x = 2 and x = 3");
   anything else between them ends the list ("2 + 3 = 5", "from 2 to 3", "she gave 2 and kept 3"), and so
   do two variables ("a = 2 or b = 3"). One value stated twice is one answer ("1/2, or 0.5"). Numbers each
   asked ("3? 4? 5?") are listed too. A last number after an inequality sign ("so x ≥ 3") is the bound
   "x ≥ 3". See `_listed_numbers`.

In rules 2 and 3, X is a leading math span, or else the rest of the line up to the end of the answer
phrase: the first ". ", "; ", em dash or clause-starting word ("because", ", since", ", not", ", and
she"...; see `_CLAUSE_BREAK`) outside braces and math spans, with Markdown emphasis and a full stop
stripped. A dollar of money is not a math delimiter (see `_MATH_SPAN`).

In rules 1 to 3, a hedge inside the answer is the list it offers: a closing remark that offers another
number ("3 (or 4)", "3 (maybe 4 if ...)"; "1/2 (or 0.5)" states one value), values each asked ("3? 4?") and
rows of a line break outside an environment ("\\boxed{3 \\\\ 4}") give "3, 4"; an answer that is only a bound
("\\geq 3", "> 2") is the inequality "x \\geq 3" (see `_hedges_as_list`, `bound_as_inequality`).

In rules 1 to 3, a number followed only by plain words ("10 cookies", "$12 dollars per hour", "60 km/h",
"36 cm^2") is that number: math-verify reads `10 cookies` as the product 10*c*o*o*k*i*e*s (see
`_drop_unit_words`); a percentage followed by words ("50% of the total", "50 percent of the total") is the
percentage, but "50% of 80" stays as written. One value stated in digits and in words ("3 or three", "three
(3)", "3 (three) apples") is its digits; two values ("3 or four") stay a hedge (see `_restated_number`).
"negative 3" is -3, "1.2 x 10^3" is read with `\\times`, and a mixed number or grouped thousands as a whole
answer are written as math-verify reads them: "2 1/2" -> "2\\frac{1}{2}", "1 000" and "1\\,000" -> "1000"
(see `_written_number`). With `number_words` (the scorer sets it when the gold answer is a plain number),
an answer that is an English number phrase, with or without such words, is its digits: "ten" -> "10",
"twenty-five dollars" -> "25", "one half" -> "1/2", "\\text{seven}" -> "7" (see `number_words`). A short
plain sentence that ends in such a number states it: "The farmer has 15 cows" -> "15" (see
`_number_ending_sentence`).

With a choice-letter gold, `extract_choice` reads the letter from the final answer, else the last "(X)"
whose letter the completion does not rule out there or later ("not (B)", "(B) is wrong").

All patterns are linear-time (no nested quantifiers, or bounded input: the text between two boxes is
looked at only up to 200 characters, a correction marker's sentence start 40 characters back and its chain
60 ahead, at most 16 markers for a restated value, 600 characters each, a choice's negation 40 characters
back, the fallback only at the last 4000, at most 8 listed math spans, and at most 8 listed numbers, 40
characters apart, with their sentence read 150 characters back) so a 64 KiB completion cannot stall the
server.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

from .number_words import NUMBER_PHRASE, WORDS, find_number_phrases, phrase_value

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "the answers are" only before a value ("2 and 3", "$x = 2$", "x = 2 or x = 3"), not in "both answers are
# correct".
_ANSWER_IS = re.compile(r"\b(?:the\s+)?(?:final\s+)?answer(?:\s+is|s\s+are(?=\s*:?\s*(?:[-−$\\(\[\d*]|[A-Za-z]\s*=)))"
                        r"\s*:?\s*", re.IGNORECASE)
# A label opening a line, or a sentence: "So it is 12. Wait, let me recheck. **Final Answer:** 14". No two
# quantifiers in a row may take the same character (the markup starts with a mark, not a space): runs of
# spaces after a full stop made three of them try every split of the run (2000 spaces: 72 s).
_ANSWER_LABEL = re.compile(r"(?:^|\n|(?<=[.!?])[ \t])[ \t]*(?:[*_#>\-][*_#>\- \t]*)?(?:final\s+)?answer"
                           r"\s*[*_]*\s*:\s*[*_]*[ \t]*", re.IGNORECASE)
# GSM8K's answer line. A Markdown heading is written the same way ("#### Step 2: Check"), so the answer
# after it counts only when it holds no word (LaTeX commands such as `\frac` are not words).
_HASH_ANSWER = re.compile(r"(?:^|\n)[ \t]*####(?!#)[ \t]*")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
# "the answer is not 5, it is 6": the negated value (a math span, a number phrase or one token) to skip.
# "not only 5 but also 6" negates nothing.
_NEGATED = re.compile(r"[*_ \t]*not[*_]*\s+(?!(?:only|just|merely|simply)\b)"
                      r"(?:\$[^$\n]{1,200}\$|\\\(.{1,200}?\\\)|" + NUMBER_PHRASE + r"|\S+)", re.IGNORECASE)
# Bounded spans: an unclosed `\(` must not make the search quadratic in the completion's length.
# `\$` is an escaped dollar (in or out of a span), never a delimiter. An inline `$...$` follows Pandoc's
# rule, so that currency is not math: the opening `$` has no space after it, the closing one no space
# before it and no digit after it ("costs $3, so 4 cost $12" holds no span; "$\$12.00$" is one).
_MATH_SPAN = re.compile(r"(?<!\\)\$\$((?:\\.|[^$\\]){1,1000})\$\$"
                        r"|(?<![\\$])\$(?![\s$])((?:\\.|[^$\\\n]){1,1000}?)(?<!\s)\$(?![\d$])"
                        r"|\\\((.{1,1000}?)\\\)|\\\[(.{1,1000}?)\\\]",
                        re.DOTALL)
# Limits on the work spent on pathological text: braces scanned per \boxed, \boxed tried, and how far
# from the end the last-number/last-LaTeX fallback looks.
MAX_BOXED_CHARS = 4000
MAX_BOXED_TRIED = 16
FALLBACK_TAIL_CHARS = 4000
# A tuple or an interval of two or more numbers in the fallback: "(2, 3)", "[1, 3)", "(-1/2, 4.5, 0)",
# "(0, ∞)". "(1,000)" is a number with a thousands separator, not a tuple (see `_fallback`).
_TUPLE_ITEM = r"[-−]?(?:\d+(?:\.\d+)?(?:/\d+)?|\.\d+|∞|\\infty)"
_TUPLE = re.compile(r"[(\[][ \t]*" + _TUPLE_ITEM + r"(?:[ \t]*,[ \t]*" + _TUPLE_ITEM + r"){1,9}[ \t]*[)\]]")
_THOUSANDS = re.compile(r"[(\[]-?\d{1,3}(?:,\d{3})+[)\]]")
# A numbered step or list item at the start of a line ("2. Check", "**Step 3:** Add", "#### 4) Sum"): its
# number is a marker, never the answer.
_LIST_MARKER = re.compile(r"(?:^|\n)[ \t]*(?:#{1,6}[ \t]*)?[*_]*(?:(?:step|part)[ \t]+)?(\d{1,3})[.:)][*_]*[ \t]+(?=[A-Za-z*_])",
                          re.IGNORECASE)
# An exact value, then an approximation sign, at the end of the text before the last number: "1/3 ≈ ",
# "$\frac{1}{3}$ \approx ". Only a fraction or a math span: "3.14 * 2^2 ≈ 12.57" approximates no "2".
_EXACT_THEN_APPROX = re.compile(r"(?:^|(?<=[\s=(:,]))(-?\d+[ \t]*/[ \t]*\d+|\$[^$\n]{1,200}\$|\\\([^\n]{1,200}?\\\))"
                                r"[ \t]*(?:≈|\$?\\approx\$?)[ \t]*\$?[ \t]*$")
_OPERATOR_BEFORE = re.compile(r"(?:[-+*/^×÷·]|\\cdot|\\times)[ \t]*$")
# A choice letter at the start of a final answer: "(B)", "B.", "B) 12", "B is right"; in lower case only
# "(b)", "b)", "b.", "b:" or a bare "b", never a letter followed by more words ("a tricky one" is an
# English article, not choice A).
_CHOICE = re.compile(r"^(?:\(([A-Ea-e])\)|\(?([A-E])\)?(?:[.:)]|\s|$)|([a-e])(?:[.:)]|$))")
# Where the answer phrase after "the answer is" / "Answer:" ends: a full stop or semicolon followed by
# space (a full stop inside "3.5" is not a break), an em dash, or a word that starts a new clause, optionally
# after a comma ("as" and "not" only after one: "the same as 5", "7 and not 5"). "and"/"or" are left out
# on purpose: "1, 2 and 3" or "3 or 4" is the answer as written; only ", and" before a pronoun starts a
# new clause ("5 apples, and she gives 2 away").
# Lookbehinds make each run of spaces start at most one attempt, and possessive `\s++` never
# backtracks, so the search stays linear on a long line.
_CLAUSE_BREAK = re.compile(
    r"\.\s|;\s|(?<=\S)\s*+—"
    r"|(?<=[^\s,]),?\s++(?:because|since|so|which|but|hence|thus|therefore|given|where|when)\b"
    r"|(?<=[^\s,]),\s++(?:as|not)\b"
    r"|(?<=[^\s,]),\s++and\s++(?:she|he|they|it|we|i|you|there|then|this|that)\b",
    re.IGNORECASE)
# Unicode's vulgar fractions, as (numerator, denominator).
_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5),
           "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅐": (1, 7), "⅛": (1, 8), "⅜": (3, 8),
           "⅝": (5, 8), "⅞": (7, 8), "⅑": (1, 9), "⅒": (1, 10)}
_VULGAR_CHAR = re.compile("[" + "".join(_VULGAR) + "]")
# Thousands grouped by a space, a no-break or thin space, or LaTeX's `\,` ("12 500", "1\,000"): a group of
# three digits that no digit or fraction slash follows.
_SPACE_SEPARATOR = r"(?:\\,|[ \u00a0\u2009\u202f])"
# One number as written in prose: a minus sign (`-` or Unicode's `−`), then a mixed number ("2 1/2", "2 and
# 1/2", "2 ½", "2½"), or an integer (thousands grouped by commas or spaces) with decimals, a ratio or clock
# time ("3:2", "3:45") and a fraction ("3/4"), or a decimal without its leading zero (".5"). The mixed
# number is tried first, so "2 1/2" is not "2".
_NUMBER_CORE = (r"[-−]?(?:\d+[ \t]+(?:and[ \t]+)?\d{1,9}[ \t]*/[ \t]*\d{1,9}(?!\d|\.\d)"
                r"|(?:\d+[ \t]?)?" + _VULGAR_CHAR.pattern +
                r"|(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:" + _SPACE_SEPARATOR + r"\d{3})+(?![\d/])|\d+)(?:\.\d+)?"
                r"(?::\d+){0,2}(?:[ \t]*/[ \t]*\d+)?"
                r"|(?<![\w.])\.\d+)")  # a decimal without its leading zero (".5"), never the end of "3.5" or "v1.5"
_NUMBER = re.compile(_NUMBER_CORE + r"(?:[ \t]*\\?%)?")
# A number (optionally after a currency sign, optionally a percentage) followed by one to four plain words
# and nothing else ("2½ cups", "50% of the total", "60 km/h", "36 cm^2" too).
_UNIT_WORD = r"[A-Za-z]{2,}(?:/[A-Za-z]{1,4})?(?:\^\{?[23]\}?|[²³])?"
_NUMBER_THEN_WORDS = re.compile(
    r"(?:\\?\$)?[ \t]*(" + _NUMBER_CORE + r"(?:[ \t]*\\?%)?)[ \t]+(" + _UNIT_WORD + r"(?:[ \t-]+" + _UNIT_WORD
    + r"){0,3})")
# A mixed number, to be written as math-verify reads one ("2\frac{1}{2}" is 5/2; "2 1/2" is not).
_MIXED = re.compile(r"([-−]?\d+)(?:[ \t]+(?:and[ \t]+)?(\d{1,9})[ \t]*/[ \t]*(\d{1,9})|[ \t]?(" + _VULGAR_CHAR.pattern
                    + r"))")
_SPACED_GROUP = re.compile(r"(?<=\d)" + _SPACE_SEPARATOR + r"(?=\d{3}(?!\d))")
# Words after a number that are math or change its value, not a unit: "3 pi", "10 percent" (math-verify
# reads it as 0.1 as well), "5 squared", "3 or more", "2 to the power".
_NOT_UNIT_WORDS = frozenset({"pi", "percent", "sqrt", "root", "roots", "squared", "cubed", "factorial", "or",
                             "plus", "minus", "over", "divided", "mod", "modulo", "choose", "to", "power",
                             "thousand", "thousands", "million", "millions", "billion", "billions",
                             "hundred", "hundreds", "dozen", "dozens", "half", "halves", "third", "thirds",
                             "quarter", "quarters", "fifths", "tenths", "hundredths"})
_CHOICE_IN_TEXT = re.compile(r"\(([A-E])\)")
# A choice letter the completion rules out, not one it settles on: a negation just before it ("not (B)", "isn't
# (B)", "rather than (B)", "instead of (B)", "except (B)", "eliminate (B)", "rule out (B)", "neither (A) nor (B)")
# or a verdict just after it ("(B) is wrong", "(B) can't be", "(B) fails"; "(A), (B) and (D) are wrong" for each).
_NEGATION_BEFORE_CHOICE = re.compile(
    r"(?:\bnot|n['’]t(?:[ \t]+be)?|\bnever(?:[ \t]+be)?|\brather[ \t]+than|\binstead[ \t]+of|\bexcept(?:[ \t]+for)?"
    r"|\bexclud\w*|\beliminat\w*|\brul\w*[ \t]+out|\bnor|\bneither|\bagainst)[\s*_:]*(?:(?:option|choice|answer)[\s*_]*)?$",
    re.IGNORECASE)
_CHOICE_LIST_ITEM = r"(?:,[ \t]*(?:(?:and|or)[ \t]+)?|(?:and|or|nor)[ \t]+)\(?[A-E]\)?[*_]*[ \t]*"
_NEGATION_AFTER_CHOICE = re.compile(
    r"[*_]*[ \t]*(?:(?:" + _CHOICE_LIST_ITEM + r"){1,4}(?:are|were|seem|look)|(?:is|are|was|were|seems|looks))[ \t]+"
    r"(?:(?:also|clearly|definitely|obviously)[ \t]+)?(?:not\b|wrong|incorrect|false|invalid|impossible|ruled[ \t]+out"
    r"|eliminated|excluded)"
    r"|[*_]*[ \t]*(?:(?:isn|aren|wasn|can|doesn|don|won)['’]t\b|cannot\b|fails?\b)",
    re.IGNORECASE)
NEGATION_WINDOW_CHARS = 40
# A second choice after the first in a final answer: "(A) or (B)", "A and C".
_ANOTHER_CHOICE = re.compile(r"\([A-Ea-e]\)|\b(?:or|and)\s+\(?[A-E]\b")
# A second letter right after the choice, with only spaces or a separator between them: "B C", "B, C", "B/C".
_NEXT_CHOICE = re.compile(r"[ \t]*[,/&;]?[ \t]*\(?[A-E]\)?(?![A-Za-z])")
_GOLD_CHOICE = re.compile(r"^\(?([A-E])\)?$")


@dataclass(frozen=True)
class Extraction:
    """The answer text found in a completion and the rule that found it ("boxed", "boxes" for boxes listed
    or hedged together, "correction" for a value restated after a correction marker that follows the last box,
    "answer_is", "label", "latex", "tuple", "number", "numbers" for numbers listed or hedged together at the
    end, "number_word", "choice")."""

    text: str
    source: str


def _balanced_from(text: str, start: int) -> str | None:
    """The text from `start` up to the brace that closes the one just before `start`, or None."""
    depth = 1
    for i in range(start, min(len(text), start + MAX_BOXED_CHARS)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


@dataclass(frozen=True)
class _Box:
    start: int  # of `\boxed`
    end: int  # after its closing brace
    inner: str  # stripped


def _boxes(text: str) -> list[_Box]:
    """The last MAX_BOXED_TRIED boxes with balanced braces and something inside, in order."""
    found = []
    for m in list(_BOXED.finditer(text))[-MAX_BOXED_TRIED:]:
        inner = _balanced_from(text, m.end())
        if inner is not None and inner.strip():
            found.append(_Box(m.start(), m.end() + len(inner) + 1, inner.strip()))
    return found


# Between two boxes, text that only lists them: spaces, punctuation, math delimiters, LaTeX spacing, "or",
# "and", and a variable being set ("x = \boxed{2} or x = \boxed{3}"). One character or word per step.
_LIST_GAP = re.compile(r"(?:[\s,;/&$.]|\\[()\[\],;:! ]|\\q?quad\b|\\text\s*\{\s*(?:or|and)?\s*,?\s*\}|\b(?:or|and)\b"
                       r"|\b[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=)*", re.IGNORECASE)
# Between two boxes, words that offer the second as an alternative, and words that replace the first.
_HEDGE = re.compile(r"\b(?:or|alternatively|either|possibly|perhaps|maybe|might|could)\b", re.IGNORECASE)
_CORRECTION = re.compile(r"\b(?:but|wait|actually|mistake|wrong|incorrect|instead|re-?check\w*|correct\w*|however|oops"
                         r"|error|no|not|reconsider|revisit|redo|verify|double-check\w*)\b", re.IGNORECASE)
# How far apart a hedge's boxes may be; further apart, the later box is a new conclusion.
MAX_HEDGE_GAP_CHARS = 200


def _boxed_answers(text: str) -> list[_Box]:
    """The last box, preceded by the boxes it is listed with or offered as an alternative to (see module
    docstring, rule 1); [] when there is no box. "I first thought \\boxed{41} but it is \\boxed{42}" is a
    correction: the box of 42. "\\boxed{5} or \\boxed{6}" is a hedge: both boxes."""
    boxes = _boxes(text)
    if not boxes:
        return []
    chain = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        gap = text[box.end:chain[0].start] if box.end <= chain[0].start else None  # None: nested boxes
        if gap is None or len(gap) > MAX_HEDGE_GAP_CHARS:
            break
        if not (_LIST_GAP.fullmatch(gap) or (_HEDGE.search(gap) and not _CORRECTION.search(gap))):
            break
        chain.insert(0, box)
    return chain


def _cut_at_clause_break(line: str) -> str:
    """`line` up to its first clause break (see `_CLAUSE_BREAK`) outside `{...}` and math spans: "5 because
    2+3 = 5" -> "5", "5, since ..." -> "5", "3.5. Next" -> "3.5". A break at the very start cuts nothing
    ("not 5" stays whole). One pass over the line."""
    spans = [(s.start(), s.end()) for s in _MATH_SPAN.finditer(line)]
    i = depth = counted = 0
    for m in _CLAUSE_BREAK.finditer(line):
        seen = line[counted:m.start()]
        depth += seen.count("{") - seen.count("}")
        counted = m.start()
        while i < len(spans) and spans[i][1] <= m.start():  # spans[i]: the first ending after the break
            i += 1
        in_math = i < len(spans) and spans[i][0] < m.start()
        if m.start() > 0 and depth <= 0 and not in_math:
            return line[:m.start()]
    return line


def _strip_emphasis(text: str) -> str:
    """Markdown emphasis, code quotes and a sentence's full stop off both ends: "**5**." -> "5", "*x = 2*"
    -> "x = 2", "`5`" -> "5", "3.5." -> "3.5" (one pass per end)."""
    return text.lstrip("*_` \t").rstrip("*_.` \t")


# A closing remark in parentheses after the answer: "7 (seven)", "12 (since 3 * 4 = 12)". It starts with
# a word of two letters or more, so "(mod 5)" counts and "f(x)", "(a)", "(2, 3)" do not.
_TRAILING_ASIDE = re.compile(r"(?<!\s)\s+\((?=[A-Za-z]{2})[^()]*\)\W*$")  # one attempt per run of spaces


def _clean_tail(fragment: str) -> str:
    """The answer at the start of `fragment`: the rest of its line up to the end of the answer phrase (a
    clause break: ". ", "; ", an em dash, or a connective such as "because" or ", since"), with a leading
    math span's delimiters, Markdown emphasis and a sentence full stop removed."""
    line = fragment.split("\n", 1)[0].strip()
    line = line.strip("*_` ").strip()
    m = _MATH_SPAN.match(line)
    if m:
        return next(g for g in m.groups() if g is not None).strip()
    return _without_aside(_strip_emphasis(_cut_at_clause_break(line)))


def _without_aside(answer: str, *, boxed: bool = False) -> str:
    """`answer` less a closing remark in brackets that restates or explains it ("5 km (or 5000 m)", "12
    (a dozen)"), also inside a box; a hedge ("3 (or 4)") is kept: `_finish` reads it as a list. In a box,
    a bracket holding only a number ("3 (four)", "3 (three)") is kept too, for `_finish` to compare."""
    aside = _TRAILING_ASIDE.search(answer)
    if aside is None or aside.start() == 0 or _HEDGE_ASIDE.search(answer):
        return answer
    if boxed and _BRACKETED_NUMBER.fullmatch(answer[aside.start():].strip()):
        return answer
    return answer[:aside.start()].rstrip()


_BRACKETED_NUMBER = re.compile(r"\(\s*(?:" + NUMBER_PHRASE + r")\s*\)\W*", re.IGNORECASE)


# "12 dollars and 50 cents" as a whole answer is 12.50 (`_fallback` reads it the same at the end of a text).
_DOLLARS_AND_CENTS = re.compile(r"\\?\$?[ \t]*(\d{1,15})[ \t]+dollars?,?[ \t]+and[ \t]+(\d{1,2})[ \t]+cents?",
                                re.IGNORECASE)


def _drop_unit_words(text: str) -> str:
    """`"10 cookies"` -> `"10"`, `"$12 dollars per hour"` -> `"12"`, `"3/4 cup"` -> `"3/4"`, `"50% of the
    total"` and `"50 percent of the total"` -> `"50%"`, `"10 dollars and 5 cents"` -> `"10.05"`; anything else
    (`"3 pi"`, `"10 percent"`, `"3 or 4"`, `"x = 2"`, `"5 \\text{ cm}"`, `"50% of 80"`) unchanged."""
    money = _DOLLARS_AND_CENTS.fullmatch(text)
    if money:
        return f"{money.group(1)}.{int(money.group(2)):02d}"
    m = _NUMBER_THEN_WORDS.fullmatch(text)
    if m is None:
        return text
    number, words = m.group(1), re.split(r"[ \t-]+", m.group(2))
    if words[0].lower() == "percent" and len(words) > 1 and not number.endswith("%"):
        number, words = number + "%", words[1:]  # "50 percent of the total"; "10 percent" alone stays
    if any(w.lower() in _NOT_UNIT_WORDS for w in words):
        return text
    return number


def _written_number(number: str, *, improper_as_fraction: bool = False) -> str:
    """One number (see `_NUMBER_CORE`) as math-verify reads it: a mixed number `"2 1/2"`, `"2 and 1/2"` or
    `"2 ½"` -> `"2\\frac{1}{2}"` / `"2½"` (math-verify reads `"2 1/2"` as neither 5/2 nor 1), grouped
    thousands `"12 500"`, `"1\\,000"` -> `"12500"`, `"1000"`. A whole number before an improper fraction
    ("3 4/2") is no mixed number: it stays, or with `improper_as_fraction` only the fraction is kept."""
    m = _MIXED.fullmatch(number)
    if m:
        whole, numerator, denominator, vulgar = m.groups()
        if vulgar:
            return whole + vulgar
        if int(numerator) < int(denominator):
            return f"{whole}\\frac{{{numerator}}}{{{denominator}}}"
        return number[m.start(2):] if improper_as_fraction else number
    return _SPACED_GROUP.sub("", number)


# An answer that states one number twice, in digits and in words: "3 or three", "three (3)", "3 (three)
# apples", "three apples (3 apples)". Group pairs: the two values and the unit words around them.
_DIGITS_VALUE = r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?"
_STATED = rf"(?:\\?\$)?[ \t]*({_DIGITS_VALUE}|{NUMBER_PHRASE})((?:[ \t]+[A-Za-z]{{2,}}){{0,4}})"
_RESTATED = re.compile(rf"{_STATED}(?:,?[ \t]+or[ \t]+{_STATED}|[ \t]*\([ \t]*{_STATED}[ \t]*\)((?:[ \t]+[A-Za-z]{{2,}}){{0,4}}))",
                       re.IGNORECASE)


def _stated_value(text: str) -> Fraction | None:
    """The value of a number in digits or words ("3", "1,000", "three", "one half"), or None."""
    digits = text.replace(",", "").replace("−", "-") if text[-1].isdigit() else phrase_value(text)
    try:
        return Fraction(digits) if digits is not None else None
    except (ValueError, ZeroDivisionError):
        return None


def _restated_number(text: str) -> str | None:
    """The digits of an answer that states one value in digits and in words (`"3 or three"`, `"three (3)"`,
    `"3 (three) apples"`), or None: two different values (`"3 or four"`, `"3 or 4"`) are a hedge, kept as
    written."""
    m = _RESTATED.fullmatch(text)
    if m is None:
        return None
    first, second = m.group(1), m.group(3) or m.group(5)
    units = " ".join(g for g in m.groups()[1::2] if g) + " " + (m.group(7) or "")
    if not _plain_words(units, _NOT_UNIT_WORDS | WORDS | {"and"}):
        return None
    value = _stated_value(first)
    if value is None or value != _stated_value(second):
        return None
    return first if first[-1].isdigit() else second if second[-1].isdigit() else str(value)


# Unicode math that math-verify does not read (it reads π, ×, ÷ and the minus sign −).
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
_SUPERSCRIPT_RUN = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+")
# Decimal digits of other scripts and of Unicode's mathematical alphabets ("𝟑", "٣"): `\d` finds them, and
# math-verify does not read them. (Superscripts are no decimal digits: `\d` does not match them.)
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")
# Characters that show nothing: zero-width spaces and joiners, the word joiner, a byte-order mark, a soft
# hyphen. Inside a number ("3\u200b4") they hid it from math-verify; between boxes they hid a list.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200d\u2060\ufeff]")


# An HTML comment, which Markdown shows nothing of; one left open hides the rest of the text.
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)


def drop_invisible(text: str) -> str:
    """`text` without what shows nothing: characters (see `_INVISIBLE`) and HTML comments (a space each,
    so that the words around one stay apart). What a reader sees is what is scored: a `\\boxed{3}` in a
    comment before "The answer is 4." scored 3."""
    if "<!--" in text:
        text = _HTML_COMMENT.sub(" ", text)
    return text if text.isascii() else _INVISIBLE.sub("", text)
# A root sign and what it covers: a parenthesised group without nested parentheses, a number, or a letter.
_ROOT = re.compile(r"([√∛∜])\s*(?:\(([^()]{1,200})\)|(\d+(?:\.\d+)?|[A-Za-z]))")
_ROOT_INDEX = {"√": "", "∛": "[3]", "∜": "[4]"}
# An en dash used as a minus sign: at the start, or after a space, `(`, `=` or `,`, before a digit.
_DASH_MINUS = re.compile(r"(?:^|(?<=[\s(=,]))–(?=\d)")
_SYMBOLS = {"∞": r"\infty ", "≤": r"\le ", "≥": r"\ge ", "≠": r"\ne ", "⁄": "/"}
_SYMBOL_CHAR = re.compile("[" + "".join(_SYMBOLS) + "]")


def unicode_math(text: str) -> str:
    """Unicode math written as LaTeX that math-verify reads: `"√2"` -> `"\\sqrt{2}"`, `"2√(x+1)"` ->
    `"2\\sqrt{x+1}"`, `"∛8"` -> `"\\sqrt[3]{8}"`, `"x²"` -> `"x^{2}"`, `"10⁻³"` -> `"10^{-3}"`, `"½"` ->
    `"\\frac{1}{2}"` (`"2½"` is the mixed number 2 1/2, as math-verify reads `2\\frac{1}{2}`), `"∞"`,
    `"≤"`, `"≥"`, `"≠"`, the fraction slash `⁄`, full-width digits (`"７"`), digits of other scripts and of
    the mathematical alphabets (`"٣"`, `"𝟑"`), and an en dash used as a
    minus sign (`"–5"`). Text
    without these characters is returned as it is."""
    if text.isascii():
        return text
    text = _OTHER_DIGIT.sub(lambda m: str(unicodedata.decimal(m.group(0))), text.translate(_FULLWIDTH_DIGITS))
    text = _ROOT.sub(lambda m: f"\\sqrt{_ROOT_INDEX[m.group(1)]}{{{m.group(2) or m.group(3)}}}", text)
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^{" + m.group(0).translate(_SUPERSCRIPT) + "}", text)
    text = _VULGAR_CHAR.sub(lambda m: "\\frac{{{}}}{{{}}}".format(*_VULGAR[m.group(0)]), text)
    text = _SYMBOL_CHAR.sub(lambda m: _SYMBOLS[m.group(0)], text)
    return _DASH_MINUS.sub("-", text)


def strip_math_delimiters(text: str) -> str:
    """`"$x = 2$"` -> `"x = 2"`; `"\\(1/2\\)"` -> `"1/2"`; anything else unchanged (stripped)."""
    t = text.strip()
    m = _MATH_SPAN.fullmatch(t)
    if m:
        return next(g for g in m.groups() if g is not None).strip()
    return t


# Words after a number word that make it something else than the answer: more number ("ten thousand", "one
# and a half"), a part of a whole ("one of them"), "one" used as a pronoun ("one by one", "one another"), or a
# share ("two each", "ten per box").
_NOT_AFTER_NUMBER_WORD = _NOT_UNIT_WORDS | WORDS | {"of", "and", "another", "by", "more", "less", "fewer", "each", "per",
                                                     "apiece"}
# Words just before a number word at the end of a text that make it no exact answer ("more than ten", "at
# least two", "between five and ten", "one to two"), a label ("step two", "part three") or a thing named
# rather than counted ("the two steps", "both three").
_NOT_BEFORE_NUMBER_WORD = frozenset({"than", "least", "most", "about", "around", "approximately", "roughly", "nearly",
                                     "almost", "over", "under", "per", "each", "every", "and", "or", "to", "between",
                                     "the", "these", "those", "all", "both", "first", "last", "next", "other", "my",
                                     "your", "our", "their", "his", "its", "step", "part", "case", "question",
                                     "problem", "exercise", "chapter", "section", "page", "option", "choice", "method",
                                     "number", "grade", "level", "round", "line", "row", "column", "figure", "table",
                                     "equation", "lemma", "theorem"})
_WORDS_THEN_UNITS = re.compile(rf"({NUMBER_PHRASE})((?:[ \t]+[A-Za-z']+){{0,4}})", re.IGNORECASE)
_WORDS_THEN_DIGITS = re.compile(rf"({NUMBER_PHRASE})((?:[ \t]+[A-Za-z']+){{0,4}})[ \t]*"
                                r"\((-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?)\)", re.IGNORECASE)
# What may follow a number word that ends a text: up to four plain words, then Markdown emphasis and a full
# stop or exclamation mark ("ten apples left.", "**twelve**!").
_WORD_ANSWER_END = re.compile(r"((?:[ \t]+[A-Za-z']+){0,4})[ \t]*[*_]*[.!]?[*_]*\s*$")


def _plain_words(words: str, exclude: frozenset[str]) -> bool:
    return not any(w.lower() in exclude for w in words.split())


def _number_words_to_digits(text: str) -> str:
    """`"ten"` -> `"10"`, `"twenty-five dollars"` -> `"25"`, `"one half"` -> `"1/2"`, `"ten (10)"` and
    `"five apples (5)"` -> the digits; anything else (`"ten thousand"`, `"one of them"`, `"ten (12)"`,
    `"x = 10"`) unchanged."""
    m = _WORDS_THEN_UNITS.fullmatch(text)
    if m and _plain_words(m.group(2), _NOT_AFTER_NUMBER_WORD):
        return phrase_value(m.group(1)) or text
    m = _WORDS_THEN_DIGITS.fullmatch(text)
    if m and _plain_words(m.group(2), _NOT_AFTER_NUMBER_WORD) and phrase_value(m.group(1)) == m.group(3).replace(",", ""):
        return m.group(3)
    return text


# A plain number as an answer, with a currency sign: the number itself is group 1.
_PLAIN_NUMBER = re.compile(r"(?:\\?\$)?[ \t]*(" + _NUMBER_CORE + r"(?:[ \t]*\\?%)?)")
# A word of a short sentence before its number ("The farmer has 15 cows"), and the words that make such a
# sentence something else than a statement of the answer: a bound ("at least 15"), a negation ("not 15",
# "impossible to have 15"), a hedge ("maybe 15"), or a label ("Step 3 adds 15").
_SENTENCE_WORD = re.compile(r"[A-Za-z']+,?")
MAX_SENTENCE_WORDS = 8
_NOT_IN_ANSWER_SENTENCE = _NOT_BEFORE_NUMBER_WORD - {"the", "and", "all", "both", "my", "your", "our", "their", "his",
                                                      "its", "these", "those", "other", "number"} | {
    "not", "no", "never", "cannot", "impossible", "neither", "nor", "none", "nothing", "if", "unless", "except",
    "without", "maybe", "perhaps", "possibly", "probably", "could", "might", "may", "either", "wrong", "incorrect",
    "false", "after", "before",
    "from", "plus", "minus", "times", "divided", "by", "of", "at", "as", "up", "down", "within", "least", "than"} | WORDS


def _number_ending_sentence(text: str, number_words: bool) -> str | None:
    """The number a short plain sentence states as the answer: `"The farmer has 15 cows"` -> `"15"`, `"She
    pays $18 in total"` -> `"18"`, with `number_words` `"She has ten apples"` -> `"10"`; None for anything
    else (`"She needs at least 5 boxes"`, `"Step 1 is wrong"`, `"Tom has 5 and Mary 7"`, `"x = 5"`)."""
    words = text.split(" ", MAX_SENTENCE_WORDS)
    for i in range(1, len(words)):
        word = words[i - 1]
        if (not _SENTENCE_WORD.fullmatch(word) or "n't" in word.lower()
                or word.rstrip(",").lower() in _NOT_IN_ANSWER_SENTENCE):
            return None
        rest = " ".join(words[i:])
        number = _PLAIN_NUMBER.fullmatch(_drop_unit_words(rest))
        if number:
            return number.group(1)
        if number_words:
            digits = _number_words_to_digits(rest)
            if digits != rest:
                return digits
    return None


# "negative 3" is -3; "1.2 x 10^3" is 1.2 \times 10^3 (math-verify reads the letter x as a variable).
_NEGATIVE_DIGITS = re.compile(r"negative[ \t]+(?=\d)", re.IGNORECASE)
_TIMES_TEN = re.compile(r"(?<=\d)[ \t]*[xX][ \t]*(?=10[ \t]*\^)")
# A whole answer in `\text{...}`: "\boxed{\text{seven}}".
_TEXT_WRAPPED = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]{1,100})\}")


# A closing remark that offers another value: "3 (or 4)", "3 (maybe 4)", "3 (or possibly 4 if we count day
# one)". math-verify reads "3 (or 4)" as 4, and dropping it as a remark ("7 (seven)") read it as 3: it is the
# hedge "3, 4". Only a number may follow the hedge word, then nothing or a condition ("if ..."): "5 km (or
# 5000 m)" restates the answer in another unit and stays a remark.
_HEDGE_WORD = r"(?:or|maybe|perhaps|possibly|probably|alternatively)\b[ \t]*"
_HEDGE_ASIDE = re.compile(r"(?<![ \t])[ \t]*\([ \t]*" + _HEDGE_WORD + "(?:" + _HEDGE_WORD + r")?,?[ \t]*(?:\\?\$[ \t]*)?("
                          + _NUMBER_CORE + r"(?:[ \t]*\\?%)?)[ \t]*(?:,?[ \t]*(?:if|when|unless|depending)\b[^()]{0,200})?\)\W*$",
                          re.IGNORECASE)
# Values each asked as a question: "3? 4? 5?" (math-verify reads the last one).
_QUESTIONED = re.compile(r"(?:(?:\\?\$[ \t]*)?" + _NUMBER_CORE + r"(?:[ \t]*\\?%)?[ \t]*\?[ \t]*(?:or[ \t]+)?){2,8}",
                         re.IGNORECASE)
# A bound or an inequality sign before the whole answer: "\geq 3", "≥ 3", "> 2". math-verify drops the sign
# and reads 3; it is an inequality ("x \geq 3"), which equals no number.
_LEADING_BOUND = re.compile(r"(?:\\(?:geq?|leq?|gt|lt|geqslant|leqslant)(?![A-Za-z])|[<>≤≥⩾⩽])")
# A LaTeX line break between values in a box ("\boxed{3 \\ 4}", "x = 1 \\ y = 2") outside an environment
# (a matrix or `cases` keeps its rows): math-verify keeps only the last row, so it lists them.
_LINE_BREAK = re.compile(r"[ \t]*\\\\(?:\[[^\]\n]{0,20}\])?[ \t]*")


def bound_as_inequality(answer: str) -> str:
    """`"\\geq 3"` -> `"x \\geq 3"`: an answer that is only a bound is an inequality (see `_LEADING_BOUND`);
    anything else unchanged. The scorer writes a gold answer the same way, so "\\geq 3" equals "\\geq 3"."""
    return "x " + answer if _LEADING_BOUND.match(answer) else answer


def _hedges_as_list(answer: str) -> str:
    """A hedge inside one answer as the list it offers: `"3 (or 4)"` -> `"3, 4"`, `"3? 4?"` -> `"3, 4"`,
    `"3 \\\\ 4"` -> `"3, 4"` (see `_HEDGE_ASIDE`, `_QUESTIONED`, `_LINE_BREAK`); `"1/2 (or 0.5)"`, one value
    stated twice, -> `"1/2"`; anything else unchanged."""
    if _QUESTIONED.fullmatch(answer):
        return ", ".join(dict.fromkeys(_number_text(m) for m in _NUMBER.finditer(answer)))
    if "\\\\" in answer and "\\begin" not in answer:
        return _LINE_BREAK.sub(", ", answer).strip(", ")
    hedge = _HEDGE_ASIDE.search(answer)
    if hedge is None or hedge.start() == 0:
        return answer
    first, second = answer[:hedge.start()].strip(), _written_number(hedge.group(1).strip(), improper_as_fraction=True)
    plain = _PLAIN_NUMBER.fullmatch(_drop_unit_words(first))
    if plain:
        number = _written_number(plain.group(1).strip(), improper_as_fraction=True)
        value = _numeric_value(number)
        if value is not None and value == _numeric_value(second):
            return first  # "1/2 (or 0.5)": one value, restated
        return f"{number}, {second}"
    return f"{first}, {second}"


def _finish(answer: str, number_words: bool) -> str:
    """The answer text of rules 1 to 3: a hedge inside it as a list ("3 (or 4)" -> "3, 4"), a bound as an
    inequality ("\\geq 3" -> "x \\geq 3"), one value stated in digits and words as its digits ("3 or
    three"), unit words dropped, number words as digits when asked for, the number of a short sentence that
    states it ("The farmer has 15 cows"), and a mixed number or grouped thousands as math-verify reads them."""
    answer = bound_as_inequality(_hedges_as_list(answer))
    answer = _TIMES_TEN.sub(r" \\times ", answer)
    negative = _NEGATIVE_DIGITS.match(answer)
    if negative:
        answer = "-" + answer[negative.end():]
    answer = _restated_number(answer) or _drop_unit_words(answer)
    if number_words:
        wrapped = _TEXT_WRAPPED.fullmatch(answer)
        inner = wrapped.group(1).strip() if wrapped else answer
        digits = _number_words_to_digits(inner)
        answer = digits if digits != inner else answer
    if answer[:1].isalpha():
        answer = _number_ending_sentence(answer, number_words) or answer
    plain = _PLAIN_NUMBER.fullmatch(answer)
    return _written_number(plain.group(1)) if plain and _written_number(plain.group(1)) != plain.group(1) else answer


def normalize_gold(gold: str) -> str:
    """A gold answer written as extraction writes a completion's final answer (`_finish`: unit words
    dropped, a mixed number or grouped thousands as math-verify reads them, "negative 3" as -3, number
    words as digits): a completion that states the gold verbatim ("10 cookies", "2 1/2", "12 500") is
    read that way, and must equal it."""
    return _finish(gold, number_words=True)


def _final_number_word(tail: str) -> _Value | None:
    """The number phrase that ends `tail` (see module docstring, rule 4), as its digits, or None."""
    offset = max(0, len(tail) - 200)
    end_part = tail[offset:]
    phrases = find_number_phrases(end_part)
    if not phrases:
        return None
    last = phrases[-1]
    after = _WORD_ANSWER_END.match(end_part, last.end())
    if after is None or not _plain_words(after.group(1), _NOT_AFTER_NUMBER_WORD):
        return None
    before = [w.strip("*_,").lower() for w in end_part[:last.start()].split()[-2:]]
    if before and before[-1] in _NOT_BEFORE_NUMBER_WORD:
        return None
    if last.group(0).lower() == "one":  # unlabelled, far more often a pronoun: "one for each friend", "this one"
        return None
    digits = phrase_value(last.group(0))
    return _Value(offset + last.start(), offset + last.end(), digits) if digits is not None else None


def _exact_before_approximation(before: str) -> Extraction | None:
    """The exact value that `before` ends with, followed by an approximation sign ("1/3 ≈ "), or None; a
    value after an operator ("1 - 5/36 ≈ ") is only part of an expression."""
    window = before[-250:]
    m = _EXACT_THEN_APPROX.search(window)
    if m is None or _OPERATOR_BEFORE.search(window, 0, m.start(1)):
        return None
    value = m.group(1)
    if value.startswith(("$", "\\(")):
        span = _MATH_SPAN.fullmatch(value)
        if span is None:
            return None
        return Extraction(next(g for g in span.groups() if g is not None).strip(), "latex")
    return Extraction(value, "number")


# Between math spans that list the answers at the end of a text: "$x = -1$ or $x = 4$", "$2$, $3$ and $5$".
_SPAN_LIST_GAP = re.compile(r"[ \t]*(?:,[ \t]*(?:(?:or|and)[ \t]+)?|(?:or|and)[ \t]+)", re.IGNORECASE)
MAX_LISTED_SPANS = 8
# The variable a math span sets ("x = 2", "x_1 = 2"): listed spans must all set the same one, or none.
_SETS_VARIABLE = re.compile(r"([A-Za-z](?:_\{?\w{1,3}\}?)?)\s*=")
# Before the last number: an inequality sign ("so x ≥ 3", "n > 2"): the answer is that bound, never 3.
# Right before a number: plus-or-minus ("x = ±3", "$\pm$ 2", "+/- 4"): the number is both roots.
_PLUS_MINUS_BEFORE = re.compile(r"(?:±|\\pm(?![A-Za-z])|\+/-)[ \t]*\$?[ \t]*$")
_BOUND_BEFORE = re.compile(r"(?:[<>≤≥⩾⩽]|\\(?:geq?|leq?|gt|lt|geqslant|leqslant)(?![A-Za-z]))[ \t]*=?[ \t]*\$?[ \t]*$")
# Before a number: the exponent of a unit ("cm^2", "m^{3}"), which is not the answer.
_UNIT_EXPONENT_BEFORE = re.compile(r"[A-Za-z]\^\{?$")
# "12 dollars and 50 cents": what comes before the cents, and the word after them.
_DOLLARS_BEFORE_CENTS = re.compile(r"(\d{1,15})[ \t]+dollars?,?[ \t]+and[ \t]+$", re.IGNORECASE)
_CENTS_AFTER = re.compile(r"[ \t]+cents?\b", re.IGNORECASE)


def _listed_spans(tail: str, spans: list[re.Match[str]]) -> Extraction:
    """The last math span, preceded by the spans only listed with it (see `_SPAN_LIST_GAP`): "$x=-1$ or
    $x=4$" -> "x=-1, x=4", a list that equals only a gold answer listing both values, never 4 alone.
    Spans that set different variables ("$a = 2$ and $b = 3$") are not one answer: the last one is."""
    def inner(span: re.Match[str]) -> str:
        return next(g for g in span.groups() if g is not None).strip()

    def variable(value: str) -> str | None:
        sets = _SETS_VARIABLE.match(value)
        return sets.group(1) if sets else None

    chain = [inner(spans[-1])]
    for prev in reversed(spans[-MAX_LISTED_SPANS:-1]):
        value = inner(prev)
        if variable(value) != variable(chain[0]) or not _SPAN_LIST_GAP.fullmatch(tail, prev.end(), spans[-len(chain)].start()):
            break
        chain.insert(0, value)
    return Extraction(", ".join(dict.fromkeys(chain)), "latex")


# Rule 4's hedges and lists of plain numbers: "2 or 3", "x = 2 or x = 3", "2, or maybe 3", "2, 3 or 4", and
# in a sentence that lists solutions or values, "2 and 3". Between two values: one connective (", ", " or ",
# ", or maybe ", " (or ", " and ", ", and "), then a variable being set ("x = ") and a currency sign, nothing
# else: "2 + 3 = 5", "from 2 to 3", "3 out of 4", "Step 2 or step 3", "she gave 2 and kept 3" are no lists.
_NUMBER_LIST_GAP = re.compile(
    r"[ \t]*(?:(?P<or>,?[ \t]*\(?[ \t]*or[ \t]+(?:(?:maybe|perhaps|possibly|probably)[ \t]+)?)"
    r"|(?P<and>,?[ \t]*and[ \t]+)|(?P<ask>\?[ \t]*(?:or[ \t]+)?)|,[ \t]*)"
    r"(?:(?P<var>[A-Za-z](?:_\{?\w{1,3}\}?)?)[ \t]*=[ \t]*)?(?:\\?\$[ \t]*)?", re.IGNORECASE)
# A question mark right after the last number: "3? 4? 5?" asks, "How many after 3 days? 12" answers.
_ASKED_AFTER = re.compile(r"[ \t]*\?")
# The variable a number is the value of: "x = " or "x_1 = $" just before it.
_VARIABLE_BEFORE = re.compile(r"(?<![A-Za-z\\])([A-Za-z](?:_\{?\w{1,3}\}?)?)[ \t]*=[ \t]*(?:\\?\$[ \t]*)?$")
# A sentence that lists solutions or values, for "and" and a bare comma between numbers: "The solutions
# are x = 2 and x = 3", "the roots of f are 2, 3 and 5", "Possible values: 2 and 3". Looked for between the
# sentence's start and the list ("Of the possible values, after 2 rounds, 3 remain" lists nothing).
_LISTS_VALUES = re.compile(r"\b(?:solutions|roots|answers|values|zeros|zeroes|possibilities)\b[^.!?\n]{0,80}?(?:\bare\b|:)",
                           re.IGNORECASE)
_SENTENCE_START = re.compile(r".*(?:[.!?][ \t]|\n)", re.DOTALL)
# A number phrase listed after the last number in digits: "2 or three", "x = 2 or x = three"; `after` is the
# word after it ("2 or one of them" lists nothing).
_WORD_AFTER_NUMBER = re.compile(_NUMBER_LIST_GAP.pattern + r"(?P<phrase>" + NUMBER_PHRASE + r")[ \t]*(?P<after>[A-Za-z]*)",
                                re.IGNORECASE)
# How far apart listed numbers may be, how many are read, and how far before the list its sentence is read.
MAX_NUMBER_GAP_CHARS = 40
MAX_LISTED_NUMBERS = 8
LISTED_NUMBERS_CHARS = MAX_LISTED_NUMBERS * 60
LIST_SENTENCE_CHARS = 150


@dataclass(frozen=True)
class _Value:
    start: int
    end: int
    text: str  # as math-verify reads it: "2 1/2" -> "2\\frac{1}{2}", "three" -> "3"


def _number_text(number: re.Match[str]) -> str:
    return _written_number(number.group(0).strip(), improper_as_fraction=True)


def _numeric_value(text: str) -> Fraction | None:
    """The value of one number as `_Value.text` holds it ("2", "-1,000", "50%", "3/4", "2\\frac{1}{2}",
    "2½"), or None (a ratio or clock time)."""
    t = text.replace("−", "-").replace(",", "").replace("\\%", "%")
    scale = Fraction(1, 100) if t.endswith("%") else Fraction(1)
    t = t.rstrip("%").strip()
    mixed = re.fullmatch(r"(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", t)
    vulgar = _VULGAR.get(t[-1:]) if t else None
    try:
        if mixed:
            sign, whole, num, den = mixed.groups()
            value = int(whole) + Fraction(int(num), int(den))
            return (-value if sign else value) * scale
        if vulgar:
            whole_text = t[:-1].strip()
            whole = Fraction(whole_text) if whole_text not in ("", "-") else Fraction(0)
            value = abs(whole) + Fraction(*vulgar)
            return (-value if whole_text.startswith("-") else value) * scale
        return Fraction(t.replace(" ", "")) * scale
    except (ValueError, ZeroDivisionError):
        return None


def _in_list_sentence(tail: str, start: int) -> bool:
    """Whether the sentence that `start` is in names solutions or values before it ("The solutions are")."""
    window = tail[max(0, start - LIST_SENTENCE_CHARS):start]
    sentence_start = _SENTENCE_START.match(window)
    return _LISTS_VALUES.search(window, sentence_start.end() if sentence_start else 0) is not None


def _values_before(tail: str, end: int, numbers: list[re.Match[str]]) -> list[_Value]:
    """The numbers in digits (from `numbers`, the fallback's candidates) and number phrases that end within
    LISTED_NUMBERS_CHARS before `end`, in order."""
    start = max(0, end - LISTED_NUMBERS_CHARS)
    found = [_Value(m.start(), m.end(), _number_text(m)) for m in numbers if m.end() <= end and m.start() >= start]
    for phrase in find_number_phrases(tail[start:end]):
        digits = phrase_value(phrase.group(0))
        if digits is not None:
            found.append(_Value(start + phrase.start(), start + phrase.end(), digits))
    return sorted(found, key=lambda v: v.start)


def _listed_numbers(tail: str, last: _Value, before: list[_Value], source: str) -> Extraction:
    """`last`, preceded by the values in `before` (in order, the candidates that end before it) that are only
    listed with it (see `_NUMBER_LIST_GAP`): "x = 2 or x = 3" -> "2, 3" (source "numbers"), which equals only
    a gold answer listing both values, never 3 alone; else `last` alone with `source`. "or" lists always,
    a bare comma only before an "or" ("2, 3 or 4"); "and" and a bare comma list values only in a sentence
    that names solutions or values, or when the same variable is set to both ("x = 2 and x = 3"). Numbers
    that set different variables ("a = 2 or b = 3") are no list. Values stated twice count once ("1/2, or
    0.5" is 0.5)."""
    chain = [last]
    seen_or = False
    for prev in reversed(before[-MAX_LISTED_NUMBERS:]):
        if len(chain) == MAX_LISTED_NUMBERS:
            break
        head = chain[0]
        if prev.end > head.start:
            continue
        if head.start - prev.end > MAX_NUMBER_GAP_CHARS:
            break
        gap = _NUMBER_LIST_GAP.fullmatch(tail, prev.end, head.start)
        if gap is None:
            break
        prev_variable = _VARIABLE_BEFORE.search(tail, max(0, prev.start - 12), prev.start)
        head_variable, prev_var = gap.group("var"), prev_variable.group(1) if prev_variable else None
        if head_variable and prev_var and head_variable != prev_var:
            break  # "a = 2 or b = 3": two variables, two answers
        lists_values = head_variable is not None and head_variable == prev_var
        if gap.group("ask") is not None:
            if not _ASKED_AFTER.match(tail, last.end):
                break  # "How many after 3 days? 12": a question, then its answer
            seen_or = True  # "3? 4? 5?": each value asked, none stated
        elif gap.group("or"):
            seen_or = True
        elif not (seen_or and not gap.group("and")) and not lists_values and not _in_list_sentence(tail, prev.start):
            break
        chain.insert(0, prev)
    if len(chain) == 1:
        return Extraction(last.text, source)
    values = [_numeric_value(v.text) for v in chain]
    if None not in values and len(set(values)) == 1:
        return Extraction(last.text, source)  # one value stated twice: "1/2, or 0.5"
    distinct: dict[object, str] = {}
    for value, v in zip(values, chain, strict=True):
        distinct.setdefault(value if value is not None else v.text, v.text)
    return Extraction(", ".join(distinct.values()), "numbers")


def _fallback(text: str, number_words: bool) -> Extraction | None:
    """Rule 4 on the last FALLBACK_TAIL_CHARS of `text`."""
    tail = text[-FALLBACK_TAIL_CHARS:]
    markers = {m.start(1) for m in _LIST_MARKER.finditer(tail)}
    numbers = [m for m in _NUMBER.finditer(tail)
               if m.start() not in markers and not _UNIT_EXPONENT_BEFORE.search(tail, max(0, m.start() - 3), m.start())]
    word = _final_number_word(tail) if number_words else None
    if word is not None:
        return _listed_numbers(tail, word, _values_before(tail, word.start, numbers), "number_word")
    math = list(_MATH_SPAN.finditer(tail))
    tuples = [m for m in _TUPLE.finditer(tail) if not _THOUSANDS.fullmatch(m.group(0).replace(" ", ""))]
    last_math = math[-1] if math else None
    last_number = numbers[-1] if numbers else None
    last_tuple = tuples[-1] if tuples else None
    if last_math and all(m is None or last_math.end() >= m.end() for m in (last_number, last_tuple)):
        return _listed_spans(tail, math)
    if last_tuple and (last_number is None or last_tuple.end() >= last_number.end()):
        return Extraction(last_tuple.group(0), "tuple")
    if last_number is None:
        return None
    bound = _BOUND_BEFORE.search(tail, max(0, last_number.start() - 12), last_number.start())
    if bound:
        return Extraction(bound_as_inequality(tail[bound.start():last_number.end()].strip()), "latex")  # "x ≥ 3"
    if (_PLUS_MINUS_BEFORE.search(tail, max(0, last_number.start() - 8), last_number.start())
            and last_number.group(0)[:1] not in "-−"):
        return Extraction(f"\\pm {_number_text(last_number)}", "number")  # as a box writes it: "\pm 3"
    exact = _exact_before_approximation(tail[:last_number.start()])
    if exact is not None:
        return exact
    dollars = _DOLLARS_BEFORE_CENTS.search(tail, max(0, last_number.start() - 40), last_number.start())
    cents = last_number.group(0).strip()
    if dollars and cents.isdigit() and len(cents) <= 2 and _CENTS_AFTER.match(tail, last_number.end()):
        return Extraction(f"{dollars.group(1)}.{int(cents):02d}", "number")
    last = _Value(last_number.start(), last_number.end(), _number_text(last_number))
    listed = _listed_numbers(tail, last, _values_before(tail, last.start, numbers), "number")
    if listed.source == "number":
        # "so she has 2 or three left": a number phrase offered after the last number is listed with it.
        word_after = _WORD_AFTER_NUMBER.match(tail, last.end)
        if word_after and word_after.group("after").lower() not in _NOT_AFTER_NUMBER_WORD:
            digits = phrase_value(word_after.group("phrase"))
            if digits is not None:
                phrase = _Value(word_after.start("phrase"), word_after.end("phrase"), digits)
                with_word = _listed_numbers(tail, phrase, _values_before(tail, phrase.start, numbers), "number")
                if with_word.source == "numbers":
                    return with_word
    return listed


def extract_final_answer(text: str, number_words: bool = False) -> Extraction | None:
    """The final answer in `text` (see module docstring for the rules), or None when there is none.
    `number_words`: read English number words as numbers ("ten" -> "10"); for a gold answer that is a
    plain number only."""
    return _read(text, number_words)[0]


def _read(text: str, number_words: bool) -> tuple[Extraction | None, int]:
    """The final answer in `text`, and where the text that may still name a choice letter starts: after the
    last box when a correction retracts it and states nothing new ("\\boxed{(B)}. Wait, that's wrong."), else 0."""
    boxes = _boxed_answers(text)
    if boxes:
        retracted, corrected = _correction_after_box(text[boxes[-1].end:], number_words)
        if retracted:
            return corrected, boxes[-1].end if corrected is None else 0
        boxed = list(dict.fromkeys(_finish(_without_aside(strip_math_delimiters(b.inner), boxed=True), number_words)
                                   for b in boxes))
        return Extraction(", ".join(boxed), "boxed" if len(boxed) == 1 else "boxes"), 0
    settled, found = _answer_phrase(text, number_words)
    return (found if settled else _fallback(text, number_words)), 0


def _answer_phrase(text: str, number_words: bool) -> tuple[bool, Extraction | None]:
    """Rules 2 and 3 on `text`: (True, the answer) when an answer phrase or label settles it, also (True, None)
    for "the answer is not 5." with nothing after it; (False, None) when `text` holds neither."""
    answer_is = list(_ANSWER_IS.finditer(text))
    if answer_is:
        # "The answer is 12. Wait, ... **Final Answer:** 14": the answer stated last is the one settled on.
        later = _label(text, answer_is[-1].end(), number_words)
        if later is not None:
            return True, later
    for i, m in enumerate(reversed(answer_is)):
        negated = _NEGATED.match(text, m.end())
        if negated and i == 0:
            # "the answer is not 5, it is 6": only what follows the negated value can be the answer.
            return True, _label_or_fallback(text[negated.end():], number_words)
        tail = _clean_tail(text[m.end():])
        if tail and not negated:
            return True, Extraction(_finish(tail, number_words), "answer_is")
    label = _label(text, 0, number_words)
    return label is not None, label


# A self-correction after the last box. Its marker starts a sentence (after at most twelve characters of
# punctuation, closing math delimiters, Markdown or interjections: "\\]\n\nHmm, wait"), or follows such a marker
# in the same sentence within 60 characters ("Wait, that's wrong"). A strong marker says the boxed answer is
# wrong; a weak one ("wait", "actually", "let me recheck") as often starts a check that confirms it.
_STRONG_RETRACTION = (r"correction|(?:i|we)(?:[ \t]+have|['’]ve)?[ \t]+made[ \t]+(?:a|an)[ \t]+(?:mistake|error)"
                      r"|my[ \t]+(?:mistake|error|bad)|i[ \t]+was[ \t]+wrong"
                      r"|there(?:['’]s|[ \t]+is|[ \t]+was)[ \t]+(?:a|an)[ \t]+(?:mistake|error)"
                      r"|(?:that|this|it)(?:['’]s|[ \t]+is|[ \t]+was)[ \t]+(?:wrong|incorrect|not[ \t]+(?:right|correct))"
                      r"|(?:that|this|it)[ \t]+(?:isn|wasn)['’]t[ \t]+(?:right|correct)")
_WEAK_RETRACTION = (r"wait|actually|let[ \t]+me[ \t]+(?:re-?check|reconsider|re-?examine|double[ -]check|re-?calculate"
                    r"|re-?compute|re-?do|re-?verify)")
_RETRACTION = rf"(?:(?P<strong>{_STRONG_RETRACTION})|{_WEAK_RETRACTION})\b"
_ANY_RETRACTION = re.compile(r"\b" + _RETRACTION, re.IGNORECASE)
# Looked for in the 40 characters before a marker: the start of the text or of a sentence, then what may lead it.
_SENTENCE_START_BEFORE = re.compile(
    r"(?:^|[.!?:][ \t]|\n)(?:[\s,.;:!—*_$)\]-]|\\[)\]]|\b(?:hmm+|oh|oops|but|no|hold[ \t]+on|hang[ \t]+on|well|ok|okay)\b)"
    r"{0,12}$", re.IGNORECASE)
SENTENCE_START_CHARS = 40
_CHAINED_RETRACTION = re.compile(r"[^.!?\n]{0,60}?\b" + _RETRACTION, re.IGNORECASE)
# A new value right after a marker: ", it is 4", ". It should be 4", ", so 4", ", the correct answer is 4", and
# after "Correction" a colon ("Correction: 4").
_STATES_NEW_VALUE = (r"(?:(?:so|then|thus|hence|therefore|no|oh|hmm)[ \t,]+)?"
                     r"(?:(?:it|that|this)(?:['’]s|[ \t]+(?:is|should[ \t]+be|must[ \t]+be))"
                     r"|the[ \t]+(?:correct|right|actual|real)[ \t]+(?:answer|value|result|total)[ \t]+(?:is|should[ \t]+be))")
_RESTATED_AFTER_MARKER = re.compile(r"[\s,.;:!—-]{0,8}(?:" + _STATES_NEW_VALUE + r"|so)\b[ \t]*:?[ \t]*", re.IGNORECASE)
_CORRECTION_LABEL = re.compile(r"[ \t]*[*_]*[ \t]*:[*_]*[ \t]*")
# A computation is no restated value ("1 + 2 = 3"); a variable set to one is ("x = 4").
_SET_VARIABLE = re.compile(r"[A-Za-z](?:_\{?\w{1,3}\}?)?")
# At most this many markers are tried for a restated value, each reading at most this many characters.
MAX_RETRACTIONS = 16
MAX_RESTATED_CHARS = 600


def _states_value(answer: str) -> bool:
    """Whether an answer read after a correction marker states a value: not empty, no word but "or" and "and"
    ("it is correct", "it is the only solution" state none), and no computation or system ("1 + 2 = 3", "x = 5
    and y = 2"; "x = 4" is a value)."""
    if not answer or any(w.lower() not in ("or", "and") for w in _WORD.findall(answer)):
        return False
    left, equals, right = answer.partition("=")
    return not equals or ("=" not in right and _SET_VARIABLE.fullmatch(left.strip()) is not None)


def _correction_after_box(tail: str, number_words: bool) -> tuple[bool, Extraction | None]:
    """Rule 1's retraction: (True, the new answer) when `tail`, the text after the last box, corrects it ("Wait,
    that's wrong, it is 4." -> "4"), (True, None) when it calls the box wrong and states nothing new ("Wait,
    that's wrong."), (False, None) when the box stands (no marker, or only a check: "Wait, let me verify: 1 + 2
    = 3."). The new answer is a value restated right after a marker (see `_RESTATED_AFTER_MARKER`), or what
    rules 2 and 3 find after the last such value, or after the first marker when there is none ("Actually, the
    answer is 4."). It must state a value (see `_states_value`), and a strong marker with no value after it
    retracts what came before ("Wait, it is 4. Hmm, that's wrong." has no answer)."""
    placed: list[re.Match[str]] = []
    for m in _ANY_RETRACTION.finditer(tail):
        if placed and m.start() < placed[-1].end():
            continue  # already found as part of the chain before it: one pass over the text
        if not _SENTENCE_START_BEFORE.search(tail, max(0, m.start() - SENTENCE_START_CHARS), m.start()):
            continue
        placed.append(m)
        chained = _CHAINED_RETRACTION.match(tail, m.end())
        while chained is not None:
            placed.append(chained)
            chained = _CHAINED_RETRACTION.match(tail, chained.end())
    if not placed:
        return False, None
    restated: tuple[int, Extraction] | None = None  # the last value restated, and where it starts
    bare_retraction = -1  # where the last strong marker with no value after it ends
    for m in placed[-MAX_RETRACTIONS:]:
        after = _CORRECTION_LABEL.match(tail, m.end()) if m.group(0).lower().endswith("correction") else None
        after = after or _RESTATED_AFTER_MARKER.match(tail, m.end())
        value = _clean_tail(tail[after.end():after.end() + MAX_RESTATED_CHARS]) if after else ""
        value = _finish(value, number_words) if value else value
        if after and _states_value(value):
            restated = (after.end(), Extraction(value, "correction"))
        elif m.group("strong"):
            bare_retraction = m.end()
    start = max(restated[0] if restated else placed[0].start(), bare_retraction)
    # "Wait, it is 4. So the answer is 5.": an answer phrase or label after the last value or retraction wins.
    settled, found = _answer_phrase(tail[start:], number_words)
    if settled and (found is None or _states_value(found.text)):
        return True, found  # None: "Wait, the answer is not 3." retracts the box and states nothing new
    if bare_retraction >= 0 and (restated is None or bare_retraction > restated[0]):
        return True, None
    if restated is not None:
        return True, restated[1]
    return False, None


def _label(text: str, start: int, number_words: bool) -> Extraction | None:
    """Rule 3 on the labels that start at or after `start` in `text`, or None."""
    labels = [(m, False) for m in _ANSWER_LABEL.finditer(text, start)] + [(m, True) for m in _HASH_ANSWER.finditer(text, start)]
    for m, hashes in sorted(labels, key=lambda pair: pair[0].start(), reverse=True):
        rest = text[m.end():]
        if hashes and _WORD.search(rest.split("\n", 1)[0]):
            continue  # a Markdown heading ("#### 2. Check")
        tail = _clean_tail(rest)
        if tail:
            return Extraction(_finish(tail, number_words), "label")
    return None


def _label_or_fallback(text: str, number_words: bool) -> Extraction | None:
    """Rules 3 and 4 on `text`."""
    return _label(text, 0, number_words) or _fallback(text, number_words)


# A gold answer that is one plain number: an integer or decimal (thousands separators, a `$` or `\$` allowed),
# or a fraction (`3/4`, `\frac{3}{4}`).
_GOLD_NUMBER = re.compile(r"(?:\\?\$)?-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\d+[ \t]*/[ \t]*\d+"
                          r"|\\[dt]?frac\s*\{\s*\d+\s*\}\s*\{\s*\d+\s*\})")


def gold_is_number(gold: str) -> bool:
    """True when the gold answer is one plain number, the only kind a number word can equal."""
    return _GOLD_NUMBER.fullmatch(strip_math_delimiters(gold)) is not None


def gold_choice(gold: str) -> str | None:
    """The letter when the gold answer is a multiple-choice letter ("B", "(B)"), else None."""
    m = _GOLD_CHOICE.match(strip_math_delimiters(gold).strip())
    return m.group(1) if m else None


def extract_choice(text: str) -> Extraction | None:
    """The multiple-choice letter a completion settles on: from its final answer ("(B)", "B.", "b) ..."),
    else the last "(X)" in it that is not ruled out ("not (B)", "(B) is wrong"; see `_NEGATION_BEFORE_CHOICE`,
    `_NEGATION_AFTER_CHOICE`). None for a final answer that names two choices ("(A) or (B)") or rules its letter
    out ("Answer: (B) is wrong")."""
    found, start = _read(text, False)
    if found is not None and found.source not in ("number", "numbers", "tuple"):
        bare = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*", "", found.text).replace("{", "").replace("}", "").strip()
        m = _CHOICE.match(bare)
        if m and not _NEGATION_AFTER_CHOICE.match(bare, m.end()):  # "Answer: (B) is wrong" settles on no B
            if found.source == "boxes" or _ANOTHER_CHOICE.search(bare, m.end()) or _NEXT_CHOICE.match(bare, m.end()):
                return None  # a hedge: "(A) or (B)", "\\boxed{A}, \\boxed{B}"
            return Extraction(next(g for g in m.groups() if g is not None).upper(), "choice")
    # The last "(X)" whose letter the completion does not rule out there or later ("(C) is right. (B) is wrong."
    # is C; "It is not (B)." is none, and so is "(B) 4. ... It is not (B)."), after a retracted box only.
    ruled_out: set[str] = set()
    for m in reversed(list(_CHOICE_IN_TEXT.finditer(text, start))):
        if (_NEGATION_BEFORE_CHOICE.search(text, max(0, m.start() - NEGATION_WINDOW_CHARS), m.start())
                or _NEGATION_AFTER_CHOICE.match(text, m.end())):
            ruled_out.add(m.group(1))
        elif m.group(1) not in ruled_out:
            return Extraction(m.group(1), "choice")
    return None
