"""Per-token log-probs (and entropies) of chosen tokens without an fp32 [all tokens, vocab] tensor.

A 128k vocabulary at 4k completion tokens is 2 GB of fp32 logits per sequence; these functions work a
chunk of rows at a time in fp32 (log p(y) = z_y - logsumexp(z)), and under autograd recompute each chunk
in the backward pass (torch.utils.checkpoint) instead of keeping its logits. Dividing logits by the
sampling temperature before the softmax makes the trainer's distribution the one the sampler drew from.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _row_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """[R, V] logits (any dtype), [R] ids -> [R] fp32 log-probs."""
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature
    return z.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)


def _row_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """[R, V] logits -> [R] fp32 entropy (nats) of softmax(logits / temperature)."""
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, 0.0)).sum(dim=-1)  # 0 * log 0 = 0, with no NaN gradient


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def chosen_token_logprobs(
    logits: torch.Tensor, token_ids: torch.Tensor, *, temperature: float = 1.0, chunk_size: int = 4096
) -> torch.Tensor:
    """log softmax(logits / temperature)[token_ids], computed chunk_size rows at a time in fp32.

    Args:
        logits: [..., V] (usually [N, T, V]), any float dtype.
        token_ids: [...] int64 ids of the chosen tokens (same leading shape).
        temperature: the sampling temperature (> 0).
        chunk_size: rows ([..] positions) per fp32 chunk.
    Returns:
        [...] fp32 log-probs in nats. Differentiable in `logits`; each chunk is recomputed in backward.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if logits.shape[:-1] != token_ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and token_ids {tuple(token_ids.shape)} do not match")
    flat = logits.reshape(-1, logits.shape[-1])
    ids = token_ids.reshape(-1)
    grad = _needs_grad(logits)
    parts = []
    for start in range(0, flat.shape[0], chunk_size):
        rows, row_ids = flat[start : start + chunk_size], ids[start : start + chunk_size]
        if grad:
            parts.append(checkpoint(_row_logprobs, rows, row_ids, temperature, use_reentrant=False))
        else:
            parts.append(_row_logprobs(rows, row_ids, temperature))
    out = torch.cat(parts) if parts else flat.new_zeros((0,), dtype=torch.float32)
    return out.reshape(token_ids.shape)


def entropy_from_logits(
    logits: torch.Tensor, chunk_size: int = 4096, *, temperature: float = 1.0
) -> torch.Tensor:
    """Entropy (nats) of softmax(logits / temperature) per position, chunk_size rows at a time in fp32.

    logits [..., V] -> [...] fp32. A -inf logit is a token of probability 0 (0 * log 0 counts as 0).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    flat = logits.reshape(-1, logits.shape[-1])
    grad = _needs_grad(logits)
    parts = []
    for start in range(0, flat.shape[0], chunk_size):
        rows = flat[start : start + chunk_size]
        if grad:
            parts.append(checkpoint(_row_entropy, rows, temperature, use_reentrant=False))
        else:
            parts.append(_row_entropy(rows, temperature))
    out = torch.cat(parts) if parts else flat.new_zeros((0,), dtype=torch.float32)
    return out.reshape(logits.shape[:-1])


def _head_chunk(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ids: torch.Tensor,
    temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk: [R, H] hidden -> ([R] log-probs, [R] entropies or an empty tensor), both fp32."""
    logits = torch.nn.functional.linear(hidden, weight, bias)  # [R, V] in the model's dtype
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature
    lse = torch.logsumexp(z, dim=-1)
    logp = z.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logp, logp.new_zeros((0,))
    # H = logsumexp(z) - sum softmax(z) * z; a -inf logit has probability 0 and adds 0 (zeroed before
    # the product, so neither its value nor its gradient is 0 * -inf = NaN)
    probs = torch.softmax(z, dim=-1)
    entropy = lse - (probs * torch.where(probs > 0, z, 0.0)).sum(dim=-1)
    return logp, entropy


def token_logprobs_from_hidden(
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    token_ids: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    with_entropy: bool = False,
    lm_head_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of chosen tokens straight from final hidden states, applying the LM head by chunks.

    The full [N, T, V] logits never exist: each chunk of chunk_size positions is projected, reduced in
    fp32 and dropped; under autograd each chunk is recomputed in backward (torch.utils.checkpoint), so
    peak extra memory is one chunk's logits. Gradients flow to `hidden`, `lm_head_weight` and the bias.

    Args:
        hidden: [N, T, H] (or [M, H]) final hidden states at the positions predicting `token_ids`.
        lm_head_weight: [V, H] output embedding.
        token_ids: [N, T] (or [M]) ids of the chosen tokens.
        temperature: sampling temperature (> 0); logits are divided by it.
        chunk_size: positions per chunk.
        with_entropy: also return the entropy (nats) of each position's distribution.
        lm_head_bias: optional [V] bias.
    Returns:
        (log-probs [N, T] fp32 in nats, entropies [N, T] fp32 or None).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if hidden.shape[:-1] != token_ids.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and token_ids {tuple(token_ids.shape)} do not match")
    flat = hidden.reshape(-1, hidden.shape[-1])
    ids = token_ids.reshape(-1)
    grad = _needs_grad(hidden, lm_head_weight, lm_head_bias)
    logps, ents = [], []
    for start in range(0, flat.shape[0], chunk_size):
        rows, row_ids = flat[start : start + chunk_size], ids[start : start + chunk_size]
        args = (rows, lm_head_weight, lm_head_bias, row_ids, temperature, with_entropy)
        if grad:
            logp, ent = checkpoint(_head_chunk, *args, use_reentrant=False)
        else:
            logp, ent = _head_chunk(*args)
        logps.append(logp)
        ents.append(ent)
    empty = flat.new_zeros((0,), dtype=torch.float32)
    logp_all = (torch.cat(logps) if logps else empty).reshape(token_ids.shape)
    if not with_entropy:
        return logp_all, None
    return logp_all, (torch.cat(ents) if ents else empty).reshape(token_ids.shape)
