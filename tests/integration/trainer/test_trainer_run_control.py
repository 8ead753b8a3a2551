"""Run control of the real trainer: pause lets the current step finish and starts no new one while the
API stays up; resume goes on. SIGTERM to the `grpo-server` process drains it: health NOT_SERVING at
once, the step in progress finishes, a checkpoint containing it is written, exit code 0. Health is
NOT_SERVING while the model loads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from grpc_health.v1 import health_pb2
from live_trainer import TrainerProcess, config_data, prompts, wait_for, write_yaml

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.store import Store
from grpo_server.types import PromptState

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_pause_finishes_the_step_then_starts_none_until_resume(toy_backend, start_trainer, tmp_path: Path) -> None:
    scorer, backend = toy_backend("toy", 0.5)
    scorer.gate = threading.Event()  # hold step 1 in its reward phase
    app = start_trainer(tmp_path / "store", [("toy", backend.address)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(6))
    assert scorer.calls_started.wait(60)

    run = client.pause()
    assert run.pause_requested and run.state == trainer_pb2.RUN_STATE_TRAINING  # step 1 still going
    scorer.gate.set()
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_PAUSED or None, 60, "never paused")
    status = client.step_status()
    assert status.step.step == 1 and status.step.state == trainer_pb2.STEP_STATE_COMPLETED
    calls = scorer.calls
    time.sleep(2.0)  # four of the loop's polls: long enough for a step to start if one would
    status = client.step_status()
    assert status.run.latest_step == 1 and status.run.state == trainer_pb2.RUN_STATE_PAUSED
    assert scorer.calls == calls
    # The API stays up while paused.
    assert client.submit_prompts(prompts(2, start=100)).queue_depth == 6

    run = client.resume()
    assert not run.pause_requested
    for report in client.iter_steps(after_step=1, timeout=60):
        assert report.step == 2 and report.state == trainer_pb2.STEP_STATE_COMPLETED
        break


def test_sigterm_drains_finishes_the_step_checkpoints_and_exits_0(toy_backend, tmp_path: Path) -> None:
    scorer, backend = toy_backend("toy", 0.5)
    config = write_yaml(tmp_path / "trainer.yaml", config_data(checkpoint={"every_steps": 100}))
    store_dir = tmp_path / "store"
    proc = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "trainer.log")
    try:
        # The API answers at once, but the model is still loading (seconds, in a fresh process).
        assert proc.health() == NOT_SERVING
        assert proc.client.step_status().run.state == trainer_pb2.RUN_STATE_STARTING
        proc.wait_ready()

        proc.client.submit_prompts(prompts(8))
        for report in proc.client.iter_steps(include_running=True, timeout=120):
            if report.step == 2 and report.state == trainer_pb2.STEP_STATE_COMPLETED:
                scorer.calls_started.clear()
                scorer.gate = threading.Event()  # hold step 3 in its reward phase
                break
        assert scorer.calls_started.wait(60)

        proc.terminate()
        wait_for(lambda: proc.health() == NOT_SERVING or None, 30, "health stayed SERVING after SIGTERM")
        assert proc.client.step_status().run.state == trainer_pb2.RUN_STATE_DRAINING
        assert proc.proc.poll() is None  # still finishing step 3
        scorer.gate.set()
        assert proc.wait(120) == 0, proc.log_tail()
    finally:
        if proc.proc.poll() is None:
            proc.kill()

    store = Store(store_dir)
    try:
        latest = store.latest_checkpoint()
        states = store.prompt_states()
        step3 = store.get_step(3)
    finally:
        store.close()
    assert latest is not None and latest.step == 3  # written by the drain (every_steps is 100)
    assert step3 is not None and step3.state.value == "completed"
    assert {pid: s for pid, (s, _) in states.items()} == {
        **{f"p{i}": PromptState.TRAINED for i in range(6)},
        **{f"p{i}": PromptState.QUEUED for i in range(6, 8)},
    }
    assert "draining" in proc.log_tail(20000)


def test_sigterm_while_the_model_loads_exits_0_and_loses_nothing(toy_backend, tmp_path: Path) -> None:
    # A first run stores prompts and stops; the second is told to stop while it is still loading.
    _, backend = toy_backend("toy", 0.5)
    config = write_yaml(tmp_path / "trainer.yaml", config_data(checkpoint={"every_steps": 100}))
    store_dir = tmp_path / "store"
    first = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "first.log")
    try:
        first.wait_ready()
        first.client.pause()
        first.client.submit_prompts(prompts(4))
        first.terminate()
        assert first.wait(120) == 0, first.log_tail()
    finally:
        if first.proc.poll() is None:
            first.kill()

    second = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "second.log")
    try:
        assert second.client.step_status().run.state == trainer_pb2.RUN_STATE_STARTING  # still loading
        second.terminate()
        assert second.wait(120) == 0, second.log_tail()
    finally:
        if second.proc.poll() is None:
            second.kill()
    log = second.log_tail(200000)
    assert "Traceback" not in log and "loading failed" not in log, log[-4000:]
    assert "stopped" in log

    store = Store(store_dir)
    try:
        states = store.prompt_states()
        started = store.steps_after(0)
    finally:
        store.close()
    assert {pid: s for pid, (s, _) in states.items()} == {f"p{i}": PromptState.QUEUED for i in range(4)}
    assert started == []  # the interrupted start ran no step


def test_a_step_that_outlasts_the_drain_is_left_for_the_restart_and_loses_nothing(
    toy_backend, start_trainer, tmp_path: Path, caplog
) -> None:
    scorer, backend = toy_backend("toy", 0.5)
    scorer.gate = threading.Event()  # hold step 1 in its reward phase, past the drain's limit
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", backend.address)], algorithm={"prompts_per_step": 2})
    TrainerClient(f"127.0.0.1:{app.api_port}").submit_prompts(prompts(4))
    assert scorer.calls_started.wait(60)
    # The held step is the first: no step before it was skipped for want of rewards.
    assert [(r.step, r.state.value) for r in app.store.steps_after(0)] == [(1, "running")]

    with caplog.at_level("WARNING", logger="grpo_server"):
        app.shutdown(grace=0.5)
    assert any("did not finish within the 0.5 s drain" in r.getMessage() and "checkpoint step 0" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    scorer.gate.set()  # the abandoned step's thread goes on against a closed store: it must write nothing
    wait_for(lambda: not app.loop.alive or None, 60, "the abandoned step's thread did not end")
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]

    _, backend2 = toy_backend("toy", 0.5)
    app2 = start_trainer(store_dir, [("toy", backend2.address)], algorithm={"prompts_per_step": 2},
                         training={"max_steps": 2})
    client = TrainerClient(f"127.0.0.1:{app2.api_port}")
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_FINISHED or None, 180,
             lambda: f"run did not finish: {client.step_status()}")
    # Steps 1 and 2 ran again from checkpoint 0 and trained each prompt once.
    assert [(r.step, r.state.value) for r in app2.store.steps_after(0)] == [(1, "completed"), (2, "completed")]
    assert {pid: s for pid, (s, _) in app2.store.prompt_states().items()} == {
        f"p{i}": PromptState.TRAINED for i in range(4)
    }
