"""Run control, reward backends and exports over a real server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from api_support import Api, details, prompt, submit, violations
from google.rpc import error_details_pb2

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_server.control import RunState

# ---------------------------------------------------------------------------------- pause / resume


def test_pause_sets_the_flag_and_the_loop_sees_it(api: Api) -> None:
    api.control.set_state("training")
    resp = api.stub.PauseTraining(trainer_pb2.PauseTrainingRequest())
    assert resp.run.pause_requested and resp.run.state == trainer_pb2.RUN_STATE_TRAINING  # the step finishes first
    assert api.control.pause_requested
    api.control.set_state("paused")  # what the loop does when the step ends
    assert api.stub.StepStatus(trainer_pb2.StepStatusRequest()).run.state == trainer_pb2.RUN_STATE_PAUSED


def test_resume_clears_the_pause_and_wakes_the_loop(api: Api) -> None:
    api.stub.PauseTraining(trainer_pb2.PauseTrainingRequest())
    api.control.set_state("paused")
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(api.control.wait_while_paused(timeout=10)))
    waiter.start()
    time.sleep(0.1)
    resp = api.stub.ResumeTraining(trainer_pb2.ResumeTrainingRequest())
    waiter.join(5)
    assert result == [False]  # woke up, no longer paused
    assert not resp.run.pause_requested and resp.run.state == trainer_pb2.RUN_STATE_IDLE


def test_pause_and_resume_are_idempotent(api: Api) -> None:
    api.stub.PauseTraining(trainer_pb2.PauseTrainingRequest())
    assert api.stub.PauseTraining(trainer_pb2.PauseTrainingRequest()).run.pause_requested
    api.stub.ResumeTraining(trainer_pb2.ResumeTrainingRequest())
    assert not api.stub.ResumeTraining(trainer_pb2.ResumeTrainingRequest()).run.pause_requested


@pytest.mark.parametrize("state", ["draining", "failed", "finished"])
def test_pause_and_resume_do_not_apply_once_the_run_is_over(api: Api, state: str) -> None:
    if state == "failed":
        api.control.fail("CUDA out of memory")
    else:
        api.control.set_state(state)
    for rpc, req in ((api.stub.PauseTraining, trainer_pb2.PauseTrainingRequest()),
                     (api.stub.ResumeTraining, trainer_pb2.ResumeTrainingRequest())):
        with pytest.raises(grpc.RpcError) as e:
            rpc(req)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        [pf] = details(e.value, error_details_pb2.PreconditionFailure)
        assert state in pf.violations[0].description


def test_a_finished_run_refuses_new_prompts_but_answers_a_retry(api: Api) -> None:
    """At training.max_steps the loop leases nothing more: prompts accepted then waited in silence (OK
    answered) for a restart. A retry of a request accepted before is still answered as the first time."""
    first = api.stub.SubmitPrompts(submit(prompt("early"), request_id="r1"))
    api.control.set_state("finished")
    before = api.store.queue_depth()
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(submit(prompt("late-1"), prompt("late-2")))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    [pf] = details(e.value, error_details_pb2.PreconditionFailure)
    assert pf.violations[0].type == "RUN_STATE" and "training.max_steps" in pf.violations[0].description
    assert api.store.queue_depth() == before and not api.store.list_prompts(ids=["late-1", "late-2"], limit=2)
    again = api.stub.SubmitPrompts(submit(prompt("early"), request_id="r1"))
    assert again.duplicate and list(again.accepted_ids) == list(first.accepted_ids)


def test_failed_run_reports_its_error(api: Api) -> None:
    api.control.fail("RuntimeError: loss is NaN")
    run = api.stub.StepStatus(trainer_pb2.StepStatusRequest()).run
    assert run.state == trainer_pb2.RUN_STATE_FAILED and run.error == "RuntimeError: loss is NaN"
    api.control.set_state("idle")  # a loop that has not noticed cannot un-fail the run
    assert api.control.state is RunState.FAILED


# ------------------------------------------------------------------------------------- backends


def test_list_backends_sorted_with_version(api: Api) -> None:
    resp = api.stub.ListRewardBackends(trainer_pb2.ListRewardBackendsRequest())
    assert [b.name for b in resp.backends] == ["code", "math", "rm"]
    assert resp.registry_version == 1
    math = resp.backends[1]
    assert math.source == trainer_pb2.BACKEND_SOURCE_CONFIG and math.circuit == trainer_pb2.CIRCUIT_STATE_CLOSED
    assert list(math.reference_kinds) == [reward_pb2.REFERENCE_KIND_ANSWER]


def test_a_token_file_the_trainer_cannot_read_is_refused_naming_it(api: Api, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, words in ((str(tmp_path / "missing"), "cannot read it on the trainer: No such file or directory"),
                        (str(empty), "is empty")):
        entry = trainer_pb2.RewardBackend(name="judge", address="judge.svc:50051", token_file=path)
        with pytest.raises(grpc.RpcError) as err:
            api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(backend=entry))
        v = violations(err.value)
        assert list(v) == ["backend.token_file"] and words in v["backend.token_file"], v
    assert "judge" not in api.registry.entries  # nothing set


def test_an_unreadable_token_file_is_named_with_the_other_bad_fields(api: Api, tmp_path: Path) -> None:
    """The files were read only once the rest passed: a bad address hid the unreadable token file."""
    entry = trainer_pb2.RewardBackend(name="judge", address="no port", token_file=str(tmp_path / "missing"))
    with pytest.raises(grpc.RpcError) as err:
        api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(backend=entry))
    assert set(violations(err.value)) == {"backend.address", "backend.token_file"}
    assert "judge" not in api.registry.entries


def test_set_backend_adds_and_replaces_and_the_next_submit_can_use_it(api: Api, tmp_path: Path) -> None:
    token = tmp_path / "judge"
    token.write_text("judge-secret\n")
    entry = trainer_pb2.RewardBackend(name="judge", address="judge.svc:50051", timeout_seconds=12, max_batch_size=16,
                                      max_concurrency=2, tls=True, token_file=str(token),
                                      source=trainer_pb2.BACKEND_SOURCE_CONFIG)  # output-only: ignored
    resp = api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(backend=entry))
    assert resp.registry_version == 2 and resp.backend.source == trainer_pb2.BACKEND_SOURCE_API
    b = resp.backend
    assert (b.name, b.address, b.timeout_seconds, b.max_batch_size, b.max_concurrency, b.tls, b.token_file) == (
        "judge", "judge.svc:50051", 12, 16, 2, True, str(token))
    ok = api.stub.SubmitPrompts(submit(prompt("a", rewards=[trainer_pb2.RewardSpec(backend="judge", weight=2)])))
    assert list(ok.accepted_ids) == ["a"]
    moved = entry.__class__(name="judge", address="judge2.svc:50051")
    assert api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(backend=moved)).registry_version == 3
    assert api.registry.entries["judge"].address == "judge2.svc:50051"


def test_delete_backend_then_not_found(api: Api) -> None:
    resp = api.stub.DeleteRewardBackend(trainer_pb2.DeleteRewardBackendRequest(name="rm"))
    assert resp.registry_version == 2
    assert "rm" not in api.registry.entries
    with pytest.raises(grpc.RpcError) as e:
        api.stub.DeleteRewardBackend(trainer_pb2.DeleteRewardBackendRequest(name="rm"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


# -------------------------------------------------------------------------------------- exports


def test_export_with_wait_returns_the_finished_export(api: Api, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    resp = api.stub.ExportCheckpoint(trainer_pb2.ExportCheckpointRequest(destination=str(dest), wait=True))
    e = resp.export
    assert e.state == trainer_pb2.EXPORT_STATE_DONE and e.progress == 1.0 and e.step == 3
    assert e.destination == str(dest)
    [f] = e.files
    assert f.path == "model.safetensors" and f.size_bytes == (dest / "model.safetensors").stat().st_size
    assert len(f.sha256) == 64


def test_export_without_wait_is_pollable(api: Api) -> None:
    api.exporter.gate = threading.Event()
    started = api.stub.ExportCheckpoint(trainer_pb2.ExportCheckpointRequest()).export
    assert started.state in (trainer_pb2.EXPORT_STATE_PENDING, trainer_pb2.EXPORT_STATE_WRITING)
    assert started.destination.endswith("exports/step-000003")
    api.exporter.gate.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = api.stub.GetExport(trainer_pb2.GetExportRequest(export_id=started.export_id)).export
        if got.state == trainer_pb2.EXPORT_STATE_DONE:
            break
        time.sleep(0.05)
    assert got.state == trainer_pb2.EXPORT_STATE_DONE and got.export_id == started.export_id


def test_export_into_a_non_empty_directory_fails_its_precondition(api: Api, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(grpc.RpcError) as e:
        api.stub.ExportCheckpoint(trainer_pb2.ExportCheckpointRequest(destination=str(tmp_path / "full")))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    [pf] = details(e.value, error_details_pb2.PreconditionFailure)
    assert pf.violations[0].subject == str(tmp_path / "full")


def test_export_while_the_model_loads_fails_its_precondition(api: Api) -> None:
    api.exporter.ready = False
    with pytest.raises(grpc.RpcError) as e:
        api.stub.ExportCheckpoint(trainer_pb2.ExportCheckpointRequest())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "loading" in e.value.details()


def test_unknown_export_is_not_found(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as e:
        api.stub.GetExport(trainer_pb2.GetExportRequest(export_id="nope"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    [info] = details(e.value, error_details_pb2.ResourceInfo)
    assert info.resource_type == "export" and info.resource_name == "nope"
