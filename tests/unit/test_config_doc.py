"""docs/configuration.md is generated from the config model; it must not drift from the code."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import genconfigdoc  # noqa: E402


def test_configuration_doc_matches_the_code() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == genconfigdoc.render(), "docs/configuration.md is stale: run python tools/genconfigdoc.py"
