"""Helpers for the variant tests: hand-built scored groups, a router over real backends, configs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpo.reward.v1 import reward_pb2
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


def scored_group(
    tokenizer: Any, question: str, texts: Sequence[str], rewards: Sequence[float | None],
    feedbacks: Sequence[str], prompt_id: str = "p0",
) -> ScoredGroup:
    """A ScoredGroup of real token ids (the tiny tokenizer) with one backend's scores and feedback."""
    prompt = PromptRecord(prompt_id, (ChatMessage("user", question),), (RewardSpec("b"),))
    prompt_ids = tuple(tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                     add_generation_prompt=True, tokenize=True)["input_ids"])
    completions = []
    for text, reward, feedback in zip(texts, rewards, feedbacks, strict=True):
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        done = Completion(ids, tuple(-1.0 for _ in ids), text, "stop")
        status = RewardStatus.OK if reward is not None else RewardStatus.TIMEOUT
        completions.append(ScoredCompletion(done, (BackendScore("b", 1.0, status, reward, feedback),)))
    return ScoredGroup(RolloutGroup(prompt, prompt_ids, tuple(c.completion for c in completions)), tuple(completions))


class PromptRewardScorer:
    """A reward backend for dynamic-sampling tests: prompts whose text contains FLAT always score 0.5
    (a zero-variance group), BROKEN ones are refused (INVALID_INPUT: no reward); others score the
    fraction of digits 0-4 in the completion (varies)."""

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name="prompt-reward", version="1",
            capabilities=reward_pb2.Capabilities(
                feedback=True, max_batch_size=256, score_min=0.0, score_max=1.0,
                reference_kinds=[reward_pb2.REFERENCE_KIND_NONE, reward_pb2.REFERENCE_KIND_ANSWER]))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        out = []
        for item in items:
            if "BROKEN" in item.prompt[-1].content:
                out.append(reward_pb2.ScoreResult(id=item.id, status=reward_pb2.SCORE_STATUS_INVALID_INPUT,
                                                  status_message="refused"))
                continue
            if "FLAT" in item.prompt[-1].content:
                score = 0.5
            else:
                chars = [c for c in item.completion if not c.isspace()]
                score = sum(c in "01234" for c in chars) / len(chars) if chars else 0.0
                score += 1e-3 * len(item.completion)  # distinct completions: distinct rewards
            out.append(reward_pb2.ScoreResult(id=item.id, score=score, status=reward_pb2.SCORE_STATUS_OK,
                                              feedback=f"score {score:.3f}"))
        return out

    def close(self) -> None:
        pass


def router_for(backends: dict[str, str]) -> tuple[Any, Any]:
    """(RewardRouter, registry snapshot) over real backends at the given addresses."""
    from grpo_server.rewards.registry import BackendEntry, RewardRegistry
    from grpo_server.rewards.router import RewardRouter

    registry = RewardRegistry([BackendEntry(name=n, address=a, source="config") for n, a in backends.items()])
    return RewardRouter(registry, max_retries=0), registry.snapshot()


def tiny_config(**sections: dict[str, Any]) -> Any:
    """The tiny model's trainer config for tests: HF rollouts, small batches, API on a free port."""
    from grpo_server.config import parse_config

    base: dict[str, dict[str, Any]] = {
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": 8},
        "algorithm": {"prompts_per_step": 2, "group_size": 4, "beta": 0.0},
        "training": {"learning_rate": 1e-3},
        "checkpoint": {"every_steps": 1},
        "server": {"listen": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return parse_config(base)


def arithmetic_prompts(n: int, start: int = 0, text: str = "What is {i}+{i}?") -> list[Any]:
    """n trainer_pb2.Prompts with answers, ids p<start>..."""
    from grpo.trainer.v1 import trainer_pb2

    return [
        trainer_pb2.Prompt(id=f"p{i}", messages=[reward_pb2.Message(role="user", content=text.format(i=i))],
                           answer=str(2 * i))
        for i in range(start, start + n)
    ]
