"""The GRPO policy loss: clipping and its gradients, delta, KL term, aggregations, normaliser, GSPO."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from grpo_server.algorithm import policy_loss


def _one_token(ratio: float, advantage: float, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and d loss / d logp for one token with the given ratio and advantage."""
    logp = torch.tensor([[math.log(ratio)]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros((1, 1), dtype=torch.float64)
    loss, _ = policy_loss(logp, old, torch.tensor([advantage], dtype=torch.float64), torch.ones(1, 1), **kw)
    loss.backward()
    assert logp.grad is not None
    return loss.detach(), logp.grad[0, 0]


@pytest.mark.parametrize(
    ("ratio", "advantage", "loss"),
    [(1.5, 1.0, -1.2), (0.5, -1.0, 0.8)],  # past 1 + eps with A > 0; below 1 - eps with A < 0
)
def test_a_ratio_past_the_clip_in_its_advantages_direction_has_zero_gradient(
    ratio: float, advantage: float, loss: float
) -> None:
    value, grad = _one_token(ratio, advantage)
    assert value.item() == pytest.approx(loss)
    assert grad.item() == 0.0


@pytest.mark.parametrize(
    ("ratio", "advantage", "loss", "grad"),
    [
        (0.5, 1.0, -0.5, -0.5),  # A > 0 and the ratio fell: unclipped, d(-r A)/d logp = -r A
        (1.5, -1.0, 1.5, 1.5),  # A < 0 and the ratio rose: unclipped (pessimistic bound)
        (1.1, 1.0, -1.1, -1.1),  # inside the trust region
        (0.9, -1.0, 0.9, 0.9),
    ],
)
def test_a_ratio_inside_or_against_its_advantage_has_the_unclipped_gradient(
    ratio: float, advantage: float, loss: float, grad: float
) -> None:
    value, g = _one_token(ratio, advantage)
    assert value.item() == pytest.approx(loss)
    assert g.item() == pytest.approx(grad)


def test_clip_higher_uses_its_own_upper_bound() -> None:
    value, grad = _one_token(1.25, 1.0, epsilon_high=0.28)
    assert value.item() == pytest.approx(-1.25) and grad.item() == pytest.approx(-1.25)
    value, grad = _one_token(1.3, 1.0, epsilon_high=0.28)
    assert value.item() == pytest.approx(-1.28) and grad.item() == 0.0


def test_delta_caps_the_unclipped_ratio_of_negative_advantages() -> None:
    value, grad = _one_token(3.0, -1.0)
    assert value.item() == pytest.approx(3.0) and grad.item() == pytest.approx(3.0)
    value, grad = _one_token(3.0, -1.0, delta=2.0)
    assert value.item() == pytest.approx(2.0) and grad.item() == 0.0
    value, grad = _one_token(1.5, -1.0, delta=2.0)  # below the cap: unchanged
    assert value.item() == pytest.approx(1.5) and grad.item() == pytest.approx(1.5)



@pytest.mark.parametrize(("delta", "epsilon_high"), [(1.1, 0.28), (1.2, 0.2)])
def test_delta_at_or_below_the_upper_clip_is_rejected(delta: float, epsilon_high: float) -> None:
    # With delta 1.1 < 1 + 0.28, a ratio of 1.15 with A < 0 would keep the clipped term's gradient (1.15):
    # delta would cap nothing for negative advantages and clip positive ones below 1 + epsilon_high.
    with pytest.raises(ValueError, match="delta"):
        _one_token(1.15, -1.0, delta=delta, epsilon_high=epsilon_high)

# 2 x 3 example: ratio 1 everywhere so each token's loss is -A; row 0 has two loss tokens, row 1 three.
ADV = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])


def _loss(mask: torch.Tensor = MASK, adv: torch.Tensor = ADV, **kw: Any) -> float:
    logp = torch.zeros(mask.shape)
    return float(policy_loss(logp, logp, adv, mask, **kw)[0])  # type: ignore[arg-type]


def test_grpo_aggregation_averages_each_sequence_then_the_sequences() -> None:
    # row 0: -(1 + 2) / 2 = -1.5; row 1: -(4 + 5 + 6) / 3 = -5; mean -3.25
    assert _loss(aggregation="grpo") == pytest.approx(-3.25)


@pytest.mark.parametrize("aggregation", ["bnpo", "dapo"])
def test_token_aggregations_divide_the_token_sum_by_the_token_count(aggregation: str) -> None:
    assert _loss(aggregation=aggregation) == pytest.approx(-18 / 5)


def test_dr_grpo_divides_the_token_sum_by_sequences_times_max_tokens() -> None:
    assert _loss(aggregation="dr_grpo", max_tokens=4) == pytest.approx(-18 / 8)
    with pytest.raises(ValueError, match="max_tokens"):
        _loss(aggregation="dr_grpo")


@pytest.mark.parametrize(
    ("aggregation", "normalizer", "full"),
    [("grpo", 2.0, -3.25), ("dapo", 5.0, -3.6), ("bnpo", 5.0, -3.6), ("dr_grpo", 8.0, -2.25)],
)
def test_micro_batches_with_the_global_normalizer_sum_to_the_full_batch_loss(
    aggregation: str, normalizer: float, full: float
) -> None:
    kw: dict[str, Any] = {"aggregation": aggregation, "normalizer": normalizer, "max_tokens": 4}
    parts = _loss(MASK[:1], ADV[:1], **kw) + _loss(MASK[1:], ADV[1:], **kw)
    assert parts == pytest.approx(full)
    assert _loss(**kw) == pytest.approx(full)


def test_sequences_without_loss_tokens_add_nothing_and_no_nan() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    logp = torch.zeros(2, 3, requires_grad=True)
    for aggregation in ("grpo", "dapo", "dr_grpo"):
        loss, metrics = policy_loss(logp, logp.detach(), ADV, mask, aggregation=aggregation, max_tokens=3)
        assert not math.isnan(loss.item())
        assert all(not math.isnan(v) for v in metrics.values())
    assert _loss(mask, aggregation="grpo") == pytest.approx(-1.5)
    loss, metrics = policy_loss(logp, logp.detach(), ADV, torch.zeros(2, 3))
    loss.backward()
    assert loss.item() == 0.0 and metrics["clip_fraction"] == 0.0
    assert logp.grad is not None and not torch.isnan(logp.grad).any()


def test_padding_with_non_finite_log_probs_does_not_poison_the_loss() -> None:
    logp = torch.tensor([[-1.0, -float("inf")]], requires_grad=True)
    old = torch.tensor([[-1.0, 0.0]])
    loss, _ = policy_loss(logp, old, torch.tensor([1.0]), torch.tensor([[1.0, 0.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(-1.0)
    assert logp.grad is not None and torch.isfinite(logp.grad).all()


@pytest.mark.parametrize("garbage", [200.0, float("nan"), float("inf")])
def test_garbage_at_padding_in_the_reference_or_weights_leaves_the_gradient_finite(garbage: float) -> None:
    """Masking the KL term's value is not enough: exp's gradient at a masked position is 0 * exp(d), NaN
    when d overflows. The reference and the importance weights are masked before they are used."""
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    ref = torch.tensor([[-1.2, -1.9, garbage]])
    weights = torch.tensor([[1.0, 0.5, garbage]])
    clean_ref, clean_weights = torch.tensor([[-1.2, -1.9, 0.0]]), torch.tensor([[1.0, 0.5, 1.0]])
    grads, losses = [], []
    for r, w in ((ref, weights), (clean_ref, clean_weights)):
        logp.grad = None
        loss, _ = policy_loss(logp, logp.detach(), torch.tensor([0.5]), mask, ref_logp=r, beta=0.04, is_weights=w)
        loss.backward()
        assert logp.grad is not None
        grads.append(logp.grad.clone())
        losses.append(loss.item())
    assert torch.isfinite(grads[0]).all() and torch.equal(grads[0], grads[1]) and losses[0] == losses[1]


def test_kl_term_adds_beta_times_k3_and_needs_a_reference() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.5, 0.25]]))
    k3 = 0.5 + math.log(2) - 1  # second token; the first has k3 = 0
    loss, metrics = policy_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2), ref_logp=ref, beta=0.1)
    assert loss.item() == pytest.approx(-1.0 + 0.1 * k3 / 2)
    assert metrics["kl"] == pytest.approx(k3 / 2)
    assert metrics["policy_loss"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2), beta=0.1)
    _, metrics = policy_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2))
    assert metrics["kl"] == 0.0


def test_clip_fraction_metrics_count_tokens_clipped_in_each_direction() -> None:
    ratios = torch.tensor([[1.5, 0.5, 1.0, 0.5]])  # high+A>0, low+A<0, inside, low but A>0
    adv = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    loss, m = policy_loss(ratios.log(), torch.zeros(1, 4), adv, torch.ones(1, 4))
    assert m["clip_fraction_high"] == pytest.approx(0.25)
    assert m["clip_fraction_low"] == pytest.approx(0.25)
    assert m["clip_fraction"] == pytest.approx(0.5)
    assert m["ratio_mean"] == pytest.approx((1.5 + 0.5 + 1.0 + 0.5) / 4)
    assert m["loss"] == pytest.approx(loss.item())
    # -(1.2 + -0.8... ) per token: -1.2, +0.8, -1.0, -0.5 -> mean -0.475
    assert m["policy_loss"] == pytest.approx((-1.2 + 0.8 - 1.0 - 0.5) / 4)


def test_is_weights_scale_the_surrogate_per_token_without_gradient() -> None:
    logp = torch.zeros(1, 2, requires_grad=True)
    w = torch.tensor([[0.5, 2.0]], requires_grad=True)
    loss, _ = policy_loss(logp, logp.detach(), torch.tensor([1.0]), torch.ones(1, 2), is_weights=w)
    loss.backward()
    assert loss.item() == pytest.approx(-(0.5 + 2.0) / 2)
    assert logp.grad is not None and logp.grad[0].tolist() == pytest.approx([-0.25, -1.0])
    assert w.grad is None


def test_gspo_uses_the_length_normalised_sequence_ratio_on_every_token() -> None:
    # log ratios 0.1 and 0.3 (the third token is masked out): s = exp(0.2) = 1.2214
    logp = torch.tensor([[0.1, 0.3, 5.0]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 3, dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, m = policy_loss(
        logp, old, torch.tensor([1.0]), mask, epsilon_high=0.3, importance_sampling_level="sequence"
    )
    loss.backward()
    s = math.exp(0.2)
    assert loss.item() == pytest.approx(-s)
    assert m["ratio_mean"] == pytest.approx(s)
    # d s_t / d logp_t = s (GSPO's token form), averaged over 2 tokens
    assert logp.grad is not None
    assert logp.grad[0].tolist() == pytest.approx([-s / 2, -s / 2, 0.0])
    # The token-level ratio gives each token its own ratio instead: exp(0.3) = 1.35 is clipped to 1.3.
    loss_token, _ = policy_loss(logp, old, torch.tensor([1.0]), mask, epsilon_high=0.3)
    assert loss_token.item() == pytest.approx(-(math.exp(0.1) + 1.3) / 2)


def test_gspo_clips_the_whole_sequence_when_its_ratio_leaves_the_range() -> None:
    logp = torch.tensor([[0.1, 0.3]], dtype=torch.float64, requires_grad=True)
    loss, m = policy_loss(
        logp, torch.zeros(1, 2, dtype=torch.float64), torch.tensor([1.0]), torch.ones(1, 2),
        importance_sampling_level="sequence",
    )  # fmt: skip
    loss.backward()
    assert loss.item() == pytest.approx(-1.2)
    assert logp.grad is not None and logp.grad.tolist() == [[0.0, 0.0]]
    assert m["clip_fraction_high"] == 1.0


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("log_ratio", [89.0, 1000.0])  # exp overflows fp32 past ~88.7 nats
def test_a_ratio_past_what_exp_can_hold_gives_the_clipped_loss_and_no_nan(level: str, log_ratio: float) -> None:
    """An infinite ratio made every gradient it met 0 * inf = NaN: the clipped token's, which has none, and
    a zero advantage's loss, which is 0 (-min(r * 0, clip(r) * 0))."""
    for advantage, want_loss in ((1.0, -1.2), (0.0, 0.0)):
        logp = torch.tensor([[log_ratio, 0.0]], requires_grad=True)
        loss, m = policy_loss(logp, torch.zeros(1, 2), torch.tensor([advantage]), torch.ones(1, 2),
                              importance_sampling_level=level)
        loss.backward()
        assert logp.grad is not None and torch.isfinite(logp.grad).all(), (advantage, logp.grad)
        assert math.isfinite(m["ratio_mean"]), m
        if level == "token":  # the second token (ratio 1) keeps its own term
            assert loss.item() == pytest.approx((want_loss + -advantage) / 2)
            assert logp.grad[0].tolist() == pytest.approx([0.0, -advantage / 2])
        else:  # the whole sequence is past the clip
            assert loss.item() == pytest.approx(want_loss)
            assert logp.grad.tolist() == [[0.0, 0.0]]


def test_dr_grpo_of_an_empty_batch_is_zero_not_nan() -> None:
    empty = torch.zeros(0, 4)
    loss, m = policy_loss(empty.clone().requires_grad_(), empty, torch.zeros(0), empty, aggregation="dr_grpo",
                          max_tokens=4)
    assert loss.item() == 0.0 and m["loss"] == 0.0 and m["policy_loss"] == 0.0


def test_unknown_options_are_rejected() -> None:
    z = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="aggregation"):
        policy_loss(z, z, torch.ones(1), torch.ones(1, 1), aggregation="sum")
    with pytest.raises(ValueError, match="importance_sampling_level"):
        policy_loss(z, z, torch.ones(1), torch.ones(1, 1), importance_sampling_level="group")
