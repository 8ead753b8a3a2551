"""Argument types for reward-service flags: a bad value is a usage error at parse time.

argparse turns the `ArgumentTypeError` these raise into `PROG: error: argument --flag: MESSAGE` on
stderr and exit status 2, before anything starts. Every numeric flag of the math, format and reward-model
services and of the harness goes through one of these, so `nan`, `inf`, negative counts and the like
never reach a running server.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _parse_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None


def int_in_range(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum` (and at most `maximum` when given)."""

    def parse(value: str) -> int:
        n = _parse_int(value)
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and n > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return n

    parse.__name__ = "int_in_range"
    return parse


positive_int = int_in_range(1)
INT32_MAX = 2**31 - 1  # a count the protos carry as int32 (Capabilities.max_batch_size)
non_negative_int = int_in_range(0)


def finite_float(*, minimum: float, inclusive: bool = True,
                 maximum: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number >= `minimum` (> `minimum` when not `inclusive`) and at most
    `maximum`. `nan` and `inf` are refused: a timeout or a wait of `nan` seconds would fail every call
    instead of failing at start."""
    lower = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    upper = f" and at most {maximum:g}" if maximum is not None else ""

    def parse(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        if (not math.isfinite(x) or x < minimum or (not inclusive and x == minimum)
                or (maximum is not None and x > maximum)):
            raise argparse.ArgumentTypeError(f"must be a finite number {lower}{upper}, got {value}")
        return x

    parse.__name__ = "finite_float"
    return parse
