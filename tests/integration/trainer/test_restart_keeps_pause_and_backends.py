"""A restart of `grpo-server` on the same store keeps what the API told the run: a paused run comes back
paused (and trains nothing until it is resumed), a backend added with SetRewardBackend is still there,
so the queued prompts that name it are trained once the run resumes, and a config backend removed with
DeleteRewardBackend stays removed. Real processes: the trainer drained with SIGTERM and started again,
toy reward backends on loopback."""

from __future__ import annotations

import time
from pathlib import Path

from grpc_health.v1 import health_pb2
from live_trainer import TrainerProcess, config_data, prompts, wait_for, write_yaml

from grpo.trainer.v1 import trainer_pb2

CODE2 = 0.75  # the score of the API-added backend: a step's backend_reward_means say it scored
PER_STEP = 2


def test_a_restarted_trainer_stays_paused_keeps_api_backends_and_trains_their_prompts_on_resume(
    toy_backend, tmp_path: Path
) -> None:
    _, toy = toy_backend("toy", 0.5)
    code2_scorer, code2 = toy_backend("code2", CODE2)
    _, legacy = toy_backend("legacy", 0.25)
    config = write_yaml(tmp_path / "trainer.yaml", config_data(
        algorithm={"prompts_per_step": PER_STEP, "group_size": 2, "beta": 0.0},
        rewards={"default": [{"backend": "toy"}], "backends": {"legacy": {"address": legacy.address}}},
    ))
    store_dir = tmp_path / "store"
    flags = [("toy", toy.address)]
    batch = prompts(2 * PER_STEP, prefix="code")
    for p in batch:
        del p.rewards[:]
        p.rewards.add(backend="code2", weight=1.0)

    first = TrainerProcess(config, store_dir, flags, log_path=tmp_path / "first.log")
    try:
        first.wait_ready()
        client = first.client
        assert client.pause().pause_requested
        wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_PAUSED or None, 60,
                 lambda: f"the trainer did not pause: {client.step_status().run}")
        assert client.set_backend("code2", code2.address).backend.source == trainer_pb2.BACKEND_SOURCE_API
        client.delete_backend("legacy")
        client.submit_prompts(batch)  # accepted: code2 is in the registry
        first.terminate()
        assert first.wait(120) == 0, first.log_tail()
    finally:
        if first.proc.poll() is None:
            first.kill()
    assert code2_scorer.calls == 0

    second = TrainerProcess(config, store_dir, flags, log_path=tmp_path / "second.log")
    try:
        second.wait_ready()  # a paused run still loads, resumes from its checkpoint and serves the API
        client = second.client
        wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_PAUSED or None, 60,
                 lambda: f"the restarted trainer is not paused: {client.step_status().run}\n{second.log_tail()}")
        assert second.health() == health_pb2.HealthCheckResponse.SERVING
        run = client.step_status().run
        assert run.pause_requested and run.queue_depth == len(batch) and run.latest_step == 0
        backends = {b.name: b for b in client.list_backends().backends}
        assert set(backends) == {"toy", "code2"}  # legacy stays deleted
        assert (backends["code2"].address, backends["code2"].source) == (code2.address,
                                                                        trainer_pb2.BACKEND_SOURCE_API)
        time.sleep(2.0)  # four of the loop's polls: long enough for a step to start if one would
        assert client.step_status().run.latest_step == 0 and code2_scorer.calls == 0

        assert not client.resume().pause_requested
        completed: list[trainer_pb2.StepReport] = []
        for report in client.iter_steps(timeout=180):
            assert report.state == trainer_pb2.STEP_STATE_COMPLETED, report
            completed.append(report)
            if len(completed) == len(batch) // PER_STEP:
                break
        assert all(r.metrics.backend_reward_means["code2"] == CODE2 for r in completed), completed
        assert sorted(pid for r in completed for pid in r.prompt_ids) == sorted(p.id for p in batch)
        wait_for(lambda: client.step_status().run.prompts_trained == len(batch) or None, 60,
                 lambda: f"the prompts were not trained: {client.step_status().run}")
        assert client.step_status().run.prompts_failed == 0
        second.terminate()
        assert second.wait(120) == 0, second.log_tail()
    finally:
        if second.proc.poll() is None:
            second.kill()

    # Resumed: the next start trains on (nothing is paused any more).
    third = TrainerProcess(config, store_dir, flags, log_path=tmp_path / "third.log")
    try:
        third.wait_ready()
        wait_for(lambda: third.client.step_status().run.state == trainer_pb2.RUN_STATE_IDLE or None, 60,
                 lambda: f"the third start is not idle: {third.client.step_status().run}")
        assert not third.client.step_status().run.pause_requested
        third.terminate()
        assert third.wait(120) == 0, third.log_tail()
    finally:
        if third.proc.poll() is None:
            third.kill()
