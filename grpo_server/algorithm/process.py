"""Process-supervision advantages: rewards per reasoning step instead of per completion.

Source: Shao et al. 2024, "DeepSeekMath", section 4.1.3: the step rewards of all G completions of a
prompt are normalised together, r~ = (r - mean(R)) / std(R), and token t of completion i gets
A_i,t = sum of r~ over the steps of completion i that end at or after t.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch


def char_offsets_to_token_ends(offsets: Sequence[int], token_char_ends: Sequence[int]) -> list[int]:
    """Map step ends in characters to step ends in tokens.

    Args:
        offsets: for each step, the character offset one past its last character (the reward proto's
            `step_end_offsets`, code points of the completion string); non-decreasing.
        token_char_ends: for each completion token, the character offset one past its last character in
            the decoded completion (so token k spans [token_char_ends[k-1], token_char_ends[k])).
    Returns:
        For each step, the token index one past the token holding its last character. A step that ends
        inside a token owns that token (a token is never split); an offset of 0 maps to 0; offsets past
        the decoded text map to len(token_char_ends).
    """
    ends = []
    for offset in offsets:
        if offset <= 0:
            ends.append(0)
            continue
        # First token whose end reaches the step's last character (offset - 1), inclusive.
        k = bisect.bisect_left(token_char_ends, offset)
        ends.append(min(k + 1, len(token_char_ends)))
    return ends


def process_advantages(
    step_rewards: Sequence[Sequence[float]],
    step_token_ends: Sequence[Sequence[int]],
    seq_len: int,
    group_size: int,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Token advantages from step rewards, normalised over all steps of each group.

    Args:
        step_rewards: per completion (N = B * G, group-contiguous), its step rewards in order. An empty
            list means no step reward (the completion's tokens get 0 and it is left out of the statistics).
        step_token_ends: per completion, per step, the token index one past the step's last token
            (completion-relative, non-decreasing); same lengths as `step_rewards`.
        seq_len: T, the width of the returned tensor (ends beyond it are cut to T).
        group_size: G.
        eps: added to the group's population std.
    Returns:
        float32 [N, T]: token t of completion i gets the sum of the normalised rewards of every step k of i
        with step_token_ends[i][k] > t (its own step and the later ones); tokens after the last step get 0.
        A group whose step rewards are all equal gets 0 everywhere.
    """
    n = len(step_rewards)
    if len(step_token_ends) != n:
        raise ValueError(f"{n} completions of step rewards but {len(step_token_ends)} of step ends")
    if group_size < 1 or n % group_size != 0:
        raise ValueError(f"{n} completions are not a whole number of groups of {group_size}")
    for i, (rewards, ends) in enumerate(zip(step_rewards, step_token_ends, strict=True)):
        if len(rewards) != len(ends):
            raise ValueError(f"completion {i}: {len(rewards)} step rewards but {len(ends)} step ends")
        if any(b < a for a, b in zip(ends, ends[1:], strict=False)) or any(e < 0 for e in ends):
            raise ValueError(
                f"completion {i}: step ends {list(ends)} are not non-negative and non-decreasing"
            )

    out = torch.zeros((n, seq_len), dtype=torch.float64)
    for g in range(0, n, group_size):
        members = range(g, g + group_size)
        values = torch.tensor([r for i in members for r in step_rewards[i]], dtype=torch.float64)
        if values.numel() < 2 or bool((values == values[0]).all()):
            continue  # no signal: zeros
        mean, std = values.mean(), values.std(unbiased=False)
        for i in members:
            normalised = (torch.tensor(step_rewards[i], dtype=torch.float64) - mean) / (std + eps)
            start = 0
            # Suffix sums: the advantage of step k is the sum of normalised rewards of steps k, k+1, ...
            suffix = normalised.flip(0).cumsum(0).flip(0)
            for k, end in enumerate(step_token_ends[i]):
                end = min(end, seq_len)
                out[i, start:end] = suffix[k]
                start = max(start, end)
    return out.to(torch.float32)
