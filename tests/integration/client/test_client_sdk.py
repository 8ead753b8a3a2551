"""The Python SDK (TrainerClient) against a real trainer API on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from trainer_api import TrainerApi

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient, TrainerError
from grpo_server.types import StepState


def write_prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "messages": [{"role": "user", "content": f"{i}?"}],
                                        "answer": str(i)}) + "\n" for i in range(n)))
    return path


def test_submit_file_reports_batches_and_calls_back_per_batch(api: TrainerApi, tmp_path: Path) -> None:
    seen: list[int] = []
    with TrainerClient(api.target) as client:
        result = client.submit_file(write_prompts(tmp_path / "p.jsonl", 5), batch_size=3,
                                    on_batch=lambda n, resp: seen.append(n))
        again = client.submit_file(tmp_path / "p.jsonl", batch_size=3)
    assert seen == [3, 2] and result.accepted_ids == [f"s{i}" for i in range(5)]
    assert (result.batches, result.duplicate_batches, result.queue_depth) == (2, 0, 5)
    assert again.duplicate_batches == 2 and again.request_ids == result.request_ids
    assert api.store.queue_depth() == 5


def test_submit_file_refuses_fewer_than_one_attempt_and_sends_nothing(api: TrainerApi, tmp_path: Path) -> None:
    with TrainerClient(api.target) as client, pytest.raises(ValueError, match="max_attempts must be >= 1, got 0"):
        client.submit_file(write_prompts(tmp_path / "p.jsonl", 2), max_attempts=0)
    assert api.store.queue_depth() == 0


def test_errors_carry_the_code_and_field_violations(api: TrainerApi) -> None:
    bad = trainer_pb2.Prompt(id="x", messages=[reward_pb2.Message(role="robot", content="hi")], answer="1")
    with TrainerClient(api.target) as client, pytest.raises(TrainerError) as err:
        client.submit_prompts([bad])
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.field_violations] == ["prompts[0].messages[0].role"]
    assert "prompts[0].messages[0].role" in str(err.value)


def test_iter_steps_and_finished_steps(api: TrainerApi) -> None:
    api.finish_step(0.1)
    api.finish_step(0.0, state=StepState.SKIPPED)
    api.finish_step(0.3)
    with TrainerClient(api.target) as client:
        it = client.iter_steps(after_step=1)
        assert [next(it).step, next(it).step] == [2, 3]
        finished = client.finished_steps()
    assert [(r.step, r.state) for r in finished] == [
        (1, trainer_pb2.STEP_STATE_COMPLETED), (2, trainer_pb2.STEP_STATE_SKIPPED), (3, trainer_pb2.STEP_STATE_COMPLETED)]
    assert finished[2].metrics.reward_mean == pytest.approx(0.3)


def test_finished_steps_of_a_fresh_run_is_empty(api: TrainerApi) -> None:
    with TrainerClient(api.target) as client:
        assert client.finished_steps() == []


def test_export_and_wait(api: TrainerApi, tmp_path: Path) -> None:
    with TrainerClient(api.target) as client:
        started = client.export_checkpoint(str(tmp_path / "out"))
        done = client.wait_export(started.export_id, poll_seconds=0.05, timeout=60)
    assert done.state == trainer_pb2.EXPORT_STATE_DONE and (tmp_path / "out" / "manifest.json").exists()


def test_backend_admin_round_trip(api: TrainerApi) -> None:
    with TrainerClient(api.target) as client:
        stored = client.set_backend("code", api.code_address, max_concurrency=3)
        assert stored.backend.max_concurrency == 3 and stored.backend.description.name == "code-sandbox"
        assert [b.name for b in client.list_backends().backends] == ["code", "math"]
        assert client.delete_backend("code") == stored.registry_version + 1
        run = client.pause()
        assert run.pause_requested
        assert not client.resume().pause_requested
