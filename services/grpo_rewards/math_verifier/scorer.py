"""The math verifier as a `Scorer`: extract the final answer, compare it with the gold answer in a
verifier process, explain the verdict."""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common import call_abandoned, result_for
from grpo_rewards.common.reasoning import answer_part

from .extract import (
    bound_as_inequality,
    drop_invisible,
    extract_choice,
    extract_final_answer,
    gold_choice,
    gold_is_number,
    normalize_gold,
    strip_math_delimiters,
)
from .pool import VerifierPool
from .worker import Verdict

log = logging.getLogger(__name__)

NAME = "math-verifier"
# Feedback quotes answers; long ones are cut so that feedback stays well under the 4 KiB the proto allows.
QUOTE_CHARS = 200


@dataclass(frozen=True)
class MathConfig:
    """Knobs of the math verifier. Times in seconds, lengths in characters (Unicode code points)."""

    workers: int = 1
    item_timeout_s: float = 5.0
    max_completion_chars: int = 65536
    # Parsing cost grows fast with expression size (hundreds of nested parentheses take seconds), and a
    # real final answer is short: longer extracted answers are refused before parsing.
    max_answer_chars: int = 512
    start_method: str = "forkserver"
    # Verdicts remembered per (gold, extracted answer): a group of G samples often repeats an answer.
    cache_size: int = 8192


def _quote(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


def _version() -> str:
    try:
        ours = importlib.metadata.version("grpo-service")
    except importlib.metadata.PackageNotFoundError:
        ours = "dev"
    return f"{ours} (math-verify {importlib.metadata.version('math-verify')})"


class MathVerifierScorer:
    """Scores 1.0 when the completion's final answer equals `reference.answer`, else 0.0 (status OK
    either way). TIMEOUT when verification could not finish; INVALID_INPUT for oversize input."""

    def __init__(self, config: MathConfig = MathConfig()) -> None:
        self.config = config
        self.pool = VerifierPool(config.workers, config.item_timeout_s, config.start_method)
        # One dispatcher thread per worker process keeps every worker busy across concurrent calls.
        self._dispatch = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="math-dispatch")
        self._cache: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _verify(self, gold: str, answer: str) -> Verdict:
        """The pool's verdict, remembered (LRU) unless it timed out or failed."""
        key = (gold, answer)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        verdict = self.pool.verify(gold, answer)
        if self.config.cache_size > 0 and not verdict.timed_out and not verdict.error:
            with self._cache_lock:
                self._cache[key] = verdict
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        return verdict

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name=NAME,
            version=_version(),
            capabilities=reward_pb2.Capabilities(
                feedback=True, step_scores=False, reference_kinds=[reward_pb2.REFERENCE_KIND_ANSWER],
                score_min=0.0, score_max=1.0),
        )

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        """One result per item, in order, verified concurrently. Once the call is abandoned (its client is
        gone: call_abandoned()), the items not started are not verified, so they do not hold the worker
        processes other calls wait for."""
        abandoned = call_abandoned()  # captured here: the dispatch threads do not see this call's context

        def one(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
            if abandoned.is_set():
                return result_for(item, reward_pb2.SCORE_STATUS_INTERNAL, "not verified: the call ended first")
            return self.score_one(item)

        return list(self._dispatch.map(one, items))

    def score_one(self, item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        """One item's result (never raises for bad input: that is a status)."""
        cfg = self.config
        gold = strip_math_delimiters(drop_invisible(item.answer))
        if not gold:
            return result_for(item, reward_pb2.SCORE_STATUS_INVALID_INPUT, "reference.answer is empty")
        if len(gold) > cfg.max_answer_chars:
            return result_for(item, reward_pb2.SCORE_STATUS_INVALID_INPUT,
                              f"reference.answer is {len(gold)} characters; at most {cfg.max_answer_chars}")
        if len(item.completion) > cfg.max_completion_chars:
            return result_for(item, reward_pb2.SCORE_STATUS_INVALID_INPUT,
                              f"completion is {len(item.completion)} characters; at most {cfg.max_completion_chars}")

        letter = gold_choice(gold)
        # A reasoning model's answer follows its reasoning: what the <think> block tried is not the answer.
        part = answer_part(item.completion)
        # Number words ("ten apples left") are read only against a plain-number gold answer: "ten" can equal 10,
        # never an expression, a set or a word answer.
        text = drop_invisible(part.text)
        # The gold as extraction writes an answer, tried when the gold as given is not equal.
        cleaned = normalize_gold(gold) if not letter else gold
        found = (extract_choice(text) if letter
                 else extract_final_answer(text, gold_is_number(gold) or gold_is_number(cleaned)))
        if found is None:
            where = f": {part.where}" if part.unclosed else f" {part.where}" if part.where else ""
            return self._result(item, 0.0, extracted=False,
                                feedback=f"expected {_quote(gold)}, no final answer found{where}")
        if len(found.text) > cfg.max_answer_chars:
            r = result_for(item, reward_pb2.SCORE_STATUS_INVALID_INPUT,
                           f"final answer is {len(found.text)} characters; at most {cfg.max_answer_chars}")
            r.components["extracted"] = 1.0
            return r

        if letter:
            equal = found.text == letter
        else:
            # A bound ("\geq 3") is an inequality on both sides, as extraction writes an answer (see extract).
            for candidate in dict.fromkeys((bound_as_inequality(gold), cleaned)):
                verdict = self._verify(candidate, found.text)
                if verdict.equal or verdict.timed_out or verdict.error:
                    break
            if verdict.timed_out:
                r = result_for(item, reward_pb2.SCORE_STATUS_TIMEOUT,
                               f"verification did not finish within {cfg.item_timeout_s:g} s")
                r.components["extracted"] = 1.0
                r.feedback = f"expected {_quote(gold)}, found {_quote(found.text)} (could not be checked in time)"
                return r
            if verdict.error:
                log.warning("verifier error on item %r: %s", item.id, verdict.error)
                r = result_for(item, reward_pb2.SCORE_STATUS_INTERNAL, f"verifier error: {verdict.error}")
                r.components["extracted"] = 1.0
                return r
            equal = verdict.equal
        if equal:
            return self._result(item, 1.0, extracted=True, feedback=f"correct: {_quote(found.text)}")
        return self._result(item, 0.0, extracted=True, feedback=f"expected {_quote(gold)}, found {_quote(found.text)}")

    @staticmethod
    def _result(item: reward_pb2.ScoreItem, score: float, *, extracted: bool, feedback: str) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, score=score, status=reward_pb2.SCORE_STATUS_OK, feedback=feedback,
                                      components={"extracted": 1.0 if extracted else 0.0})

    def close(self) -> None:
        self._dispatch.shutdown(wait=True, cancel_futures=True)
        self.pool.close()
