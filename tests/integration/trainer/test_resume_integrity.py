"""What the trainer resumes from, end to end (real trainer in process, tiny model, real SQLite): an
export taken while paused is the state of the last checkpoint and loads with transformers; a store
directory moved to another path resumes from its own checkpoint; a training checkpoint whose weights
changed on disk fails the run with an error naming the file (no silent resume from damaged weights, no
fall back that would un-train prompts), and the store is left as it was."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch
from live_trainer import parsed_config, prompts, wait_for
from safetensors.torch import load_model

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.app import TrainerApp
from grpo_server.checkpoint import checkpoint_dir, verify_manifest


def test_a_moved_store_resumes_and_a_damaged_checkpoint_is_named_not_loaded(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    first = start_trainer(store_dir, [("toy", backend.address)])
    client = TrainerClient(f"127.0.0.1:{first.api_port}")
    client.submit_prompts(prompts(4))
    wait_for(lambda: client.step_status().run.checkpoint_step == 2 or None, 120, "no checkpoint at step 2")
    client.pause()
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_PAUSED or None, 60, "not paused")
    export = client.export_checkpoint(str(tmp_path / "export"), wait=True)
    assert export.state == trainer_pb2.EXPORT_STATE_DONE and export.step == 2, export
    assert verify_manifest(Path(export.destination))["step"] == 2
    exported = AutoModelForCausalLM.from_pretrained(export.destination)
    checkpointed = copy.deepcopy(exported)
    load_model(checkpointed, str(checkpoint_dir(store_dir, 2) / "model.safetensors"), strict=True)
    theirs = dict(checkpointed.named_parameters())
    for name, p in exported.named_parameters():
        assert torch.equal(p, theirs[name].to(p.dtype)), name
    first.shutdown()

    moved = tmp_path / "elsewhere" / "store"  # restored from a backup to another path, say
    shutil.move(str(store_dir), str(moved))
    resumed = start_trainer(moved, [("toy", backend.address)])
    assert resumed.failed is None and resumed.loop.step == 2
    assert resumed.store.latest_checkpoint().path == str(checkpoint_dir(moved, 2))  # type: ignore[union-attr]
    resumed.shutdown()

    weights = checkpoint_dir(moved, 2) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one weight's bits: safetensors itself would load it without a word
    weights.write_bytes(bytes(data))
    damaged = TrainerApp(parsed_config(), moved, backend_overrides=[("toy", backend.address)])
    try:
        damaged.start()
        client = TrainerClient(f"127.0.0.1:{damaged.api_port}")
        run = wait_for(lambda: (r := client.step_status().run).state == trainer_pb2.RUN_STATE_FAILED and r or None,
                       120, lambda: f"the run did not fail: {client.step_status().run}")
        assert run.error.startswith("CheckpointCorrupt: the training checkpoint of step 2 is damaged: "), run.error
        assert f"{weights}: its sha256" in run.error and "Restore" in run.error, run.error
        assert (run.checkpoint_step, run.prompts_trained, run.queue_depth) == (2, 4, 0)
    finally:
        damaged.shutdown()
    assert weights.read_bytes() == bytes(data)  # left as found, for the operator to restore
