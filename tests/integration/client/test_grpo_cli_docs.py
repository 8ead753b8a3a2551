"""docs/client.md is the CLI reference: it must name every command and option `grpo --help` has."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from grpo_client.cli import build_parser

DOC = Path(__file__).resolve().parents[3] / "docs" / "client.md"


def _walk(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, str]]:
    """(command path, option string) for every option of every (sub)command."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((f"{prefix} {name}".strip(), ""))
                out += _walk(sub, f"{prefix} {name}".strip())
        else:
            out += [(prefix, s) for s in action.option_strings if s.startswith("--") and s != "--help"]
    return out


def test_the_cli_reference_names_every_command_and_option() -> None:
    text = DOC.read_text()
    missing = []
    for command, option in _walk(build_parser(), ""):
        if option and not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text):
            missing.append(f"{command} {option}")
        if not option and f"grpo {command}" not in text:
            missing.append(command)
    assert not missing, f"docs/client.md does not document: {missing}"
