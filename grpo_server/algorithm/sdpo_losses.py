"""SDPO's distillation losses: the student matches a feedback-conditioned teacher on its own completion.

Source: Hübotter et al. 2026, "Reinforcement Learning via Self-Distillation" (SDPO, arXiv:2601.20802).
The teacher is the same network (live, EMA or initial weights) re-prompted with the reward service's
feedback and/or a successful sibling; its next-token distributions over the student's completion tokens
are the target, with no gradient through the teacher. The generalised JSD follows GKD (Agarwal et al.
2024, "On-Policy Distillation of Language Models").

Shapes: log-probs [N, T]; logits [N, T, V] (student and teacher aligned on the same completion
positions); mask [N, T]. Every loss is a masked token mean (sum / number of masked tokens) unless a
`normalizer` replaces the denominator (micro-batches sharing one step's token count sum to the full
loss). Values in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.utils.checkpoint import checkpoint


def sdpo_is_weights(
    student_logp: torch.Tensor, sampling_logp: torch.Tensor, clip: float = 2.0
) -> torch.Tensor:
    """Per-token importance weights min(exp(student_logp - sampling_logp), clip), detached, [N, T].

    The completion was sampled by the policy at rollout time; once the student has taken optimizer steps
    (several inner iterations), the sampled-token estimators are off-policy and are reweighted by this
    truncated ratio. With one inner iteration the weight is 1.
    """
    return torch.exp(student_logp.detach() - sampling_logp.detach()).clamp(max=clip)


def _token_mean(
    per_token: torch.Tensor, mask: torch.Tensor, normalizer: float | None, weights: torch.Tensor | None
) -> torch.Tensor:
    m = mask.to(torch.bool)
    if weights is not None:
        # 1 where masked: a weight from padding's log-probs (-inf - -inf: NaN) would make the masked
        # positions' gradient 0 * NaN = NaN, although the loss leaves them out.
        w = torch.where(m, weights.detach(), torch.ones_like(weights))
        per_token = per_token * w.to(per_token.dtype)
    total = torch.where(m, per_token, torch.zeros_like(per_token)).sum()
    denom = float(normalizer) if normalizer is not None else max(float(m.sum()), 1.0)
    return total / denom


def _weights(
    student_logp: torch.Tensor | None, sampling_logp: torch.Tensor | None, is_clip: float | None
) -> torch.Tensor | None:
    if is_clip is None:
        return None
    if student_logp is None or sampling_logp is None:
        raise ValueError("is_clip needs sampling_logp (the sampler's log-probs of the completion tokens)")
    return sdpo_is_weights(student_logp, sampling_logp, is_clip)


def sdpo_sampled_reverse_kl(
    student_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    sampling_logp: torch.Tensor | None = None,
    is_clip: float | None = None,
    normalizer: float | None = None,
) -> torch.Tensor:
    """Sampled-token estimator of KL(student || teacher) on the student's own tokens (SDPO's default).

    For y ~ student, KL(s || t) = E[log s(y) - log t(y)], and its gradient is
    E[(log s(y) - log t(y)) * grad log s(y)] (the score-function, REINFORCE, form; the other term,
    E[grad log s(y)], is 0). Differentiating log s(y) - log t(y) directly would give only grad log s(y),
    whose expectation is 0: it ignores that y was drawn from the student, which is where the whole
    signal is. So the per-token loss is built as

        value:    log s - log t                      (the KL estimate, what is reported)
        gradient: (log s - log t).detach() * grad log s

    i.e. c * s_logp - sg[c * s_logp] + c with c = sg[s_logp - t_logp]. The teacher gets no gradient.

    Args:
        student_logp: [N, T] log-probs of the completion tokens under the student (with grad).
        teacher_logp: [N, T] the same tokens under the re-prompted teacher (detached here).
        mask: [N, T] tokens to distil (completion tokens of samples that got a teacher).
        sampling_logp, is_clip: when is_clip is set, each token is weighted by
            min(exp(student_logp - sampling_logp), is_clip) (see `sdpo_is_weights`).
        normalizer: replaces the masked-token count in the denominator.
    Returns:
        Scalar loss (nats per token).
    """
    # Masked positions are zeroed before use (a -inf teacher log-prob at padding would be NaN in the
    # gradient even with its value masked), as policy_loss masks its inputs.
    m = mask.to(torch.bool)
    student_logp, teacher_logp = torch.where(m, student_logp, 0.0), torch.where(m, teacher_logp, 0.0)
    if sampling_logp is not None:
        sampling_logp = torch.where(m, sampling_logp, 0.0)
    c = (student_logp - teacher_logp).detach()
    surrogate = c * student_logp
    per_token = surrogate - surrogate.detach() + c
    return _token_mean(per_token, mask, normalizer, _weights(student_logp, sampling_logp, is_clip))


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32; fp32 and fp64 stay as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _log_dists(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, top_k: int | None, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-distributions (at least fp32) of student and teacher over the full vocabulary, or over the
    teacher's top-k tokens of each position renormalised (both restricted to the same k tokens)."""
    s = _upcast(student_logits) / temperature
    t = _upcast(teacher_logits.detach()) / temperature
    if top_k is not None:
        idx = t.topk(top_k, dim=-1).indices
        s, t = s.gather(-1, idx), t.gather(-1, idx)
    return torch.log_softmax(s, dim=-1), torch.log_softmax(t, dim=-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dimension from log-probabilities; 0 * log 0 counts as 0, in the value
    and in the gradient (the entries where p is 0 are zeroed before use: masking only the product
    leaves 0 * -inf = NaN in its gradient)."""
    p = log_p.exp()
    some = p > 0
    log_p, log_q = torch.where(some, log_p, 0.0), torch.where(some, log_q, 0.0)
    return (p * (log_p - log_q)).sum(dim=-1)


def _logit_kl_rows(
    s: torch.Tensor, t: torch.Tensor, kind: str, top_k: int | None, temperature: float
) -> torch.Tensor:
    log_s, log_t = _log_dists(s, t, top_k, temperature)
    return _kl(log_t, log_s) if kind == "forward" else _kl(log_s, log_t)


def _jsd_rows(
    s: torch.Tensor, t: torch.Tensor, alpha: float, top_k: int | None, temperature: float
) -> torch.Tensor:
    log_s, log_t = _log_dists(s, t, top_k, temperature)
    if alpha == 0.0:
        return _kl(log_t, log_s)
    if alpha == 1.0:
        return _kl(log_s, log_t)
    # log M = log((1 - alpha) * s + alpha * t), computed stably; a token both give probability 0 (-inf)
    # enters at the dtype's lowest finite value, where logsumexp's gradient is finite (for -inf it is NaN)
    floor = torch.finfo(log_s.dtype).min
    log_m = torch.logsumexp(torch.stack([log_s.clamp(min=floor) + math.log(1 - alpha),
                                         log_t.clamp(min=floor) + math.log(alpha)]), dim=0)
    return alpha * _kl(log_t, log_m) + (1 - alpha) * _kl(log_s, log_m)


def _per_position(
    fn: Callable[..., torch.Tensor],
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    chunk_size: int,
    *args: object,
) -> torch.Tensor:
    """Apply a row function to [..., V] logits chunk_size positions at a time (checkpointed under
    autograd so no fp32 [all positions, V] copy is kept for backward); returns [...]."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits"
            f" {tuple(teacher_logits.shape)} differ"
        )
    v = student_logits.shape[-1]
    s_flat, t_flat = student_logits.reshape(-1, v), teacher_logits.reshape(-1, v)
    grad = torch.is_grad_enabled() and student_logits.requires_grad
    parts = []
    for start in range(0, s_flat.shape[0], chunk_size):
        s, t = s_flat[start : start + chunk_size], t_flat[start : start + chunk_size]
        parts.append(checkpoint(fn, s, t, *args, use_reentrant=False) if grad else fn(s, t, *args))
    out = torch.cat(parts) if parts else s_flat.new_zeros((0,), dtype=torch.float32)
    return out.reshape(student_logits.shape[:-1])


def _check_top_k(top_k: int | None, vocab: int) -> None:
    if top_k is not None and not 1 <= top_k <= vocab:
        raise ValueError(f"top_k must be in [1, {vocab}], got {top_k}")


def sdpo_logit_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "forward",
    top_k: int | None = None,
    temperature: float = 1.0,
    *,
    student_logp: torch.Tensor | None = None,
    sampling_logp: torch.Tensor | None = None,
    is_clip: float | None = None,
    normalizer: float | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Full-distribution (or top-k) KL between student and teacher at every completion position.

    kind "forward": KL(teacher || student) = sum_v t_v (log t_v - log s_v) (mass-covering);
    kind "reverse": KL(student || teacher) = sum_v s_v (log s_v - log t_v) (mode-seeking, exact rather
    than sampled). Distributions are softmax(logits / temperature) in fp32 (fp64 inputs stay fp64).
    With top_k, each position keeps the teacher's k most likely tokens and both distributions are
    renormalised over those k.

    Args:
        student_logits, teacher_logits: [N, T, V] at the same completion positions (teacher detached).
        mask: [N, T] positions to distil.
        student_logp, sampling_logp, is_clip: optional importance weighting as in `sdpo_is_weights`
            (student_logp: [N, T] the student's log-probs of the sampled tokens).
        normalizer: replaces the masked-token count in the denominator.
        chunk_size: positions per fp32 chunk.
    Returns:
        Scalar loss (nats per token).
    """
    if kind not in ("forward", "reverse"):
        raise ValueError(f"unknown KL kind {kind!r}: use forward or reverse")
    _check_top_k(top_k, student_logits.shape[-1])
    per_token = _per_position(
        _logit_kl_rows, student_logits, teacher_logits, chunk_size, kind, top_k, temperature
    )
    return _token_mean(per_token, mask, normalizer, _weights(student_logp, sampling_logp, is_clip))


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    alpha: float = 0.5,
    top_k: int | None = None,
    temperature: float = 1.0,
    *,
    student_logp: torch.Tensor | None = None,
    sampling_logp: torch.Tensor | None = None,
    is_clip: float | None = None,
    normalizer: float | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence between teacher and student (GKD, Agarwal et al. 2024).

    With M = (1 - alpha) * student + alpha * teacher:
        JSD_alpha = alpha * KL(teacher || M) + (1 - alpha) * KL(student || M).
    As alpha -> 0, JSD_alpha / alpha -> KL(teacher || student) (forward); as alpha -> 1,
    JSD_alpha / (1 - alpha) -> KL(student || teacher) (reverse). As in GKD and TRL, alpha = 0 and
    alpha = 1 return those two KLs exactly (unscaled). alpha = 0.5 is the symmetric JSD (<= log 2).
    Other arguments as in `sdpo_logit_kl`. Returns a scalar loss (nats per token).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    _check_top_k(top_k, student_logits.shape[-1])
    per_token = _per_position(
        _jsd_rows, student_logits, teacher_logits, chunk_size, alpha, top_k, temperature
    )
    return _token_mean(per_token, mask, normalizer, _weights(student_logp, sampling_logp, is_clip))


def ema_update(
    teacher_params: Iterable[torch.Tensor], student_params: Iterable[torch.Tensor], rate: float = 0.05
) -> None:
    """Move the teacher's weights towards the student's: t <- (1 - rate) * t + rate * s, in place.

    SDPO's default teacher (rate 0.05 per update). No autograd; the student is cast to the teacher's
    dtype. Both iterables must list matching tensors in the same order (e.g. `.parameters()` of two
    copies of one model).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    with torch.no_grad():
        for t, s in zip(teacher_params, student_params, strict=True):
            if t.shape != s.shape:
                raise ValueError(
                    f"teacher tensor {tuple(t.shape)} and student tensor {tuple(s.shape)} differ"
                )
            t.lerp_(s.to(device=t.device, dtype=t.dtype), rate)
