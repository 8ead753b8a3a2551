"""A client's step follower (Go `FollowSteps`, TypeScript `followSteps`) run as a subprocess against a real
`grpo-server` on a fixed loopback port that is killed with SIGKILL, restarted on the same store and
port, then drained and started a third time: the scenario of tests/integration/trainer/test_follow_steps.py
for the Python client, driven through each client's example command.

1. The first trainer (a checkpoint every 2 steps) runs steps 1-3; step 4 is held in its reward phase
   and the trainer is killed: step 3's update, after checkpoint 2, dies with it.
2. The follower is frozen (SIGSTOP) from just before the kill until the restarted trainer has run steps
   3-5 again, so it reconnects only then: the new run of step 3 is behind the last step it saw (3), and
   only after_step = min(last step, checkpoint step) = 2 gets it.
3. The second trainer is drained (SIGTERM: the stream ends, a checkpoint at step 5) and a third one
   started. The follower, whose last report said checkpoint 4, asks from step 4 and gets step 5 again,
   unchanged: it must skip it. A new step 6 shows the stream is live again.

The follower prints one line per report ("step N STATE started SECONDS.NANOS, checkpoint step C, ...")
and "reconnecting: REASON" on stderr; SIGINT ends it with exit status 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "trainer"))

from live_trainer import (  # noqa: E402
    ConstantScorer,
    TrainerProcess,
    config_data,
    free_port,
    prompts,
    serve,
    wait_for,
    write_yaml,
)

from grpo.trainer.v1 import trainer_pb2

COMPLETED = "STEP_STATE_COMPLETED"
_LINE = re.compile(r"^step (\d+) (STEP_STATE_\w+) started (\d+)\.(\d{9}), checkpoint step (\d+)")


@dataclass(frozen=True)
class Report:
    """One report line of the follower."""

    step: int
    state: str
    started_ns: int
    checkpoint_step: int


class Follower:
    """The follower subprocess; a thread collects its stdout lines as they come."""

    def __init__(self, cmd: list[str], cwd: Path, stderr_path: Path) -> None:
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def reports(self) -> list[Report]:
        with self._lock:
            lines = list(self.lines)
        out = []
        for line in lines:
            m = _LINE.match(line)
            assert m, f"not a report line: {line!r}"
            out.append(Report(int(m[1]), m[2], int(m[3]) * 10**9 + int(m[4]), int(m[5])))
        return out

    def of_step(self, step: int) -> list[Report]:
        return [r for r in self.reports() if r.step == step]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        with self._lock:
            out = "\n".join(self.lines)
        return f"--- follower stdout\n{out}\n--- follower stderr\n{self.stderr()}"

    def until(self, check: Callable[[], bool], timeout_s: float, what: str, trainer: TrainerProcess | None) -> None:
        """Wait for `check` while the follower runs; fail with its output (and the trainer's log) otherwise."""

        def done() -> bool | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"the follower exited ({self.proc.returncode}) before {what}\n{self.describe()}")
            return check() or None

        wait_for(done, timeout_s, lambda: f"{what}: timed out\n{self.describe()}\n--- trainer log\n"
                                          f"{trainer.log_tail() if trainer else ''}")

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGINT (SIGCONT first, in case it is frozen); the exit status."""
        if self.proc.poll() is None:
            self.send(signal.SIGCONT)
            self.send(signal.SIGINT)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(30)
        self._reader.join(10)
        self._stderr.close()
        return code


def run_restart_scenario(tmp_path: Path, follower_cmd: Callable[[str], list[str]], cwd: Path) -> Follower:
    """Run the scenario above with the follower `follower_cmd(target)`; returns the stopped follower
    after checking the behaviour every client shares (see the module docstring)."""
    scorer = ConstantScorer("toy", 0.5)
    scorer.gate_timeout_s = 120
    backend = serve(scorer)
    config = write_yaml(tmp_path / "trainer.yaml", config_data(checkpoint={"every_steps": 2}))
    store_dir = tmp_path / "store"
    listen = f"127.0.0.1:{free_port()}"
    toy = [("toy", backend.address)]
    trainers: list[TrainerProcess] = []
    follower: Follower | None = None

    def start(name: str) -> TrainerProcess:
        trainers.append(TrainerProcess(config, store_dir, toy, log_path=tmp_path / f"{name}.log", listen=listen))
        trainers[-1].wait_ready()
        return trainers[-1]

    def completed(step: int) -> bool:
        assert follower is not None
        return any(r.state == COMPLETED for r in follower.of_step(step))

    try:
        first = start("first")
        follower = Follower(follower_cmd(listen), cwd, tmp_path / "follower.stderr")
        first.client.submit_prompts(prompts(6))  # steps 1-3 (2 prompts a step)
        follower.until(lambda: completed(3), 120, "the follower saw step 3 complete", first)

        scorer.gate = threading.Event()  # step 4 waits in its reward phase
        calls = scorer.calls
        first.client.submit_prompts(prompts(4, start=6))  # steps 4-5
        wait_for(lambda: scorer.calls > calls or None, 60, "step 4 never reached its reward phase")
        assert first.client.step_status().run.checkpoint_step == 2
        follower.send(signal.SIGSTOP)
        first.kill()
        scorer.gate.set()
        scorer.gate = None

        second = start("second")
        wait_for(lambda: (r := second.client.step_status().step).step == 5 and r.state == trainer_pb2.STEP_STATE_COMPLETED or None, 180,
                 lambda: f"the restarted trainer did not run step 5; log:\n{second.log_tail()}")
        follower.send(signal.SIGCONT)
        follower.until(lambda: completed(5), 120, "the follower got step 5 from the restarted trainer", second)

        second.terminate()  # drain: the stream ends, a checkpoint at step 5
        assert second.wait(120) == 0, second.log_tail()
        third = start("third")
        assert third.client.step_status().run.checkpoint_step == 5
        third.client.submit_prompts(prompts(2, start=10))  # step 6
        follower.until(lambda: completed(6), 120, "the follower got step 6 from the third trainer", third)
    finally:
        code = follower.stop() if follower is not None else None
        for proc in trainers:
            if proc.proc.poll() is None:
                proc.kill()
        if scorer.gate is not None:
            scorer.gate.set()
        backend.stop(1)
    assert code == 0, f"the follower did not end cleanly on SIGINT ({code})\n{follower.describe()}"

    log = follower.describe()
    stderr = follower.stderr()
    assert re.search(r"^reconnecting: the trainer is unavailable \(", stderr, re.M), log
    assert re.search(r"^reconnecting: the trainer ended the stream", stderr, re.M), log
    # Steps 1-3 of the first trainer, then (after the kill) the new run of step 3, steps 4 and 5, then
    # after the drain only step 6: step 5 came again from the third trainer and was skipped.
    got = [(r.step, r.state) for r in follower.reports()]
    assert got == [(n, COMPLETED) for n in (1, 2, 3, 3, 4, 5, 6)], log
    step3 = follower.of_step(3)
    assert step3[1].started_ns > step3[0].started_ns, log
    assert follower.of_step(5)[0].checkpoint_step == 4, log  # so the third stream started after step 4
    keys = [(r.step, r.started_ns, r.state) for r in follower.reports()]
    assert len(keys) == len(set(keys)), log
    return follower
