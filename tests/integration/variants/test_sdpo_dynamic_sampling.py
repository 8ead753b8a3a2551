"""Dynamic sampling with SDPO on keeps what the update can learn from: a group of failures with the
reward services' feedback has no reward variance (GRPO learns nothing from it) but a teacher for each
completion (SDPO's case). With `name: sdpo` only the teacher counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpo_server.rollout.base import SamplingConfig
from grpo_server.training.loop import StepRunner, StepSettings
from grpo_server.training.loss import LossConfig
from grpo_server.training.sdpo import SdpoSettings
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


def runner(tokenizer: Any, *, grpo_weight: float, sdpo_weight: float) -> StepRunner:
    loss = LossConfig(beta=0.0, grpo_weight=grpo_weight, sdpo=SdpoSettings(weight=sdpo_weight, teacher="live"))
    s = StepSettings(prompts_per_step=4, group_size=2, sampling=SamplingConfig(n=2), loss=loss, dynamic_sampling=True)
    return StepRunner(s, tokenizer=tokenizer, rollout=None, engine=None, router=None)  # type: ignore[arg-type]


def group(pid: str, tokenizer: Any, results: Sequence[tuple[float, str]]) -> ScoredGroup:
    """A group of two completions with (score, feedback) from one backend of weight 1."""
    prompt = PromptRecord(pid, (ChatMessage("user", "q"),), (RewardSpec("code"),))
    ids = tuple(tokenizer("print(1)", add_special_tokens=False)["input_ids"])
    done = Completion(ids, tuple(-1.0 for _ in ids), "print(1)", "stop")
    scored = tuple(ScoredCompletion(done, (BackendScore("code", 1.0, RewardStatus.OK, score, feedback=fb),))
                   for score, fb in results)
    return ScoredGroup(RolloutGroup(prompt, (1, 2), (done, done)), scored)


def test_failures_with_feedback_are_kept_with_sdpo_and_only_teachers_count_without_the_surrogate(tiny) -> None:
    _, tok = tiny
    groups = [
        group("failed_with_feedback", tok, [(0.0, "AssertionError: expected 3"), (0.0, "NameError: x")]),
        group("failed_silently", tok, [(0.0, ""), (0.0, "")]),
        group("partial_no_teacher", tok, [(0.2, ""), (0.4, "")]),  # variance, but no success, no feedback
        group("one_success", tok, [(1.0, ""), (0.0, "")]),
    ]
    assert runner(tok, grpo_weight=1.0, sdpo_weight=0.0).groups_with_signal(groups) == [False, False, True, True]
    assert runner(tok, grpo_weight=1.0, sdpo_weight=0.5).groups_with_signal(groups) == [True, False, True, True]
    assert runner(tok, grpo_weight=0.0, sdpo_weight=1.0).groups_with_signal(groups) == [True, False, False, True]


def test_a_step_keeps_flat_groups_with_feedback_for_sdpo_instead_of_leasing_more(tiny, serve) -> None:
    """The real step on the tiny model: FLAT prompts score 0.5 for every completion, with feedback. With
    SDPO on they are trained on (distilled), not dropped for more prompts."""
    from variant_support import PromptRewardScorer, router_for

    from grpo_server.rollout.base import make_engine
    from grpo_server.training.engine import OptimConfig
    from grpo_server.training.torch_engine import TorchEngine

    model, tok = tiny
    engine = TorchEngine(model, OptimConfig(learning_rate=1e-3))
    rollout = make_engine("hf", model_path=str(model.name_or_path), model=engine.model, tokenizer=tok,
                          dtype="float32", device="cpu", seed=0)
    router, snapshot = router_for({"pr": serve(PromptRewardScorer())})
    leased: list[int] = []
    s = StepSettings(prompts_per_step=2, group_size=4, sampling=SamplingConfig(n=4, max_new_tokens=8, temperature=1.0),
                     loss=LossConfig(beta=0.0, sdpo=SdpoSettings(weight=0.5, teacher="live")), micro_batch_size=16,
                     dynamic_sampling=True, max_resample_rounds=2)
    run = StepRunner(s, tokenizer=tok, rollout=rollout, engine=engine, router=router, weights_shared=True,
                     lease_more=lambda count, step: leased.append(count) or [])
    flat = [PromptRecord(f"f{i}", (ChatMessage("user", f"FLAT question {i}"),), (RewardSpec("pr"),)) for i in range(2)]
    m = run.run_step(1, flat, snapshot)
    assert leased == []  # nothing more needed: both groups have a teacher for every completion
    assert m["dapo/kept_groups"] == 2 and m["dapo/dropped_groups"] == 0
    assert m["zero_variance_groups"] == 2  # no reward variance, as the metric says
    assert m["sdpo/distilled_fraction"] == 1.0 and m["sdpo/distill_loss"] > 0
