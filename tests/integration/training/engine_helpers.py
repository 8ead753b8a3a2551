"""Shared pieces of the training-engine tests: the tiny model, a fixed batch, a simple loss.

Also imported by the DeepSpeed rank script (ds_ranks.py), so everything here is importable and picklable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from grpo_server.types import TrainBatch


def load_tiny(path: Path) -> torch.nn.Module:
    """The tiny Llama written by build_tiny_model, in fp32, dropout-free, training mode."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.train()
    return model


def fixed_batch(n: int = 8, length: int = 12, vocab: int = 400, seed: int = 1234, group: int = 1) -> TrainBatch:
    """N sequences of random tokens: the first 4 positions are the prompt, shared by each run of `group`
    rows as a GRPO group shares it (so the loss runs each prompt once); completions have varied
    lengths (right padding), varied advantages, and one fully-masked row (a failed reward)."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab, (n, length), generator=g)
    input_ids[:, :4] = input_ids[(torch.arange(n) // group) * group, :4]
    attention = torch.zeros((n, length), dtype=torch.long)
    cmask = torch.zeros((n, length))
    for i in range(n):
        end = length - (i % 4)  # rows of different lengths
        attention[i, :end] = 1
        if i != 3:  # row 3 is masked out of the loss
            cmask[i, 4:end] = 1.0
    advantages = torch.randn(n, generator=g)
    return TrainBatch(
        input_ids=input_ids,
        attention_mask=attention,
        completion_mask=cmask,
        advantages=advantages,
        sampler_logprobs=torch.zeros((n, length)),
    )


def split_rows(batch: TrainBatch, size: int) -> list[TrainBatch]:
    """Micro-batches of `size` rows (same padded width), every tensor field cut alike."""
    out = []
    for s in range(0, batch.num_sequences, size):
        fields = {k: (v[s : s + size] if isinstance(v, torch.Tensor) else v) for k, v in vars(batch).items()}
        out.append(TrainBatch(**fields))
    return out


def token_logprobs(model: torch.nn.Module, batch: TrainBatch) -> torch.Tensor:
    """[N, L] log-prob of input_ids[:, t] given the tokens before it (0 at t = 0).

    Like the trainer's chunked log-prob code, it multiplies the decoder's hidden states by the LM head's
    weight itself instead of calling the head: under ZeRO-3 that weight is then used outside its own
    module's forward, which the DeepSpeed engine must gather for."""
    decoder: Any = model.get_decoder()  # type: ignore[operator]
    head: Any = model.get_output_embeddings()  # type: ignore[operator]
    hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    logits = hidden[:, :-1] @ head.weight.T
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = logp.gather(-1, batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return torch.cat([torch.zeros_like(chosen[:, :1]), chosen], dim=1)


def advantage_weighted_nll(
    model: torch.nn.Module, batch: TrainBatch, normalizer: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """-sum(advantage * log p(token)) over loss tokens / normalizer: a REINFORCE-style loss whose
    micro-batch losses sum to the full-batch loss. Metrics: the mean log-prob of loss tokens."""
    logp = token_logprobs(model, batch)
    mask = batch.completion_mask
    loss = -(batch.advantages[:, None] * logp * mask).sum() / normalizer
    count = float(mask.sum())
    mean_logp = float((logp.detach() * mask).sum() / count) if count else 0.0
    return loss, {"mean_logprob": mean_logp}


def token_count(micro_batches) -> float:
    """The global normalizer: loss tokens over all micro-batches (dapo/bnpo style)."""
    return max(sum(float(mb.completion_mask.sum()) for mb in micro_batches), 1.0)


def with_old_and_ref(model: torch.nn.Module, batch: TrainBatch, seed: int = 99) -> TrainBatch:
    """The batch with old and reference log-probs near the model's own, so that the GRPO loss clips
    some tokens on both sides and has a non-zero KL term."""
    from dataclasses import replace

    from grpo_server.training.loss import logprobs_only

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        logp = logprobs_only(model, batch)
    mask = batch.completion_mask
    old = logp + 0.3 * torch.randn(logp.shape, generator=g) * mask
    ref = logp + 0.2 * torch.randn(logp.shape, generator=g) * mask
    return replace(batch, old_logprobs=old, ref_logprobs=ref)
