"""Process supervision in the trainer (`algorithm.process_supervision`): token advantages from the reward
backends' step scores (DeepSeekMath section 4.1.3), their character step ends mapped onto the real tiny
tokenizer's tokens, and a real trainer training on a real reward service that returns step scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from variant_support import arithmetic_prompts, tiny_config

from grpo.reward.v1 import reward_pb2
from grpo_client import TrainerClient
from grpo_server.rollout.base import SamplingConfig
from grpo_server.training.loop import StepRunner, StepSettings
from grpo_server.training.loss import LossConfig
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


def _runner(tokenizer: Any, group_size: int) -> StepRunner:
    s = StepSettings(prompts_per_step=1, group_size=group_size, sampling=SamplingConfig(n=group_size),
                     loss=LossConfig(), process_supervision=True, advantage_eps=0.0)
    return StepRunner(s, tokenizer=tokenizer, rollout=None, engine=None, router=None)  # type: ignore[arg-type]


def _completion(tokenizer: Any, text: str) -> Completion:
    ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
    return Completion(ids, tuple(-1.0 for _ in ids), text, "stop")


def _decoded_len(tokenizer: Any, c: Completion, k: int) -> int:
    """Characters of the first k tokens of `c`, decoded as the rollout engines decode."""
    return len(tokenizer.decode(list(c.token_ids[:k]), skip_special_tokens=True))


def _group(completions: Sequence[Completion], scores: Sequence[Sequence[BackendScore]]) -> ScoredGroup:
    prompt = PromptRecord("p0", (ChatMessage("user", "q"),), (RewardSpec("steps"),))
    scored = tuple(ScoredCompletion(c, tuple(s)) for c, s in zip(completions, scores, strict=True))
    return ScoredGroup(RolloutGroup(prompt, (1, 2, 3), tuple(completions)), scored)


def _steps(backend: str, weight: float, step_scores: Sequence[float], ends: Sequence[int],
           score: float = 1.0) -> BackendScore:
    return BackendScore(backend, weight, RewardStatus.OK, score, step_scores=tuple(step_scores),
                        step_end_offsets=tuple(ends))


def test_step_scores_become_token_advantages_on_the_real_tokenizer(tiny) -> None:
    """docs/algorithm.md's hand example, its steps ending at token boundaries of real tokenized text:
    step rewards (1, 1) and (0, 0, 1); mean 0.6, population std 0.4899: 1 -> +0.8165, 0 -> -1.2247."""
    _, tok = tiny
    a = _completion(tok, "First we add. Then we check. Done")
    b = _completion(tok, "Guess 7. No, 8. Then 9 is the sum")
    assert len(a.token_ids) >= 4 and len(b.token_ids) >= 4
    # Character step ends chosen at token boundaries: a's steps cover tokens [0, 2) and [2, 4); b's
    # [0, 1), [1, 2) and [2, 4); tokens after the last step end get 0.
    a_ends = [_decoded_len(tok, a, 2), _decoded_len(tok, a, 4)]
    b_ends = [_decoded_len(tok, b, 1), _decoded_len(tok, b, 2), _decoded_len(tok, b, 4)]
    group = _group([a, b], [[_steps("steps", 1.0, [1, 1], a_ends)], [_steps("steps", 1.0, [0, 0, 1], b_ends)]])
    adv, _, valid = _runner(tok, 2).advantages([group])
    assert bool(valid.all())
    width = max(len(a.token_ids), len(b.token_ids))
    assert adv.shape == (2, width)
    up, down = 0.4 / (0.24 ** 0.5), -0.6 / (0.24 ** 0.5)
    expected_a = [2 * up, 2 * up, up, up] + [0.0] * (width - 4)
    expected_b = [2 * down + up, down + up, up, up] + [0.0] * (width - 4)
    torch.testing.assert_close(adv, torch.tensor([expected_a, expected_b]), atol=1e-5, rtol=0)


def test_a_step_ending_inside_a_token_owns_that_token(tiny) -> None:
    _, tok = tiny
    a = _completion(tok, "alpha beta gamma delta")
    b = _completion(tok, "alpha beta gamma delta")
    # The first token of two or more characters: the step ends one character into it.
    k = next(i for i in range(len(a.token_ids)) if _decoded_len(tok, a, i + 1) - _decoded_len(tok, a, i) >= 2)
    inside = _decoded_len(tok, a, k) + 1
    assert inside < _decoded_len(tok, a, k + 1)
    group = _group([a, b], [[_steps("steps", 1.0, [1.0], [inside])], [_steps("steps", 1.0, [0.0], [inside])]])
    adv, _, _ = _runner(tok, 2).advantages([group])
    assert adv[0, : k + 1].tolist() == pytest.approx([1.0] * (k + 1), abs=1e-5)  # tokens 0..k: the step's
    assert adv[0, k + 1 :].abs().sum() == 0
    assert adv[1, : k + 1].tolist() == pytest.approx([-1.0] * (k + 1), abs=1e-5)


def test_a_character_split_over_several_tokens_belongs_to_the_token_that_completes_it(tiny) -> None:
    """The tiny tokenizer is byte-level: "\u00e9" takes 2 tokens and "\u2192" 3, so "\u00e9\u2192 2\u00e9" is 8
    tokens for 5 characters. A step ending after a character owns every token of that character."""
    _, tok = tiny
    text = "\u00e9\u2192 2\u00e9"
    a, b = _completion(tok, text), _completion(tok, text)
    assert len(a.token_ids) == 8 and tok.decode(list(a.token_ids)) == text
    # Steps end after "\u00e9" (tokens 0-1), "\u2192" (2-4), " 2" (5) and the last "\u00e9" (6-7).
    group = _group([a, b], [[_steps("steps", 1.0, [1, 0, 1, 0], [1, 2, 4, 5])],
                            [_steps("steps", 1.0, [0, 0, 0, 0], [1, 2, 4, 5])]])
    adv, _, _ = _runner(tok, 2).advantages([group])
    # Eight step rewards, mean 0.25 and population std 0.433: 1 -> +1.732, 0 -> -0.577.
    up, down = 0.75 / 0.1875 ** 0.5, -0.25 / 0.1875 ** 0.5
    suffix = [2 * up + 2 * down, up + 2 * down, up + down, down]  # from each step on
    owner = [0, 0, 1, 1, 1, 2, 3, 3]  # the step each token belongs to
    torch.testing.assert_close(adv[0], torch.tensor([suffix[s] for s in owner]), atol=1e-5, rtol=0)
    torch.testing.assert_close(adv[1], torch.tensor([[4 * down, 3 * down, 2 * down, down][s] for s in owner]),
                               atol=1e-5, rtol=0)


def test_steps_of_several_backends_are_merged_by_weight_and_outcome_scores_do_not_count(tiny) -> None:
    _, tok = tiny
    a = _completion(tok, "one two three four")
    b = _completion(tok, "one two three four")
    end = _decoded_len(tok, a, 2)
    full = len(a.text)
    group = _group(
        [a, b],
        [
            [_steps("s1", 2.0, [1.0], [end]), _steps("s2", 0.5, [1.0], [full]), BackendScore("fmt", 1.0, RewardStatus.OK, 1.0)],
            [_steps("s1", 2.0, [0.0], [end], score=0.0), _steps("s2", 0.5, [0.0], [full], score=0.0),
             BackendScore("fmt", 1.0, RewardStatus.OK, 0.0)],
        ],
    )
    adv, rewards, _ = _runner(tok, 2).advantages([group])
    # Steps (2 x 1, 0.5 x 1) and (2 x 0, 0.5 x 0): values 2, 0.5, 0, 0; mean 0.625, std 0.8197.
    values = torch.tensor([2.0, 0.5, 0.0, 0.0])
    mean, std = values.mean(), values.std(unbiased=False)
    z = (values - mean) / std
    assert adv[0, 0] == pytest.approx(float(z[0] + z[1]), abs=1e-5)
    assert adv[0, -1] == pytest.approx(float(z[1]), abs=1e-5)
    assert adv[1, 0] == pytest.approx(float(z[2] + z[3]), abs=1e-5)
    # The format backend's outcome score is in the reward (metrics), not in the advantages.
    assert rewards.tolist() == [3.5, 0.0]


def test_dynamic_sampling_keeps_the_groups_whose_step_rewards_differ(tiny) -> None:
    """Under process supervision the advantages come from the step rewards, so DAPO's keep rule reads
    them too: equal outcomes with different steps carry a signal, different outcomes with equal steps
    none."""
    _, tok = tiny
    a, b = _completion(tok, "one two three four"), _completion(tok, "one two three four")
    end = len(a.text)
    equal_outcomes = _group([a, b], [[_steps("s", 1.0, [1.0], [end], score=1.0)],
                                     [_steps("s", 1.0, [0.0], [end], score=1.0)]])
    equal_steps = _group([a, b], [[_steps("s", 1.0, [0.5], [end], score=1.0)],
                                  [_steps("s", 1.0, [0.5], [end], score=0.0)]])
    one_valid = _group([a, b], [[_steps("s", 1.0, [1.0], [end])],
                                [BackendScore("s", 1.0, RewardStatus.TIMEOUT, None, message="slow")]])
    runner = _runner(tok, 2)
    groups = [equal_outcomes, equal_steps, one_valid]
    assert runner.groups_with_variance(groups) == [True, False, False]
    # The same verdict as the advantages: zero exactly where the group is dropped.
    adv, _, _ = runner.advantages(groups)
    assert [bool(adv[i : i + 2].abs().sum() > 0) for i in range(0, 6, 2)] == [True, False, False]
    # The metric agrees: of equal_outcomes and one_valid, only one_valid is signal-less.
    _, rewards, valid = runner.advantages([equal_outcomes, one_valid])
    assert runner._rollout_metrics([equal_outcomes, one_valid], rewards, valid)["zero_variance_groups"] == 1


def test_zero_variance_groups_read_the_shaped_rewards_the_advantages_read(tiny) -> None:
    """Without process supervision the metric read the task rewards: a group of equal scores told apart by
    the overlong penalty had advantages, and was counted (and warned about) as one with none."""
    _, tok = tiny
    short, long = _completion(tok, "a"), _completion(tok, "a b c d e f g h")
    s = StepSettings(prompts_per_step=1, group_size=2, sampling=SamplingConfig(n=2, max_new_tokens=len(long.token_ids)),
                     loss=LossConfig(), overlong_cache_tokens=len(long.token_ids) - 1, advantage_eps=0.0)
    runner = StepRunner(s, tokenizer=tok, rollout=None, engine=None, router=None)  # type: ignore[arg-type]
    group = _group([short, long], [[_steps("s", 1.0, [], [], score=1.0)], [_steps("s", 1.0, [], [], score=1.0)]])
    adv, _, _ = runner.advantages([group])
    assert float(adv.abs().sum()) > 0  # the penalty tells them apart
    task, task_valid = runner._task_rewards([group])  # what the step passes (reward_mean is the task reward)
    assert runner._rollout_metrics([group], task, task_valid)["zero_variance_groups"] == 0


def test_masked_and_stepless_completions_get_zero_advantage(tiny) -> None:
    _, tok = tiny
    cs = [_completion(tok, t) for t in ("a b c", "a b d", "a b e", "a b f")]
    full = len(cs[0].text)
    scores = [
        [_steps("steps", 1.0, [1.0], [full])],
        [_steps("steps", 1.0, [0.0], [full])],
        [BackendScore("steps", 1.0, RewardStatus.OK, 0.5)],  # an outcome score, no steps
        [BackendScore("steps", 1.0, RewardStatus.TIMEOUT, None)],  # masked
    ]
    adv, _, valid = _runner(tok, 4).advantages([_group(cs, scores)])
    assert valid.tolist() == [True, True, True, False]
    assert adv[0, 0] == pytest.approx(1.0, abs=1e-5) and adv[1, 0] == pytest.approx(-1.0, abs=1e-5)
    assert adv[2].abs().sum() == 0 and adv[3].abs().sum() == 0


class StepScorer:
    """A reward service that scores reasoning steps: one step per word of the completion, scoring 1 for a
    word with a digit in it; the outcome score is the fraction of such words."""

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name="word-steps", version="1",
            capabilities=reward_pb2.Capabilities(step_scores=True, max_batch_size=256, score_min=0.0, score_max=1.0,
                                                 reference_kinds=[reward_pb2.REFERENCE_KIND_NONE,
                                                                  reward_pb2.REFERENCE_KIND_ANSWER]))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        out = []
        for item in items:
            steps, ends, pos = [], [], 0
            for word in item.completion.split():
                pos = item.completion.index(word, pos) + len(word)
                steps.append(1.0 if any(ch.isdigit() for ch in word) else 0.0)
                ends.append(pos)
            out.append(reward_pb2.ScoreResult(
                id=item.id, status=reward_pb2.SCORE_STATUS_OK,
                score=sum(steps) / len(steps) if steps else 0.0, step_scores=steps, step_end_offsets=ends))
        return out

    def close(self) -> None:
        pass


def test_the_trainer_trains_on_step_scores_end_to_end(serve, start_trainer, tmp_path: Path) -> None:
    cfg = tiny_config(
        algorithm={"process_supervision": True},
        training={"max_steps": 2},
        rewards={"default": [{"backend": "steps"}]},
    )
    app = start_trainer(cfg, tmp_path / "store", [("steps", serve(StepScorer()))])
    assert app.loop.runner.s.process_supervision
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(arithmetic_prompts(4))
    seen = []
    for report in client.iter_steps(after_step=0):
        seen.append(report)
        if report.step >= 2:
            break
    assert [r.step for r in seen] == [1, 2]
    assert all(r.metrics.grad_norm > 0 for r in seen)
