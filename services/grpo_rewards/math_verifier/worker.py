"""What runs inside a verifier worker process: math-verify's parse and verify of one gold/answer pair.

math-verify guards its own parsing and comparison with `signal.alarm`, which only works in a process's
main thread. Here each worker process runs one pair at a time in its main thread with math-verify's own
alarms off and ONE interval timer for the whole item instead, so the budget covers parse + verify
together. Work that never returns to the interpreter (a C-level big-integer power such as
`10^{10^{10}}`) ignores signals: the parent kills such a worker after a grace period (see `pool`).
"""

from __future__ import annotations

import logging
import re
import signal
from dataclasses import dataclass
from typing import Any

# math-verify warns on every call that its own timeouts are off; we enforce ours (see module docstring).
logging.getLogger("math_verify").setLevel(logging.ERROR)


class ItemTimeout(BaseException):
    """The item's time budget ran out inside the worker. A BaseException so that math-verify's and
    sympy's `except Exception` blocks cannot swallow it."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison: `equal`, or `timed_out`; `error` names an unexpected failure."""

    equal: bool
    timed_out: bool = False
    error: str = ""


def _alarm(signum: int, frame: Any) -> None:
    raise ItemTimeout()


# A logical "or" between alternatives. math-verify keeps only the last one ("5 \lor 6" equals 6 and not 5), so
# a hedge inside one answer would score when its last guess is right; as a list ("5, 6") it equals only a
# gold answer that lists both.
_LOGICAL_OR = re.compile(r"\\(?:lor|vee)(?![A-Za-z])|∨")


# A number in scientific notation (`1.2e3`, `5E-4`). math-verify reads the lowercase form as a product with
# Euler's number (`1.2e3` = 1.2·e·3, `1.2e-4` = 1.2e - 4), so the right answer 1200 scored 0; written as
# a power of ten it is the number. Not inside a word or a command (`\sec3`, `x2e3`), nor `2e` alone.
_SCIENTIFIC = re.compile(r"(?<![\w.\\])(\d+(?:\.\d*)?|\.\d+)[eE]\+?(-?\d+)(?!\w|\.\d)")


def _parse(text: str) -> list[Any]:
    from math_verify import parse

    from .extract import unicode_math

    text = _SCIENTIFIC.sub(r"\1 \\times 10^{\2}", _LOGICAL_OR.sub(",", unicode_math(text)))
    # Inside $...$ so LaTeX and plain expressions both parse; fall back to math-verify's own extraction.
    parsed = parse(f"${text}$", parsing_timeout=None)  # type: ignore[arg-type]
    return parsed or parse(text, parsing_timeout=None)  # type: ignore[arg-type]


def verify_pair(gold: str, answer: str, budget_s: float) -> Verdict:
    """Is `answer` mathematically equal to `gold`? Both are already-extracted answer strings.

    Gold is parsed and passed first, as math-verify requires (its comparison is not symmetric: a gold
    "x = 2" accepts "2"). A gold that does not parse as math is compared as a string (math-verify does
    so when given the raw string). `budget_s` is wall-clock seconds for parse + verify.
    """
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        return _timed_verify(gold, answer, budget_s)
    except ItemTimeout:
        # The timer fired after the work was done, before `_timed_verify` disarmed it: the budget ran out
        # all the same. Caught here, not left to escape to the pool and the gRPC handler (which then
        # never answered the call: the whole batch lost at the client's deadline).
        return Verdict(equal=False, timed_out=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _timed_verify(gold: str, answer: str, budget_s: float) -> Verdict:
    """`verify_pair`'s work under one interval timer of `budget_s` (its SIGALRM handler raises ItemTimeout)."""
    from math_verify import verify

    signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        gold_parsed = _parse(gold) or [gold]
        answer_parsed = _parse(answer)
        if not answer_parsed:
            return Verdict(equal=False)
        return Verdict(equal=bool(verify(gold_parsed, answer_parsed, timeout_seconds=None)))  # type: ignore[arg-type]
    except ItemTimeout:
        return Verdict(equal=False, timed_out=True)
    except Exception as exc:  # a sympy corner case must not cost the worker process
        return Verdict(equal=False, error=f"{type(exc).__name__}: {exc}"[:300])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)  # the alarm may fire before this: verify_pair catches it


def warm_up() -> bool:
    """Import and exercise math-verify once so the first real item is not slow."""
    return verify_pair("1/2", "0.5", 30.0).equal
