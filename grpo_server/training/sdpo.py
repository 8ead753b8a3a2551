"""SDPO in the trainer: which completions get a teacher, the teacher's re-prompt as tokens, and the
distillation loss of one micro-batch.

    scored groups ─► choose_teacher_context (feedback / successful sibling) ─► re-prompt token ids
      ─► per micro-batch: teacher forward (no grad) on re-prompt + the student's own completion tokens
      ─► sdpo_sampled_reverse_kl | sdpo_logit_kl | generalized_jsd against the student's log-probs

The pure math lives in grpo_server.algorithm.sdpo_losses / sdpo_prompts; this module only moves tokens
and tensors between them and the model. Source: Hübotter et al. 2026 (SDPO).

The teacher's inputs travel with the loss function (a `TeacherRows` keyed by each row's tokens), not in
the TrainBatch: a micro-batch row finds its re-prompt by its own prompt + completion token ids, which
survive splitting and device moves unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from grpo_server.algorithm import (
    build_teacher_messages,
    choose_teacher_context,
    generalized_jsd,
    sdpo_logit_kl,
    sdpo_sampled_reverse_kl,
    token_logprobs_from_hidden,
)
from grpo_server.types import ScoredGroup, TrainBatch

log = logging.getLogger(__name__)

SDPO_LOSSES = ("sampled_reverse_kl", "logit_kl", "jsd")
TEACHERS = ("live", "initial", "ema")

NO_TEACHER_REASONS = ("only_self_succeeded", "reward_unavailable", "no_feedback_no_success", "masked", "too_long",
                      "identical_completion")
"""Why a completion gets no teacher: choose_teacher_context's reasons (grpo_server.algorithm.sdpo_prompts),
plus `masked`: it had feedback or a successful sibling but carries no loss (no completion tokens, or
masked e.g. as truncated), or no teacher prompt could be built for it (its prompt has no user message, or
the chat template rejects the re-prompt); and `too_long`: its re-prompt (the prompt, up to 4 KiB of
feedback per backend, a sibling's whole completion) followed by its own completion is longer than the
model's context; `identical_completion`: another completion of the same prompt with the very same tokens
gets no teacher (rows are matched by their tokens, so both would be distilled). Reported per step as
sdpo/no_teacher_<reason>."""

RowKey = tuple[int, ...]
"""A batch row's real tokens: prompt token ids followed by completion token ids."""


@dataclass(frozen=True)
class SdpoSettings:
    """The SDPO knobs (AlgorithmConfig.sdpo_*; see docs/variants.md)."""

    weight: float = 1.0
    loss: str = "sampled_reverse_kl"
    kl_kind: str = "forward"
    top_k: int | None = None
    jsd_alpha: float = 0.5
    teacher: str = "ema"
    ema_rate: float = 0.05
    is_clip: float | None = 2.0
    success_threshold: float = 1.0
    use_feedback: bool = True
    use_siblings: bool = True
    instruction: str = "Using the information above, solve the original problem again, correctly."

    def __post_init__(self) -> None:
        if self.loss not in SDPO_LOSSES:
            raise ValueError(f"unknown SDPO loss {self.loss!r}: use one of {', '.join(SDPO_LOSSES)}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"unknown SDPO teacher {self.teacher!r}: use one of {', '.join(TEACHERS)}")


@dataclass(frozen=True)
class TeacherRows:
    """The teacher prompt (chat-templated re-prompt token ids) of every distilled row, by row key.

    normalizer: the number of distilled completion tokens in the whole step (all micro-batches), so the
    micro-batch losses sum to the step's token-mean distillation loss.
    """

    prompts: Mapping[RowKey, tuple[int, ...]] = field(default_factory=dict)
    normalizer: float = 1.0


def teacher_rows(
    scored: Sequence[ScoredGroup],
    rewards: Sequence[float | None],
    settings: SdpoSettings,
    group_size: int,
    encode: Callable[[list[dict[str, str]]], list[int]],
    *,
    keep: Sequence[bool] | None = None,
    context: int | None = None,
) -> tuple[TeacherRows, dict[str, float]]:
    """Decide which completions get a teacher and build their re-prompts.

    Args:
        scored: the step's groups (group-contiguous, `group_size` completions each).
        rewards: [N] the total (shaped) reward per completion, None where masked.
        settings: SDPO knobs (success threshold, feedback/sibling switches, instruction).
        encode: chat messages -> prompt token ids ready for the assistant's turn (the chat template).
        keep: [N] completions that can carry a loss at all (e.g. not masked as truncated); default all.
        context: the model's context in tokens (None: unknown, no bound). A teacher sequence longer than
            it gets no teacher (`too_long`): a model with learned position embeddings fails on it (an
            index error that ended the step), a rotary one scores it at positions it was never trained on.
    Returns:
        (TeacherRows, metrics): sdpo/distilled_fraction, sdpo/with_feedback, sdpo/with_sibling and
        sdpo/no_teacher_<reason> for each of NO_TEACHER_REASONS (fractions of the step's N completions;
        distilled_fraction plus the no_teacher fractions is 1) and sdpo/distilled_tokens.
    """
    completions = [c for g in scored for c in g.completions]
    n = len(completions)
    contexts = choose_teacher_context(
        list(rewards),
        [c.feedback for c in completions],
        settings.success_threshold,
        group_size=group_size,
        use_feedback=settings.use_feedback,
        use_siblings=settings.use_siblings,
        identities=[tuple(c.completion.token_ids) for c in completions],
    )
    chosen: list[tuple[RowKey, tuple[int, ...], int, bool, bool]] = []  # key, re-prompt, tokens, feedback, sibling
    undistilled: set[RowKey] = set()
    no_teacher = dict.fromkeys(NO_TEACHER_REASONS, 0)
    for i, ctx in enumerate(contexts):
        group = scored[i // group_size]
        done = completions[i].completion
        key = tuple(group.rollout.prompt_token_ids) + tuple(done.token_ids)
        if not ctx.distilled:
            no_teacher[ctx.reason] += 1
            undistilled.add(key)
            continue
        if not done.token_ids or (keep is not None and not keep[i]):
            no_teacher["masked"] += 1  # carries no loss: _align never picks it, whatever its key
            continue
        sibling = completions[ctx.sibling].completion.text if ctx.sibling is not None else None
        try:
            messages = build_teacher_messages(group.rollout.prompt.messages, ctx.feedback, sibling,
                                              settings.instruction)
            teacher_prompt = tuple(encode(messages))
        except Exception as exc:  # noqa: BLE001 - no user message (ValueError), or the chat template's own error
            # A stored prompt the API took (a system message alone) or feedback the template rejects must
            # not end the step, and the run with it: this completion gets no teacher, the step goes on.
            log.warning("prompt %r: no SDPO teacher for completion %d: %s", group.rollout.prompt.id,
                        i % group_size, exc)
            no_teacher["masked"] += 1
            undistilled.add(key)
            continue
        if context is not None and len(teacher_prompt) + len(done.token_ids) > context:
            log.warning("prompt %r: no SDPO teacher for completion %d: its re-prompt (%d tokens) and completion "
                        "(%d) exceed the model's context of %d tokens", group.rollout.prompt.id, i % group_size,
                        len(teacher_prompt), len(done.token_ids), context)
            no_teacher["too_long"] += 1
            undistilled.add(key)
            continue
        chosen.append((key, teacher_prompt, len(done.token_ids), ctx.feedback is not None, ctx.sibling is not None))
    # Rows are found again by their tokens (row_keys): a completion identical to one that gets no teacher
    # (a flaky reward scored the same text a success and a failure) cannot be told from it, and distilling
    # the key would distil both, the success against a re-prompt showing its own text as the solution.
    # So are two rows of one key whose re-prompts differ (two prompts with the same messages but their
    # own feedback, sharing a completion): one re-prompt would serve both, the other prompt's feedback.
    re_prompts: dict[RowKey, set[tuple[int, ...]]] = {}
    for key, teacher_prompt, *_ in chosen:
        re_prompts.setdefault(key, set()).add(teacher_prompt)
    prompts: dict[RowKey, tuple[int, ...]] = {}
    distilled = with_feedback = with_sibling = tokens = 0
    for key, teacher_prompt, length, feedback, sibling_shown in chosen:
        if key in undistilled or len(re_prompts[key]) > 1:
            no_teacher["identical_completion"] += 1
            continue
        prompts[key] = teacher_prompt
        distilled += 1
        with_feedback += feedback
        with_sibling += sibling_shown
        tokens += length
    metrics = {
        "sdpo/distilled_fraction": distilled / n if n else 0.0,
        "sdpo/with_feedback": with_feedback / n if n else 0.0,
        "sdpo/with_sibling": with_sibling / n if n else 0.0,
        **{f"sdpo/no_teacher_{reason}": count / n if n else 0.0 for reason, count in no_teacher.items()},
        "sdpo/distilled_tokens": float(tokens),
    }
    return TeacherRows(prompts, max(float(tokens), 1.0)), metrics


def row_keys(batch: TrainBatch) -> list[RowKey]:
    """Each row's real tokens (attention_mask == 1, right-padded rows)."""
    lengths = batch.attention_mask.sum(dim=1).tolist()
    ids = batch.input_ids.tolist()
    return [tuple(row[: int(n)]) for row, n in zip(ids, lengths, strict=True)]


@dataclass(frozen=True)
class _Aligned:
    """Distilled rows of a micro-batch: student positions and the teacher's padded inputs."""

    rows: list[int]  # batch row indices
    student_pos: list[torch.Tensor]  # per row: [c] column indices of its completion tokens
    teacher_ids: torch.Tensor  # [R, Lt] re-prompt + completion, right-padded
    teacher_attention: torch.Tensor  # [R, Lt]
    teacher_select: torch.Tensor  # [R, Lt] bool: positions whose hidden state predicts a completion token


def _align(batch: TrainBatch, rows: TeacherRows, pad_id: int) -> _Aligned | None:
    keys = row_keys(batch)
    mask = batch.completion_mask > 0
    picked: list[int] = []
    positions: list[torch.Tensor] = []
    teacher_seqs: list[tuple[list[int], int, int]] = []  # (ids, teacher prompt length, completion length)
    for i, key in enumerate(keys):
        prompt = rows.prompts.get(key)
        pos = mask[i].nonzero().squeeze(-1)
        if prompt is None or pos.numel() == 0:
            continue
        completion = batch.input_ids[i, pos].tolist()
        picked.append(i)
        positions.append(pos)
        teacher_seqs.append((list(prompt) + completion, len(prompt), len(completion)))
    if not picked:
        return None
    width = max(len(ids) for ids, _, _ in teacher_seqs)
    ids_t = torch.full((len(picked), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(picked), width), dtype=torch.long)
    select = torch.zeros((len(picked), width), dtype=torch.bool)
    for r, (ids, p, c) in enumerate(teacher_seqs):
        ids_t[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        att[r, : len(ids)] = 1
        select[r, p - 1 : p + c - 1] = True  # position t's hidden state predicts token t + 1
    return _Aligned(picked, positions, ids_t, att, select)


def _hidden(model: torch.nn.Module, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    decoder = model.get_decoder()  # type: ignore[operator]
    return decoder(input_ids=ids, attention_mask=attention).last_hidden_state


def distill_loss(
    model: torch.nn.Module,
    batch: TrainBatch,
    student_hidden: torch.Tensor,
    student_logp: torch.Tensor,
    rows: TeacherRows,
    settings: SdpoSettings,
    *,
    teacher: torch.nn.Module | None,
    temperature: float,
    pad_id: int,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The SDPO distillation loss of one micro-batch, already divided by `rows.normalizer`.

    Args:
        model: the student (its LM head is used for student logits of the logit losses).
        batch: the micro-batch ([N, L] tensors, see TrainBatch).
        student_hidden: [N, L, H] the student decoder's last hidden states (with grad).
        student_logp: [N, L] the student's log-probs of the batch tokens (with grad; 0 off completions).
        rows: the re-prompts of the distilled rows and the step's distilled-token count.
        teacher: the teacher module (initial or EMA weights), or None for the live student itself.
        temperature: the sampling temperature logits are divided by (as for the policy log-probs).
        pad_id: token id used to pad teacher inputs.
    Returns:
        (loss, metrics): the scalar loss (nats per distilled token of the step) and
        `sdpo/distill_loss` (the same number, a loss share summed over micro-batches) and
        `sdpo/teacher_logp_gap` (student minus teacher log-prob summed over this batch's distilled tokens,
        divided by the step's distilled-token count: a share, summed over micro-batches into the step's
        mean, engine.STEP_SHARES).
    """
    aligned = _align(batch, rows, pad_id)
    if aligned is None:
        zero = student_logp.sum() * 0.0  # keeps the graph: every micro-batch returns a differentiable loss
        return zero, {"sdpo/distill_loss": 0.0}
    device = student_hidden.device
    net = teacher if teacher is not None else model
    with torch.no_grad():
        t_hidden = _hidden(net, aligned.teacher_ids.to(device), aligned.teacher_attention.to(device))
        t_h = t_hidden[aligned.teacher_select.to(device)]  # [M, H] in row order
    targets = torch.cat([batch.input_ids[r, p] for r, p in zip(aligned.rows, aligned.student_pos, strict=True)]).to(device)
    # Student tensors in the same (row, position) order as the teacher's.
    s_logp = torch.cat([student_logp[r, p] for r, p in zip(aligned.rows, aligned.student_pos, strict=True)])
    sampler = torch.cat(
        [batch.sampler_logprobs[r, p] for r, p in zip(aligned.rows, aligned.student_pos, strict=True)]
    ).to(device)
    t_head = net.get_output_embeddings()  # type: ignore[operator]
    ones = torch.ones((1, s_logp.shape[0]), device=device)
    if settings.loss == "sampled_reverse_kl":
        with torch.no_grad():
            t_logp, _ = token_logprobs_from_hidden(
                t_h.unsqueeze(0), t_head.weight, targets.unsqueeze(0), temperature=temperature,
                chunk_size=chunk_size, lm_head_bias=getattr(t_head, "bias", None),
            )
        loss = sdpo_sampled_reverse_kl(
            s_logp.unsqueeze(0), t_logp.to(s_logp.dtype), ones,
            sampling_logp=sampler.unsqueeze(0), is_clip=settings.is_clip, normalizer=rows.normalizer,
        )
        gap = float((s_logp.detach() - t_logp[0].to(s_logp.dtype)).sum()) / rows.normalizer
    else:
        s_h = torch.cat([student_hidden[r, p - 1] for r, p in zip(aligned.rows, aligned.student_pos, strict=True)])
        s_head = model.get_output_embeddings()  # type: ignore[operator]
        s_logits = s_head(s_h).unsqueeze(0)  # [1, M, V]
        with torch.no_grad():
            t_logits = t_head(t_h).unsqueeze(0)
        common = {
            "top_k": settings.top_k, "temperature": temperature, "student_logp": s_logp.unsqueeze(0),
            "sampling_logp": sampler.unsqueeze(0), "is_clip": settings.is_clip,
            "normalizer": rows.normalizer, "chunk_size": chunk_size,
        }
        if settings.loss == "logit_kl":
            loss = sdpo_logit_kl(s_logits, t_logits, ones, settings.kl_kind, **common)  # type: ignore[arg-type]
        else:
            loss = generalized_jsd(s_logits, t_logits, ones, settings.jsd_alpha, **common)  # type: ignore[arg-type]
        with torch.no_grad():
            t_logp = torch.log_softmax(t_logits[0].float() / temperature, dim=-1).gather(-1, targets.unsqueeze(-1))
        gap = float((s_logp.detach().float() - t_logp.squeeze(-1)).sum()) / rows.normalizer
    return loss, {"sdpo/distill_loss": float(loss.detach()), "sdpo/teacher_logp_gap": gap}
