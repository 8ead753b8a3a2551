"""Collating scored groups into training tensors: layout, masks, micro-batches, global normaliser."""

from __future__ import annotations

import pytest
import torch

from grpo_server.training.batch import collate, split, with_logprobs
from grpo_server.training.loss import global_normalizer
from grpo_server.types import (
    BackendScore,
    ChatMessage,
    Completion,
    PromptRecord,
    RewardSpec,
    RewardStatus,
    RolloutGroup,
    ScoredCompletion,
    ScoredGroup,
)


def _scored(prompt_ids, comps, scores) -> ScoredGroup:
    prompt = PromptRecord("p", (ChatMessage("user", "q"),), (RewardSpec("math"),), answer="1")
    completions = tuple(
        Completion(tuple(ids), tuple(-0.5 for _ in ids), "t", finish) for ids, finish in comps
    )
    scored = tuple(
        ScoredCompletion(c, (BackendScore("math", 1.0, RewardStatus.OK if s is not None else RewardStatus.UNAVAILABLE, s),))
        for c, s in zip(completions, scores, strict=True)
    )
    return ScoredGroup(RolloutGroup(prompt, tuple(prompt_ids), completions), scored)


def test_completion_positions_follow_the_prompt() -> None:
    g = _scored([10, 11, 12], [([5, 6], "stop"), ([7], "stop")], [1.0, 0.0])
    b = collate([g], torch.tensor([0.5, -0.5]), pad_token_id=0)
    assert b.input_ids.tolist() == [[10, 11, 12, 5, 6], [10, 11, 12, 7, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert b.completion_mask.tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 1, 0]]
    assert b.sampler_logprobs[0, 3:].tolist() == [-0.5, -0.5] and b.sampler_logprobs[0, :3].abs().sum() == 0
    assert b.advantages.tolist() == [0.5, -0.5]


def test_masked_reward_and_truncation_get_no_loss_tokens() -> None:
    g = _scored([1], [([2, 3], "stop"), ([4, 5], "length"), ([6], "stop")], [1.0, 1.0, None])
    b = collate([g], torch.zeros(3), pad_token_id=0, mask_truncated=True)
    assert b.completion_mask.sum(dim=1).tolist() == [2.0, 0.0, 0.0]
    b = collate([g], torch.zeros(3), pad_token_id=0, mask_truncated=False)
    assert b.completion_mask.sum(dim=1).tolist() == [2.0, 2.0, 0.0]


def test_per_token_advantages_land_on_completion_positions() -> None:
    g = _scored([1, 1], [([2, 3], "stop"), ([4], "stop")], [1.0, 0.0])
    adv = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    b = collate([g], adv, pad_token_id=0)
    assert b.advantages.tolist() == [[0, 0, 1, 2], [0, 0, 3, 0]]


def test_split_trims_padding_and_keeps_rows() -> None:
    g1 = _scored([1], [([2], "stop"), ([3], "stop")], [1, 0])
    g2 = _scored([1, 1, 1, 1], [([2, 2, 2], "stop"), ([3], "stop")], [1, 0])
    b = with_logprobs(collate([g1, g2], torch.arange(4.0), pad_token_id=0), old=torch.zeros(4, 7))
    parts = split(b, 2)
    assert [p.input_ids.shape for p in parts] == [torch.Size([2, 2]), torch.Size([2, 7])]
    assert parts[0].old_logprobs is not None and parts[0].old_logprobs.shape == (2, 2)
    assert torch.equal(torch.cat([p.advantages for p in parts]), b.advantages)


@pytest.mark.parametrize(
    ("aggregation", "expected"), [("grpo", 2.0), ("bnpo", 3.0), ("dapo", 3.0), ("dr_grpo", 3.0 * 16)]
)
def test_global_normalizer_counts_active_sequences_or_tokens(aggregation: str, expected: float) -> None:
    g = _scored([1], [([2, 3], "stop"), ([4], "stop"), ([5], "stop")], [1.0, 0.0, None])
    parts = split(collate([g], torch.zeros(3), pad_token_id=0), 1)
    assert global_normalizer(parts, aggregation, 16) == expected
