"""A store directory holds one run. Restarted with a config naming a model whose parameters do not fit
the store's checkpoint (another model, another size), the trainer fails the run with a message that
says so and what to do, instead of a state-dict error, and the store is left as it was: restarted with
the model that trained it, the run resumes."""

from __future__ import annotations

from pathlib import Path

from live_trainer import parsed_config, prompts, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.app import TrainerApp
from grpo_server.models.tiny import build_tiny_model


def test_a_store_of_another_models_run_fails_with_a_clear_error_and_keeps_its_state(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    first = start_trainer(store_dir, [("toy", backend.address)])
    client = TrainerClient(f"127.0.0.1:{first.api_port}")
    client.submit_prompts(prompts(4))
    wait_for(lambda: client.step_status().run.checkpoint_step == 2 or None, 120, "no checkpoint at step 2")
    first.shutdown()

    wider = build_tiny_model(tmp_path / "wider", seed=1, hidden_size=96, intermediate_size=192, num_attention_heads=3)
    other = TrainerApp(parsed_config(model={"source": "path", "path": str(wider)}), store_dir,
                       backend_overrides=[("toy", backend.address)])
    try:
        other.start()
        client = TrainerClient(f"127.0.0.1:{other.api_port}")
        run = wait_for(lambda: (r := client.step_status().run).state == trainer_pb2.RUN_STATE_FAILED and r or None,
                       120, lambda: f"the run did not fail: {client.step_status().run}")
        assert run.error.startswith("CheckpointMismatch: the store's checkpoint of step 2"), run.error
        assert str(wider) in run.error and "another --store-dir" in run.error
        assert "model.embed_tokens.weight: [512, 64] there, [512, 96] here" in run.error
        assert len(run.error) < 1000  # a message, not every tensor
        assert (run.checkpoint_step, run.prompts_trained) == (2, 4)
    finally:
        other.shutdown()

    resumed = start_trainer(store_dir, [("toy", backend.address)])  # the model that trained it
    client = TrainerClient(f"127.0.0.1:{resumed.api_port}")
    assert resumed.loop.step == 2 and resumed.failed is None
    client.submit_prompts(prompts(2, start=4))
    wait_for(lambda: client.step_status().run.checkpoint_step == 3 or None, 120, "the resumed run did not train")


def _fails_with(store_dir: Path, backend: str, **sections) -> str:
    """Start a trainer on `store_dir` with `sections`; return the error its run fails with."""
    app = TrainerApp(parsed_config(**sections), store_dir, backend_overrides=[("toy", backend)])
    try:
        app.start()
        client = TrainerClient(f"127.0.0.1:{app.api_port}")
        run = wait_for(lambda: (r := client.step_status().run).state == trainer_pb2.RUN_STATE_FAILED and r or None,
                       120, lambda: f"the run did not fail: {client.step_status().run}")
        assert (run.checkpoint_step, run.prompts_trained) == (2, 4)  # the store as it was
        return run.error
    finally:
        app.shutdown()


def test_a_store_trained_with_other_lora_or_engine_settings_fails_naming_them(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    """Shapes alone let another lora_alpha load (the trained adapters then scaled 4x, the policy changed
    without a word), and another training engine failed with DeepSpeed's bare `AssertionError:` or a missing
    model.safetensors. The settings that wrote the checkpoint are recorded with it and checked."""
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    lora = {"lora_rank": 4, "lora_alpha": 8}
    first = start_trainer(store_dir, [("toy", backend.address)], algorithm=lora)
    client = TrainerClient(f"127.0.0.1:{first.api_port}")
    client.submit_prompts(prompts(4))
    wait_for(lambda: client.step_status().run.checkpoint_step == 2 or None, 120, "no checkpoint at step 2")
    first.shutdown()

    error = _fails_with(store_dir, backend.address, algorithm={**lora, "lora_alpha": 32})
    assert error.startswith("CheckpointMismatch: the store's checkpoint of step 2"), error
    assert "algorithm.lora_alpha: 8 there, 32 here" in error and "another --store-dir" in error, error
    error = _fails_with(store_dir, backend.address, algorithm=lora, training={"engine": "deepspeed"})
    assert "training.engine: 'torch' there, 'deepspeed' here" in error, error
    error = _fails_with(store_dir, backend.address)  # LoRA off: named, not "another model (same path)"
    assert "algorithm.lora_rank: 4 there, 0 here" in error, error

    resumed = start_trainer(store_dir, [("toy", backend.address)], algorithm=lora)
    assert resumed.loop.step == 2 and resumed.failed is None
