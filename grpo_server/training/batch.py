"""Scored groups -> TrainBatch tensors, and TrainBatch -> micro-batches.

Layout (see grpo_server.types.TrainBatch): each row is prompt tokens then completion tokens, right-padded.
Position t of every log-prob tensor holds the log-prob of input_ids[:, t] given the tokens before it, so
completion positions are [len(prompt), len(prompt) + len(completion)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from grpo_server.types import ScoredGroup, TrainBatch


def collate(
    groups: Sequence[ScoredGroup],
    advantages: torch.Tensor,
    *,
    pad_token_id: int,
    mask_truncated: bool = False,
) -> TrainBatch:
    """Build one TrainBatch of all completions of `groups`, group-contiguous.

    advantages: [N] (N = total completions, same order) or [N, C] per completion token (process
    supervision; C = the longest completion), placed at completion positions.
    Completions whose reward is None (masked) and, with `mask_truncated`, completions cut off at the length
    limit get an all-zero completion_mask: they are in the batch but carry no gradient.
    """
    rows: list[tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...], bool]] = []
    for group in groups:
        prompt = group.rollout.prompt_token_ids
        for sc in group.completions:
            done = sc.completion
            keep = sc.reward is not None and not (mask_truncated and done.truncated) and len(done.token_ids) > 0
            rows.append((prompt, done.token_ids, done.logprobs, keep))
    n = len(rows)
    length = max(len(p) + len(c) for p, c, _, _ in rows)
    input_ids = torch.full((n, length), pad_token_id, dtype=torch.long)
    attention = torch.zeros((n, length), dtype=torch.long)
    cmask = torch.zeros((n, length), dtype=torch.float32)
    sampler = torch.zeros((n, length), dtype=torch.float32)
    per_token = advantages.dim() == 2
    adv = torch.zeros((n, length), dtype=torch.float32) if per_token else advantages.to(torch.float32).clone()
    for i, (prompt, comp, logprobs, keep) in enumerate(rows):
        p, c = len(prompt), len(comp)
        input_ids[i, :p] = torch.tensor(prompt, dtype=torch.long)
        input_ids[i, p : p + c] = torch.tensor(comp, dtype=torch.long)
        attention[i, : p + c] = 1
        sampler[i, p : p + c] = torch.tensor(logprobs, dtype=torch.float32)
        if keep:
            cmask[i, p : p + c] = 1.0
        if per_token:
            adv[i, p : p + c] = advantages[i, :c].to(torch.float32)
    return TrainBatch(
        input_ids=input_ids,
        attention_mask=attention,
        completion_mask=cmask,
        advantages=adv,
        sampler_logprobs=sampler,
    )



def split(batch: TrainBatch, micro_batch_size: int) -> list[TrainBatch]:
    """Cut a batch into micro-batches of at most `micro_batch_size` rows, each trimmed to its own longest
    row (fewer padded positions to compute)."""
    out = []
    for start in range(0, batch.num_sequences, micro_batch_size):
        sl = slice(start, start + micro_batch_size)
        width = int(batch.attention_mask[sl].sum(dim=1).max().item())
        cols = slice(0, max(width, 1))

        def cut(t: torch.Tensor | None, sl: slice = sl, cols: slice = cols) -> torch.Tensor | None:
            if t is None:
                return None
            t = t[sl]
            return t[:, cols] if t.dim() == 2 else t

        out.append(
            TrainBatch(
                input_ids=cut(batch.input_ids),  # type: ignore[arg-type]
                attention_mask=cut(batch.attention_mask),  # type: ignore[arg-type]
                completion_mask=cut(batch.completion_mask),  # type: ignore[arg-type]
                advantages=cut(batch.advantages),  # type: ignore[arg-type]
                sampler_logprobs=cut(batch.sampler_logprobs),  # type: ignore[arg-type]
                old_logprobs=cut(batch.old_logprobs),
                ref_logprobs=cut(batch.ref_logprobs),
            )
        )
    return out


def with_logprobs(
    batch: TrainBatch, *, old: torch.Tensor | None = None, ref: torch.Tensor | None = None
) -> TrainBatch:
    """The same batch with old and/or reference log-probs attached ([N, L], detached)."""
    return TrainBatch(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        completion_mask=batch.completion_mask,
        advantages=batch.advantages,
        sampler_logprobs=batch.sampler_logprobs,
        old_logprobs=old.detach() if old is not None else batch.old_logprobs,
        ref_logprobs=ref.detach() if ref is not None else batch.ref_logprobs,
    )
