"""The contracts stay `buf lint` clean (STANDARD rules). buf comes from the npm package @bufbuild/buf,
installed by `make setup` into node_modules/."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


@pytest.mark.skipif(not BUF.exists(), reason="buf is not installed: run `make setup` (npm install)")
def test_buf_lint_is_clean() -> None:
    result = subprocess.run([str(BUF), "lint"], cwd=ROOT / "protos", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
