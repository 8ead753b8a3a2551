"""Answers of a reward backend, and stored prompts, that ended the run: the step raised, the run FAILED
and, since the prompt goes back to the queue at its place with no attempt counted, every run after a
restart leased it again and ended the same way. Now the bad item is masked (counted as a failed reward
item, the backend and what was wrong in its message), the prompt goes back with an attempt counted and is
FAILED after training.max_prompt_attempts, and the step trains the others.

Each test runs the real trainer (tiny model, HF rollouts) against a real reward backend on loopback that
answers the prompts whose text holds POISON badly and the others well."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from live_trainer import ConstantScorer, prompts, queue_in_store, serve, wait_for

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.types import PromptState

Answer = Callable[[reward_pb2.ScoreItem], reward_pb2.ScoreResult]


class PoisonScorer(ConstantScorer):
    """Scores an item whose prompt holds POISON with `bad`, every other one with `good`."""

    def __init__(self, name: str, good: Answer, bad: Answer) -> None:
        super().__init__(name, 0.0)
        self.good, self.bad = good, bad

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        self.calls += 1
        return [(self.bad if any("POISON" in m.content for m in i.prompt) else self.good)(i) for i in items]


def _steps(score: float, first: float, second: float) -> Answer:
    """An empty first step worth `first` and a second covering the whole completion worth `second`."""
    def answer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, score=score, status=reward_pb2.SCORE_STATUS_OK,
                                      step_scores=[first, second],
                                      step_end_offsets=[0, len(item.completion)])
    return answer


def _varied_steps(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
    value = float(len(item.completion) % 3)  # completions differ, so the good group has a signal
    return _steps(value, value, 1.0)(item)


def _given_up_or_failed(client: TrainerClient) -> bool:
    """True once a prompt is FAILED or the run is (the loop starts just after the trainer is ready)."""
    run = client.step_status().run
    return run.prompts_failed == 1 or run.state == trainer_pb2.RUN_STATE_FAILED


def _run_poisoned(tmp_path: Path, start_trainer, poison: trainer_pb2.Prompt, scorer: PoisonScorer,
                  poison_weight: float = 1.0, **sections: dict) -> tuple[object, TrainerClient]:
    """Queue `poison` (its reward weighted `poison_weight`) before two good prompts, start the trainer on
    `scorer` (2 prompts a step, 2 attempts a prompt) and wait until `poison` is given up on."""
    good = prompts(2, prefix="good")
    store_dir = tmp_path / "store"
    queue_in_store(store_dir, [poison, *good], "poison", {poison.id: poison_weight})
    backend = serve(scorer)
    algorithm = {"prompts_per_step": 2, "group_size": 2, "beta": 0.0, **sections.pop("algorithm", {})}
    app = start_trainer(store_dir, [("poison", backend.address)], algorithm=algorithm,
                        training={"max_prompt_attempts": 2}, rewards={"default": [{"backend": "poison"}]},
                        **sections)
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    try:
        wait_for(lambda: _given_up_or_failed(client), 120,
                 lambda: f"the poisoned prompt was not given up on: {client.step_status().run}")
        assert client.step_status().run.state != trainer_pb2.RUN_STATE_FAILED, client.step_status().run
    finally:
        backend.stop(1)
    return app, client


def _first_sdpo_step(tmp_path: Path, start_trainer, poison: trainer_pb2.Prompt, scorer: PoisonScorer):
    """Queue `poison` before two good prompts, start an SDPO trainer (live teacher) on `scorer` and return
    (app, the first finished step's report, that step's extra metrics)."""
    store_dir = tmp_path / "store"
    queue_in_store(store_dir, [poison, *prompts(2, prefix="good")], "poison")
    backend = serve(scorer)
    app = start_trainer(store_dir, [("poison", backend.address)],
                        algorithm={"prompts_per_step": 2, "group_size": 2, "name": "sdpo",
                                   "beta": 0.0, "sdpo_teacher": "live"},
                        rewards={"default": [{"backend": "poison"}]})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    try:
        report = next(r for r in client.iter_steps(timeout=300) if r.state != trainer_pb2.STEP_STATE_RUNNING)
    finally:
        backend.stop(1)
    assert app.failed is None, app.failed
    assert report.state == trainer_pb2.STEP_STATE_COMPLETED, report
    assert set(report.prompt_ids) == {"poison", "good0"}, report
    return app, report, dict(report.metrics.extra)


def test_step_scores_that_overflow_do_not_end_a_process_supervised_run(start_trainer, tmp_path: Path) -> None:
    """Step scores of 1.7e308 are finite doubles, so they passed the router's checks, but their group's
    mean overflows to inf (the group's step scores differ, so it is not skipped as one without a
    signal): NaN token advantages, a non-finite loss, FloatingPointError, run FAILED."""
    poison = trainer_pb2.Prompt(id="poison", answer="1", messages=[
        reward_pb2.Message(role="user", content="POISON: what is 0+1?")])
    scorer = PoisonScorer("poison", _varied_steps, _steps(1.0, 1.7e308, 1.0))
    app, _ = _run_poisoned(tmp_path, start_trainer, poison, scorer, algorithm={"process_supervision": True})
    assert app.store.get_step(1).state.value == "completed"
    assert app.store.prompt_states()["poison"][0] is PromptState.FAILED
    reason = app.store.failure_reasons()["poison"]
    assert ("backend 'poison': INTERNAL: step score 1.7e+308 (step_scores[0]) is outside -1e+12..1e+12"
            in reason), reason


def test_an_outcome_score_that_overflows_is_masked(start_trainer, tmp_path: Path) -> None:
    """An outcome score of 1e300 (finite, so it passed) is not a reward the trainer can use: masked."""
    poison = trainer_pb2.Prompt(id="poison", answer="1", messages=[
        reward_pb2.Message(role="user", content="POISON: what is 0+1?")])

    def good(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, score=float(len(item.completion) % 3), status=reward_pb2.SCORE_STATUS_OK)

    def bad(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, score=1e300, status=reward_pb2.SCORE_STATUS_OK)

    app, _ = _run_poisoned(tmp_path, start_trainer, poison, PoisonScorer("poison", good, bad))
    reason = app.store.failure_reasons()["poison"]
    assert "backend 'poison': INTERNAL: score 1e+300 is outside -1e+12..1e+12" in reason, reason


def test_sdpo_on_a_prompt_without_a_user_message_does_not_end_the_run(start_trainer, tmp_path: Path) -> None:
    """The API takes a prompt of a system message alone; SDPO's re-prompt adds the feedback to the last
    user message, found none and raised ValueError: run FAILED. Now that row gets no teacher (counted as
    sdpo/no_teacher_masked) and the step trains."""
    poison = trainer_pb2.Prompt(id="poison", answer="1", messages=[
        reward_pb2.Message(role="system", content="POISON: write the number one.")])

    def answer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, score=0.0, status=reward_pb2.SCORE_STATUS_OK,
                                      feedback="wrong: expected 1")

    app, _, metrics = _first_sdpo_step(tmp_path, start_trainer, poison, PoisonScorer("poison", answer, answer))
    assert metrics["sdpo/no_teacher_masked"] == 0.5, metrics  # poison's 2 of the step's 4 completions
    assert metrics["sdpo/distilled_fraction"] == 0.5, metrics
    assert app.loop.alive


def test_a_huge_reward_weight_does_not_end_a_process_supervised_run(start_trainer, tmp_path: Path) -> None:
    """The API takes any finite reward weight. 1e308 x a step score of 2 is inf: NaN token advantages, a
    non-finite loss, run FAILED. Now such an item is masked as the prompt's INVALID_INPUT."""
    poison = trainer_pb2.Prompt(id="poison", answer="1", messages=[
        reward_pb2.Message(role="user", content="POISON: what is 0+1?")])
    scorer = PoisonScorer("poison", _varied_steps, _steps(1.0, 2.0, 1.0))
    app, _ = _run_poisoned(tmp_path, start_trainer, poison, scorer, poison_weight=1e308,
                           algorithm={"process_supervision": True})
    reason = app.store.failure_reasons()["poison"]
    assert "backend 'poison': INVALID_INPUT: the prompt's weight 1e+308 x score 1 is outside" in reason, reason


def test_sdpo_feedback_too_long_for_the_context_gives_no_teacher(start_trainer, tmp_path: Path) -> None:
    """Feedback of 4 KiB (the proto's limit) makes a re-prompt longer than the tiny model's 512 positions.
    The trainer bounds teacher sequences by the model's own context: those rows get no teacher, counted in
    sdpo/no_teacher_too_long, and the other prompt's rows are distilled."""
    poison = trainer_pb2.Prompt(id="poison", answer="1", messages=[
        reward_pb2.Message(role="user", content="POISON: write the number one.")])

    def short(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, score=0.0, status=reward_pb2.SCORE_STATUS_OK,
                                      feedback="wrong: expected 1")

    def long(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, score=0.0, status=reward_pb2.SCORE_STATUS_OK,
                                      feedback=" ".join(f"w{k}" for k in range(1300))[:4096])

    app, _, metrics = _first_sdpo_step(tmp_path, start_trainer, poison, PoisonScorer("poison", short, long))
    assert metrics["sdpo/no_teacher_too_long"] == 0.5, metrics  # poison's 2 of the step's 4 completions
    assert metrics["sdpo/distilled_fraction"] == 0.5, metrics
    lengths = [len(p) for p in app.loop.runner.last_teacher_rows.prompts.values()]
    assert lengths and max(lengths) < 512, lengths
