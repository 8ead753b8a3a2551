"""Wording shared by the client's messages: a count with its noun, a span of lines or prompts, and the
short form of a server's reason.

The TypeScript client (clients/typescript/src/words.ts) and the Go client (clients/go/grpoclient/words.go)
spell these the same way, so the three print the same lines."""

from __future__ import annotations

import re

REASON_CHARS = 200  # the most characters of a server's message a one-line notice quotes


def counted(n: int, noun: str) -> str:
    """`n` and `noun`, the noun plural unless n is 1: counted(1, "batch") is "1 batch", counted(2,
    "batch") "2 batches", counted(0, "queued prompt") "0 queued prompts". The last word takes "es" after
    s, x, ch or sh, else "s" (the nouns the clients count are regular)."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}es" if noun.endswith(("s", "x", "ch", "sh")) else f"{n} {noun}s"


def span(word: str, a: int, b: int) -> str:
    """Items a..b of a kind as "lines 3-4", or "line 3" when a is b."""
    return f"{word} {a}" if a == b else f"{word}s {a}-{b}"


def short_reason(message: str) -> str:
    """A server's status message on one line (runs of spaces, tabs and line breaks become one space) and
    at most REASON_CHARS characters (Unicode code points): a longer one is cut to REASON_CHARS - 3 and
    ends with "..."; "" when the message has no text."""
    text = re.sub(r"[ \t\r\n]+", " ", message).strip(" ")
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 3] + "..."
