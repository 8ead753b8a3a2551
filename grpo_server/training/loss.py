"""The training loss of one micro-batch: the model's log-probs of the completion tokens, then the
algorithm's clipped surrogate plus KL (optionally weighted by truncated importance sampling), plus the
SDPO distillation loss when it is on. This is the only place where the model meets the algorithm.

Functions here are module-level and configured through a frozen dataclass so that a `functools.partial`
of them pickles: DeepSpeed ranks receive the loss function from rank 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from grpo_server.algorithm import policy_loss, token_logprobs_from_hidden, truncated_is_weights
from grpo_server.training.sdpo import SdpoSettings, TeacherRows, distill_loss
from grpo_server.types import TrainBatch


@dataclass(frozen=True)
class LossConfig:
    """Knobs of the policy loss (see grpo_server.algorithm.policy_loss)."""

    temperature: float = 1.0
    beta: float = 0.0
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    delta: float | None = None
    aggregation: str = "grpo"
    max_tokens: int | None = None
    importance_sampling_level: str = "token"
    logprob_chunk_size: int = 1024
    grpo_weight: float = 1.0  # 0 with algorithm "sdpo": the distillation loss alone
    tis_cap: float | None = None  # truncated IS (trainer vs sampler) cap; None = off
    tis_level: str = "token"
    sdpo: SdpoSettings | None = None  # None = no distillation term


def completion_logprobs(
    model: torch.nn.Module,
    batch: TrainBatch,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's log-probs (and optionally entropies) at the batch's completion positions.

    Returns ([N, L] log-probs in nats, [N, L] entropies or None); positions outside completion_mask are
    0. Only completion positions go through the LM head, chunk by chunk, so neither the full
    [N, L, vocab] logits nor an fp32 copy of them ever exist.
    """
    logp, entropy, _ = _completion_logprobs_and_hidden(
        model, batch, temperature, with_entropy=with_entropy, chunk_size=chunk_size
    )
    return logp, entropy


def _completion_logprobs_and_hidden(
    model: torch.nn.Module,
    batch: TrainBatch,
    temperature: float,
    *,
    with_entropy: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """`completion_logprobs` plus the decoder's last hidden states [N, L, H] (for SDPO's logit losses)."""
    decoder = model.get_decoder()  # type: ignore[operator]
    hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    # Position t's token is predicted from position t-1's hidden state.
    select = batch.completion_mask[:, 1:] > 0  # [N, L-1]
    h = hidden[:, :-1][select]  # [M, H]
    targets = batch.input_ids[:, 1:][select]  # [M]
    head = model.get_output_embeddings()  # type: ignore[operator]
    logp_sel, ent_sel = token_logprobs_from_hidden(
        h.unsqueeze(0),
        head.weight,
        targets.unsqueeze(0),
        temperature=temperature,
        chunk_size=chunk_size,
        with_entropy=with_entropy,
        lm_head_bias=getattr(head, "bias", None),
    )
    n, length = batch.input_ids.shape
    zeros = torch.zeros((n, length - 1), dtype=logp_sel.dtype, device=logp_sel.device)
    pad = torch.zeros((n, 1), dtype=logp_sel.dtype, device=logp_sel.device)
    logp = torch.cat([pad, zeros.masked_scatter(select, logp_sel[0])], dim=1)
    entropy = None
    if with_entropy and ent_sel is not None:
        entropy = torch.cat([pad, zeros.masked_scatter(select, ent_sel[0].to(zeros.dtype))], dim=1)
    return logp, entropy, hidden


def logprobs_only(model: torch.nn.Module, batch: TrainBatch, temperature: float = 1.0) -> torch.Tensor:
    """[N, L] completion log-probs without entropy (for old and reference log-probs)."""
    return completion_logprobs(model, batch, temperature)[0]


def global_normalizer(micro_batches: Sequence[TrainBatch], aggregation: str, max_tokens: int | None) -> float:
    """The denominator shared by every micro-batch (and rank) of one optimizer step, so that summing the
    micro-batch losses gives the loss of the whole batch.

    grpo: the number of sequences that have any loss token; bnpo/dapo: the number of loss tokens;
    dr_grpo: all sequences times max_tokens (Dr. GRPO's constant denominator). Never below 1.
    """
    active = sum(int((mb.completion_mask.sum(dim=1) > 0).sum()) for mb in micro_batches)
    tokens = sum(float(mb.completion_mask.sum()) for mb in micro_batches)
    if aggregation == "grpo":
        value = float(active)
    elif aggregation in ("bnpo", "dapo"):
        value = tokens
    elif aggregation == "dr_grpo":
        if not max_tokens:
            raise ValueError("aggregation 'dr_grpo' needs max_tokens")
        value = float(sum(mb.num_sequences for mb in micro_batches) * max_tokens)
    else:
        raise ValueError(f"unknown aggregation {aggregation!r}: use grpo, bnpo, dapo or dr_grpo")
    return max(value, 1.0)


def grpo_loss(
    model: torch.nn.Module,
    batch: TrainBatch,
    normalizer: float,
    cfg: LossConfig,
    teacher_rows: TeacherRows | None = None,
    teacher: torch.nn.Module | None = None,
    pad_id: int = 0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one micro-batch, already divided by the global normalizers:

        loss = grpo_weight * (clipped surrogate [x truncated IS weights] + beta * KL)
             + sdpo.weight * SDPO distillation loss      (when cfg.sdpo and teacher_rows are given)

    Args:
        model: the policy being trained.
        batch: one micro-batch ([N, L] tensors).
        normalizer: the GRPO aggregation's global denominator (see `global_normalizer`).
        cfg: the loss knobs.
        teacher_rows: SDPO re-prompts of the step's distilled rows (its own normalizer inside).
        teacher: SDPO teacher module (initial/EMA weights); None uses the live model under no_grad.
        pad_id: padding token for teacher inputs.
    Metrics: the algorithm's (clip fractions, kl, ratio_mean, policy_loss, loss) plus entropy, the mean
    absolute difference between the trainer's and the sampler's log-probs (nats per token), with truncated
    IS `tis/mismatch_kl`, `tis/clipped_fraction`, `tis/weight_mean`, and with SDPO `sdpo/distill_loss`.
    """
    logp, entropy, hidden = _completion_logprobs_and_hidden(
        model, batch, cfg.temperature, with_entropy=True, chunk_size=cfg.logprob_chunk_size
    )
    old = batch.old_logprobs if batch.old_logprobs is not None else logp.detach()
    mask = batch.completion_mask
    out: dict[str, float] = {}
    is_weights = None
    if cfg.tis_cap is not None:
        # The trainer's policy before this step's updates (old) against the engine that sampled.
        is_weights, tis = truncated_is_weights(old, batch.sampler_logprobs, mask, cfg.tis_cap, cfg.tis_level)
        out["tis/mismatch_kl"] = tis["mismatch_kl"]
        out["tis/clipped_fraction"] = tis["clipped_fraction"]
        count = float(mask.sum())
        out["tis/weight_mean"] = float((is_weights * mask).sum() / count) if count > 0 else 1.0
    total: torch.Tensor = logp.sum() * 0.0
    if cfg.grpo_weight > 0:
        loss, metrics = policy_loss(
            logp,
            old,
            batch.advantages,
            mask,
            ref_logp=batch.ref_logprobs if cfg.beta > 0 else None,
            beta=cfg.beta,
            epsilon_low=cfg.epsilon_low,
            epsilon_high=cfg.epsilon_high,
            delta=cfg.delta,
            aggregation=cfg.aggregation,
            max_tokens=cfg.max_tokens,
            normalizer=normalizer,
            importance_sampling_level=cfg.importance_sampling_level,
            is_weights=is_weights,
        )
        total = total + cfg.grpo_weight * loss
        out.update({k: float(v) for k, v in metrics.items()})
    if cfg.sdpo is not None and teacher_rows is not None and cfg.sdpo.weight > 0:
        distill, sdpo_metrics = distill_loss(
            model, batch, hidden, logp, teacher_rows, cfg.sdpo, teacher=teacher,
            temperature=cfg.temperature, pad_id=pad_id, chunk_size=cfg.logprob_chunk_size,
        )
        total = total + cfg.sdpo.weight * distill
        out.update(sdpo_metrics)
    out["loss"] = float(total.detach())
    count = float(mask.sum())
    if count > 0:
        if entropy is not None:
            out["entropy"] = float((entropy.detach() * mask).sum() / count)
        out["sampler_logprob_diff"] = float(((logp.detach() - batch.sampler_logprobs).abs() * mask).sum() / count)
    return total, out
