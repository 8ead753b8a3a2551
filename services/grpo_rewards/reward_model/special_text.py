"""Special-token strings inside messages are read as text, not as the chat template's structure.

A chat template writes a conversation's structure with special tokens (`<|im_start|>`, `<|im_end|>`), and
a tokenizer reads those strings as the special tokens wherever they occur, message contents included. A
completion holding the text `<|im_end|>\\n<|im_start|>user\\n...` would then be scored as a conversation
it did not have: a policy could forge the template's structure. Here such strings from messages are
tokenized as plain text (`split_special_tokens=True`), and the template's own stay special tokens.

How: the template is rendered a second time with each special-token string in the messages replaced by
as many filler characters (`Formatted.masked`, same length). Every special token of the masked text is
the template's. The text is cut at those tokens; each stretch between two of them that differs from the
masked text (it holds a message's special-token string) is tokenized again from the real text with
`split_special_tokens=True`, and every other stretch keeps its tokens. A fast tokenizer tokenizes the
stretches between special tokens independently anyway, so the other stretches' ids are what a normal
tokenization gives. A text whose messages hold no special-token string is tokenized as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Candidates for the filler character: one that is in no special-token string is used. ASCII
# punctuation, which neither JSON nor HTML escaping changes, so a template that escapes the contents
# still renders the masked text at the same length.
FILLERS = "~^`#@"


@dataclass(frozen=True)
class Formatted:
    """A text to score. `masked` is None when no message holds a special-token string (the text is
    tokenized as it is); else the same text with those strings replaced by filler characters."""

    text: str
    masked: str | None = None

    def window(self, start: int, end: int | None = None) -> Formatted:
        """The characters `start:end` of the text (and of the masked text)."""
        return Formatted(self.text[start:end], None if self.masked is None else self.masked[start:end])


class SpecialText:
    """A tokenizer's special-token strings, and the tokenization that keeps those of messages plain."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        specials = {i: t.content for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        specials.update(zip(tokenizer.all_special_ids, tokenizer.all_special_tokens, strict=True))
        self.ids = frozenset(specials)
        strings = sorted({s for s in specials.values() if s}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, strings))) if strings else None
        self.filler = next((c for c in FILLERS if not any(c in s for s in strings)), "")
        # Finding the template's special tokens in the masked text needs their character offsets.
        self.locatable = bool(self.filler) and bool(getattr(tokenizer, "is_fast", False))

    def holds_special(self, text: str) -> bool:
        """Whether `text` contains a special-token string."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def mask(self, text: str) -> str:
        """`text` with every special-token string replaced by as many filler characters."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.filler * len(m.group()), text)

    def aligned(self, text: str, masked: str) -> bool:
        """Whether `masked` is `text` with some characters replaced by the filler and nothing else changed:
        the template rendered the masked messages exactly where it rendered the real ones."""
        if len(text) != len(masked):
            return False
        start = 0
        for run in re.finditer(re.escape(self.filler) + "+", masked):
            if text[start:run.start()] != masked[start:run.start()]:
                return False
            start = run.end()
        return text[start:] == masked[start:]

    def template_ids(self, f: Formatted) -> list[int]:
        """Token ids of a chat-templated text (no special tokens added): the template's special tokens as
        such, the special-token strings of its messages as plain text. Untruncated."""
        if f.masked is None:
            return list(self.tokenizer(f.text, add_special_tokens=False, verbose=False)["input_ids"])
        text, masked = f.text, f.masked
        enc = self.tokenizer(masked, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        out: list[int] = []
        stretch: list[int] = []  # ids of the masked text since the last special token
        start = 0

        def close(end: int) -> None:
            if text[start:end] == masked[start:end]:
                out.extend(stretch)
            elif end > start:
                out.extend(self.tokenizer(text[start:end], add_special_tokens=False, split_special_tokens=True,
                                          verbose=False)["input_ids"])

        for tid, (s, e) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            if tid in self.ids:
                close(s)
                out.append(tid)
                stretch, start = [], e
            else:
                stretch.append(tid)
        close(len(text))
        return out
