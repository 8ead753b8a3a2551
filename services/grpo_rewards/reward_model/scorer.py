"""The learned reward model as a `Scorer`: format each item, score it through the micro-batcher."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common import call_abandoned, result_for
from grpo_rewards.common.metrics import truncated_items_counter
from grpo_rewards.common.reasoning import answer_part

from .batcher import MicroBatcher
from .model import RewardModel, Scored
from .special_text import Formatted

NAME = "reward-model"
REASONING_CHOICES = ("drop", "keep")
# How often a call waiting for the model checks whether its client is still there, seconds.
ABANDON_POLL_S = 0.05


@dataclass(frozen=True)
class RMConfig:
    """Knobs of the reward-model service."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    max_length: int | None = None  # tokens; default: the model's own limit
    truncation_side: str = "left"  # which end of an over-long text is cut: left keeps the completion's end
    micro_batch: int = 16  # texts per forward pass at most
    batch_wait_ms: float = 5.0  # how long the first text waits for company
    seed: int = 0
    # torch intra-op threads; 0 keeps torch's default (one per core). On a shared, oversubscribed CPU
    # fewer threads were far faster (docs/reward-services.md, Measured).
    threads: int = 0
    # "drop": a completion holding </think> is scored by the text after the last one (its answer);
    # "keep": the whole completion, reasoning included.
    reasoning: str = "drop"


class RewardModelScorer:
    """Scores = the classifier's logit for the chat-templated prompt + completion (unbounded, status OK).
    Any reference the item carries is ignored."""

    def __init__(self, config: RMConfig) -> None:
        self.config = config
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        self.model = RewardModel(config.model, device=config.device, dtype=config.dtype,
                                 max_length=config.max_length, seed=config.seed,
                                 truncation_side=config.truncation_side)
        self.batcher: MicroBatcher[Formatted, Scored] = MicroBatcher(
            self.model.score_texts, micro_batch=config.micro_batch, wait_s=config.batch_wait_ms / 1000.0,
            name="rm-batcher")
        # `grpo_reward_truncated_items_total` in each registry given to `register_metrics`.
        self._truncated: list[tuple[CollectorRegistry, Counter]] = []
        self._metrics_lock = threading.Lock()

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Count truncated items in `registry` (the server's, served on `--metrics-listen`); once per
        registry (`grpo_rewards.common.metrics.RegistersMetrics`)."""
        with self._metrics_lock:
            if all(r is not registry for r, _ in self._truncated):
                self._truncated = [*self._truncated, (registry, truncated_items_counter(registry))]

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

    def answer_of(self, completion: str) -> str:
        """The part of `completion` the model scores: with `reasoning="drop"` its answer
        (grpo_rewards.common.reasoning: the text after the last `</think>`, nothing for a `<think>` never
        closed, else all of it; blank lines at either end stripped); with "keep" all of it."""
        if self.config.reasoning == "drop":
            part = answer_part(completion)
            return part.text.strip("\n") if part.where else completion
        return completion

    def text_of(self, item: reward_pb2.ScoreItem) -> str:
        """The exact text scored for `item` (special-token strings from its messages are read as text)."""
        return self.model.format([(m.role, m.content) for m in item.prompt], self.answer_of(item.completion))

    def rendered(self, item: reward_pb2.ScoreItem) -> Formatted:
        """`text_of(item)`, with what tells its messages' special-token strings from the template's."""
        return self.model.render([(m.role, m.content) for m in item.prompt], self.answer_of(item.completion))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        results: list[reward_pb2.ScoreResult | None] = [None] * len(items)
        texts: list[Formatted] = []
        where: list[int] = []
        for i, it in enumerate(items):
            try:
                texts.append(self.rendered(it))
                where.append(i)
            except Exception as exc:  # the chat template refused these messages (its raise_exception, a role)
                results[i] = result_for(it, reward_pb2.SCORE_STATUS_INVALID_INPUT,
                                        f"prompt: the model's chat template refused these messages: "
                                        f"{type(exc).__name__}: {exc}"[:500])
        futures = self.batcher.submit_many(texts)
        self._wait(futures)
        for i, fut in zip(where, futures, strict=True):
            it = items[i]
            if not fut.done() or fut.cancelled():
                results[i] = result_for(it, reward_pb2.SCORE_STATUS_INTERNAL,
                                        "not scored: the call ended (deadline or cancellation) before the model got to it")
                continue
            try:
                s = fut.result()
            except Exception as exc:  # the forward pass failed (out of memory, a bad input for the model)
                results[i] = result_for(it, reward_pb2.SCORE_STATUS_INTERNAL,
                                        f"model error: {type(exc).__name__}: {exc}"[:500])
                continue
            if s.truncated:
                for _, counter in self._truncated:
                    counter.inc()
            if s.tokens == 0:
                results[i] = result_for(it, reward_pb2.SCORE_STATUS_INVALID_INPUT,
                                        "completion: nothing to score: the completion and the prompt are empty "
                                        "(this model has no chat template to add tokens of its own)")
                continue
            if not math.isfinite(s.score):  # an overflow (float16 tops out at 65504) or a broken checkpoint
                results[i] = result_for(it, reward_pb2.SCORE_STATUS_INTERNAL, self._non_finite(s.score))
                continue
            results[i] = reward_pb2.ScoreResult(
                id=it.id, score=s.score, status=reward_pb2.SCORE_STATUS_OK,
                components={"truncated": 1.0 if s.truncated else 0.0, "tokens": float(s.tokens)})
        return [r for r in results if r is not None]

    def _non_finite(self, score: float) -> str:
        """The status message of a non-finite score: what the model gave, and the dtype to try instead."""
        dtype = str(self.model.dtype).removeprefix("torch.")
        hint = ("; float16 overflows above 65504: try --dtype bfloat16 or float32" if dtype == "float16"
                else "; the checkpoint's weights or activations may hold inf or nan")
        return f"model error: the model's score is not finite ({score}) in {dtype}{hint}"

    @staticmethod
    def _wait(futures: list[Future[Scored]]) -> None:
        """Wait for `futures`; if the call is abandoned first, cancel those the model has not started
        (the batcher skips them) and return without waiting for the rest."""
        abandoned = call_abandoned()
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=ABANDON_POLL_S)
            if pending and abandoned.is_set():
                for f in pending:
                    f.cancel()
                return

    def close(self) -> None:
        self.batcher.close()
