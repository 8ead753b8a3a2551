"""The k3 KL estimator: non-negative, zero at equality, unbiased for KL(p || ref)."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_server.algorithm import kl_k3


def test_k3_is_zero_where_the_policies_agree_and_positive_elsewhere() -> None:
    logp = torch.log(torch.tensor([0.5, 0.5, 0.1, 0.9]))
    ref = torch.log(torch.tensor([0.5, 0.25, 0.2, 0.1]))
    k3 = kl_k3(logp, ref)
    assert k3[0].item() == 0.0
    assert (k3[1:] > 0).all()
    # d = log(0.25/0.5) = -0.6931: exp(d) - d - 1 = 0.5 + 0.6931 - 1
    assert k3[1].item() == pytest.approx(0.5 + math.log(2) - 1, abs=1e-6)


def test_k3_is_never_negative_over_a_wide_range() -> None:
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(10_000, generator=g) * 20
    ref = -torch.rand(10_000, generator=g) * 20
    assert (kl_k3(logp, ref) >= 0).all()
    tiny = torch.tensor([-1.0]), torch.tensor([-1.0 + 1e-7])
    assert kl_k3(*tiny).item() >= 0


def test_k3_mean_over_samples_from_p_matches_the_exact_kl_of_a_categorical() -> None:
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    ref = torch.tensor([0.2, 0.4, 0.3, 0.1], dtype=torch.float64)
    exact = float((p * (p / ref).log()).sum())  # KL(p || ref) = 0.2332 nats
    assert exact == pytest.approx(0.23321, abs=1e-4)
    g = torch.Generator().manual_seed(1234)
    samples = torch.multinomial(p, 400_000, replacement=True, generator=g)
    estimate = float(kl_k3(p.log()[samples], ref.log()[samples]).mean())
    assert estimate == pytest.approx(exact, abs=3e-3)


def test_k3_gradient_pushes_the_policy_towards_the_reference() -> None:
    logp = torch.tensor([-0.5], requires_grad=True)
    kl_k3(logp, torch.tensor([-1.0])).sum().backward()
    # d k3 / d logp = 1 - exp(ref - logp) > 0 when the policy puts more mass than the reference.
    assert logp.grad is not None
    assert logp.grad.item() == pytest.approx(1 - math.exp(-0.5))
