"""The completions a step keeps for people to read (StepStatus with include_samples, `grpo status
--samples`): what the policy wrote and how each reward backend scored it, so that reward hacking, a
misreading verifier or a format the backends reject is seen in the text and not only in the means.

A sample is a JSON-able dict with the field names of grpo.trainer.v1.CompletionSample; the store keeps
it as JSON beside the step's report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from grpo_server.types import ScoredCompletion, ScoredGroup

TEXT_BYTES = 8192  # a completion's text is cut here (UTF-8 bytes)
FEEDBACK_BYTES = 1024  # a backend's feedback and message are cut here


def cut(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to at most `limit` UTF-8 bytes at a character boundary, and whether it was cut."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", "ignore"), True


def _sample(prompt_id: str, index: int, scored: ScoredCompletion) -> dict[str, Any]:
    text, truncated = cut(scored.completion.text, TEXT_BYTES)
    reward = scored.reward
    scores = []
    for s in scored.scores:
        ok = s.score is not None and math.isfinite(s.score)
        scores.append({
            "backend": s.backend, "weight": float(s.weight), "score": float(s.score) if ok else 0.0,  # type: ignore[arg-type]
            "scored": ok, "status": s.status.value, "feedback": cut(s.feedback, FEEDBACK_BYTES)[0],
            "message": cut(s.message, FEEDBACK_BYTES)[0],
        })
    return {
        "prompt_id": prompt_id, "index": index, "text": text, "text_truncated": truncated,
        "finish_reason": scored.completion.finish_reason, "completion_tokens": len(scored.completion.token_ids),
        "reward": float(reward) if reward is not None else 0.0, "reward_valid": reward is not None, "scores": scores,
    }


def completion_samples(groups: Sequence[ScoredGroup], n: int) -> list[dict[str, Any]]:
    """Up to `n` completions of `groups`, one of each prompt in turn: the first completion of every
    group in step order, then the second, and so on (many prompts seen before a second look at any)."""
    out: list[dict[str, Any]] = []
    width = max((len(g.completions) for g in groups), default=0)
    for index in range(width):
        for g in groups:
            if len(out) >= n:
                return out
            if index < len(g.completions):
                out.append(_sample(g.rollout.prompt.id, index, g.completions[index]))
    return out
