"""`follow_steps` (and `grpo watch --follow`) carries a step stream across a crash and restart of the
trainer: the restart resumes from the last checkpoint and runs the steps after it again under the same
numbers, and the follower gets those new runs (a plain reconnect with after_step = the last step seen
would miss them) and no report twice. (The restart marks the earlier reports FAILED "lost:" until the
steps run again, whose reports replace them in the store: a follower back only after that, as here, never
sees the FAILED ones; one back before does: test_follow_state.py, tests/integration/api/test_steps.py.)

The trainer is a real `grpo-server` subprocess on a fixed loopback port, killed with SIGKILL while step 4
waits in its reward phase (checkpoints every 2 steps: step 3's update dies with the process). The
follower comes back only once the restarted trainer has run the lost steps again, so the steps it needs
are behind the last one it saw. (A stream that is connected while the steps run again gets them from the
server: tests/integration/api/test_steps.py.)"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from live_trainer import (
    ConstantScorer,
    TrainerProcess,
    config_data,
    free_port,
    prompts,
    serve,
    wait_for,
    write_yaml,
)

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient

COMPLETED = trainer_pb2.STEP_STATE_COMPLETED


class MeteredScorer(ConstantScorer):
    """Until `open()`, answers one Score call per permit released (a step makes one call): the test
    decides how far the run gets."""

    def __init__(self, name: str, value: float) -> None:
        super().__init__(name, value)
        self.permits = threading.Semaphore(0)
        self.opened = threading.Event()
        self.arrived = 0  # calls received, answered or not

    def open(self) -> None:
        """Answer every call from now on, and the ones waiting."""
        self.opened.set()
        for _ in range(100):
            self.permits.release()

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        with self._lock:
            self.arrived += 1
        if not self.opened.is_set():
            self.permits.acquire(timeout=120)
        return super().score(items)


def test_follow_steps_gets_the_steps_a_restart_runs_again(tmp_path: Path) -> None:
    scorer = MeteredScorer("toy", 0.5)
    backend = serve(scorer)
    config = write_yaml(tmp_path / "trainer.yaml", config_data(checkpoint={"every_steps": 2}))
    store_dir = tmp_path / "store"
    listen = f"127.0.0.1:{free_port()}"
    first = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "first.log",
                           listen=listen)
    second: TrainerProcess | None = None
    follower = TrainerClient(listen)
    seen: list[trainer_pb2.StepReport] = []
    reconnects: list[str] = []
    lock = threading.Lock()
    may_reconnect = threading.Event()

    def reconnecting(reason: str) -> None:
        reconnects.append(reason)
        may_reconnect.wait(300)  # back only once the restarted trainer has run steps 3-5 again

    def follow() -> None:
        for response in follower.follow_steps(retry_seconds=0.2, give_up_seconds=120, on_reconnect=reconnecting):
            with lock:
                seen.append(response.step)

    def reports(step: int) -> list[trainer_pb2.StepReport]:
        with lock:
            return [r for r in seen if r.step == step]

    try:
        first.wait_ready()
        following = threading.Thread(target=follow, daemon=True)
        following.start()
        first.client.submit_prompts(prompts(10))  # 5 steps of 2 prompts
        for _ in range(3):
            scorer.permits.release()
        wait_for(lambda: any(r.state == COMPLETED for r in reports(3)) or None, 120,
                 lambda: f"step 3 did not complete; log:\n{first.log_tail()}")
        wait_for(lambda: scorer.arrived >= 4 or None, 60, "step 4 never reached its reward phase")
        assert first.client.step_status().run.checkpoint_step == 2
        first.kill()

        second = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "second.log",
                                listen=listen)
        scorer.open()
        second.wait_ready()
        wait_for(lambda: (r := second.client.step_status().step).step == 5 and r.state == COMPLETED or None, 180,
                 lambda: f"the restarted trainer did not run step 5; log:\n{second.log_tail() if second else ''}")
        assert second.client.step_status(3).step.state == COMPLETED
        may_reconnect.set()
        wait_for(lambda: [(reports(n) or [trainer_pb2.StepReport()])[-1].state for n in range(1, 6)] == [COMPLETED] * 5
                 or None, 180,
                 lambda: f"the follower did not get steps 1-5 completed: {[(r.step, r.state) for r in seen]}; "
                         f"log:\n{second.log_tail() if second else ''}")
    finally:
        for proc in (first, second):
            if proc is not None and proc.proc.poll() is None:
                proc.kill()
        may_reconnect.set()
        follower.close()
        backend.stop(1)
    following.join(30)
    assert not following.is_alive(), "follow_steps did not end when its client was closed"

    assert reconnects, "the follower never reconnected"
    # The follower came back after the restart ran steps 3-5 again: it had seen step 3 (the old run),
    # which is after the checkpoint, so it asks from step 2 and gets the new step 3 as well as 4 and 5.
    step3 = reports(3)
    assert [r.state for r in step3] == [COMPLETED, COMPLETED], step3
    assert step3[1].started_at.ToNanoseconds() > step3[0].started_at.ToNanoseconds()
    assert [r.state for r in reports(4)] == [COMPLETED] and [r.state for r in reports(5)] == [COMPLETED]
    # Steps 1 and 2 (in the checkpoint) came once; no report came twice.
    assert len(reports(1)) == 1 and len(reports(2)) == 1
    keys = [(r.step, r.started_at.ToNanoseconds(), r.state) for r in seen]
    assert len(keys) == len(set(keys)), keys
