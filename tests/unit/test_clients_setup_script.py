"""clients/setup.sh on a machine without dpkg (not Debian): it checks the tools instead of the Debian
packages, installs nothing, and says what is missing; it used to count every package as missing and
run apt-get, so that `make test` stopped there even with everything installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "clients" / "setup.sh"


def path_without(tmp_path: Path, *left_out: str) -> str:
    """A PATH of one folder holding links to every program on this PATH but `left_out`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = folder / entry.name
            if entry.name in left_out or target.exists() or not os.access(entry.path, os.X_OK):
                continue
            target.symlink_to(entry.path)
    return str(folder)


@pytest.fixture(autouse=True)
def _tools_present() -> None:
    for tool in ("go", "protoc", "node", "npm"):
        if subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            pytest.skip(f"{tool} is not installed (make setup installs it)")


def run_setup(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/bash", str(SETUP)], env={**os.environ, "PATH": path}, capture_output=True,
                          text=True, timeout=300)


def test_without_dpkg_the_tools_present_are_enough(tmp_path: Path) -> None:
    done = run_setup(path_without(tmp_path, "dpkg-query", "dpkg", "apt-get"))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "apt-get" not in done.stdout + done.stderr


def test_without_dpkg_a_missing_tool_is_named_and_nothing_is_installed(tmp_path: Path) -> None:
    done = run_setup(path_without(tmp_path, "dpkg-query", "dpkg", "apt-get", "go", "protoc"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "clients/setup.sh: no dpkg-query here (not Debian), so nothing is installed; missing: go protoc." \
        in done.stderr, done.stderr
    assert "apt-get" not in done.stdout
