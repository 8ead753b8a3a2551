"""Prompts given up on are counted: a backend that rejects every item (SCORE_STATUS_INVALID_INPUT, not an
outage) makes each step that leases them SKIPPED with an attempt counted; after
`training.max_prompt_attempts` such steps (2 here, 3 by default) a prompt is FAILED.
`grpo_prompts_failed_total` on the trainer's own registry and on its /metrics endpoint, the FAILED rows of the store and StepStatus's `run.prompts_failed` all agree, and the prompts that a good
backend scores afterwards are trained, not failed."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from live_trainer import ConstantScorer, prompts, serve, wait_for

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_rewards.common.server import RunningServer
from grpo_server.store import Store
from grpo_server.types import PromptState

ATTEMPTS = 2  # training.max_prompt_attempts, set below (the default, 3, would only take longer)
PER_STEP = 2


class RejectingScorer(ConstantScorer):
    """A reward backend that answers every Score call but rejects each item as INVALID_INPUT: the items'
    fault, so a step of only its items counts an attempt against its prompts."""

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        with self._lock:
            self.calls += 1
        return [
            reward_pb2.ScoreResult(id=i.id, status=reward_pb2.SCORE_STATUS_INVALID_INPUT,
                                   status_message="rejected by the test backend")
            for i in items
        ]


def _scraped_failed_total(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    m = re.search(r"^grpo_prompts_failed_total (\S+)$", text, re.MULTILINE)
    assert m is not None, "grpo_prompts_failed_total is not exposed"
    return float(m.group(1))


@pytest.fixture
def reject_server() -> Iterator[RunningServer]:
    """The rejecting backend, served until the test's trainers have stopped."""
    server = serve(RejectingScorer("reject", 0.0))
    yield server
    server.stop(1)


@pytest.fixture
def backends(reject_server: RunningServer, toy_backend) -> list[tuple[str, str]]:
    """The trainer's --reward-backend pairs: "reject" and a "good" toy backend scoring 0.5."""
    _, good = toy_backend("good", 0.5)
    return [("reject", reject_server.address), ("good", good.address)]


def test_prompts_failed_counter_matches_the_store_and_step_status(
    reject_server: RunningServer, backends, start_trainer, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    app = start_trainer(
        store_dir, backends,
        algorithm={"prompts_per_step": PER_STEP, "group_size": 2, "beta": 0.0},
        training={"max_prompt_attempts": ATTEMPTS},
        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"},
    )
    registry = app.metrics.registry
    assert registry.get_sample_value("grpo_prompts_failed_total") == 0.0
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    doomed = prompts(4, prefix="bad")
    for p in doomed:
        del p.rewards[:]
        p.rewards.add(backend="reject", weight=1.0)
    fine = prompts(PER_STEP, prefix="good")
    for p in fine:
        del p.rewards[:]
        p.rewards.add(backend="good", weight=1.0)
    client.submit_prompts(doomed)
    client.submit_prompts(fine)  # FIFO: leased only after the doomed ones are given up on

    # 4 doomed prompts, 2 a step, 2 attempts each: 4 skipped steps, then one completed step.
    expected_skips = len(doomed) // PER_STEP * ATTEMPTS
    finished: list[trainer_pb2.StepReport] = []
    for report in client.iter_steps(timeout=300):
        finished.append(report)
        if report.state == trainer_pb2.STEP_STATE_COMPLETED:
            break
    states = [r.state for r in finished]
    assert states == [trainer_pb2.STEP_STATE_SKIPPED] * expected_skips + [trainer_pb2.STEP_STATE_COMPLETED], [
        (r.step, trainer_pb2.StepState.Name(r.state), r.error) for r in finished]
    assert all("no reward could be obtained" in r.error for r in finished[:-1])
    assert set(finished[-1].prompt_ids) == {p.id for p in fine}

    wait_for(lambda: client.step_status().run.prompts_trained == len(fine) or None, 120,
             lambda: f"the good prompts were not trained: {client.step_status()}")
    run = client.step_status().run
    metric = registry.get_sample_value("grpo_prompts_failed_total")
    scraped = _scraped_failed_total(app.metrics_port)
    counts = app.store.counts()
    reasons = app.store.failure_reasons()
    skipped_metric = registry.get_sample_value("grpo_steps_total", {"state": "skipped"})
    app.shutdown()

    assert counts[PromptState.FAILED] == len(doomed)
    assert run.prompts_failed == len(doomed)
    assert metric == len(doomed)  # each FAILED prompt counted exactly once
    assert scraped == len(doomed)
    assert skipped_metric == expected_skips
    assert set(reasons) == {p.id for p in doomed}
    assert all(f"gave up after {ATTEMPTS} failed attempts" in why for why in reasons.values())
    assert reject_server.scorer.calls >= expected_skips

    store = Store(store_dir)  # the file agrees once the process has let go of it
    try:
        by_state = store.prompt_states()
    finally:
        store.close()
    assert {pid for pid, (s, _) in by_state.items() if s is PromptState.FAILED} == {p.id for p in doomed}
    assert {pid for pid, (s, _) in by_state.items() if s is PromptState.TRAINED} == {p.id for p in fine}


def test_a_rejected_prompt_in_a_step_that_trains_others_goes_back_and_is_given_up_on(
    backends, start_trainer, tmp_path: Path
) -> None:
    # Queue b0 g0 b1 g1, 2 a step: step 1 trains g0 and puts b0 back (1 attempt); step 2 leases b0 b1,
    # nothing scores: skipped, b0 FAILED (2 attempts), b1 back (1); step 3 trains g1, b1 FAILED.
    store_dir = tmp_path / "store"
    app = start_trainer(
        store_dir, backends,
        algorithm={"prompts_per_step": PER_STEP, "group_size": 2, "beta": 0.0},
        training={"max_prompt_attempts": ATTEMPTS},
    )
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    queue = []
    for i in range(2):
        bad, fine = prompts(1, start=i, prefix="b")[0], prompts(1, start=i, prefix="g")[0]
        for p, backend in ((bad, "reject"), (fine, "good")):
            del p.rewards[:]
            p.rewards.add(backend=backend, weight=1.0)
        queue += [bad, fine]
    client.submit_prompts(queue)
    run = wait_for(lambda: (r := client.step_status().run).prompts_failed == 2 and r.prompts_trained == 2 and r
                   or None, 120, lambda: f"the prompts did not settle: {client.step_status().run}")
    assert run.queue_depth == 0
    assert app.metrics.registry.get_sample_value("grpo_prompts_failed_total") == 2.0
    reports = client.finished_steps()
    assert [(r.state, list(r.prompt_ids)) for r in reports] == [
        (trainer_pb2.STEP_STATE_COMPLETED, ["g0"]),
        (trainer_pb2.STEP_STATE_SKIPPED, ["b0", "b1"]),
        (trainer_pb2.STEP_STATE_COMPLETED, ["g1"]),
    ]
    app.shutdown()
    store = Store(store_dir)
    try:
        states = {pid: s for pid, (s, _) in store.prompt_states().items()}
        reasons = store.failure_reasons()
    finally:
        store.close()
    assert states == {"b0": PromptState.FAILED, "b1": PromptState.FAILED,
                      "g0": PromptState.TRAINED, "g1": PromptState.TRAINED}
    # Each reason names the cause of the last attempt: the backend and its answer for the items.
    assert set(reasons) == {"b0", "b1"}
    for why in reasons.values():
        assert why.startswith(f"gave up after {ATTEMPTS} failed attempts; the last: "), why
        assert "backend 'reject': INVALID_INPUT: rejected by the test backend" in why, why


def test_a_checkpoint_comes_every_n_completed_steps_however_the_skipped_ones_fall(
    backends, start_trainer, tmp_path: Path
) -> None:
    """checkpoint.every_steps counted step numbers: with every_steps 2 and the step numbered 2 skipped,
    steps 1 and 3 completed and no checkpoint held them (a crash retrained both)."""
    store_dir = tmp_path / "store"
    app = start_trainer(
        store_dir, backends,
        algorithm={"prompts_per_step": 1, "group_size": 2, "beta": 0.0},
        training={"max_prompt_attempts": 1}, checkpoint={"every_steps": 2},
    )
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    queue = [prompts(1, start=0, prefix="g")[0], prompts(1, start=0, prefix="b")[0], prompts(1, start=1, prefix="g")[0]]
    for p in queue:
        del p.rewards[:]
        p.rewards.add(backend="reject" if p.id.startswith("b") else "good", weight=1.0)
    client.submit_prompts(queue)
    run = wait_for(lambda: (r := client.step_status().run).prompts_trained == 2 and r or None, 120,
                   lambda: f"no checkpoint holds the two completed steps: {client.step_status().run}")
    assert [(r.step, r.state) for r in client.finished_steps()] == [
        (1, trainer_pb2.STEP_STATE_COMPLETED), (2, trainer_pb2.STEP_STATE_SKIPPED),
        (3, trainer_pb2.STEP_STATE_COMPLETED)]
    assert run.checkpoint_step == 3 and run.prompts_failed == 1
    app.shutdown()
