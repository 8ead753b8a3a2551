"""Find the program in a model's completion: the contents of a Markdown code fence when there is one."""

from __future__ import annotations

import re

# An opening fence (``` or ~~~, optionally with an info string), its body, and the matching closing
# fence or the end of the text (a generation cut off by the length limit leaves the block open).
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n(?P<body>.*?)(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}
THINK_END = "</think>"  # the end of a reasoning model's block (DeepSeek-R1, Qwen3)


def extract_code(completion: str, entry_point: str = "") -> str:
    """The code to run from ``completion``.

    - A reasoning model's `<think>` block is not the answer: when the completion holds `</think>`, only
      the text after the last one is looked at (drafts in the reasoning are not run).
    - No fence: the whole completion (a model told to answer with bare code).
    - Fences: blocks tagged python/py (or untagged when none is tagged); among them the last one that
      defines ``entry_point`` when one is given and some block does, else the last block (models tend
      to put usage examples before or after the answer, and the answer last).
    Returns "" when the completion holds no code at all.
    """
    _, closed, answer = completion.rpartition(THINK_END)
    if closed:
        completion = answer
    blocks = [(m.group("info").strip().split(" ")[0].lower(), m.group("body")) for m in _FENCE.finditer(completion)]
    if not blocks:
        return completion.strip("\n") if completion.strip() else ""
    tagged = [body for info, body in blocks if info in _PYTHON_TAGS]
    candidates = tagged or [body for info, body in blocks if not info]
    if not candidates:
        return ""
    if entry_point:
        definition = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
        defining = [body for body in candidates if definition.search(body)]
        if defining:
            return defining[-1]
    return candidates[-1]
