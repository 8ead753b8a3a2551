"""A container's masked /proc (Kubernetes' default procMount) and the code sandbox as uid 10001: the
kernel refuses the sandbox's own proc mount there, so the service refuses to start with bwrap's reason
and the flag that fixes it, instead of failing every item later. (With --no-proc, the attack battery
in test_sandbox_security.py runs in exactly this setting: mode uid10001-masked-proc.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import sandbox_modes
from reward_service_kit import REPO

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")


def test_a_masked_proc_without_no_proc_stops_the_service_at_start_with_the_fix() -> None:
    mode = sandbox_modes.mode_named("uid10001-masked-proc")
    cmd = [*mode.launcher, mode.python, "-m", "grpo_rewards.code_sandbox.server", "--listen", "127.0.0.1:0"]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, **mode.env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "Can't mount proc" in out and "--no-proc" in out
