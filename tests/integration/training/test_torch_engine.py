"""The plain torch engine: accumulation, clipping, schedules and resume, on the real tiny model."""

from __future__ import annotations

import copy
import functools
import math
import random

import numpy as np
import pytest
import torch
from engine_helpers import (
    advantage_weighted_nll,
    fixed_batch,
    load_tiny,
    split_rows,
    token_count,
    with_old_and_ref,
)

from grpo_server.models.tiny import build_tiny_model
from grpo_server.training.engine import OptimConfig, TrainingEngine, all_masked_like, make_engine, rank_share
from grpo_server.training.loss import LossConfig, global_normalizer, grpo_loss


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def weights(engine) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in engine.named_weights()}


def grads(engine) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in engine.model.named_parameters()}


def test_torch_engine_satisfies_the_protocol(tiny_dir):
    engine = make_engine("torch", load_tiny(tiny_dir), OptimConfig())
    assert isinstance(engine, TrainingEngine)
    assert (engine.rank, engine.world_size, engine.step) == (0, 1, 0)


@pytest.mark.parametrize("aggregation", ["grpo", "dapo", "dr_grpo"])
def test_four_micro_batches_give_the_same_gradient_update_and_metrics_as_one_batch(tiny_dir, aggregation):
    # Adam's first step is lr * grad / (|grad| + eps): with eps = 1e-8 an element whose gradient is float
    # noise around 0 gets an update of +-lr either way. eps = 1e-4 keeps the update a smooth function of
    # the gradient, so summation order cannot flip it and the weights can be compared tightly.
    optim = OptimConfig(learning_rate=1e-2, max_grad_norm=1e9, weight_decay=0.1, eps=1e-4)
    model = load_tiny(tiny_dir)
    full = make_engine("torch", copy.deepcopy(model), optim)
    accumulated = make_engine("torch", copy.deepcopy(model), optim)
    full.keep_grads = accumulated.keep_grads = True  # compared below
    batch = with_old_and_ref(model, fixed_batch(n=8))
    micro = split_rows(batch, 2)
    assert len(micro) == 4
    loss_fn = functools.partial(grpo_loss, cfg=LossConfig(aggregation=aggregation, beta=0.04, max_tokens=8))

    m_full = full.train_step([batch], loss_fn, global_normalizer([batch], aggregation, 8))
    m_acc = accumulated.train_step(micro, loss_fn, global_normalizer(micro, aggregation, 8))

    assert m_full["clip_fraction_low"] > 0 and m_full["clip_fraction_high"] > 0 and m_full["kl"] > 0
    # Every metric of the step, summed (loss shares) or token-weighted (means), is the full batch's.
    assert m_acc.keys() == m_full.keys()
    for key in m_full:
        if key != "optimizer_seconds":
            assert m_acc[key] == pytest.approx(m_full[key], rel=1e-5, abs=1e-7), key
    g_full, g_acc = grads(full), grads(accumulated)
    for name in g_full:
        torch.testing.assert_close(g_acc[name], g_full[name], rtol=1e-5, atol=1e-7)
    w0 = {k: v.detach() for k, v in model.named_parameters()}
    w_full, w_acc = weights(full), weights(accumulated)
    for name in w_full:
        assert not torch.equal(w_full[name], w0[name]), f"{name} did not move"
        torch.testing.assert_close(w_acc[name], w_full[name], rtol=0, atol=1e-6)  # 1e-4 of lr


@pytest.mark.parametrize("micro_batch_size", [4, 1])
def test_a_fraction_of_sequences_is_the_full_batchs_however_the_batch_is_split(tiny_dir, micro_batch_size):
    """tis/clipped_fraction at sequence level is a fraction of non-empty sequences: averaged by loss tokens
    across micro-batches it was 21/47 clipped tokens (0.4468) where 3 of 7 sequences (0.4286) were."""
    from dataclasses import replace

    from grpo_server.training import batch as batching
    from grpo_server.training.loss import logprobs_only

    model = load_tiny(tiny_dir)
    b = fixed_batch(n=8, group=4)  # rows of 8, 7, 6, 0, 8, 7, 6, 5 loss tokens
    with torch.no_grad():
        lp = logprobs_only(model, b)
    mask = b.completion_mask
    shift = torch.zeros(8, 1)
    shift[[0, 1, 2]] = 5.0  # sampled far below the trainer's scores: these three sequences are clipped
    b = replace(b, sampler_logprobs=(lp - shift) * mask)
    assert mask.sum(1).int().tolist() == [8, 7, 6, 0, 8, 7, 6, 5]
    loss_fn = functools.partial(grpo_loss, cfg=LossConfig(aggregation="grpo", tis_cap=2.0, tis_level="sequence"))
    results = {}
    for size in (8, micro_batch_size):
        engine = make_engine("torch", copy.deepcopy(model), OptimConfig(learning_rate=1e-3))
        micro = batching.split(b, size)
        results[size] = engine.train_step(micro, loss_fn, global_normalizer(micro, "grpo", None))
    assert results[8]["tis/clipped_fraction"] == pytest.approx(3 / 7)
    assert results[micro_batch_size]["tis/clipped_fraction"] == pytest.approx(3 / 7)
    assert not any(key.startswith("weight_of:") for key in results[micro_batch_size])


def test_gradient_is_clipped_to_max_grad_norm_and_the_norm_before_clipping_is_reported(tiny_dir):
    engine = make_engine("torch", load_tiny(tiny_dir), OptimConfig(learning_rate=1e-3, max_grad_norm=1e-3))
    engine.keep_grads = True
    batch = fixed_batch()
    metrics = engine.train_step([batch], advantage_weighted_nll, token_count([batch]))
    after = math.sqrt(
        sum(float(p.grad.pow(2).sum()) for p in engine.model.parameters() if p.grad is not None)
    )
    assert metrics["grad_norm"] > 1e-2
    assert after == pytest.approx(1e-3, rel=1e-4)


def test_nan_loss_fails_the_step_without_touching_the_weights(tiny_dir):
    engine = make_engine("torch", load_tiny(tiny_dir), OptimConfig(learning_rate=1e-2))
    before = weights(engine)

    def nan_loss(model, batch, normalizer):
        loss, metrics = advantage_weighted_nll(model, batch, normalizer)
        return loss * float("nan"), metrics

    with pytest.raises(FloatingPointError, match="micro-batch 0"):
        engine.train_step([fixed_batch()], nan_loss, 1.0)
    for name, w in weights(engine).items():
        assert torch.equal(w, before[name])
    assert engine.step == 0


def lr_sequence(tiny_dir, optim: OptimConfig, steps: int) -> list[float]:
    engine = make_engine("torch", load_tiny(tiny_dir), optim)
    batch = fixed_batch(n=2, length=6)
    return [engine.train_step([batch], advantage_weighted_nll, 1.0)["learning_rate"] for _ in range(steps)]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [0.0, 0.5, 1.0, 1.0, 1.0, 1.0]),
        ("linear", [0.0, 0.5, 1.0, 0.75, 0.5, 0.25]),
        (
            "cosine",
            [0.0, 0.5, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))],
        ),
    ],
)
def test_learning_rate_warms_up_then_follows_the_schedule(tiny_dir, schedule, expected):
    optim = OptimConfig(learning_rate=1e-3, warmup_steps=2, lr_schedule=schedule, total_steps=6)
    assert lr_sequence(tiny_dir, optim, 6) == pytest.approx([1e-3 * e for e in expected], abs=1e-12)


def test_the_trainers_schedule_spans_every_optimizer_step_of_its_max_steps(tiny_dir):
    """A training step makes algorithm.inner_iterations optimizer steps: with 2 of them and max_steps 4,
    a linear schedule reaches 0 after the 8th, not the 4th (and a cosine one does not climb back)."""
    from grpo_server.app import build_training_engine
    from grpo_server.config import parse_config

    cfg = parse_config({"algorithm": {"inner_iterations": 2},
                        "training": {"max_steps": 4, "lr_schedule": "linear", "learning_rate": 1e-3}})
    engine = build_training_engine(cfg, load_tiny(tiny_dir))
    batch = fixed_batch(n=2, length=6)
    rates = [engine.train_step([batch], advantage_weighted_nll, 1.0)["learning_rate"] for _ in range(8)]
    assert rates == pytest.approx([1e-3 * (1 - k / 8) for k in range(8)], abs=1e-12)


def test_schedules_that_decay_need_total_steps():
    with pytest.raises(ValueError, match="total_steps"):
        OptimConfig(lr_schedule="cosine")
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        OptimConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="micro_batch_size"):
        OptimConfig(micro_batch_size=0)


@pytest.mark.parametrize(("field", "value"), [
    ("weight_decay", float("nan")), ("weight_decay", float("inf")), ("eps", float("inf")), ("eps", float("nan")),
    ("max_grad_norm", float("nan")),
])
def test_a_value_that_is_not_a_number_is_refused_naming_it(field, value):
    """NaN passed the plain comparisons: weight_decay NaN made every weight NaN after one step, eps inf froze
    them, max_grad_norm NaN turned clipping off."""
    with pytest.raises(ValueError, match=f"invalid optimizer config: {field} must be"):
        OptimConfig(**{field: value})


def test_unknown_engine_kind_is_rejected_with_the_allowed_ones(tiny_dir):
    with pytest.raises(ValueError, match="torch, deepspeed"):
        make_engine("jax", load_tiny(tiny_dir), OptimConfig())


def noisy_loss(model, batch, normalizer):
    """A loss that draws from torch's RNG, so a resumed run only matches if the RNG state was restored."""
    loss, metrics = advantage_weighted_nll(model, batch, normalizer)
    return loss * (1.0 + 0.1 * torch.rand(())), metrics


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_save_then_load_into_a_fresh_engine_gives_the_same_next_step_as_running_through(
    tiny_dir, tmp_path, dtype
):
    optim = OptimConfig(
        learning_rate=1e-2, warmup_steps=1, lr_schedule="linear", total_steps=10, weight_decay=0.1
    )
    batch = fixed_batch()
    micro = split_rows(batch, 4)
    loss_fn = functools.partial(noisy_loss)

    through = make_engine("torch", load_tiny(tiny_dir), optim, dtype=dtype)
    torch.manual_seed(7)
    through.train_step(micro, loss_fn, token_count(micro))
    through.train_step(micro, loss_fn, token_count(micro))
    through.save_state(tmp_path / "state")
    expected_draws = (random.random(), float(np.random.rand()), float(torch.rand(())))
    expected = through.train_step(micro, loss_fn, token_count(micro))
    expected_weights = weights(through)

    resumed = make_engine("torch", load_tiny(tiny_dir), optim, dtype=dtype)  # fresh weights and optimizer
    torch.manual_seed(12345)  # a different RNG state, which load_state must replace
    resumed.load_state(tmp_path / "state")
    assert resumed.step == 2
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected_draws
    got = resumed.train_step(micro, loss_fn, token_count(micro))

    assert resumed.step == 3
    assert got["learning_rate"] == expected["learning_rate"]
    assert got["grad_norm"] == expected["grad_norm"]
    for name, w in weights(resumed).items():
        assert torch.equal(w, expected_weights[name]), f"{name} differs after resume"


def test_each_rank_runs_the_same_number_of_passes_padding_with_weightless_reruns():
    micro = split_rows(fixed_batch(n=12), 2)  # 6 micro-batches
    micro[4] = all_masked_like(micro[4])  # every completion of this one failed
    micro = micro[:5]
    share0, share1 = rank_share(micro, 0, 2), rank_share(micro, 1, 2)
    # Rank 0: micro-batches 0, 2 and (4 has no loss token) a weightless rerun of the last one with tokens.
    assert [(b is m, real) for (b, real), m in zip(share0, [micro[0], micro[2], micro[3]], strict=True)] == [
        (True, True),
        (True, True),
        (True, False),
    ]
    # Rank 1: micro-batches 1, 3, then a weightless filler pass so both ranks make 3 passes.
    assert [(b is m, real) for (b, real), m in zip(share1, [micro[1], micro[3], micro[3]], strict=True)] == [
        (True, True),
        (True, True),
        (True, False),
    ]


def test_a_step_without_any_loss_token_still_gives_every_rank_the_same_passes():
    micro = [all_masked_like(mb) for mb in split_rows(fixed_batch(n=6), 2)]
    assert [real for _, real in rank_share(micro, 0, 2)] == [True, True]
    assert [real for _, real in rank_share(micro, 1, 2)] == [True, False]


def test_a_micro_batch_without_loss_tokens_adds_no_gradient(tiny_dir):
    # The trainer's GRPO loss returns a constant for a micro-batch whose completions are all masked.
    optim = OptimConfig(learning_rate=1e-2, eps=1e-4)
    model = load_tiny(tiny_dir)
    batch = with_old_and_ref(model, fixed_batch(n=4))
    loss_fn = functools.partial(grpo_loss, cfg=LossConfig(aggregation="dapo"))
    plain = make_engine("torch", copy.deepcopy(model), optim)
    padded = make_engine("torch", copy.deepcopy(model), optim)
    m_plain = plain.train_step([batch], loss_fn, global_normalizer([batch], "dapo", None))
    m_padded = padded.train_step(
        [batch, all_masked_like(batch)], loss_fn, global_normalizer([batch], "dapo", None)
    )
    assert m_padded["loss"] == pytest.approx(m_plain["loss"], rel=1e-6)
    assert m_padded["kl"] == pytest.approx(m_plain["kl"], rel=1e-6)  # the empty batch has no weight
    for name, w in weights(plain).items():
        assert torch.equal(weights(padded)[name], w)


def test_gradients_are_released_after_the_step_unless_kept(tiny_dir):
    engine = make_engine("torch", load_tiny(tiny_dir), OptimConfig(learning_rate=1e-3))
    batch = fixed_batch()
    metrics = engine.train_step([batch], advantage_weighted_nll, token_count([batch]))
    assert metrics["grad_norm"] > 0
    assert all(p.grad is None for p in engine.model.parameters())
    engine.keep_grads = True
    engine.train_step([batch], advantage_weighted_nll, token_count([batch]))
    assert all(p.grad is not None for p in engine.model.parameters() if p.requires_grad)


def test_a_resumed_engine_takes_the_configs_optimizer_settings_and_schedule(tiny_dir, tmp_path):
    """Loading a checkpoint put back its own learning rate, weight decay and betas in every parameter group
    and its base rate in the schedule: a restart with new settings ran with the old ones, and a schedule
    made longer ran its next step at the old rate."""
    micro = split_rows(fixed_batch(), 4)
    old = OptimConfig(learning_rate=1e-2, weight_decay=0.1, betas=(0.9, 0.99), lr_schedule="linear", total_steps=4)
    first = make_engine("torch", load_tiny(tiny_dir), old)
    for _ in range(4):
        first.train_step(micro, advantage_weighted_nll, token_count(micro))
    first.save_state(tmp_path / "state")

    new = OptimConfig(learning_rate=1e-3, weight_decay=0.0, betas=(0.8, 0.95), lr_schedule="linear", total_steps=8)
    resumed = make_engine("torch", load_tiny(tiny_dir), new)
    resumed.load_state(tmp_path / "state")
    assert resumed.step == 4
    assert {(g["weight_decay"], tuple(g["betas"])) for g in resumed.optimizer.param_groups} <= {(0.0, (0.8, 0.95))}
    lrs = [resumed.train_step(micro, advantage_weighted_nll, token_count(micro))["learning_rate"] for _ in range(4)]
    assert lrs == pytest.approx([1e-3 * (8 - s) / 8 for s in (4, 5, 6, 7)])  # the new schedule from step 5 on
