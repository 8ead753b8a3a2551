"""The learned reward model as a `Scorer`: format each item, score it through the micro-batcher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common import result_for

from .batcher import MicroBatcher
from .model import RewardModel, Scored

NAME = "reward-model"


@dataclass(frozen=True)
class RMConfig:
    """Knobs of the reward-model service."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    max_length: int | None = None  # tokens; default: the model's own limit
    micro_batch: int = 16  # texts per forward pass at most
    batch_wait_ms: float = 5.0  # how long the first text waits for company
    seed: int = 0
    # torch intra-op threads; 0 keeps torch's default (one per core). On a shared, oversubscribed CPU
    # fewer threads were far faster (docs/reward-services.md, Measured).
    threads: int = 0


class RewardModelScorer:
    """Scores = the classifier's logit for the chat-templated prompt + completion (unbounded, status OK).
    Any reference the item carries is ignored."""

    def __init__(self, config: RMConfig) -> None:
        self.config = config
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        self.model = RewardModel(config.model, device=config.device, dtype=config.dtype,
                                 max_length=config.max_length, seed=config.seed)
        self.batcher: MicroBatcher[str, Scored] = MicroBatcher(
            self.model.score_texts, micro_batch=config.micro_batch, wait_s=config.batch_wait_ms / 1000.0,
            name="rm-batcher")

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name=NAME,
            version=self.model.identity,
            capabilities=reward_pb2.Capabilities(
                feedback=False, step_scores=False,
                reference_kinds=[reward_pb2.REFERENCE_KIND_NONE, reward_pb2.REFERENCE_KIND_ANSWER,
                                 reward_pb2.REFERENCE_KIND_CODE],
                score_min=0.0, score_max=0.0),  # unbounded
        )

    def text_of(self, item: reward_pb2.ScoreItem) -> str:
        """The exact text scored for `item`."""
        return self.model.format([(m.role, m.content) for m in item.prompt], item.completion)

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        futures = self.batcher.submit_many([self.text_of(it) for it in items])
        results = []
        for it, fut in zip(items, futures, strict=True):
            try:
                s = fut.result()
            except Exception as exc:  # the forward pass failed (out of memory, a bad input for the model)
                results.append(result_for(it, reward_pb2.SCORE_STATUS_INTERNAL,
                                          f"model error: {type(exc).__name__}: {exc}"[:500]))
                continue
            results.append(reward_pb2.ScoreResult(
                id=it.id, score=s.score, status=reward_pb2.SCORE_STATUS_OK,
                components={"truncated": 1.0 if s.truncated else 0.0, "tokens": float(s.tokens)}))
        return results

    def close(self) -> None:
        self.batcher.close()
