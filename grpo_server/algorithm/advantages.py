"""Group-relative advantages (GRPO, outcome supervision).

Source: Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
Models", section 4.1.2: for the G completions of one prompt, A_i = (r_i - mean(r)) / std(r), every token
of completion i getting A_i. The standard deviation is the population one (divide by G), as in the
worked GRPO examples: the group (1, 1, 1, 0) gets +0.577 and -1.732.
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")


def _as_groups(
    rewards: torch.Tensor, group_size: int, valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reshape flat [B*G] (or [B, G]) rewards and their validity mask to [B, G] (float64, bool)."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.dim() == 2:
        if rewards.shape[1] != group_size:
            raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not have group_size {group_size}")
    elif rewards.dim() != 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"rewards of shape {tuple(rewards.shape)} are not [B*G] or [B, G] with group_size G={group_size}"
        )
    grouped = rewards.detach().to(torch.float64).reshape(-1, group_size)
    if valid is None:
        mask = torch.ones_like(grouped, dtype=torch.bool)
    else:
        if valid.numel() != rewards.numel():
            raise ValueError(f"valid has {valid.numel()} elements, rewards {rewards.numel()}")
        mask = valid.to(device=grouped.device, dtype=torch.bool).reshape(-1, group_size)
    # Masked rewards may be NaN ("no reward"); they must not leak into any statistic.
    grouped = torch.where(mask, grouped, torch.zeros_like(grouped))
    return grouped, mask


def _group_stats(
    grouped: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group mean, population std and zero-variance flag over valid items: [B, 1], [B, 1], [B]."""
    count = mask.sum(dim=1, keepdim=True)
    mean = grouped.sum(dim=1, keepdim=True) / count.clamp(min=1)
    var = (torch.where(mask, grouped - mean, torch.zeros_like(grouped)) ** 2).sum(dim=1, keepdim=True)
    std = (var / count.clamp(min=1)).sqrt()
    # Exact test (max == min over valid items) rather than std == 0, which rounding can miss.
    big = torch.finfo(grouped.dtype).max
    hi = torch.where(mask, grouped, torch.full_like(grouped, -big)).amax(dim=1)
    lo = torch.where(mask, grouped, torch.full_like(grouped, big)).amin(dim=1)
    zero_var = (count.squeeze(1) < 2) | (hi == lo)
    return mean, std, zero_var


def zero_variance_groups(
    rewards: torch.Tensor, group_size: int, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Which groups carry no learning signal: all valid rewards equal, or fewer than two valid ones.

    Args:
        rewards: [B*G] group-contiguous, or [B, G].
        group_size: G.
        valid: optional bool mask like `rewards`; False = no reward was obtained (excluded).
    Returns:
        bool [B], True for a zero-variance group.
    """
    grouped, mask = _as_groups(rewards, group_size, valid)
    return _group_stats(grouped, mask)[2]


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: str = "group",
    eps: float = 1e-6,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """GRPO advantages A = (r - group mean) / (std + eps), one per completion.

    Args:
        rewards: [B*G] in group-contiguous order (the G completions of prompt 0, then prompt 1, ...), or
            [B, G]. Any float dtype; computed in float64.
        group_size: G, completions per prompt.
        scale: "group" divides by the group's population std; "batch" by the population std of all
            valid rewards of the batch (mean still per group); "none" only centres (Dr. GRPO, Liu et al.
            2025, drops the std).
        eps: added to the std in the denominator.
        valid: optional bool mask like `rewards`. Items with False (no reward could be obtained) are left
            out of their group's mean and std, and of the batch std, and get advantage 0.
    Returns:
        Advantages of the same shape as `rewards` (float dtype of `rewards`, float32 for integer input).
        A group whose valid rewards are all equal (or has fewer than two) gets exactly 0, never NaN, even
        with eps=0.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}: use one of {', '.join(SCALES)}")
    grouped, mask = _as_groups(rewards, group_size, valid)
    mean, std, zero_var = _group_stats(grouped, mask)
    centred = grouped - mean
    if scale == "group":
        denom = std + eps
    elif scale == "batch":
        values = grouped[mask]
        batch_std = values.std(unbiased=False) if values.numel() > 0 else grouped.new_zeros(())
        denom = (batch_std + eps).expand_as(std)
    else:
        denom = torch.ones_like(std)
    keep = mask & ~zero_var.unsqueeze(1)
    # A zero denominator can only occur with eps=0 in a zero-variance group (group scale) or when every
    # valid reward of the batch is equal (batch scale): both cases are masked to 0 here.
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    adv = torch.where(keep, centred / safe, torch.zeros_like(centred))
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
    return adv.reshape(rewards.shape).to(out_dtype)


def keep_groups(rewards: torch.Tensor, group_size: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """DAPO dynamic sampling: which groups to keep, those whose valid rewards differ.

    Source: Yu et al. 2025, "DAPO", section 3.2 (keep 0 < |correct| < G; generalised here to any
    reward: keep the groups with non-zero variance).

    Returns bool [B]; the negation of `zero_variance_groups`.
    """
    return ~zero_variance_groups(rewards, group_size, valid)
