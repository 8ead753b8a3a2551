"""SDPO wired into the trainer's loss: the teacher's re-prompt as tokens, the loss against a hand
computation on the real tiny model, blending with GRPO, and the distillation loss falling over steps."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from variant_support import scored_group

from grpo_server.algorithm import DEFAULT_TEACHER_INSTRUCTION
from grpo_server.training import batch as batching
from grpo_server.training.engine import OptimConfig
from grpo_server.training.loss import LossConfig, grpo_loss
from grpo_server.training.sdpo import SdpoSettings, TeacherRows, row_keys, teacher_rows
from grpo_server.training.torch_engine import TorchEngine

QUESTION = "Write the number two."
TEXTS = ["3", "2", "7", "9"]
REWARDS = [0.0, 1.0, None, 0.0]
FEEDBACKS = ["wrong: expected 2, got 3", "", "timed out", ""]


def encode(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])


def build(tokenizer: Any, settings: SdpoSettings | None = None) -> tuple[Any, TeacherRows, dict[str, float]]:
    group = scored_group(tokenizer, QUESTION, TEXTS, REWARDS, FEEDBACKS)
    settings = settings or SdpoSettings(teacher="live", is_clip=None)
    rows, metrics = teacher_rows([group], REWARDS, settings, 4, functools.partial(encode, tokenizer))
    return group, rows, metrics


def test_reprompt_holds_feedback_and_the_successful_sibling_and_skips_the_rest(tiny) -> None:
    _, tok = tiny
    group, rows, metrics = build(tok)
    prompt = group.rollout.prompt_token_ids
    ids = [c.completion.token_ids for c in group.completions]
    # 0: failed with feedback -> feedback + the successful sibling 1; 1: the only success -> no teacher;
    # 2: reward unavailable -> no teacher; 3: failed, no feedback -> the sibling alone.
    assert set(rows.prompts) == {prompt + ids[0], prompt + ids[3]}
    expected0 = (f"{QUESTION}\n\nA correct solution to this problem:\n2\n\nFeedback on a previous attempt:\n"
                 f"wrong: expected 2, got 3\n\n{DEFAULT_TEACHER_INSTRUCTION}")
    expected3 = f"{QUESTION}\n\nA correct solution to this problem:\n2\n\n{DEFAULT_TEACHER_INSTRUCTION}"
    assert rows.prompts[prompt + ids[0]] == tuple(encode(tok, [{"role": "user", "content": expected0}]))
    assert rows.prompts[prompt + ids[3]] == tuple(encode(tok, [{"role": "user", "content": expected3}]))
    assert metrics["sdpo/distilled_fraction"] == 0.5
    assert metrics["sdpo/with_feedback"] == 0.25
    assert metrics["sdpo/with_sibling"] == 0.5
    # Why the other two get no teacher: 1 is the only success, 2's reward is unavailable.
    assert metrics["sdpo/no_teacher_only_self_succeeded"] == 0.25
    assert metrics["sdpo/no_teacher_reward_unavailable"] == 0.25
    assert metrics["sdpo/no_teacher_no_feedback_no_success"] == 0.0
    assert metrics["sdpo/no_teacher_masked"] == 0.0
    assert rows.normalizer == len(ids[0]) + len(ids[3])


def test_feedback_only_teacher_when_siblings_are_off(tiny) -> None:
    _, tok = tiny
    group, rows, metrics = build(tok, SdpoSettings(use_siblings=False))
    prompt = group.rollout.prompt_token_ids
    assert set(rows.prompts) == {prompt + group.completions[0].completion.token_ids}
    assert metrics["sdpo/with_sibling"] == 0.0 and metrics["sdpo/with_feedback"] == 0.25
    # Without siblings the lone success (1) and the failure without feedback (3) have nothing to learn from.
    assert metrics["sdpo/no_teacher_no_feedback_no_success"] == 0.5
    assert metrics["sdpo/no_teacher_only_self_succeeded"] == 0.0
    assert metrics["sdpo/no_teacher_reward_unavailable"] == 0.25


def test_no_teacher_reasons_are_reported_as_fractions_of_the_step(tiny) -> None:
    """Two groups of 4 (N = 8), worked by hand:
    group A (REWARDS, FEEDBACKS): 0 failed with feedback + sibling 1, but masked by `keep` -> masked;
        1 the only success -> only_self_succeeded; 2 reward unavailable -> reward_unavailable;
        3 failed, sibling 1 -> distilled (sibling only).
    group B (no success): 4, 5, 6 no feedback -> no_feedback_no_success; 7 has feedback but is masked
        by `keep` -> masked.
    """
    _, tok = tiny
    group_a = scored_group(tok, QUESTION, TEXTS, REWARDS, FEEDBACKS)
    rewards_b: list[float | None] = [0.0, 0.0, 0.5, 0.0]
    group_b = scored_group(tok, "Write the number three.", ["4", "5", "6", "8"], rewards_b,
                           ["", "", "  ", "wrong: expected 3, got 8"], prompt_id="p1")
    keep = [False, True, True, True, True, True, True, False]
    rows, metrics = teacher_rows([group_a, group_b], REWARDS + rewards_b, SdpoSettings(), 4,
                                 functools.partial(encode, tok), keep=keep)
    prompt_a = group_a.rollout.prompt_token_ids
    assert set(rows.prompts) == {prompt_a + group_a.completions[3].completion.token_ids}
    assert metrics["sdpo/distilled_fraction"] == 1 / 8
    assert metrics["sdpo/with_sibling"] == 1 / 8 and metrics["sdpo/with_feedback"] == 0.0
    assert metrics["sdpo/no_teacher_masked"] == 2 / 8
    assert metrics["sdpo/no_teacher_only_self_succeeded"] == 1 / 8
    assert metrics["sdpo/no_teacher_reward_unavailable"] == 1 / 8
    assert metrics["sdpo/no_teacher_no_feedback_no_success"] == 3 / 8
    assert metrics["sdpo/no_teacher_too_long"] == 0.0  # no context given: unbounded
    reasons = [v for k, v in metrics.items() if k.startswith("sdpo/no_teacher_")]
    assert len(reasons) == 6 and metrics["sdpo/distilled_fraction"] + sum(reasons) == pytest.approx(1.0)
    assert metrics["sdpo/distilled_tokens"] == len(group_a.completions[3].completion.token_ids)


def test_a_completion_identical_to_one_without_a_teacher_is_not_distilled(tiny) -> None:
    """A flaky reward scored the same text "2" a success (the group's only one) and a failure with
    feedback. Rows are found again by their tokens, so distilling the failure would distil the success
    too, against a re-prompt showing its own text as the solution, over a normalizer counting one row."""
    _, tok = tiny
    group = scored_group(tok, QUESTION, ["2", "2", "7", "9"], [1.0, 0.0, 0.0, 0.0],
                         ["", "timed out", "wrong", ""])
    rows, metrics = teacher_rows([group], [1.0, 0.0, 0.0, 0.0], SdpoSettings(), 4, functools.partial(encode, tok))
    prompt = group.rollout.prompt_token_ids
    ids = [c.completion.token_ids for c in group.completions]
    assert set(rows.prompts) == {prompt + ids[2], prompt + ids[3]}
    assert metrics["sdpo/no_teacher_identical_completion"] == 0.25
    assert metrics["sdpo/no_teacher_only_self_succeeded"] == 0.25
    assert rows.normalizer == len(ids[2]) + len(ids[3])
    batch = batching.collate([group], torch.zeros(4), pad_token_id=0)
    distilled = [key in rows.prompts for key in row_keys(batch)]
    assert distilled == [False, False, True, True]


def test_two_prompts_sharing_messages_and_a_completion_are_not_distilled_against_each_others_feedback(tiny) -> None:
    """Rows are found by prompt + completion tokens: two leased prompts with the same messages (other ids,
    other references) and one same completion made one key, and the first row was distilled against
    the second prompt's feedback."""
    _, tok = tiny
    a = scored_group(tok, QUESTION, ["7", "2", "9", "8"], [0.0, 0.0, 0.0, 0.0],
                     ["wrong: expected 3", "", "", ""])
    b = scored_group(tok, QUESTION, ["7", "4", "5", "6"], [0.0, 0.0, 0.0, 0.0],
                     ["wrong: expected 5", "", "", ""], prompt_id="p1")
    rows, metrics = teacher_rows([a, b], [0.0] * 8, SdpoSettings(), 4, functools.partial(encode, tok))
    key = a.rollout.prompt_token_ids + a.completions[0].completion.token_ids
    assert key == b.rollout.prompt_token_ids + b.completions[0].completion.token_ids
    assert key not in rows.prompts and rows.prompts == {}
    assert metrics["sdpo/no_teacher_identical_completion"] == 2 / 8


def test_an_empty_step_reports_zero_fractions(tiny) -> None:
    _, tok = tiny
    _, metrics = teacher_rows([], [], SdpoSettings(), 4, functools.partial(encode, tok))
    assert all(v == 0.0 for v in metrics.values())
    assert {"sdpo/no_teacher_only_self_succeeded", "sdpo/no_teacher_reward_unavailable",
            "sdpo/no_teacher_no_feedback_no_success", "sdpo/no_teacher_masked",
            "sdpo/no_teacher_too_long", "sdpo/no_teacher_identical_completion"} <= set(metrics)


def _logp_of(model: Any, prompt: list[int], completion: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)


def test_sampled_reverse_kl_matches_separate_student_and_teacher_forwards(tiny) -> None:
    model, tok = tiny
    group, rows, _ = build(tok)
    batch = batching.collate([group], torch.zeros(4), pad_token_id=tok.pad_token_id)
    cfg = LossConfig(grpo_weight=0.0, sdpo=SdpoSettings(teacher="live", is_clip=None))
    loss, metrics = grpo_loss(model, batch, 1.0, cfg, teacher_rows=rows, teacher=None, pad_id=tok.pad_token_id)

    # By hand: student log-probs on prompt + completion, teacher log-probs on re-prompt + completion.
    surrogate = torch.zeros(())
    value = 0.0
    for i in (0, 3):
        comp = list(group.completions[i].completion.token_ids)
        s = _logp_of(model, list(group.rollout.prompt_token_ids), comp)
        with torch.no_grad():
            t = _logp_of(model, list(rows.prompts[tuple(group.rollout.prompt_token_ids) + tuple(comp)]), comp)
        surrogate = surrogate + ((s - t).detach() * s).sum()
        value += float((s - t).detach().sum())
    assert float(loss.detach()) == pytest.approx(value / rows.normalizer, abs=1e-5)
    assert metrics["sdpo/distill_loss"] == pytest.approx(float(loss.detach()))

    # The gradient is the score-function one: sg(s - t) * grad s, per distilled token.
    (grad,) = torch.autograd.grad(loss, [model.model.embed_tokens.weight])
    (expected,) = torch.autograd.grad(surrogate / rows.normalizer, [model.model.embed_tokens.weight])
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-4)


def test_blend_is_grpo_plus_weight_times_distillation(tiny) -> None:
    model, tok = tiny
    group, rows, _ = build(tok)
    adv = torch.tensor([-1.0, 1.5, 0.0, -0.5])
    batch = batching.collate([group], adv, pad_token_id=tok.pad_token_id)
    common = {"teacher_rows": rows, "teacher": None, "pad_id": tok.pad_token_id}
    settings = SdpoSettings(teacher="live", is_clip=None, weight=0.3)
    with torch.no_grad():
        grpo, _ = grpo_loss(model, batch, 3.0, LossConfig(), **common)
        distill, _ = grpo_loss(model, batch, 3.0, LossConfig(grpo_weight=0.0, sdpo=settings), **common)
        blend, m = grpo_loss(model, batch, 3.0, LossConfig(sdpo=settings), **common)
    assert float(blend) == pytest.approx(float(grpo) + float(distill), abs=1e-6)
    assert m["loss"] == pytest.approx(float(blend)) and m["sdpo/distill_loss"] == pytest.approx(float(distill) / 0.3)
    assert float(distill) != 0.0


@pytest.mark.parametrize(
    "settings",
    [
        SdpoSettings(loss="logit_kl", kl_kind="forward", teacher="initial", is_clip=None),
        SdpoSettings(loss="logit_kl", kl_kind="reverse", top_k=8, teacher="initial", is_clip=2.0),
        SdpoSettings(loss="jsd", jsd_alpha=0.5, teacher="initial", is_clip=None),
        SdpoSettings(loss="sampled_reverse_kl", teacher="initial", is_clip=None),
    ],
    ids=["forward-kl", "reverse-kl-top8-is", "jsd", "sampled-reverse-kl"],
)
def test_distillation_loss_falls_over_optimizer_steps(tiny, settings: SdpoSettings) -> None:
    from grpo_server.training.loop import build_reference_model

    model, tok = tiny
    group, rows, _ = build(tok, settings)
    teacher = build_reference_model(model)  # a frozen copy, made clearly different from the student:
    torch.manual_seed(0)
    with torch.no_grad():  # the random tiny model is near-uniform in any context, so perturb its head
        head: Any = teacher.get_output_embeddings()  # type: ignore[operator]
        head.weight.add_(0.3 * torch.randn_like(head.weight))
    batch = batching.collate([group], torch.zeros(4), pad_token_id=tok.pad_token_id)
    # Sampler log-probs = the student's own at the start (one policy sampled and trains).
    with torch.no_grad():
        from grpo_server.training.loss import logprobs_only

        batch = batching.TrainBatch(**{**vars(batch), "sampler_logprobs": logprobs_only(model, batch)})
    engine = TorchEngine(model, OptimConfig(learning_rate=2e-2, max_grad_norm=0.0))
    loss_fn = functools.partial(grpo_loss, cfg=LossConfig(grpo_weight=0.0, sdpo=settings), teacher_rows=rows,
                                teacher=teacher, pad_id=tok.pad_token_id)

    def distance() -> float:
        # For the logit losses the loss itself (a divergence >= 0); for the sampled estimator the mean
        # |log s - log t| over the distilled tokens (its value is signed).
        with torch.no_grad():
            loss, _ = loss_fn(model, batch, 1.0)
        if settings.loss != "sampled_reverse_kl":
            return float(loss)
        gaps = []
        for key, tprompt in rows.prompts.items():
            comp = list(key[len(group.rollout.prompt_token_ids):])
            with torch.no_grad():
                s = _logp_of(model, list(group.rollout.prompt_token_ids), comp)
                t = _logp_of(teacher, list(tprompt), comp)
            gaps.append((s - t).abs().mean())
        return float(torch.stack(gaps).mean())

    before = distance()
    for _ in range(15):
        engine.train_step([batch], loss_fn, 1.0)
    after = distance()
    assert before > 0
    assert after < 0.5 * before, f"distillation distance {before:.4f} -> {after:.4f}"


@pytest.mark.parametrize("loss", ["sampled_reverse_kl", "logit_kl"])
def test_the_teacher_gap_is_the_steps_mean_over_distilled_tokens_whatever_the_micro_batches(loss: str) -> None:
    """Rows of 1 distilled, 9 undistilled and 4 distilled completion tokens. sdpo/teacher_logp_gap is the
    mean of log pi_student - log pi_teacher over the 5 distilled tokens (separate full forwards), for
    every micro-batch size: it was weighted by each micro-batch's loss tokens (2.25 for 1.79 at size 2)."""
    import copy

    from transformers import LlamaConfig, LlamaForCausalLM

    from grpo_server.types import TrainBatch

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    teacher = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn_like(p))
    temperature, prompt = 0.7, [1, 2, 3]
    completions = [[5], [6, 7, 8, 9, 10, 11, 12, 13, 14], [15, 16, 17, 18]]
    reprompts = {0: [1, 20, 21, 2, 3, 22], 2: [1, 23, 2, 3]}  # row 1 is not distilled
    length = max(len(prompt) + len(c) for c in completions)
    ids = torch.zeros((3, length), dtype=torch.long)
    attention, mask = torch.zeros_like(ids), torch.zeros((3, length))
    for i, c in enumerate(completions):
        ids[i, : len(prompt) + len(c)] = torch.tensor(prompt + c)
        attention[i, : len(prompt) + len(c)] = 1
        mask[i, len(prompt) : len(prompt) + len(c)] = 1
    batch = TrainBatch(input_ids=ids, attention_mask=attention, completion_mask=mask, advantages=torch.zeros(3),
                       sampler_logprobs=torch.zeros((3, length)))
    distilled = sum(len(completions[i]) for i in reprompts)
    rows = TeacherRows({tuple(prompt + completions[i]): tuple(p) for i, p in reprompts.items()}, float(distilled))

    def logps(net: Any, seq: list[int], start: int) -> torch.Tensor:
        with torch.no_grad():
            lp = torch.log_softmax(net(torch.tensor([seq])).logits[0].float() / temperature, -1)
        return torch.stack([lp[t - 1, seq[t]] for t in range(start, len(seq))])

    expected = float(torch.cat([logps(model, prompt + completions[i], len(prompt)) - logps(teacher, p + completions[i], len(p))
                                for i, p in reprompts.items()]).mean())
    cfg = LossConfig(temperature=temperature, grpo_weight=0.0, sdpo=SdpoSettings(teacher="ema", is_clip=None, loss=loss))
    for size in (3, 2, 1):
        engine = TorchEngine(copy.deepcopy(model), OptimConfig(learning_rate=0.0))
        fn = functools.partial(grpo_loss, cfg=cfg, teacher_rows=rows, teacher=teacher, pad_id=0)
        metrics = engine.train_step(batching.split(batch, size), fn, 1.0)
        assert metrics["sdpo/teacher_logp_gap"] == pytest.approx(expected, abs=1e-5), f"micro-batch size {size}"
