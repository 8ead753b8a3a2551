"""training.gradient_checkpointing reaches the model the trainer builds (app.load_policy), and one
torch-engine step with it equals the step without (it trades memory for recomputation, nothing else)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from engine_helpers import fixed_batch

from grpo_server.app import load_policy
from grpo_server.config import load_config, with_overrides
from grpo_server.training.engine import OptimConfig
from grpo_server.training.loss import LossConfig, global_normalizer, grpo_loss
from grpo_server.training.torch_engine import TorchEngine

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("on", [False, True])
def test_the_config_switches_checkpointing_on_the_policy(tmp_path, on):
    cfg = with_overrides(load_config(ROOT / "examples" / "tiny.yaml"), training={"gradient_checkpointing": on})
    _path, _tokenizer, model = load_policy(cfg, tmp_path)
    assert model.is_gradient_checkpointing is on


def test_a_checkpointed_step_equals_the_plain_step(tmp_path):
    batch = fixed_batch(n=8, length=12, group=4)
    cfg = LossConfig(aggregation="grpo")
    loss_fn = functools.partial(grpo_loss, cfg=cfg)
    weights = {}
    for on in (False, True):
        conf = with_overrides(load_config(ROOT / "examples" / "tiny.yaml"), training={"gradient_checkpointing": on})
        _path, _tokenizer, model = load_policy(conf, tmp_path)
        engine = TorchEngine(model, OptimConfig(learning_rate=1e-3, max_grad_norm=1.0))
        metrics = engine.train_step([batch], loss_fn, global_normalizer([batch], "grpo", None))
        assert metrics["grad_norm"] > 0
        weights[on] = {n: p.detach().clone() for n, p in model.named_parameters()}
    for name, value in weights[False].items():
        torch.testing.assert_close(weights[True][name], value, atol=1e-6, rtol=1e-5, msg=name)
