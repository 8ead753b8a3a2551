"""tools/genconfigdoc.py shows every enum (Literal) field with its allowed values, also inside a union."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import genconfigdoc  # noqa: E402


def row(field: str) -> str:
    """The table row of `field` (e.g. `training.engine`) in the generated doc."""
    rows = [line for line in genconfigdoc.render().splitlines() if line.startswith(f"| `{field}` |")]
    assert len(rows) == 1, rows
    return rows[0]


def test_literal_fields_list_their_allowed_values() -> None:
    assert "| one of `torch`, `deepspeed` |" in row("training.engine")
    assert "| one of `grpo`, `bnpo`, `dapo`, `dr_grpo` |" in row("algorithm.aggregation")


def test_no_field_shows_an_empty_list_of_values() -> None:
    assert "one of  |" not in genconfigdoc.render()


def test_an_optional_literal_lists_its_values_and_none() -> None:
    assert genconfigdoc._type_text(Literal["token", "sequence"] | None) == "one of `token`, `sequence` or None"
    assert genconfigdoc._type_text(int | None) == "int or None"
