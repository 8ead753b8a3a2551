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


def group(pid: str, tokenizer: Any, results: Sequence[tuple[float, str]], *, same_text: bool = False) -> ScoredGroup:
    """A group of two completions with (score, feedback) from one backend of weight 1: two different
    programs, or with `same_text` the same one twice (a policy that samples one answer every time)."""
    prompt = PromptRecord(pid, (ChatMessage("user", "q"),), (RewardSpec("code"),))
    texts = [f"print({1 if same_text else k})" for k in range(len(results))]
    done = [Completion(ids, tuple(-1.0 for _ in ids), text, "stop")
            for text in texts for ids in [tuple(tokenizer(text, add_special_tokens=False)["input_ids"])]]
    scored = tuple(ScoredCompletion(d, (BackendScore("code", 1.0, RewardStatus.OK, score, feedback=fb),))
                   for d, (score, fb) in zip(done, results, strict=True))
    prompt_ids = tuple(tokenizer(pid, add_special_tokens=False)["input_ids"])  # prompts of their own
    return ScoredGroup(RolloutGroup(prompt, prompt_ids, tuple(done)), scored)


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


def test_copies_of_one_completion_are_no_teachers_of_each_other(tiny) -> None:
    """A mastered prompt sampled the same way every time (every copy a success, no feedback), and the
    same text scored a success and a failure (a flaky reward): teacher_rows distils neither, so dynamic
    sampling must not keep them for SDPO (each took a prompt's place in the step and trained nothing)."""
    _, tok = tiny
    groups = [
        group("mastered", tok, [(1.0, ""), (1.0, "")], same_text=True),
        group("flaky", tok, [(1.0, ""), (0.0, "")], same_text=True),
        group("one_success", tok, [(1.0, ""), (0.0, "")]),
    ]
    assert runner(tok, grpo_weight=0.0, sdpo_weight=1.0).groups_with_signal(groups) == [False, False, True]
    # With the surrogate on, the flaky group's reward variance is still GRPO's signal.
    assert runner(tok, grpo_weight=1.0, sdpo_weight=0.5).groups_with_signal(groups) == [False, True, True]


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


def test_with_truncated_completions_masked_a_group_cut_at_max_new_tokens_has_no_signal(tiny) -> None:
    """mask_truncated_completions takes every completion cut at max_new_tokens out of the loss: a group
    whose completions were all cut has reward variance and nothing to learn from. Dynamic sampling kept
    it (the step trained nothing: loss 0, grad_norm 0) instead of leasing another prompt."""
    _, tok = tiny

    def cut(pid: str, finishes: Sequence[str]) -> ScoredGroup:
        g = group(pid, tok, [(1.0, ""), (0.0, "")])
        done = tuple(Completion(c.completion.token_ids, c.completion.logprobs, c.completion.text, finish)
                     for c, finish in zip(g.completions, finishes, strict=True))
        scored = tuple(ScoredCompletion(d, c.scores) for d, c in zip(done, g.completions, strict=True))
        return ScoredGroup(RolloutGroup(g.rollout.prompt, g.rollout.prompt_token_ids, done), scored)

    groups = [cut("all_cut", ["length", "length"]), cut("one_whole", ["stop", "length"])]
    masked = StepSettings(prompts_per_step=4, group_size=2, sampling=SamplingConfig(n=2),
                          loss=LossConfig(beta=0.0), dynamic_sampling=True, mask_truncated=True)
    run = StepRunner(masked, tokenizer=tok, rollout=None, engine=None, router=None)  # type: ignore[arg-type]
    assert run.groups_with_signal(groups) == [False, True]
    assert runner(tok, grpo_weight=1.0, sdpo_weight=0.0).groups_with_signal(groups) == [True, True]  # not masked
