"""Finding the final answer in a model's completion. Pure string work: no sympy, no math-verify.

Order of preference (the first rule that finds something wins):
1. the last `\\boxed{...}` / `\\fbox{...}` (balanced braces);
2. the last "the (final) answer is X";
3. the last "Answer: X" / "Final answer: X" (Markdown bold allowed);
4. whichever comes last in the text: the last LaTeX math span (`$...$`, `\\(...\\)`, `\\[...\\]`) or the
   last number (`-1,234.5`, `3/4`, `12%`).

In rules 2 and 3, X is a leading math span, or else the rest of the line up to the end of the answer
phrase: the first ". ", "; ", em dash or clause-starting word ("because", ", since", ", not"...; see
`_CLAUSE_BREAK`) outside braces and math spans, with Markdown emphasis and a full stop stripped. A
dollar of money is not a math delimiter (see `_MATH_SPAN`).

In rules 1 to 3, a number followed only by plain words ("10 cookies", "$12 dollars per hour") is that
number: math-verify reads `10 cookies` as the product 10*c*o*o*k*i*e*s (see `_drop_unit_words`).

All patterns are linear-time (no nested quantifiers) so a 64 KiB completion cannot stall the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(r"\b(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*", re.IGNORECASE)
_ANSWER_LABEL = re.compile(r"(?:^|\n)[ \t]*[*_#>\- ]*(?:final\s+)?answer\s*[*_]*\s*:\s*[*_]*[ \t]*", re.IGNORECASE)
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
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?\s*%?")
# A choice letter at the start of a final answer: "(B)", "B.", "B) 12", "B is right"; in lower case only
# "(b)", "b)", "b.", "b:" or a bare "b", never a letter followed by more words ("a tricky one" is an
# English article, not choice A).
_CHOICE = re.compile(r"^(?:\(([A-Ea-e])\)|\(?([A-E])\)?(?:[.:)]|\s|$)|([a-e])(?:[.:)]|$))")
# Where the answer phrase after "the answer is" / "Answer:" ends: a full stop or semicolon followed by
# space (a full stop inside "3.5" is not a break), an em dash, or a word that starts a new clause, optionally
# after a comma ("as" and "not" only after one: "the same as 5", "7 and not 5"). "and"/"or" are left out
# on purpose: "1, 2 and 3" or "3 or 4" is the answer as written.
# Lookbehinds make each run of spaces start at most one attempt, and possessive `\s++` never
# backtracks, so the search stays linear on a long line.
_CLAUSE_BREAK = re.compile(
    r"\.\s|;\s|(?<=\S)\s*+—"
    r"|(?<=[^\s,]),?\s++(?:because|since|so|which|but|hence|thus|therefore|given|where|when)\b"
    r"|(?<=[^\s,]),\s++(?:as|not)\b",
    re.IGNORECASE)
# Unicode's vulgar fractions, as (numerator, denominator).
_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5),
           "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅐": (1, 7), "⅛": (1, 8), "⅜": (3, 8),
           "⅝": (5, 8), "⅞": (7, 8), "⅑": (1, 9), "⅒": (1, 10)}
_VULGAR_CHAR = re.compile("[" + "".join(_VULGAR) + "]")
# A number (optionally after a currency sign) followed by one to four plain words and nothing else
# ("2½ cups" too).
_NUMBER_THEN_WORDS = re.compile(
    r"(?:\\?\$)?[ \t]*(-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[ \t]*/[ \t]*\d+)?"
    + _VULGAR_CHAR.pattern + "?|" + _VULGAR_CHAR.pattern + r"))[ \t]+([A-Za-z]{2,}(?:[ \t-]+[A-Za-z]{2,}){0,3})")
# Words after a number that are math or change its value, not a unit: "3 pi", "10 percent" (math-verify
# reads it as 0.1 as well), "5 squared", "3 or more", "2 to the power".
_NOT_UNIT_WORDS = frozenset({"pi", "percent", "sqrt", "root", "roots", "squared", "cubed", "factorial", "or",
                             "plus", "minus", "over", "divided", "mod", "modulo", "choose", "to", "power",
                             "thousand", "thousands", "million", "millions", "billion", "billions",
                             "hundred", "hundreds", "dozen", "dozens", "half", "halves", "third", "thirds",
                             "quarter", "quarters", "fifths", "tenths", "hundredths"})
_CHOICE_IN_TEXT = re.compile(r"\(([A-E])\)")
_GOLD_CHOICE = re.compile(r"^\(?([A-E])\)?$")


@dataclass(frozen=True)
class Extraction:
    """The answer text found in a completion and the rule that found it ("boxed", "answer_is", "label",
    "latex", "number", "choice")."""

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


def _last_boxed(text: str) -> str | None:
    for m in list(_BOXED.finditer(text))[-MAX_BOXED_TRIED:][::-1]:
        inner = _balanced_from(text, m.end())
        if inner is not None and inner.strip():
            return inner.strip()
    return None


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
    answer = _strip_emphasis(_cut_at_clause_break(line))
    aside = _TRAILING_ASIDE.search(answer)
    return answer[:aside.start()].rstrip() if aside and aside.start() > 0 else answer


def _drop_unit_words(text: str) -> str:
    """`"10 cookies"` -> `"10"`, `"$12 dollars per hour"` -> `"12"`, `"3/4 cup"` -> `"3/4"`; anything else
    (`"3 pi"`, `"10 percent"`, `"3 or 4"`, `"x = 2"`, `"5 \\text{ cm}"`) unchanged."""
    m = _NUMBER_THEN_WORDS.fullmatch(text)
    if m is None or any(w.lower() in _NOT_UNIT_WORDS for w in re.split(r"[ \t-]+", m.group(2))):
        return text
    return m.group(1)


# Unicode math that math-verify does not read (it reads π, ×, ÷ and the minus sign −).
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
_SUPERSCRIPT_RUN = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+")
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
    `"≤"`, `"≥"`, `"≠"`, the fraction slash `⁄`, full-width digits (`"７"`), and an en dash used as a
    minus sign (`"–5"`). Text
    without these characters is returned as it is."""
    if text.isascii():
        return text
    text = text.translate(_FULLWIDTH_DIGITS)
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


def extract_final_answer(text: str) -> Extraction | None:
    """The final answer in `text` (see module docstring for the rules), or None when there is none."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return Extraction(_drop_unit_words(strip_math_delimiters(boxed)), "boxed")
    for pattern, source in ((_ANSWER_IS, "answer_is"), (_ANSWER_LABEL, "label")):
        matches = list(pattern.finditer(text))
        for m in reversed(matches):
            tail = _clean_tail(text[m.end():])
            if tail:
                return Extraction(_drop_unit_words(tail), source)
    tail = text[-FALLBACK_TAIL_CHARS:]
    math = list(_MATH_SPAN.finditer(tail))
    number = list(_NUMBER.finditer(tail))
    last_math = math[-1] if math else None
    last_number = number[-1] if number else None
    if last_math and (last_number is None or last_math.end() >= last_number.end()):
        return Extraction(next(g for g in last_math.groups() if g is not None).strip(), "latex")
    if last_number:
        return Extraction(last_number.group(0).strip(), "number")
    return None


def gold_choice(gold: str) -> str | None:
    """The letter when the gold answer is a multiple-choice letter ("B", "(B)"), else None."""
    m = _GOLD_CHOICE.match(strip_math_delimiters(gold).strip())
    return m.group(1) if m else None


def extract_choice(text: str) -> Extraction | None:
    """The multiple-choice letter a completion settles on: from its final answer ("(B)", "B.", "b) ..."),
    else the last "(X)" anywhere in it."""
    found = extract_final_answer(text)
    if found is not None and found.source != "number":
        bare = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*", "", found.text).replace("{", "").replace("}", "")
        m = _CHOICE.match(bare.strip())
        if m:
            return Extraction(next(g for g in m.groups() if g is not None).upper(), "choice")
    in_text = _CHOICE_IN_TEXT.findall(text)
    if in_text:
        return Extraction(in_text[-1], "choice")
    return None
