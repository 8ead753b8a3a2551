"""The router with the real math verifier (helper B's service) on loopback, weighted with a scripted
backend: the rewards the step loop would see for right, wrong and unparseable answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted_backends import ScriptedBackend, Servers, group, ok

from grpo_server.rewards.registry import BackendEntry, RewardRegistry
from grpo_server.rewards.router import RewardRouter
from grpo_server.types import RewardStatus


@pytest.fixture
def math_address() -> Iterator[str]:
    from grpo_rewards.common.server import start_server
    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    server = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0", max_batch=8)
    yield server.address
    server.stop(grace=1.0)


def test_math_verifier_scores_through_the_router(math_address: str, servers: Servers) -> None:
    bonus = servers.start(ScriptedBackend(ok(1.0)))
    registry = RewardRegistry([BackendEntry("math", math_address), BackendEntry("bonus", bonus)])
    router = RewardRouter(registry)
    try:
        g = group("sum", ["The answer is \\boxed{42}.", "It is 41.", "42", "I don't know"],
                  rewards=[("math", 1.0), ("bonus", 0.1)], answer="42")
        [scored] = router.score([g], registry.snapshot())
        math_scores = [c.scores[0] for c in scored.completions]
        assert [s.status for s in math_scores][:3] == [RewardStatus.OK] * 3
        assert [s.score for s in math_scores][:3] == [1.0, 0.0, 1.0]
        assert scored.rewards[:3] == pytest.approx([1.1, 0.1, 1.1])
        assert math_scores[1].feedback  # it says what was expected and what was found
        # No number at all: scored 0 with status OK, or masked as INVALID_INPUT; never a made-up reward.
        last = math_scores[3]
        assert (last.status, last.score) in {(RewardStatus.OK, 0.0), (RewardStatus.INVALID_INPUT, None)}
        # Describe told the router the verifier's batch limit.
        description = registry.describe(registry.snapshot().entries["math"])
        assert description is not None and description.capabilities.max_batch_size == 8
    finally:
        router.close()
        registry.stop()


def test_registry_batch_size_over_the_backends_own_is_cut_to_it(math_address: str) -> None:
    """The registry says 32 items per call, the verifier (--max-batch 8) refuses more than 8: the router
    sends batches of 8 (its Describe) instead of calls refused with every item masked."""
    registry = RewardRegistry([BackendEntry("math", math_address, max_batch_size=32)])
    router = RewardRouter(registry)
    try:
        g = group("sum", ["The answer is 42."] * 10 + ["It is 41."] * 10, rewards=[("math", 1.0)], answer="42")
        [scored] = router.score([g], registry.snapshot())
        scores = [c.scores[0] for c in scored.completions]
        assert [s.status for s in scores] == [RewardStatus.OK] * 20
        assert [s.score for s in scores] == [1.0] * 10 + [0.0] * 10
    finally:
        router.close()
        registry.stop()


def test_prompt_ids_as_long_as_the_api_takes_make_item_ids_the_services_take(math_address: str) -> None:
    """A prompt id of 256 bytes (the API's default limit) made an item id of 258 ("<id>/<i>"), over the
    services' 256: the verifier refused the whole batch, and every prompt in it was masked. Two long ids
    that differ only at the end stay two items."""
    registry = RewardRegistry([BackendEntry("math", math_address)])
    router = RewardRouter(registry)
    try:
        groups = [group("short", ["The answer is 42.", "41"], rewards=[("math", 1.0)], answer="42"),
                  group("p" * 255 + "a", ["The answer is 42.", "41"], rewards=[("math", 1.0)], answer="42"),
                  group("p" * 255 + "b", ["The answer is 41.", "42"], rewards=[("math", 1.0)], answer="42")]
        scored = router.score(groups, registry.snapshot())
        assert [[(c.scores[0].status, c.scores[0].score) for c in g.completions] for g in scored] == [
            [(RewardStatus.OK, 1.0), (RewardStatus.OK, 0.0)],
            [(RewardStatus.OK, 1.0), (RewardStatus.OK, 0.0)],
            [(RewardStatus.OK, 0.0), (RewardStatus.OK, 1.0)]]
    finally:
        router.close()
        registry.stop()
