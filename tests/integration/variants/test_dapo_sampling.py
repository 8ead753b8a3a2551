"""DAPO in the step: zero-variance groups dropped and more prompts leased until the batch is full (bounded
by max_resample_rounds), and the soft overlong penalty added to the rewards before advantages."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from variant_support import PromptRewardScorer, router_for

from grpo_server.rollout.base import SamplingConfig, make_engine
from grpo_server.training.engine import OptimConfig
from grpo_server.training.loop import StepRunner, StepSettings
from grpo_server.training.loss import LossConfig
from grpo_server.training.torch_engine import TorchEngine
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


def prompt(pid: str, flat: bool) -> PromptRecord:
    text = f"FLAT question {pid}" if flat else f"question {pid}"
    return PromptRecord(pid, (ChatMessage("user", text),), (RewardSpec("pr"),))


def settings(**kw: Any) -> StepSettings:
    base: dict[str, Any] = {
        "prompts_per_step": 2, "group_size": 4,
        "sampling": SamplingConfig(n=4, max_new_tokens=8, temperature=1.0),
        "loss": LossConfig(beta=0.0), "micro_batch_size": 16,
    }
    return StepSettings(**{**base, **kw})


def runner(tiny: Any, serve: Any, s: StepSettings, lease_more: Any) -> tuple[StepRunner, Any]:
    model, tok = tiny
    engine = TorchEngine(model, OptimConfig(learning_rate=1e-3))
    rollout = make_engine("hf", model_path=str(model.name_or_path), model=engine.model, tokenizer=tok,
                          dtype="float32", device="cpu", seed=0)
    router, snapshot = router_for({"pr": serve(PromptRewardScorer())})
    return StepRunner(s, tokenizer=tok, rollout=rollout, engine=engine, router=router, weights_shared=True,
                      lease_more=lease_more), snapshot


def test_zero_variance_groups_are_dropped_and_more_prompts_leased_until_the_batch_is_full(tiny, serve) -> None:
    batches = [[prompt("n0", False), prompt("f2", True)], [prompt("n1", False)]]
    calls: list[tuple[int, int]] = []

    def lease_more(count: int, step: int) -> list[PromptRecord]:
        calls.append((count, step))
        return batches.pop(0) if batches else []

    run, snapshot = runner(tiny, serve, settings(dynamic_sampling=True, max_resample_rounds=4), lease_more)
    m = run.run_step(7, [prompt("f0", True), prompt("f1", True)], snapshot)
    # Both first groups are flat (all 0.5): lease 2 more (one flat), then 1 more, then the batch is full.
    assert calls == [(2, 7), (1, 7)]
    assert m["dapo/kept_groups"] == 2 and m["dapo/dropped_groups"] == 3 and m["dapo/resample_rounds"] == 2
    assert m["dapo/trained_prompts"] == 2
    assert m["prompts"] == 5 and m["completions"] == 20  # rollout metrics cover everything sampled
    assert m["zero_variance_groups"] == 3
    assert m["grad_norm"] > 0


def test_a_group_with_no_reward_is_neither_dropped_nor_trained(tiny, serve) -> None:
    """A prompt none of whose completions got a reward goes back to the queue (the loop's run_one): the
    dynamic-sampling metrics counted it as dropped and as trained, against dropped_prompt_ids and
    prompt_ids."""
    broken = PromptRecord("b0", (ChatMessage("user", "BROKEN question"),), (RewardSpec("pr"),))
    batches = [[prompt("n1", False)]]

    def lease_more(count: int, step: int) -> list[PromptRecord]:
        return batches.pop(0) if batches else []

    run, snapshot = runner(tiny, serve, settings(dynamic_sampling=True, max_resample_rounds=2), lease_more)
    m = run.run_step(3, [prompt("n0", False), broken], snapshot)
    assert [pid for pid, *_ in run.step_unscored] == ["b0"]
    assert m["dapo/kept_groups"] == 2 and m["dapo/dropped_groups"] == 0 and m["dapo/trained_prompts"] == 2
    # with nothing kept, every group is trained but the one with no reward
    flat_and_broken = runner(tiny, serve, settings(dynamic_sampling=True, max_resample_rounds=0), lambda c, s: [])[0]
    m = flat_and_broken.run_step(4, [prompt("f0", True), broken], snapshot)
    assert m["dapo/kept_groups"] == 0 and m["dapo/dropped_groups"] == 0 and m["dapo/trained_prompts"] == 1


def test_resampling_stops_after_max_resample_rounds(tiny, serve) -> None:
    calls: list[int] = []

    def lease_more(count: int, step: int) -> list[PromptRecord]:
        calls.append(count)
        return [prompt(f"f{len(calls) + 10}", True)]

    run, snapshot = runner(tiny, serve, settings(dynamic_sampling=True, max_resample_rounds=1), lease_more)
    m = run.run_step(1, [prompt("f0", True), prompt("n0", False)], snapshot)
    assert calls == [1]
    assert m["dapo/kept_groups"] == 1 and m["dapo/dropped_groups"] == 2 and m["dapo/resample_rounds"] == 1


def test_without_dynamic_sampling_nothing_more_is_leased(tiny, serve) -> None:
    def lease_more(count: int, step: int) -> list[PromptRecord]:  # pragma: no cover - must not be called
        raise AssertionError("leased more prompts with dynamic sampling off")

    run, snapshot = runner(tiny, serve, settings(), lease_more)
    m = run.run_step(1, [prompt("f0", True), prompt("n0", False)], snapshot)
    assert m["zero_variance_groups"] == 1 and m["prompts"] == 2
    assert not any(k.startswith("dapo/") for k in m)


def group_of_lengths(lengths: list[int], reward: float) -> ScoredGroup:
    p = prompt("x", False)
    comps = tuple(Completion(tuple([5] * n), tuple([-1.0] * n), "a" * n, "length" if n >= 8 else "stop")
                  for n in lengths)
    scored = tuple(ScoredCompletion(c, (BackendScore("pr", 1.0, RewardStatus.OK, reward),)) for c in comps)
    return ScoredGroup(RolloutGroup(p, (1, 2), comps), scored)


def test_soft_overlong_penalty_is_added_to_the_reward_before_advantages() -> None:
    # max_new_tokens 8, cache 4: free up to 4 tokens, then linear to -1 at 8 (DAPO eq. 13), times 0.5.
    s = settings(overlong_cache_tokens=4, overlong_penalty_factor=0.5)
    run = StepRunner(s, tokenizer=None, rollout=None, engine=None, router=None)  # type: ignore[arg-type]
    rewards, valid = run.shaped_rewards([group_of_lengths([2, 5, 7, 8], 1.0)])
    torch.testing.assert_close(rewards, torch.tensor([1.0, 0.875, 0.625, 0.5]))
    assert bool(valid.all())
    adv, _, _ = run.advantages([group_of_lengths([2, 5, 7, 8], 1.0)])
    centred = torch.tensor([1.0, 0.875, 0.625, 0.5]) - 0.75
    torch.testing.assert_close(adv, centred / (centred.pow(2).mean().sqrt() + s.advantage_eps))
    # An equal task reward with equal lengths stays a zero-variance group: no penalty differences.
    assert run.groups_with_variance([group_of_lengths([3, 3, 3, 3], 1.0)]) == [False]
    assert run.groups_with_variance([group_of_lengths([3, 3, 3, 8], 1.0)]) == [True]


def test_overlong_penalty_off_leaves_rewards_unchanged() -> None:
    run = StepRunner(settings(), tokenizer=None, rollout=None, engine=None, router=None)  # type: ignore[arg-type]
    rewards, _ = run.shaped_rewards([group_of_lengths([2, 5, 7, 8], 1.0)])
    assert rewards.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])
