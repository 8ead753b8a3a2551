"""Arithmetic of the GRPO variants: DAPO overlong penalty and group filter, truncated IS weights."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_server.algorithm import keep_groups, overlong_penalty, policy_loss, truncated_is_weights


def test_overlong_penalty_is_zero_then_linear_to_minus_one_then_minus_one() -> None:
    # L = 10, C = 4: free up to 6 tokens, -1/4 per token from 7 to 10, -1 beyond.
    lengths = torch.tensor([3, 6, 7, 8, 10, 11])
    assert overlong_penalty(lengths, max_len=10, cache_len=4).tolist() == pytest.approx(
        [0.0, 0.0, -0.25, -0.5, -1.0, -1.0]
    )


def test_overlong_penalty_without_a_cache_is_a_hard_step_past_max_len() -> None:
    assert overlong_penalty(torch.tensor([10, 11]), 10, 0).tolist() == [0.0, -1.0]
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty(torch.tensor([1]), 10, 11)


def test_dynamic_sampling_keeps_only_groups_with_reward_variance() -> None:
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 1.0, 0.0])
    valid = torch.tensor([True, True, True, True, True, True, False, True])
    assert keep_groups(rewards, 2).tolist() == [False, False, False, True]
    assert keep_groups(rewards, 2, valid).tolist() == [False, False, False, False]


def test_token_level_truncated_is_weights_and_mismatch_metrics_by_hand() -> None:
    trainer = torch.tensor([[-1.0, -1.0, -1.0]])
    sampler = torch.tensor([[-1.0, -2.0, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w, m = truncated_is_weights(trainer, sampler, mask, cap=2.0)
    # ratios exp(0) = 1 and exp(1) = 2.718 -> capped at 2; the masked token gets the neutral 1
    assert w.tolist() == [[1.0, 2.0, 1.0]]
    assert m["clipped_fraction"] == pytest.approx(0.5)
    assert m["mean_abs_diff"] == pytest.approx(0.5)
    # k3 of KL(sampler || trainer): token 1: e^1 - 1 - 1 = 0.71828; mean over 2 tokens
    assert m["mismatch_kl"] == pytest.approx((math.e - 2) / 2)
    assert not w.requires_grad


def test_sequence_level_weights_are_the_capped_product_of_token_ratios() -> None:
    trainer = torch.full((2, 2), -1.0)
    sampler = torch.tensor([[-1.1, -1.2], [-0.5, -1.0]])
    mask = torch.ones(2, 2)
    w, m = truncated_is_weights(trainer, sampler, mask, cap=2.0, level="sequence")
    assert w[0].tolist() == pytest.approx([math.exp(0.3)] * 2)
    assert w[1].tolist() == pytest.approx([math.exp(-0.5)] * 2)
    assert m["clipped_fraction"] == 0.0
    w, m = truncated_is_weights(trainer, sampler, mask, cap=1.2, level="sequence")
    assert w[0].tolist() == pytest.approx([1.2, 1.2])
    assert m["clipped_fraction"] == pytest.approx(0.5)


def test_identical_policies_give_unit_weights_and_zero_mismatch() -> None:
    logp = torch.tensor([[-0.3, -2.0]])
    w, m = truncated_is_weights(logp, logp.clone(), torch.ones(1, 2))
    assert w.tolist() == [[1.0, 1.0]]
    assert m == {"mismatch_kl": 0.0, "mean_abs_diff": 0.0, "clipped_fraction": 0.0}


def test_is_weights_feed_the_policy_loss() -> None:
    trainer = torch.tensor([[-1.0, -1.0]])
    w, _ = truncated_is_weights(trainer, torch.tensor([[-1.0, -2.0]]), torch.ones(1, 2), cap=2.0)
    loss, _ = policy_loss(trainer, trainer, torch.tensor([1.0]), torch.ones(1, 2), is_weights=w)
    assert loss.item() == pytest.approx(-(1.0 + 2.0) / 2)


def test_bad_options_are_rejected() -> None:
    z = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="level"):
        truncated_is_weights(z, z, z, level="group")
    with pytest.raises(ValueError, match="cap"):
        truncated_is_weights(z, z, z, cap=0.0)
