"""Arithmetic of the GRPO variants: DAPO's soft overlong penalty, truncated importance sampling.

(DAPO's dynamic-sampling filter is `advantages.keep_groups`; GSPO's sequence ratio is
`losses.importance_ratio(level="sequence")`.)
"""

from __future__ import annotations

import torch

from grpo_server.algorithm.kl import kl_k3

IS_LEVELS = ("token", "sequence")


def overlong_penalty(lengths: torch.Tensor, max_len: int, cache_len: int) -> torch.Tensor:
    """DAPO's soft overlong punishment, a reward term per completion.

    Source: Yu et al. 2025, "DAPO", eq. 13. With L = max_len and C = cache_len:
        0                   if length <= L - C
        ((L - C) - length) / C   if L - C < length <= L   (linear from 0 to -1)
        -1                  if length > L

    Args:
        lengths: completion lengths in tokens, any shape (int or float).
        max_len: L, the maximum completion length (tokens).
        cache_len: C, the soft punishment interval (tokens), 0 <= C <= L; C = 0 gives a hard step.
    Returns:
        float32 penalties in [-1, 0], the shape of `lengths`; add them to the task reward.
    """
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"cache_len must be in [0, max_len={max_len}], got {cache_len}")
    length = lengths.to(torch.float32)
    free = float(max_len - cache_len)
    if cache_len == 0:
        return torch.where(length > max_len, -1.0, 0.0).to(torch.float32)
    ramp = (free - length) / float(cache_len)
    return torch.where(
        length <= free,
        torch.zeros_like(length),
        torch.where(length <= max_len, ramp, -torch.ones_like(length)),
    )


def truncated_is_weights(
    trainer_logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    mask: torch.Tensor,
    cap: float = 2.0,
    level: str = "token",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Truncated importance-sampling weights for the gap between the sampler's and the trainer's policy.

    The rollout engine (vLLM, bf16 kernels) samples from a slightly different distribution than the
    trainer computes; the policy gradient is corrected by w = min(pi_trainer / pi_sampler, cap)
    (truncated IS: Ionides 2008; applied to RL for LLMs by Yao et al. 2025, "Your Efficient RL
    Framework Secretly Brings You Off-Policy RL Training"; TRL and verl offer it).

    Args:
        trainer_logp: [N, T] the trainer's log-probs of the sampled tokens (usually the old log-probs).
        sampler_logp: [N, T] the rollout engine's log-probs of the same tokens.
        mask: [N, T] tokens that count.
        cap: upper bound on the weight (> 0).
        level: "token": w_t = min(exp(trainer_t - sampler_t), cap); "sequence": one weight per sequence,
            w_i = min(exp(sum over i's masked tokens of (trainer - sampler)), cap), the product of the
            token ratios, broadcast to its tokens.
    Returns:
        (weights [N, T] detached, 1 outside the mask; metrics): `mismatch_kl`, the k3 estimate of
        KL(sampler || trainer) averaged over masked tokens (the tokens were drawn from the sampler);
        `mean_abs_diff`, the mean |trainer - sampler| over masked tokens (nats); `clipped_fraction`, the
        fraction of masked tokens (token level) or non-empty sequences (sequence level) whose ratio
        exceeded the cap.
    """
    if level not in IS_LEVELS:
        raise ValueError(f"unknown importance-sampling level {level!r}: use token or sequence")
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    m = mask.to(torch.bool)
    with torch.no_grad():
        diff = torch.where(m, trainer_logp.detach() - sampler_logp.detach(), torch.zeros_like(trainer_logp))
        if level == "token":
            raw = diff.exp()
            clipped = m & (raw > cap)
            clipped_fraction = float(clipped.sum()) / max(float(m.sum()), 1.0)
        else:
            seq_log = diff.sum(dim=-1, keepdim=True)
            raw = seq_log.exp().expand_as(diff)
            active = m.any(dim=-1)
            over = (seq_log.squeeze(-1) > torch.log(torch.tensor(cap, dtype=seq_log.dtype))) & active
            clipped_fraction = float(over.sum()) / max(float(active.sum()), 1.0)
        weights = torch.where(m, raw.clamp(max=cap), torch.ones_like(raw))
        count = float(m.sum())
        k3 = kl_k3(sampler_logp.detach(), trainer_logp.detach())
        metrics = {
            "mismatch_kl": float(torch.where(m, k3, torch.zeros_like(k3)).sum()) / count if count else 0.0,
            "mean_abs_diff": float(diff.abs().sum()) / count if count else 0.0,
            "clipped_fraction": clipped_fraction,
        }
    return weights, metrics
