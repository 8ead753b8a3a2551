"""The format check itself: pure string work, no gRPC.

The required format (DeepSeek-R1 style): the completion opens with one `<think>…</think>` block (only
whitespace before it), and the text after `</think>` holds a `\\boxed{…}` answer with balanced braces and
non-blank content. Each part is a component in [0, 1]; the score is their mean ("partial") or 1 only when
both hold ("all_or_nothing").

Chat templates that open the block in the prompt (DeepSeek-R1's distilled models, Qwen3 with thinking on:
the generation prompt ends with `<think>\n`) leave the completion without `<think>`: with
`opened_by_prompt` the completion is the reasoning, one `</think>`, then the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

FormatScoring = Literal["partial", "all_or_nothing"]
# `\boxed`, optional white space (TeX skips it: `\boxed {5}` renders as `\boxed{5}`, and the math
# verifier reads it as the box), then the opening brace.
BOXED = re.compile(r"\\boxed\s*\{")
_BRACE = re.compile(r"[{}]")


@dataclass(frozen=True)
class FormatVerdict:
    """The outcome of one check: score in [0, 1], components (think, boxed) and what was wrong."""

    score: float
    components: dict[str, float]
    problems: list[str] = field(default_factory=list)

    @property
    def feedback(self) -> str:
        """One line a person (or an SDPO teacher) can act on."""
        if not self.problems:
            return "format OK: a <think> block, then a \\boxed{} answer"
        return "format problems: " + "; ".join(self.problems)


def _closing_braces(text: str) -> dict[int, int]:
    """For every `{` in `text` that is closed, the index of the `}` that closes it: one left-to-right
    pass with a stack of open braces (a `}` with nothing open is ignored)."""
    closes: dict[int, int] = {}
    open_at: list[int] = []
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            open_at.append(m.start())
        elif open_at:
            closes[open_at.pop()] = m.start()
    return closes


def boxed_contents(text: str) -> list[str]:
    """The contents of every top-level `\\boxed{…}` in `text` whose braces balance (nested braces allowed).

    A `\\boxed{` that is never closed is skipped, and the search goes on inside it. Linear in the length
    of `text`: the braces are matched in one pass, then each `\\boxed{` looks up its closing brace
    (so text full of unclosed `\\boxed{` is never rescanned to its end once per `\\boxed{`).
    """
    closes = _closing_braces(text)
    out = []
    found = BOXED.search(text)
    while found is not None:
        brace = found.end() - 1
        end = closes.get(brace)
        if end is not None:
            out.append(text[brace + 1 : end])
            found = BOXED.search(text, end + 1)
        else:
            found = BOXED.search(text, brace + 1)
    return out


def check_format(completion: str, *, tag: str = "think", scoring: FormatScoring = "partial",
                 opened_by_prompt: bool = False) -> FormatVerdict:
    """Score `completion` against the required format.

    think = 1 when the completion starts (after whitespace) with exactly one `<tag>` … `</tag>` block
    with non-blank reasoning (with `opened_by_prompt`: holds no `<tag>` and exactly one `</tag>`, after
    non-blank reasoning); boxed = 1 when the text after the closing tag (the whole completion when the
    block is missing; nothing when it is opened and never closed: a box there is inside the reasoning)
    contains one `\\boxed{…}` answer with balanced braces and non-blank content (boxed
    again with the same content, whitespace aside, it is still one answer: a summary and a closing line
    often both box it).
    """
    if scoring not in ("partial", "all_or_nothing"):
        raise ValueError(f"scoring must be partial or all_or_nothing, got {scoring!r}")
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    problems: list[str] = []
    stripped = completion.lstrip()
    after = completion
    unclosed = False
    think = 0.0
    if opened_by_prompt:
        inner, closed, rest = completion.partition(close_tag)
        if not closed:
            problems.append(f"the reasoning is never closed with {close_tag} (the prompt opens {open_tag})")
            after, unclosed = "", True  # all of it is reasoning: no answer was given
        else:
            after = rest
            if open_tag in completion or completion.count(close_tag) != 1:
                problems.append(f"exactly one {close_tag} and no {open_tag} are allowed (the prompt opens {open_tag})")
            elif not inner.strip():
                problems.append(f"the reasoning before {close_tag} is empty")
            else:
                think = 1.0
    elif not stripped.startswith(open_tag):
        problems.append(f"the completion must start with {open_tag}")
    elif close_tag not in stripped:
        problems.append(f"{open_tag} is never closed with {close_tag}")
        after, unclosed = "", True  # all of it is reasoning: no answer was given
    else:
        inner, _, after = stripped[len(open_tag) :].partition(close_tag)
        if completion.count(open_tag) != 1 or completion.count(close_tag) != 1:
            problems.append(f"exactly one {open_tag}…{close_tag} block is allowed")
        elif not inner.strip():
            problems.append(f"the {open_tag} block is empty")
        else:
            think = 1.0
    answers = boxed_contents(after)
    boxed = 0.0
    if not answers:
        where = f"after {close_tag}" if think or unclosed else "in the answer"
        problems.append(f"no \\boxed{{...}} answer {where}")
    elif len({" ".join(a.split()) for a in answers}) > 1:  # the same answer boxed again is still one answer
        problems.append(f"{len(answers)} \\boxed{{}} answers that differ; give exactly one")
    elif not answers[0].strip():
        problems.append("the \\boxed{} answer is empty")
    else:
        boxed = 1.0
    components = {"think": think, "boxed": boxed}
    score = (think + boxed) / 2 if scoring == "partial" else float(think == 1.0 and boxed == 1.0)
    return FormatVerdict(score, components, problems)
