"""The math verifier and the code sandbox once a Score call's client is gone (its deadline passed): the
items no worker has started are dropped, so they do not hold the workers the next call waits for.
Real servers on loopback; the sandbox runs real programs in bubblewrap."""

from __future__ import annotations

import time

import grpc
import pytest
from reward_service_kit import item, reward_stub

from grpo.reward.v1 import reward_pb2
from grpo_rewards.code_sandbox.config import SandboxConfig
from grpo_rewards.code_sandbox.scorer import CodeSandboxScorer
from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

OK = reward_pb2.SCORE_STATUS_OK
SLEEPY = "```python\nimport time\n\ndef add(a, b):\n    time.sleep(1.0)\n    return a + b\n```"
TESTS = reward_pb2.CodeTests(test_code="def check(f):\n    assert f(1, 2) == 3", entry_point="add")


def score(channel: grpc.Channel, items: list[reward_pb2.ScoreItem], timeout: float) -> list[reward_pb2.ScoreResult]:
    return list(reward_stub(channel).Score(reward_pb2.ScoreRequest(items=items), timeout=timeout).results)


def test_the_sandbox_drops_the_items_of_an_abandoned_call(serve, channel_to) -> None:
    # One worker, six items of about a second each: without the drop, the next call's item waits
    # behind the five not yet started (over 5 s).
    running = serve(CodeSandboxScorer(SandboxConfig(workers=1)), max_concurrency=4)
    ch = channel_to(running.address)
    late = [item(f"late{i}", SLEEPY, code=TESTS) for i in range(6)]
    with pytest.raises(grpc.RpcError) as exc:
        score(ch, late, timeout=0.5)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    started = time.monotonic()
    (result,) = score(ch, [item("next", "```python\ndef add(a, b):\n    return a + b\n```", code=TESTS)], timeout=30)
    waited = time.monotonic() - started
    assert (result.status, result.score) == (OK, 1.0)
    assert waited < 3.5, f"the next call waited {waited:.1f} s behind the abandoned call's items"


def test_the_math_verifier_drops_the_items_of_an_abandoned_call(serve, channel_to) -> None:
    scorer = MathVerifierScorer(MathConfig(workers=1))
    verified: list[str] = []
    real = scorer.score_one

    def slow(it: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:  # each item takes 0.3 s
        verified.append(it.id)
        time.sleep(0.3)
        return real(it)

    scorer.score_one = slow  # type: ignore[method-assign]
    running = serve(scorer, max_concurrency=4)
    ch = channel_to(running.address)
    with pytest.raises(grpc.RpcError) as exc:
        score(ch, [item(f"late{i}", "4", answer="4") for i in range(10)], timeout=0.5)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    (result,) = score(ch, [item("next", "The answer is 4.", answer="4")], timeout=30)
    assert (result.status, result.score) == (OK, 1.0)
    # The items started before the deadline ran; the rest (of 10, 3 s of work) never did.
    assert verified[-1] == "next"
    assert len(verified) <= 4, verified
    time.sleep(0.5)
    assert len(verified) <= 4, verified  # and none of them runs later
