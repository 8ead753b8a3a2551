"""A backend deleted from the registry while prompts that name it wait in the queue: those prompts are
given up on (FAILED after 3 counted attempts, each a SKIPPED step whose error names the missing backend)
instead of being re-queued at the head of the queue for ever, and the prompts behind them train.
Real trainer in process, real reward backend on loopback, the delete through the DeleteRewardBackend RPC."""

from __future__ import annotations

from pathlib import Path

from live_trainer import prompts, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.types import PromptState

ATTEMPTS = 3  # the store's max_attempts
PER_STEP = 2


def test_prompts_naming_a_deleted_backend_fail_and_do_not_block_the_queue(toy_backend, start_trainer,
                                                                          tmp_path: Path) -> None:
    _, doomed_server = toy_backend("doomed", 1.0)
    _, good = toy_backend("good", 0.5)
    app = start_trainer(
        tmp_path / "store", [],
        algorithm={"prompts_per_step": PER_STEP, "group_size": 2, "beta": 0.0},
    )
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.set_backend("doomed", doomed_server.address)
    client.set_backend("good", good.address)
    client.pause()
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_PAUSED or None, 60,
             lambda: f"the trainer did not pause: {client.step_status().run}")
    doomed = prompts(PER_STEP, prefix="doomed")
    for p in doomed:
        del p.rewards[:]
        p.rewards.add(backend="doomed", weight=1.0)
    fine = prompts(PER_STEP, prefix="good")
    for p in fine:
        del p.rewards[:]
        p.rewards.add(backend="good", weight=1.0)
    client.submit_prompts(doomed)  # accepted: the backend exists now
    client.submit_prompts(fine)  # FIFO: behind the doomed ones
    client.delete_backend("doomed")
    client.resume()

    finished: list[trainer_pb2.StepReport] = []
    for report in client.iter_steps(timeout=300):
        finished.append(report)
        if report.state == trainer_pb2.STEP_STATE_COMPLETED:
            break
    described = [(r.step, trainer_pb2.StepState.Name(r.state), r.error) for r in finished]
    assert [r.state for r in finished] == [trainer_pb2.STEP_STATE_SKIPPED] * ATTEMPTS + [
        trainer_pb2.STEP_STATE_COMPLETED], described
    assert all(set(r.prompt_ids) == {p.id for p in doomed} for r in finished[:-1]), described
    assert set(finished[-1].prompt_ids) == {p.id for p in fine}
    wait_for(lambda: client.step_status().run.prompts_trained == len(fine) or None, 120,
             lambda: f"the good prompts were not trained: {client.step_status()}")
    assert client.step_status().run.prompts_failed == len(doomed)
    assert app.metrics.registry.get_sample_value(
        "grpo_reward_request_failures_total", {"backend": "doomed", "code": "item_unknown_backend"}
    ) == ATTEMPTS * len(doomed) * 2  # 2 samples per prompt in each of the 3 steps
    states = app.store.prompt_states()
    assert {pid for pid, (s, _) in states.items() if s is PromptState.FAILED} == {p.id for p in doomed}
    assert {pid for pid, (s, _) in states.items() if s is PromptState.TRAINED} == {p.id for p in fine}
