"""Truncated importance sampling (trainer vs sampler log-probs) and GSPO's sequence ratio in the trainer's
loss, pinned against the algorithm's pure functions; then both, with DAPO's options, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from variant_support import arithmetic_prompts, scored_group, tiny_config

from grpo_client import TrainerClient
from grpo_server.algorithm import policy_loss, truncated_is_weights
from grpo_server.training import batch as batching
from grpo_server.training.loss import LossConfig, grpo_loss, logprobs_only


def batch_with_sampler_gap(tiny) -> tuple[batching.TrainBatch, torch.Tensor]:
    model, tok = tiny
    group = scored_group(tok, "Say four.", ["4", "four", "44 4", "no"], [1.0, 0.5, 0.0, 0.2], ["", "", "", ""])
    batch = batching.collate([group], torch.tensor([1.2, 0.3, -1.0, 0.1]), pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        trainer = logprobs_only(model, batch)
    # A sampler that disagrees with the trainer by +0.9 and -0.4 nats on alternating tokens (a bf16 engine, say).
    gap = torch.where(torch.arange(trainer.shape[1]) % 2 == 0, 0.9, -0.4).expand_as(trainer)
    sampler = (trainer + gap) * batch.completion_mask
    return batching.TrainBatch(**{**vars(batch), "sampler_logprobs": sampler}), trainer


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_truncated_is_weights_the_surrogate_and_reports_the_mismatch(tiny, level: str) -> None:
    model, _ = tiny
    batch, trainer = batch_with_sampler_gap(tiny)
    cfg = LossConfig(tis_cap=1.2, tis_level=level)
    loss, m = grpo_loss(model, batch, 4.0, cfg)
    weights, tis = truncated_is_weights(trainer, batch.sampler_logprobs, batch.completion_mask, 1.2, level)
    expected, _ = policy_loss(logprobs_only(model, batch), trainer, batch.advantages, batch.completion_mask,
                              normalizer=4.0, is_weights=weights)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)
    assert m["tis/mismatch_kl"] == pytest.approx(tis["mismatch_kl"]) and m["tis/mismatch_kl"] > 0.1
    assert m["tis/clipped_fraction"] == pytest.approx(tis["clipped_fraction"])
    assert m["tis/clipped_fraction"] > 0
    untouched, _ = grpo_loss(model, batch, 4.0, LossConfig())
    assert float(untouched) != pytest.approx(float(loss))  # the correction changes the loss


def test_gspo_uses_the_sequence_ratio(tiny) -> None:
    model, _ = tiny
    batch, trainer = batch_with_sampler_gap(tiny)
    # Old log-probs from "before an update": shift them so that the ratios differ from 1.
    old = trainer - 0.05 * torch.arange(trainer.shape[1]).expand_as(trainer) * batch.completion_mask / trainer.shape[1]
    batch = batching.TrainBatch(**{**vars(batch), "old_logprobs": old})
    loss, m = grpo_loss(model, batch, 4.0, LossConfig(importance_sampling_level="sequence", epsilon_high=0.01,
                                                      epsilon_low=0.01))
    logp = logprobs_only(model, batch)
    expected, em = policy_loss(logp, old, batch.advantages, batch.completion_mask, normalizer=4.0,
                               importance_sampling_level="sequence", epsilon_high=0.01, epsilon_low=0.01)
    token, _ = policy_loss(logp, old, batch.advantages, batch.completion_mask, normalizer=4.0,
                           epsilon_high=0.01, epsilon_low=0.01)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)
    assert m["ratio_mean"] == pytest.approx(em["ratio_mean"])
    assert float(loss) != pytest.approx(float(token))  # GSPO is not the token ratio here


def test_gspo_with_truncated_is_and_dapo_options_trains_end_to_end(serve, start_trainer, tmp_path: Path) -> None:
    from variant_support import PromptRewardScorer

    cfg = tiny_config(
        algorithm={"importance_sampling_level": "sequence", "tis_cap": 2.0, "inner_iterations": 2,
                   "dynamic_sampling": True, "max_resample_rounds": 2, "overlong_cache_tokens": 4,
                   "mask_truncated_completions": False},
        training={"max_steps": 2},
        rewards={"default": [{"backend": "pr"}]},
    )
    app = start_trainer(cfg, tmp_path / "store", [("pr", serve(PromptRewardScorer()))])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    flat = arithmetic_prompts(2, 0, "FLAT {i}")
    client.submit_prompts(flat + arithmetic_prompts(6, 10))
    seen = []
    for report in client.iter_steps(after_step=0):
        seen.append(report)
        if report.step >= 2:
            break
    extra = seen[0].metrics.extra
    # Step 1 leased the two flat prompts first: both dropped, more leased from the queue by the trainer.
    assert extra["dapo/dropped_groups"] >= 2 and extra["dapo/resample_rounds"] >= 1
    assert extra["dapo/kept_groups"] == 2
    for report in seen:
        e = report.metrics.extra
        assert {"tis/mismatch_kl", "tis/clipped_fraction", "overlong/penalty_mean"} <= set(e)
        assert report.metrics.grad_norm > 0
    status = client.step_status()
    assert status.run.queue_depth <= 8 - 4  # the extra prompts were leased from the store's queue


def test_sampler_logprob_diff_compares_the_sampler_with_the_policy_before_the_steps_updates(tiny) -> None:
    """With inner_iterations > 1 the batch carries the pre-update log-probs (`old`): the mismatch metric
    is sampler against those, not against a policy the earlier inner iterations already moved."""
    model, _ = tiny
    batch, trainer = batch_with_sampler_gap(tiny)
    mask = batch.completion_mask
    expected_gap = float(((trainer - batch.sampler_logprobs).abs() * mask).sum() / mask.sum())
    _, first = grpo_loss(model, batch, 4.0, LossConfig())  # one iteration: current policy = old
    assert first["sampler_logprob_diff"] == pytest.approx(expected_gap, rel=1e-5)
    # A later inner iteration: the policy has moved (here: old is the sampler's own log-probs, as if the
    # trainer had matched the sampler before this step), so the current log-probs differ from old.
    moved = batching.with_logprobs(batch, old=batch.sampler_logprobs)
    _, later = grpo_loss(model, moved, 4.0, LossConfig())
    assert later["sampler_logprob_diff"] == pytest.approx(0.0, abs=1e-7)
