"""A step that raises an unexpected error (here the step's update raising MemoryError, standing in for
running out of memory, which cannot be provoked reliably on a shared machine) is reported FAILED with
the error, not left RUNNING; its prompts go back to the queue; the run stops in state FAILED with the
same error; and a restart on the same store trains those prompts. A step that fails part-way through its
update leaves weights that ExportCheckpoint refuses to export (FAILED_PRECONDITION WEIGHTS_INCONSISTENT)
until a restart resumes from the last checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from live_trainer import prompts, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_client.client import TrainerError
from grpo_server.store import Store
from grpo_server.types import PromptState


def test_a_step_that_raises_is_failed_and_its_prompts_requeued(toy_backend, start_trainer, tmp_path: Path) -> None:
    _, toy = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", toy.address)])
    calls: list[int] = []

    def out_of_memory(step: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(step)
        raise MemoryError("cannot allocate 2.00 GiB for the backward pass")

    app.loop.runner.run_step = out_of_memory  # type: ignore[method-assign]
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    batch = prompts(2, prefix="oom")
    client.submit_prompts(batch)

    failed = next(r for r in client.iter_steps(timeout=120) if r.state != trainer_pb2.STEP_STATE_RUNNING)
    assert failed.step == 1
    assert failed.state == trainer_pb2.STEP_STATE_FAILED, trainer_pb2.StepState.Name(failed.state)
    # Out of memory outside a phase the loop knows (the whole step was replaced): no setting to name.
    assert failed.error == ("MemoryError: cannot allocate 2.00 GiB for the backward pass (out of memory; then restart "
                            "the trainer; it resumes from the start and no submitted prompt is lost)")
    assert set(failed.prompt_ids) == {p.id for p in batch}
    run = wait_for(lambda: (r := client.step_status().run).state == trainer_pb2.RUN_STATE_FAILED and r or None, 60,
                   lambda: f"the run did not fail: {client.step_status().run}")
    assert run.error == failed.error
    assert run.queue_depth == len(batch)
    assert client.step_status(1).step.state == trainer_pb2.STEP_STATE_FAILED
    assert calls == [1]  # the loop stopped: no second step ran on a state it cannot trust
    assert app.store.counts()[PromptState.QUEUED] == len(batch)
    assert app.metrics.registry.get_sample_value("grpo_steps_total", {"state": "failed"}) == 1.0
    # The step failed before its update began: the weights are step 0's and can be exported.
    export = client.export_checkpoint(str(tmp_path / "export-0"), wait=True)
    assert export.state == trainer_pb2.EXPORT_STATE_DONE and export.step == 0, export
    app.shutdown()

    store = Store(store_dir)
    try:
        states = store.prompt_states()
    finally:
        store.close()
    assert {pid: s for pid, (s, _) in states.items()} == {p.id: PromptState.QUEUED for p in batch}

    restarted = start_trainer(store_dir, [("toy", toy.address)])
    client = TrainerClient(f"127.0.0.1:{restarted.api_port}")
    wait_for(lambda: client.step_status().run.prompts_trained == len(batch) or None, 300,
             lambda: f"the requeued prompts were not trained: {client.step_status().run}")
    done = client.step_status(1).step
    # The run resumes from its last checkpoint (none: step 0), so, as after a crash, the step takes the
    # number 1 again and its report replaces the FAILED one.
    assert done.state == trainer_pb2.STEP_STATE_COMPLETED, done
    assert set(done.prompt_ids) == {p.id for p in batch}


def test_weights_left_by_a_step_that_failed_mid_update_are_not_exported(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    _, toy = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", toy.address)])
    first = next(app.engine.model.parameters())
    before = first.detach().clone()

    def half_an_update(*args: Any, **kwargs: Any) -> Any:
        app.engine.optimizer_stepping = True  # as the torch engine says while its optimizer steps
        with torch.no_grad():
            first.add_(1.0)  # part of the weights moved, then the optimizer step dies
        raise MemoryError("cannot allocate 1.00 GiB for the optimizer state")

    app.engine.train_step = half_an_update  # type: ignore[method-assign]
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    batch = prompts(2, prefix="half")
    client.submit_prompts(batch)
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_FAILED or None, 120,
             lambda: f"the run did not fail: {client.step_status().run}")
    assert client.step_status(1).step.error == (
        "MemoryError: cannot allocate 1.00 GiB for the optimizer state (out of memory in the optimizer step (AdamW "
        "keeps two fp32 numbers for every weight it trains): train a LoRA adapter instead of every weight "
        "(algorithm.lora_rank), or shard the optimizer over GPUs (training.engine deepspeed); then restart the "
        "trainer; it resumes from the start and no submitted prompt is lost)")

    destination = tmp_path / "export-half"
    with pytest.raises(TrainerError) as caught:
        client.export_checkpoint(str(destination), wait=True)
    err = caught.value
    assert err.code is grpc.StatusCode.FAILED_PRECONDITION
    assert err.preconditions == ["WEIGHTS_INCONSISTENT"]
    assert "step 1 failed during its update" in err.message
    assert "the latest durable checkpoint is step 0" in err.message
    assert not destination.exists()  # nothing written
    assert app.metrics.registry.get_sample_value("grpo_checkpoints_total", {"kind": "export"}) in (None, 0.0)
    app.shutdown()

    # A restart resumes from the last checkpoint (the initial weights here), trains the prompts again and
    # exports: the export is a real step away from the initial weights (Adam moves each weight by about
    # the learning rate), not the half-updated state (1.0 away).
    restarted = start_trainer(store_dir, [("toy", toy.address)])
    client = TrainerClient(f"127.0.0.1:{restarted.api_port}")
    wait_for(lambda: client.step_status().run.prompts_trained == len(batch) or None, 300,
             lambda: f"the requeued prompts were not trained: {client.step_status().run}")
    export = client.export_checkpoint(str(destination), wait=True)
    assert export.state == trainer_pb2.EXPORT_STATE_DONE and export.step >= 1, export
    from safetensors.torch import load_file

    exported = load_file(str(destination / "model.safetensors"))
    name = next(n for n, p in restarted.engine.model.named_parameters() if p is next(restarted.engine.model.parameters()))
    assert torch.allclose(exported[name], before, atol=1e-2), "the export is not the resumed run's weights"


def test_a_step_whose_checkpoint_fails_still_reaches_open_watchers_and_the_metrics(
        toy_backend, start_trainer, tmp_path: Path) -> None:
    """The step's COMPLETED report is stored before its checkpoint is written; when the write fails (a
    full disk) the run ends, but a WatchSteps stream open at the time still hears of the step's end, as a
    stream opened later and StepStatus do, and grpo_steps_total counts it."""
    import errno
    import threading

    scorer, toy = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", toy.address)])
    scorer.gate = threading.Event()  # step 1 waits in its reward phase until the stream has seen it run

    def full_disk(step: int) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    app.loop.save_checkpoint = full_disk
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    live: list[tuple[int, int]] = []
    running = threading.Event()

    def watch() -> None:
        for report in client.iter_steps(include_running=True, timeout=120):
            live.append((report.step, report.state))
            if report.state == trainer_pb2.STEP_STATE_RUNNING:
                running.set()
            if report.state == trainer_pb2.STEP_STATE_COMPLETED:
                return

    client.submit_prompts(prompts(2))
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert running.wait(60), f"the stream did not see step 1 run: {live}"
    scorer.gate.set()
    watcher.join(120)
    assert live == [(1, trainer_pb2.STEP_STATE_RUNNING), (1, trainer_pb2.STEP_STATE_COMPLETED)], live
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_FAILED or None, 60,
             lambda: f"the run did not fail: {client.step_status().run}")
    assert client.step_status(1).step.state == trainer_pb2.STEP_STATE_COMPLETED
    assert app.metrics.registry.get_sample_value("grpo_steps_total", {"state": "completed"}) == 1.0
