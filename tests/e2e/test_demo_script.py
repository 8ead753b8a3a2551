"""The demo script (`make demo` runs `python -m grpo_server.demo`) on the tiny model: its whole
orchestration as a user runs it (separate math verifier and trainer processes, submit, watch, export,
plot, stop), and how it ends when a user interrupts it or the trainer dies.

The SmolLM2 run itself (about 5 minutes, accuracy before and after) is `make demo`; these tests take the
same code path with `--config` pointing at a tiny-model config."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from grpo_server.checkpoint import verify_manifest

ROOT = Path(__file__).resolve().parents[2]


def tiny_demo_config(tmp_path: Path, max_steps: int) -> Path:
    """examples/tiny.yaml, run for `max_steps` steps."""
    cfg = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    cfg["training"]["max_steps"] = max_steps
    path = tmp_path / "tiny-demo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_demo(config: Path, out: Path, *args: str) -> subprocess.Popen:
    """The demo in a session of its own, as a terminal would run it (Ctrl-C reaches the whole group)."""
    mark = f"GRPO_DEMO_TEST_RUN={out}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRPO_DEMO_TEST_RUN": str(out)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpo_server.demo", "--config", str(config), "--out", str(out), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    _MARKS[proc.pid] = mark.encode()
    return proc


# A mark in each demo's environment, by the demo's pid: every process it starts (the services, each in a
# session of its own so that Ctrl-C reaches the demo only, and their workers) inherits it and keeps it
# after the demo has exited.
_MARKS: dict[int, bytes] = {}


def services_of(demo: subprocess.Popen) -> dict[int, str]:
    """Live processes the demo started, pid -> command line (also once the demo has exited), the math
    verifier's worker pool included."""
    mark = _MARKS[demo.pid]
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == demo.pid:
            continue
        try:
            state = (entry / "stat").read_text().rsplit(") ", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if mark in environ.split(b"\0") and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def kill_all(demo: subprocess.Popen) -> None:
    """SIGKILL the demo and everything it started (a test that failed half-way)."""
    for pid in [demo.pid, *services_of(demo)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(demo: subprocess.Popen, timeout: float = 30.0) -> dict[int, str]:
    """The demo's processes still alive after `timeout` seconds (a stopping pool may take a moment)."""
    deadline = time.monotonic() + timeout
    while (left := services_of(demo)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> list[str]:
    """Read the demo's stdout until a line contains `text`; the lines read."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"the demo ended before printing {text!r}: {''.join(lines)}{proc.stderr.read() if proc.stderr else ''}")
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"no line with {text!r} within {timeout} s: {''.join(lines)}")


def test_the_demo_trains_exports_plots_and_stops_its_services(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start_demo(ROOT / "examples" / "tiny.yaml", out, "--steps", "2")  # as the README shows it
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + stderr
    for heading in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6] Training 2 steps (GRPO, 4 prompts x 4 samples)", "[6/6]"):
        assert heading in stdout
    assert "step   1  reward" in stdout and "step   2  reward" in stdout  # the live line per step
    # One of the completions step 2 kept, with the verifier's word on it.
    assert re.search(r"^  a completion of step 2 \((reward [\d.]+|no reward); math: (correct|expected) .*\): '", stdout,
                     re.M), stdout
    assert "Held-out greedy accuracy: before" in stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2
    assert 0.0 <= summary["accuracy_before"] <= 1.0 and 0.0 <= summary["accuracy_after"] <= 1.0
    # The trainer (examples/tiny.yaml runs until stopped) was paused once step 2 was under way, so no
    # step 3 started: the export holds exactly the 2 steps trained (it held 3 when the pause came after).
    assert verify_manifest(Path(summary["export"]))["step"] == summary["export_step"] == 2
    assert f"exported step {summary['export_step']} to" in stdout
    assert Path(summary["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The accuracy before training was measured on the model the trainer started from.
    assert (out / "store" / "model-tiny-seed0" / "config.json").exists()
    assert wait_gone(proc) == {}


def interrupted_while_training(out: Path, act: Callable[[subprocess.Popen], None]) -> tuple[subprocess.Popen, str]:
    """Run the demo on the tiny model until step 1 is reported, `act` on it, and wait for its end:
    (the finished demo, its stderr). The demo's session is killed if it outlives the test."""
    proc = start_demo(ROOT / "examples" / "tiny.yaml", out, "--steps", "50")
    try:
        wait_for_line(proc, "step   1  reward", timeout=400)
        act(proc)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None or services_of(proc):
            kill_all(proc)
    return proc, stderr


def test_ctrl_c_stops_both_services_without_a_traceback(tmp_path: Path) -> None:
    def ctrl_c(proc: subprocess.Popen) -> None:
        running = " ".join(services_of(proc).values())
        assert "grpo-server" in running and "grpo-reward-math" in running
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does

    proc, stderr = interrupted_while_training(tmp_path / "run", ctrl_c)
    assert proc.returncode == 130, stderr
    assert "interrupted: the demo stopped the services it started" in stderr
    assert "Traceback" not in stderr
    # The trainer got one signal, the demo's SIGTERM, and drained: the terminal's SIGINT reached it too
    # and the demo's SIGTERM then counted as a second one ("exiting without finishing the drain").
    trainer_log = (tmp_path / "run" / "trainer.log").read_text()
    assert "received SIGTERM" in trainer_log and "SIGINT" not in trainer_log, tail(tmp_path / "run" / "trainer.log")
    assert "received SIGTERM again" not in trainer_log and "stopped; latest checkpoint step" in trainer_log, tail(tmp_path / "run" / "trainer.log")
    left = wait_gone(proc)
    # Seen once in a full suite run (not reproduced alone or under load): the math verifier's forkserver
    # and resource tracker outlived it. The logs say what the verifier did at the end.
    assert left == {}, "\n".join([*left.values(), "math.log:", tail(tmp_path / "run" / "math.log")])


def tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(none)"


def test_a_trainer_that_dies_ends_the_demo_with_a_pointer_to_its_log(tmp_path: Path) -> None:
    def kill_trainer(proc: subprocess.Popen) -> None:
        [trainer] = [pid for pid, cmd in services_of(proc).items() if "grpo-server" in cmd]
        os.kill(trainer, signal.SIGKILL)

    out = tmp_path / "run"
    proc, stderr = interrupted_while_training(out, kill_trainer)
    assert proc.returncode == 1, stderr
    assert "demo failed: the trainer exited with -9" in stderr
    assert str(out / "trainer.log") in stderr
    assert "Traceback" not in stderr
    assert wait_gone(proc) == {}  # the math verifier was stopped too


@pytest.mark.parametrize(("max_steps", "args", "words"), [
    (0, [], "runs until stopped (training.max_steps 0): give the demo --steps N"),
    (2, ["--steps", "0"], "--steps must be at least 1, not 0"),
    # the trainer stopped after step 2 and the demo waited for step 3 for ever
    (2, ["--steps", "3"], "--steps 3: {config} stops after training.max_steps 2"),
    (0, ["--steps", "76"], "--steps 76: 76 steps of 4 prompts (algorithm.prompts_per_step) take more than the "
                           "demo's 300 problems"),
])
def test_a_run_the_demo_cannot_finish_is_refused(tmp_path: Path, max_steps: int, args: list[str], words: str) -> None:
    config = tiny_demo_config(tmp_path, max_steps=max_steps)
    words = words.format(config=config)
    proc = subprocess.run([sys.executable, "-m", "grpo_server.demo", "--config", str(config), "--out", str(tmp_path / "o"),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert words in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing started, nothing written


def test_a_config_or_run_directory_the_demo_cannot_use_is_refused(tmp_path: Path) -> None:
    # A default reward other than the math verifier (the one backend the demo starts): every submission
    # was refused and the demo died with a traceback. A run directory already used: the demo resumed its
    # store, printed the earlier run's steps as its own, then failed to export.
    cfg = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    cfg["rewards"] = {"default": [{"backend": "code"}]}
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(cfg))
    used = tmp_path / "used"
    used.mkdir()
    (used / "trainer.log").write_text("an earlier run")
    for config, out, words in ((other, tmp_path / "o", "rewards.default must be the math verifier alone"),
                               (ROOT / "examples" / "tiny.yaml", used, f"--out {used} is not empty")):
        proc = subprocess.run([sys.executable, "-m", "grpo_server.demo", "--config", str(config), "--out", str(out),
                               "--steps", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert (proc.returncode, "Traceback" in proc.stderr) == (2, False), proc.stderr
        assert words in proc.stderr
    assert not (tmp_path / "o").exists() and os.listdir(used) == ["trainer.log"]
