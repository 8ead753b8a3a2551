"""A toy reward backend for learning tests, served by the real reward-service harness: the reward is
the fraction of a completion's non-space characters that are the digits 0-4. A random tiny model writes mostly
letters and punctuation (reward well under 0.2); a policy that learned the task writes those digits (over 0.8).
"""

from __future__ import annotations

from collections.abc import Sequence

from grpo.reward.v1 import reward_pb2


class DigitFractionScorer:
    """Scorer (grpo_rewards.common.scorer.Scorer) rewarding digits."""

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name="digit-fraction",
            version="1",
            capabilities=reward_pb2.Capabilities(
                feedback=True,
                max_batch_size=256,
                reference_kinds=[reward_pb2.REFERENCE_KIND_NONE, reward_pb2.REFERENCE_KIND_ANSWER],
                score_min=0.0,
                score_max=1.0,
            ),
        )

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        out = []
        for item in items:
            chars = [c for c in item.completion if not c.isspace()]
            digits = sum(c in "01234" for c in chars)
            score = digits / len(chars) if chars else 0.0
            out.append(
                reward_pb2.ScoreResult(
                    id=item.id, score=score, status=reward_pb2.SCORE_STATUS_OK,
                    feedback=f"{digits} of {len(chars)} characters are digits 0-4",
                )
            )
        return out

    def close(self) -> None:
        pass
