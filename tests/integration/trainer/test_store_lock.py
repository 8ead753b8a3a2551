"""One trainer per store directory: a second `grpo-server` on a store another one is using exits with
status 2 and a message naming the holder, before it touches the store (the first one's leased prompts
stay leased, its step runs on). Once the first is killed with SIGKILL, the kernel has dropped its lock
and a new trainer takes the store over."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from live_trainer import (
    TrainerProcess,
    config_data,
    prompt_accounting,
    prompts,
    server_command,
    wait_for,
    write_yaml,
)

from grpo.trainer.v1 import trainer_pb2
from grpo_server.types import PromptState


def test_a_second_trainer_on_a_store_in_use_exits_without_touching_it(toy_backend, tmp_path: Path) -> None:
    scorer, backend = toy_backend("toy", 0.5)
    config = write_yaml(tmp_path / "trainer.yaml", config_data(checkpoint={"every_steps": 100}))
    store_dir = tmp_path / "store"
    first = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "first.log")
    second: TrainerProcess | None = None
    try:
        first.wait_ready()
        scorer.gate = threading.Event()  # hold step 1 in its reward phase: its prompts stay leased
        first.client.submit_prompts(prompts(4))
        assert scorer.calls_started.wait(60)

        rival = subprocess.run(
            [*server_command(), "--config", str(config), "--store-dir", str(store_dir), "--listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=120,
        )
        assert rival.returncode == 2, rival.stderr
        assert f"in use by another trainer (pid {first.proc.pid} on " in rival.stderr, rival.stderr
        assert "another --store-dir" in rival.stderr

        status = first.client.step_status()
        assert status.step.step == 1 and status.step.state == trainer_pb2.STEP_STATE_RUNNING
        assert status.run.queue_depth == 2  # step 1's two prompts were not put back by the rival
        scorer.gate.set()
        wait_for(lambda: first.client.step_status().run.latest_step >= 2
                 and first.client.step_status().step.state == trainer_pb2.STEP_STATE_COMPLETED or None, 120,
                 lambda: f"the first trainer stopped training; log:\n{first.log_tail()}")
        first.kill()  # no drain: the lock goes with the process

        second = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "second.log")
        second.wait_ready()
        wait_for(lambda: (s := second.client.step_status()).run.latest_step == 2
                 and s.step.state == trainer_pb2.STEP_STATE_COMPLETED or None, 120,
                 lambda: f"the second trainer did not train the store's prompts; log:\n{second.log_tail()}")
        second.terminate()  # the drain's checkpoint marks them trained
        assert second.wait(120) == 0, second.log_tail()
    finally:
        for proc in (first, second):
            if proc is not None and proc.proc.poll() is None:
                proc.kill()
    assert {pid: s for pid, (s, _) in prompt_accounting(store_dir).items()} == {
        f"p{i}": PromptState.TRAINED for i in range(4)
    }
