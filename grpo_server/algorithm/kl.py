"""The k3 estimator of KL(pi_theta || pi_ref) from log-probs of sampled tokens.

Source: J. Schulman, "Approximating KL Divergence" (2020), used by DeepSeekMath's GRPO (Shao et al. 2024,
eq. 4): with d = log pi_ref(y) - log pi_theta(y) and y ~ pi_theta, k3 = exp(d) - d - 1. It is unbiased
(E[exp(d)] = 1) and never negative (e^x >= 1 + x).
"""

from __future__ import annotations

import torch


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference), in nats.

    Args:
        logp: log pi_theta of the sampled tokens, any shape (usually [N, T]).
        ref_logp: log pi_ref of the same tokens, same shape.
    Returns:
        exp(ref_logp - logp) - (ref_logp - logp) - 1, same shape, >= 0. Gradients flow to both inputs.
    """
    d = ref_logp - logp
    # expm1(d) - d keeps precision when d is small (exp(d) - 1 would cancel); the clamp only removes
    # rounding below zero, the true value is >= 0.
    return (torch.expm1(d) - d).clamp(min=0.0)
