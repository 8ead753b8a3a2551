"""The GRPO policy loss: PPO's clipped surrogate on group-relative advantages, plus beta * k3 KL.

Sources:
- GRPO: Shao et al. 2024, "DeepSeekMath", eq. 3 (clipped surrogate, per-sequence token mean, k3 KL).
- Clip-higher (epsilon_high > epsilon_low) and the token-level loss ("dapo"): Yu et al. 2025, "DAPO",
  sections 3.1 and 3.3.
- Constant normaliser ("dr_grpo"): Liu et al. 2025, "Understanding R1-Zero-Like Training" (Dr. GRPO).
- Sequence-level importance ratio: Zheng et al. 2025, "Group Sequence Policy Optimization" (GSPO),
  in its token form s_i,t = sg[s_i] * pi(y_t) / sg[pi(y_t)].
- Two-sided clipping `delta` (cap on the unclipped ratio): as in TRL's GRPOTrainer (INTELLECT-2).
"""

from __future__ import annotations

import torch

from grpo_server.algorithm.kl import kl_k3

AGGREGATIONS = ("grpo", "bnpo", "dapo", "dr_grpo")
IMPORTANCE_LEVELS = ("token", "sequence")
# The largest log-ratio exponentiated: e^20 ~ 4.9e8. exp overflows fp32 past ~88.7 nats, and an infinite
# ratio turns the gradient of every term it meets into NaN (0 * inf), including the clipped branch's and
# a zero advantage's, which should have none.
MAX_LOG_RATIO = 20.0


def importance_ratio(
    logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, level: str = "token"
) -> torch.Tensor:
    """The ratio pi_theta / pi_old per token, [N, T].

    level "token": exp(logp - old_logp). level "sequence" (GSPO): every token of sequence i carries
    s_i = exp(mean over its masked tokens of (logp - old_logp)), written as sg[s_i] * exp(logp - sg[logp])
    so that d s_i,t / d logp_t = s_i (GSPO's token form). Masked-out positions get ratio 1 at level
    "token" and s_i at level "sequence" (they count nowhere). The log-ratio (token) or its mean
    (sequence) is capped at MAX_LOG_RATIO before exp, so a ratio past e^20 is e^20 with no gradient from
    the cap, never inf.
    """
    m = mask.to(torch.bool)
    log_ratio = torch.where(m, logp - old_logp, torch.zeros_like(logp))
    if level == "token":
        return torch.exp(log_ratio.clamp(max=MAX_LOG_RATIO))
    if level == "sequence":
        count = m.sum(dim=-1, keepdim=True).clamp(min=1)
        seq_log_ratio = (log_ratio.sum(dim=-1, keepdim=True) / count).clamp(max=MAX_LOG_RATIO)  # [N, 1]
        token_term = torch.where(m, logp - logp.detach(), torch.zeros_like(logp))  # value 0, gradient 1
        return torch.exp(seq_log_ratio.detach() + token_term)
    raise ValueError(f"unknown importance_sampling_level {level!r}: use token or sequence")


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    aggregation: str = "grpo",
    max_tokens: int | None = None,
    normalizer: float | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss [N, T] to a scalar over the masked tokens.

    grpo: sum over sequences of (the sequence's masked-token mean) / (number of sequences with at least
    one masked token). bnpo, dapo: sum over all masked tokens / their count. dr_grpo: sum over all masked
    tokens / (N * max_tokens). `normalizer`, when given, replaces that outer denominator (so micro-batches
    sharing a global normaliser sum to the full-batch loss). Empty sequences contribute 0; no NaN.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}: use one of {', '.join(AGGREGATIONS)}")
    m = mask.to(per_token.dtype)
    masked = torch.where(mask.to(torch.bool), per_token, torch.zeros_like(per_token))
    if aggregation == "grpo":
        tokens_per_seq = m.sum(dim=-1)
        seq_mean = masked.sum(dim=-1) / tokens_per_seq.clamp(min=1)
        denom = float(normalizer) if normalizer is not None else max(float((tokens_per_seq > 0).sum()), 1.0)
        return seq_mean.sum() / denom
    if aggregation in ("bnpo", "dapo"):
        denom = float(normalizer) if normalizer is not None else max(float(m.sum()), 1.0)
        return masked.sum() / denom
    if normalizer is not None:
        denom = float(normalizer)
    else:
        if not max_tokens:
            raise ValueError("aggregation 'dr_grpo' needs max_tokens (the maximum completion length)")
        denom = max(float(per_token.shape[0] * max_tokens), 1.0)
    return masked.sum() / denom


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    count = float(mask.sum())
    return float(torch.where(mask, x, torch.zeros_like(x)).sum()) / count if count > 0 else 0.0


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    delta: float | None = None,
    aggregation: str = "grpo",
    max_tokens: int | None = None,
    normalizer: float | None = None,
    importance_sampling_level: str = "token",
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's loss: clipped surrogate on advantages plus beta * k3 KL to a reference, aggregated.

    Per token, with r the importance ratio (see `importance_ratio`) and A the advantage:
        surrogate = -min(min(r, delta) * A, clip(r, 1 - epsilon_low, 1 + epsilon_high) * A)
        loss_t    = surrogate * w + beta * kl_k3(logp, ref_logp)
    where min(r, delta) applies only when `delta` is set and w are `is_weights` (1 when None).

    Args:
        logp: [N, T] log-probs (nats) of the sampled tokens under the policy being trained (with grad).
        old_logp: [N, T] log-probs under the policy that sampled (or the policy before this step's first
            update); treated as constants.
        advantages: [N] per sequence or [N, T] per token.
        mask: [N, T] bool/float, the tokens that count (completion tokens, not padding).
        ref_logp: [N, T] log-probs under the frozen reference; required when beta > 0.
        beta: KL coefficient.
        epsilon_low, epsilon_high: clip range [1 - epsilon_low, 1 + epsilon_high].
        delta: optional cap on the unclipped ratio (two-sided clipping); must be > 1 + epsilon_high
            (ValueError otherwise).
        aggregation: "grpo", "bnpo", "dapo" or "dr_grpo" (see `aggregate`).
        max_tokens: the maximum completion length; required for "dr_grpo" without `normalizer`.
        normalizer: optional float replacing the outer denominator (see `aggregate`).
        importance_sampling_level: "token" (GRPO) or "sequence" (GSPO).
        is_weights: optional [N, T] truncated importance weights (trainer vs sampler), no gradient.
    Returns:
        (loss, metrics): the scalar loss, and python floats clip_fraction_low (A < 0 and r < 1 - eps_low),
        clip_fraction_high (A > 0 and r > 1 + eps_high), clip_fraction (either), kl (masked mean of k3;
        0 without ref_logp), ratio_mean (masked mean of r), policy_loss (the surrogate alone, aggregated
        the same way) and loss; fractions and means are over this call's masked tokens.
    """
    if importance_sampling_level not in IMPORTANCE_LEVELS:
        raise ValueError(
            f"unknown importance_sampling_level {importance_sampling_level!r}: use token or sequence"
        )
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}: use one of {', '.join(AGGREGATIONS)}")
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp (the reference model's log-probs)")
    if delta is not None and not delta > 1.0 + epsilon_high:
        # At or below the upper clip, delta would clip positive advantages' ratios early and leave the
        # negative ones it is meant to cap with the clipped term's gradient (see the docstring's formula).
        raise ValueError(f"delta ({delta}) must be > 1 + epsilon_high ({1.0 + epsilon_high})")
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and mask {tuple(mask.shape)}"
            " must have one shape"
        )
    m = mask.to(torch.bool)
    adv = advantages.to(logp.dtype)
    adv = adv.unsqueeze(-1).expand_as(logp) if adv.dim() == 1 else adv.expand_as(logp)

    ratio = importance_ratio(logp, old_logp.detach(), m, importance_sampling_level)
    unclipped = ratio.clamp(max=delta) if delta is not None else ratio
    clipped = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_high)
    surrogate = -torch.min(unclipped * adv, clipped * adv)
    # The reference and the weights are masked before use, as the ratio is: masking only the result hides
    # a non-finite value at padding but not its gradient (exp's is 0 * exp(d), NaN when d overflows).
    if is_weights is not None:
        surrogate = surrogate * torch.where(m, is_weights.detach(), 1.0).to(surrogate.dtype)

    per_token = surrogate
    kl = None
    if ref_logp is not None:
        kl = kl_k3(torch.where(m, logp, 0.0), torch.where(m, ref_logp.detach(), 0.0))
        if beta > 0:
            per_token = surrogate + beta * kl

    loss = aggregate(per_token, m, aggregation, max_tokens, normalizer)
    with torch.no_grad():
        r = ratio.detach()
        low = m & (adv < 0) & (r < 1.0 - epsilon_low)
        high = m & (adv > 0) & (r > 1.0 + epsilon_high)
        count = float(m.sum())
        metrics = {
            "clip_fraction_low": float(low.sum()) / count if count else 0.0,
            "clip_fraction_high": float(high.sum()) / count if count else 0.0,
            "clip_fraction": float((low | high).sum()) / count if count else 0.0,
            "kl": _masked_mean(kl.detach(), m) if kl is not None else 0.0,
            "ratio_mean": _masked_mean(r, m),
            "policy_loss": float(aggregate(surrogate.detach(), m, aggregation, max_tokens, normalizer)),
            "loss": float(loss.detach()),
        }
    return loss, metrics
