"""A LoRA run resumes: the training checkpoint holds the peft model (base and adapters) and the
optimizer, and a trainer restarted from it takes the same step 3 as one that ran through."""

from __future__ import annotations

from pathlib import Path

import torch
from variant_support import PromptRewardScorer, arithmetic_prompts, tiny_config

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.training.lora import merged_named_weights


def lora_config(max_steps: int):
    return tiny_config(
        rollout={"engine": "hf", "max_new_tokens": 6},
        algorithm={"lora_rank": 4, "lora_alpha": 8, "beta": 0.04},
        training={"max_steps": max_steps, "learning_rate": 5e-2},
        rewards={"default": [{"backend": "pr"}]},
    )


def run_to(app, step: int) -> list[float]:
    """Wait for `step` (every step must complete); the losses of the steps seen."""
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    losses = []
    for report in client.iter_steps(after_step=0):
        assert report.state == trainer_pb2.STEP_STATE_COMPLETED, report.error
        losses.append(report.metrics.loss)
        if report.step >= step:
            return losses
    raise AssertionError(f"the stream ended before step {step}")


def test_a_resumed_lora_run_takes_the_same_next_step_as_running_through(serve, start_trainer, tmp_path: Path) -> None:
    backend = [("pr", serve(PromptRewardScorer()))]
    through = start_trainer(lora_config(3), tmp_path / "through", backend)
    TrainerClient(f"127.0.0.1:{through.api_port}").submit_prompts(arithmetic_prompts(6))
    expected_losses = run_to(through, 3)
    expected = {k: v.detach().clone() for k, v in merged_named_weights(through.engine.model)}

    first = start_trainer(lora_config(2), tmp_path / "resumed", backend)
    TrainerClient(f"127.0.0.1:{first.api_port}").submit_prompts(arithmetic_prompts(6))
    assert run_to(first, 2) == expected_losses[:2]
    first.shutdown(grace=60)
    again = start_trainer(lora_config(3), tmp_path / "resumed", backend)
    client = TrainerClient(f"127.0.0.1:{again.api_port}")
    assert client.step_status().run.checkpoint_step == 2
    last = next(iter(client.iter_steps(after_step=2)))  # the first step after the checkpoint
    assert last.step == 3 and last.state == trainer_pb2.STEP_STATE_COMPLETED, last
    assert last.metrics.loss == expected_losses[2]
    got = dict(merged_named_weights(again.engine.model))
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
