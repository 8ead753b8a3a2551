"""The format reward backend: the check's arithmetic, the service over real gRPC, and combination with a
correctness backend by weights in the trainer's reward router."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grpo.reward.v1 import reward_pb2
from grpo_rewards.format_reward.check import boxed_contents, check_format
from grpo_rewards.format_reward.scorer import FormatConfig, FormatScorer
from grpo_server.types import ChatMessage, Completion, PromptRecord, RewardSpec, RolloutGroup

GOOD = "<think>2 + 2 is 4.</think> The answer is \\boxed{4}."


@pytest.mark.parametrize(
    ("text", "think", "boxed", "problem"),
    [
        (GOOD, 1.0, 1.0, None),
        ("  \n<think>nested {braces}</think>\\boxed{\\frac{1}{2}}", 1.0, 1.0, None),
        ("The answer is \\boxed{4}.", 0.0, 1.0, "must start with <think>"),
        ("<think>hmm</think> The answer is 4.", 1.0, 0.0, "no \\boxed{...} answer after </think>"),
        ("<think>hmm The answer is \\boxed{4}", 0.0, 1.0, "never closed"),
        ("<think> </think>\\boxed{4}", 0.0, 1.0, "block is empty"),
        ("<think>a</think><think>b</think>\\boxed{4}", 0.0, 1.0, "exactly one"),
        ("<think>a</think>\\boxed{4} or \\boxed{5}", 1.0, 0.0, "2 \\boxed{} answers"),
        ("<think>a</think>\\boxed{ }", 1.0, 0.0, "answer is empty"),
        ("<think>a</think>\\boxed{4", 1.0, 0.0, "no \\boxed"),
    ],
)
def test_format_components_and_feedback(text: str, think: float, boxed: float, problem: str | None) -> None:
    verdict = check_format(text)
    assert verdict.components == {"think": think, "boxed": boxed}
    assert verdict.score == pytest.approx((think + boxed) / 2)
    assert check_format(text, scoring="all_or_nothing").score == float(think == boxed == 1.0)
    if problem is None:
        assert verdict.problems == [] and verdict.feedback.startswith("format OK")
    else:
        assert any(problem in p for p in verdict.problems), verdict.problems


def test_boxed_contents_balances_braces() -> None:
    assert boxed_contents("\\boxed{a{b}c} and \\boxed{d}") == ["a{b}c", "d"]
    assert boxed_contents("\\boxed{open") == []


def test_custom_tag() -> None:
    assert check_format("<reason>x</reason>\\boxed{1}", tag="reason").score == 1.0
    with pytest.raises(ValueError, match="--tag"):
        FormatScorer(FormatConfig(tag="a b"))


def test_service_scores_over_grpc_and_rejects_oversized_completions(serve) -> None:
    import grpc

    from grpo.reward.v1 import reward_pb2_grpc

    address = serve(FormatScorer(FormatConfig(scoring="all_or_nothing", max_completion_chars=100)))
    with grpc.insecure_channel(address) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        assert stub.Describe(reward_pb2.DescribeRequest()).name == "format"
        reply = stub.Score(reward_pb2.ScoreRequest(items=[
            reward_pb2.ScoreItem(id="a", completion=GOOD, prompt=[reward_pb2.Message(role="user", content="q")]),
            reward_pb2.ScoreItem(id="b", completion="4", prompt=[reward_pb2.Message(role="user", content="q")],
                                 answer="4"),
            reward_pb2.ScoreItem(id="c", completion="x" * 101, prompt=[reward_pb2.Message(role="user", content="q")]),
        ]))
    a, b, c = reply.results
    assert (a.id, a.score, a.status) == ("a", 1.0, reward_pb2.SCORE_STATUS_OK)
    assert b.score == 0.0 and "must start with <think>" in b.feedback and dict(b.components) == {"think": 0.0, "boxed": 0.0}
    assert c.status == reward_pb2.SCORE_STATUS_INVALID_INPUT


def test_format_and_correctness_combine_by_weights_in_the_router(serve) -> None:
    from variant_support import router_for

    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    router, snapshot = router_for({"format": serve(FormatScorer()), "math": serve(MathVerifierScorer(MathConfig(workers=1)))})
    prompt = PromptRecord("p", (ChatMessage("user", "2+2?"),), (RewardSpec("math", 1.0), RewardSpec("format", 0.25)),
                          answer="4")
    texts = [GOOD, "<think>hm</think> \\boxed{5}", "4", "no idea"]
    group = RolloutGroup(prompt, (1, 2), tuple(Completion((3,), (-1.0,), t, "stop") for t in texts))
    (scored,) = router.score([group], snapshot)
    by_backend = [{s.backend: s.score for s in c.scores} for c in scored.completions]
    assert [b["format"] for b in by_backend] == [1.0, 1.0, 0.0, 0.0]
    assert [b["math"] for b in by_backend] == [1.0, 0.0, 1.0, 0.0]
    assert scored.rewards == pytest.approx([1.25, 0.25, 1.0, 0.0])
    assert "must start with <think>" in scored.completions[2].feedback


def test_server_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "grpo_rewards.format_reward.server", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--scoring {partial,all_or_nothing}" in out and "--tag" in out and "--listen" in out
