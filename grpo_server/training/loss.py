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
from grpo_server.training.engine import WEIGHT_OF, to_device
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
    # Run each distinct prompt through the decoder once for all its completions (exact; see
    # _shared_prompt_hidden). SDPO's distillation needs the full hidden states and turns it off.
    share_prompts: bool = True


def completion_logprobs(
    model: torch.nn.Module,
    batch: TrainBatch,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    chunk_size: int = 1024,
    share_prompts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's log-probs (and optionally entropies) at the batch's completion positions.

    Returns ([N, L] log-probs in nats, [N, L] entropies or None); positions outside completion_mask are
    0. Only completion positions go through the LM head, chunk by chunk, so neither the full
    [N, L, vocab] logits nor an fp32 copy of them ever exist. With `share_prompts` a prompt shared by
    several rows runs through the decoder once (same result; see `_shared_prompt_hidden`).
    """
    logp, entropy, _ = _completion_logprobs_and_hidden(
        model, batch, temperature, with_entropy=with_entropy, chunk_size=chunk_size, share_prompts=share_prompts
    )
    return logp, entropy


def _completion_logprobs_and_hidden(
    model: torch.nn.Module,
    batch: TrainBatch,
    temperature: float,
    *,
    with_entropy: bool,
    chunk_size: int,
    share_prompts: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """`completion_logprobs` plus the decoder's last hidden states [N, L, H] (for SDPO's logit losses).

    With `share_prompts` (and a batch it applies to, see `_shared_prompt_hidden`) each distinct prompt
    goes through the decoder once and the hidden states come back as None."""
    decoder = model.get_decoder()  # type: ignore[operator]
    # Position t's token is predicted from position t-1's hidden state.
    select = batch.completion_mask[:, 1:] > 0  # [N, L-1]
    targets = batch.input_ids[:, 1:][select]  # [M]
    sharing = share_prompts and not _zero3_partitioned(model)
    shared = _shared_prompt_hidden(model, decoder, batch) if sharing else None
    hidden: torch.Tensor | None
    if shared is not None:
        h, hidden = shared, None
    else:
        hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        h = hidden[:, :-1][select]  # [M, H]
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


# Config fields of model families whose forward changes the logits after the LM head: Granite divides
# them (logits_scaling), Cohere multiplies them (logit_scale), Gemma 2 caps them (final_logit_softcapping).
_LOGIT_POSTPROCESSING = ("logits_scaling", "logit_scale", "final_logit_softcapping")


def logits_from_hidden_problem(model: torch.nn.Module) -> str | None:
    """Why the trainer's log-probs would not be the sampler's for `model`, or None when they are.

    The loss applies the LM head to the decoder's last hidden states itself (by chunks, never holding
    [N, T, V] logits), so a model whose own forward changes the logits after the head trains on another
    distribution than the rollout samples from (the HF engine and vLLM use the model's logits): the
    ratio, the KL and the sampler check would all be off, silently. Checked by the known config fields,
    and by comparing the model's forward with the head on its decoder's output for a few tokens."""
    config = getattr(model, "config", None)
    for name in _LOGIT_POSTPROCESSING:
        value = getattr(config, name, None)
        if value is not None and not (name != "final_logit_softcapping" and value == 1):
            return (f"its config sets {name} = {value}: its forward changes the logits after the LM head, "
                    "which the trainer's log-probs (the head applied to the decoder's output) do not")
    head = model.get_output_embeddings()  # type: ignore[operator]
    if head is None:
        return None
    device = head.weight.device
    ids = torch.arange(1, 9, device=device).remainder(int(head.weight.shape[0])).unsqueeze(0)
    training = model.training
    model.eval()  # no dropout: the two passes must see the same network
    try:
        with torch.no_grad():
            forward = model(input_ids=ids).logits.float()
            hidden = model.get_decoder()(input_ids=ids).last_hidden_state  # type: ignore[operator]
            ours = torch.nn.functional.linear(hidden, head.weight, getattr(head, "bias", None)).float()
    finally:
        model.train(training)
    gap = float((forward - ours).abs().max())
    if gap > 1e-3 * max(float(forward.abs().max()), 1.0):
        return (f"its forward's logits differ from the LM head applied to its decoder's output by up to {gap:.3g}: "
                "it changes them in its own forward, which the trainer's log-probs do not")
    return None


def _sliding_window(model: torch.nn.Module) -> bool:
    """Whether some attention layer of `model` sees only a window of the tokens before it (Mistral,
    Phi-3, Gemma 3's local layers; not Qwen2 with use_sliding_window false)."""
    config = getattr(model, "config", None)
    if getattr(config, "sliding_window", None) is None or getattr(config, "use_sliding_window", True) is False:
        return False
    layer_types = getattr(config, "layer_types", None)
    return layer_types is None or "sliding_attention" in layer_types


def _zero3_partitioned(model: torch.nn.Module) -> bool:
    """Whether DeepSpeed ZeRO-3 partitions the model's parameters (it tags each one with `ds_id`).

    Under ZeRO-3 every submodule call gathers its parameters collectively, so all ranks must make the
    same sequence of module calls. Whether a micro-batch takes the shared-prompt path (two decoder
    calls) or the plain one (one call) depends on that rank's rows, so ZeRO-3 always takes the plain one.
    """
    first = next(model.parameters(), None)
    return first is not None and hasattr(first, "ds_id")


# Attention implementations that take a custom 4D additive mask (the packed layout needs one).
_MASKABLE_ATTENTION = ("sdpa", "eager")
# Largest packed attention mask (elements, summed over groups) before falling back to the KV-cache
# layout: the mask is dense, quadratic in a group's packed length (G completions plus the prompt).
PACKED_MASK_LIMIT = 1 << 24


@dataclass(frozen=True)
class _Rows:
    """Where a micro-batch's loss tokens sit: the rows with any, each one's prompt (index into
    `prompts`), first loss token (= prompt length) and end (one past its last real token)."""

    rows: list[int]
    prompt_of_row: list[int]
    prompts: list[tuple[int, ...]]
    starts: list[int]
    ends: list[int]


def _group_rows(batch: TrainBatch) -> _Rows | None:
    """The batch's rows grouped by prompt, or None when sharing does not apply: no loss token, a loss
    token at position 0, or no prompt used by several rows (then the plain forward does the same work).

    A row's prompt is what precedes its first loss token, its completion what follows up to its last
    real token (right padding)."""
    mask = batch.completion_mask > 0  # [N, L]
    active = mask.any(dim=1)
    if not bool(active.any()):
        return None
    rows = active.nonzero().squeeze(1).tolist()
    starts = mask.float().argmax(dim=1).tolist()  # first loss token of each row
    ends = batch.attention_mask.sum(dim=1).tolist()  # one past the last real token
    ids = batch.input_ids
    prompt_of_row: list[int] = []
    prompts: dict[tuple[int, ...], int] = {}
    for i in rows:
        key = tuple(ids[i, : starts[i]].tolist())
        prompt_of_row.append(prompts.setdefault(key, len(prompts)))
    if len(prompts) == len(rows) or min(starts[i] for i in rows) < 1:
        return None
    return _Rows(rows, prompt_of_row, list(prompts), starts, ends)


def _shared_prompt_hidden(
    model: torch.nn.Module, decoder: torch.nn.Module, batch: TrainBatch
) -> torch.Tensor | None:
    """The hidden states that predict the batch's loss tokens, [M, H] in the order of
    `batch.completion_mask[:, 1:] > 0` (row by row), computing each distinct prompt once.

    The G completions of a group share their prompt, and under causal attention the prompt's hidden
    states and keys/values do not depend on what follows. Autograd sums the gradients of the shared
    prompt over its rows: the result equals the padded full-sequence forward within floating-point
    reordering, at a fraction of the work when prompts are long next to completions (SmolLM2's chat
    prompt: ~43 tokens before an answer of ~17). Rows without a loss token are left out altogether.

    Two layouts: packed (`_packed_hidden`: one decoder call, no padding inside a group) where the
    attention implementation takes a custom mask and the mask stays small, else the KV-cache layout
    (`_cached_hidden`). Returns None where sharing does not apply (see `_group_rows`), and where only the
    KV-cache layout would but gradient checkpointing is on (checkpointed layers keep no cache).
    """
    if _sliding_window(model):
        # The packed layout's mask is a plain causal one: a sliding layer would attend past its window,
        # where the sampler's did not. The plain forward applies the model's own masks.
        return None
    grouped = _group_rows(batch)
    if grouped is None:
        return None
    if _packed_layout_applies(model, grouped):
        return _packed_hidden(decoder, batch, grouped)
    if getattr(model, "is_gradient_checkpointing", False) and model.training:
        return None  # checkpointed layers turn the KV cache off: the plain forward instead
    return _cached_hidden(decoder, batch, grouped)


def _packed_layout_applies(model: torch.nn.Module, grouped: _Rows) -> bool:
    """Whether the model's attention takes a custom 4D mask and the packed mask stays small."""
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return attention in _MASKABLE_ATTENTION and _packed_mask_size(grouped) <= PACKED_MASK_LIMIT


def _packed_lengths(grouped: _Rows) -> list[int]:
    """Each prompt's packed length: the prompt, then each of its completions but the last token (whose
    hidden state predicts nothing)."""
    lengths = [len(p) for p in grouped.prompts]
    for r, i in enumerate(grouped.rows):
        lengths[grouped.prompt_of_row[r]] += grouped.ends[i] - grouped.starts[i] - 1
    return lengths


def _packed_mask_size(grouped: _Rows) -> int:
    lengths = _packed_lengths(grouped)
    return len(lengths) * max(lengths) ** 2


def _packed_hidden(decoder: torch.nn.Module, batch: TrainBatch, grouped: _Rows) -> torch.Tensor:
    """Packed layout: one sequence per distinct prompt, `prompt, completion 1, completion 2, ...` (each
    completion without its last token), with the completions' own position ids and a 4D mask under which
    a completion token sees its prompt and the tokens of its own completion before it. One decoder call
    for the micro-batch, and no padding but at the end of the shorter packed sequences: completions of
    different lengths cost their own length, not the longest one's."""
    ids = batch.input_ids
    device = ids.device
    lengths = _packed_lengths(grouped)
    width = max(lengths)
    u_count = len(lengths)
    packed = torch.zeros((u_count, width), dtype=ids.dtype, device=device)
    positions = torch.zeros_like(packed)
    # allowed[u, q, k]: query position q of sequence u may attend to key position k.
    allowed = torch.zeros((u_count, width, width), dtype=torch.bool, device=device)
    fill = [len(p) for p in grouped.prompts]
    for u, p in enumerate(grouped.prompts):
        n = len(p)
        packed[u, :n] = torch.tensor(p, dtype=ids.dtype, device=device)
        positions[u, :n] = torch.arange(n, device=device)
        allowed[u, :n, :n] = torch.ones((n, n), dtype=torch.bool, device=device).tril()
    # The flat index (u * width + position) of the hidden state predicting each loss token.
    predictors: list[torch.Tensor] = []
    mask = batch.completion_mask > 0
    for r, i in enumerate(grouped.rows):
        u = grouped.prompt_of_row[r]
        start, end = grouped.starts[i], grouped.ends[i]
        n = end - start - 1  # completion tokens fed in (the last one predicts nothing)
        at = fill[u]
        if n > 0:
            packed[u, at : at + n] = ids[i, start : end - 1]
            positions[u, at : at + n] = start + torch.arange(n, device=device)
            allowed[u, at : at + n, :start] = True  # the prompt
            allowed[u, at : at + n, at : at + n] = torch.ones((n, n), dtype=torch.bool, device=device).tril()
        fill[u] = at + n
        # Token start is predicted by the prompt's last position, token start + j by completion slot j - 1.
        first = torch.tensor([start - 1], device=device)
        slots = u * width + torch.cat([first, at + torch.arange(n, device=device)])
        predictors.append(slots[mask[i, start:end]])
    for u, used in enumerate(fill):  # padding attends to itself only (its output is never read)
        pad = torch.arange(used, width, device=device)
        allowed[u, pad, pad] = True
    dtype = decoder.get_input_embeddings().weight.dtype  # type: ignore[operator]
    additive = torch.zeros(allowed.shape, dtype=dtype, device=device)
    additive.masked_fill_(~allowed, torch.finfo(dtype).min)
    hidden = decoder(
        input_ids=packed, attention_mask=additive.unsqueeze(1), position_ids=positions, use_cache=False
    ).last_hidden_state  # [U, W, H]
    return hidden.reshape(-1, hidden.shape[-1])[torch.cat(predictors)]


def _cached_hidden(decoder: torch.nn.Module, batch: TrainBatch, grouped: _Rows) -> torch.Tensor:
    """KV-cache layout: the distinct prompts run through the decoder once (with a KV cache), then the
    completions, right-padded to the longest, run on top of that cache, each row indexing its prompt's
    keys and values. For attention implementations that take no custom mask (flash attention)."""
    rows, prompt_of_row, starts, ends = grouped.rows, grouped.prompt_of_row, grouped.starts, grouped.ends
    mask = batch.completion_mask > 0
    ids = batch.input_ids
    device = ids.device
    # The distinct prompts, right-padded: [U, P].
    prompt_list = grouped.prompts
    p_len = max(len(p) for p in prompt_list)
    prompt_ids = torch.zeros((len(prompt_list), p_len), dtype=ids.dtype, device=device)
    prompt_att = torch.zeros_like(prompt_ids)
    for u, p in enumerate(prompt_list):
        prompt_ids[u, : len(p)] = torch.tensor(p, dtype=ids.dtype, device=device)
        prompt_att[u, : len(p)] = 1
    out = decoder(input_ids=prompt_ids, attention_mask=prompt_att, use_cache=True)
    # The completions on top of their prompts' keys and values: [R, C].
    c_len = max(ends[i] - starts[i] for i in rows)
    comp_ids = torch.zeros((len(rows), c_len), dtype=ids.dtype, device=device)
    comp_att = torch.zeros_like(comp_ids)
    positions = torch.zeros_like(comp_ids)
    for r, i in enumerate(rows):
        n = ends[i] - starts[i]
        comp_ids[r, :n] = ids[i, starts[i] : ends[i]]
        comp_att[r, :n] = 1
        positions[r] = starts[i] + torch.arange(c_len, device=device)
    index = torch.tensor(prompt_of_row, device=device)
    cache = out.past_key_values
    cache.batch_select_indices(index)
    comp_hidden = decoder(
        input_ids=comp_ids,
        attention_mask=torch.cat([prompt_att[index], comp_att], dim=1),
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state  # [R, C, H]
    # Completion token j is predicted by completion position j-1, the first by the prompt's last token.
    last_prompt = out.last_hidden_state[index, torch.tensor([starts[i] - 1 for i in rows], device=device)]
    predicting = torch.cat([last_prompt.unsqueeze(1), comp_hidden[:, :-1]], dim=1)  # [R, C, H]
    padded = torch.nn.functional.pad(mask, (0, c_len))
    keep = torch.stack([padded[i, starts[i] : starts[i] + c_len] for i in rows])  # [R, C]
    return predicting[keep]


def logprobs_only(model: torch.nn.Module, batch: TrainBatch, temperature: float = 1.0) -> torch.Tensor:
    """[N, L] completion log-probs without entropy (for old and reference log-probs), computed where `model`
    is (the step's batches are built on the CPU; the reference model may be on a GPU)."""
    return completion_logprobs(model, to_device(batch, next(model.parameters()).device), temperature)[0]


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
    distilling = cfg.sdpo is not None and teacher_rows is not None and cfg.sdpo.weight > 0
    logp, entropy, hidden = _completion_logprobs_and_hidden(
        model, batch, cfg.temperature, with_entropy=True, chunk_size=cfg.logprob_chunk_size,
        share_prompts=cfg.share_prompts and not distilling,
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
        if cfg.tis_level == "sequence":  # a fraction of the non-empty sequences: weighted by their number
            out[WEIGHT_OF + "tis/clipped_fraction"] = float((mask.sum(dim=-1) > 0).sum())
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
    if distilling:
        assert cfg.sdpo is not None and teacher_rows is not None and hidden is not None
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
        # The trainer's policy before this step's updates (`old`) against the sampler: with several inner
        # iterations the current `logp` has moved by the earlier ones, which is not a sampler mismatch.
        out["sampler_logprob_diff"] = float(((old - batch.sampler_logprobs).abs() * mask).sum() / count)
    return total, out
