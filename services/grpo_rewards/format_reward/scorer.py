"""The format checker as a `Scorer` for the reward-service harness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata

from grpo.reward.v1 import reward_pb2

from .check import FormatScoring, check_format

NAME = "format"


def _version() -> str:
    try:
        return metadata.version("grpo-service")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class FormatConfig:
    """tag: the reasoning block's tag name; scoring: "partial" (mean of components) or "all_or_nothing";
    max_completion_chars: longer completions are INVALID_INPUT (the check is linear, this bounds work);
    opened_by_prompt: the chat template opens the block in the prompt, so completions start inside it."""

    tag: str = "think"
    scoring: FormatScoring = "partial"
    max_completion_chars: int = 200_000
    opened_by_prompt: bool = False


def check_tag(tag: str) -> str:
    """`tag` when it is a plain tag name (letters, digits, - and _), else ValueError naming the rule."""
    if not tag or not tag.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"must be a plain tag name (letters, digits, - and _), got {tag!r}")
    return tag


class FormatScorer:
    """Scores each completion's format; any reference kind is accepted (and ignored), so it can sit
    beside a math or code backend on the same prompts."""

    def __init__(self, config: FormatConfig | None = None) -> None:
        self.config = config or FormatConfig()
        try:
            check_tag(self.config.tag)
        except ValueError as exc:
            raise ValueError(f"--tag {exc}") from None

    def describe(self) -> reward_pb2.DescribeResponse:
        """Name "format", feedback on, scores in [0, 1], every reference kind."""
        return reward_pb2.DescribeResponse(
            name=NAME, version=_version(),
            capabilities=reward_pb2.Capabilities(
                feedback=True, max_batch_size=256, score_min=0.0, score_max=1.0,
                reference_kinds=[reward_pb2.REFERENCE_KIND_NONE, reward_pb2.REFERENCE_KIND_ANSWER,
                                 reward_pb2.REFERENCE_KIND_CODE]))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        """One result per item, in order."""
        out = []
        for item in items:
            if len(item.completion) > self.config.max_completion_chars:
                out.append(reward_pb2.ScoreResult(
                    id=item.id, status=reward_pb2.SCORE_STATUS_INVALID_INPUT,
                    status_message=f"completion: {len(item.completion)} characters; at most "
                                   f"{self.config.max_completion_chars} are allowed (--max-completion-chars)"))
                continue
            verdict = check_format(item.completion, tag=self.config.tag, scoring=self.config.scoring,
                                   opened_by_prompt=self.config.opened_by_prompt)
            out.append(reward_pb2.ScoreResult(
                id=item.id, score=verdict.score, status=reward_pb2.SCORE_STATUS_OK,
                feedback=verdict.feedback, components=verdict.components))
        return out

    def close(self) -> None:
        """Nothing to release."""
