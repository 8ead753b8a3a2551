"""Find the program in a model's completion: the contents of a Markdown code fence when there is one.

Fences are read as CommonMark reads them, plus the slips models make:
- an opening fence is ``` or ~~~ (or longer), with an info string whose first word is the language
  (`python`, `Python3`, `py`, `{python}`, `python:solution.py`);
- the block ends at a closing fence of the same character, at least as long, indented at most three
  columns more than the opening one (so a ``` inside an indented docstring does not end it); a block
  that would run to the end of the text, or into an opening fence with an info string, ends instead
  at its first closing fence indented deeper (a model indenting the fence like the code above it);
- a closing fence glued to the last line of code (`return x```) ends the block there;
- the opening fence's indentation is removed from the block's lines (a fence inside a numbered list);
- a block left open by a cut-off generation runs to the end of the text.
"""

from __future__ import annotations

import ast
import re

from grpo_rewards.common.reasoning import answer_part

_OPEN = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)")
_CLOSE = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*")
_LANGUAGE = re.compile(r"[\s{.]*(?P<lang>[\w+#.-]*)")
_PYTHON = re.compile(r"py(?:thon)?[0-9.]*")  # python, py, python3, py3, python3.11
_MAX_FALLBACKS = 16


def _fits(fence: str, opening: str) -> bool:
    return fence[0] == opening[0] and len(fence) >= len(opening)


def _glued_close(line: str, opening: str) -> str | None:
    """The code of a line that ends in a closing fence glued to it (`return x```), else None."""
    text = line.rstrip(" \t")
    run = len(text) - len(text.rstrip(opening[0]))
    code = text[: len(text) - run].rstrip(" \t")
    if run < len(opening) or not code or code[-1] in "`~":
        return None
    return code


def _dedent(line: str, indent: int) -> str:
    blank = len(line) - len(line.lstrip(" \t"))
    return line[min(blank, indent):]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block of ``text``, in order; language lower-cased, "" untagged."""
    lines = re.split(r"\r\n?|\n", text)
    if lines[-1] == "":
        lines.pop()
    blocks: list[tuple[str, str]] = []
    fallbacks = _MAX_FALLBACKS  # each one rescans the rest of the text: bounded, so the work stays linear
    i = 0
    while i < len(lines):
        opening = _OPEN.fullmatch(lines[i])
        i += 1
        if opening is None:
            continue
        fence, info = opening["fence"], opening["info"]
        if fence[0] == "`" and "`" in info:  # CommonMark: not a fence (inline code such as ```x```)
            continue
        indent = len(opening["indent"])
        body: list[str] = []
        deep: tuple[int, int] | None = None  # (lines of body, next line) at the first deeper closing fence
        while i < len(lines):
            line = lines[i]
            i += 1
            close = _CLOSE.fullmatch(line)
            if close is not None and _fits(close["fence"], fence):
                if len(close["indent"]) <= indent + 3:
                    break
                deep = deep or (len(body), i)
            reopened = _OPEN.fullmatch(line)
            if deep is not None and reopened is not None and reopened["info"].strip():
                i = len(lines)  # a new block opens: the deeper fence closed this one
                continue
            glued = _glued_close(line, fence)
            body.append(_dedent(line if glued is None else glued, indent))
            if glued is not None:
                break
        else:
            if deep is not None and fallbacks:  # never closed: the deeper fence was the close after all
                fallbacks -= 1
                del body[deep[0]:]
                i = deep[1]
        lang = _LANGUAGE.match(info)
        blocks.append(((lang["lang"] if lang else "").lower(), "".join(f"{line}\n" for line in body)))
    return blocks


# Parsing runs in the service's own process (the program's compile runs in the sandbox, under its memory
# limit) and costs about 350 times the text's size in memory: only answer-sized texts are looked at.
PROSE_CHECK_MAX_CHARS = 64 * 1024


def _compiles(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        return False
    return True


def without_prose(text: str) -> str:
    """`text` less the paragraphs of prose that open and close it, when the whole does not compile and
    what is left does: "Here is the solution:", then the code, then "This function adds ...". A
    paragraph (lines between blank lines) counts as prose when its first line reads like a sentence,
    bold text or a list item and is no Python statement on its own, or when it is a Markdown heading
    (`### Explanation`) over lines that do not compile (a `# Comment` over code is code). Otherwise
    `text` as it is: a program that does not compile fails as itself, and so does a text over
    PROSE_CHECK_MAX_CHARS (not parsed here at all)."""
    if len(text) > PROSE_CHECK_MAX_CHARS or _compiles(text):
        return text
    paragraphs = re.split(r"\n(?:[ \t]*\n)+", text)
    start, end = 0, len(paragraphs)
    while start < end and _is_prose(paragraphs[start]):
        start += 1
    while end > start and _is_prose(paragraphs[end - 1]):
        end -= 1
    if (start, end) == (0, len(paragraphs)):
        return text
    code = "\n\n".join(paragraphs[start:end])
    return code if code.strip() and _compiles(code) else text


# The first line of a paragraph of prose: a sentence ("Here is", "Sure! Here", "Note:", "Certainly."),
# bold text, a list item.
_HEADING = re.compile(r"[ \t]*#{1,6}[ \t]+[A-Z*]")
_PROSE_LINE = re.compile(r"[ \t]*(?:[A-Z][A-Za-z']*(?:[!,.:]?[ \t]+\S|[!.:][ \t]*$)|\*\*|[-*+][ \t]|\d+[.)][ \t])")


def _is_prose(paragraph: str) -> bool:
    first = paragraph.strip("\n").split("\n", 1)[0]
    if not first.strip():
        return True
    if _HEADING.match(first):  # a comment to Python: prose only when the paragraph is no code
        return not _compiles(paragraph.strip("\n"))
    return _PROSE_LINE.match(first) is not None and not _compiles(first.strip())


def extract_code(completion: str, entry_point: str = "") -> str:
    """The code to run from ``completion``.

    - A reasoning model's `<think>` block is not the answer: when the completion holds `</think>`, only
      the text after the last one is looked at (drafts in the reasoning are not run); a `<think>` never
      closed leaves no code (grpo_rewards.common.reasoning).
    - No fence: the whole completion (a model told to answer with bare code), less the paragraphs of
      prose before and after the code when only without them does it compile (`without_prose`).
    - Fences (read as the module's docstring says): blocks tagged as Python (`python`, `py`,
      `python3`...) or untagged when none is tagged; among them the last one that defines
      ``entry_point`` when one is given and some block does, else the last block (models tend to put
      usage examples before or after the answer, and the answer last).
    Returns "" when the completion holds no code at all.
    """
    completion = answer_part(completion).text
    blocks = code_blocks(completion)
    if not blocks:
        return without_prose(completion.strip("\n")) if completion.strip() else ""
    tagged = [body for lang, body in blocks if _PYTHON.fullmatch(lang)]
    candidates = tagged or [body for lang, body in blocks if not lang]
    if not candidates:
        return ""
    if entry_point:
        definition = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
        defining = [body for body in candidates if definition.search(body)]
        if defining:
            return defining[-1]
    return candidates[-1]
