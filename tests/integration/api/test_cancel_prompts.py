"""CancelPrompts over a real server and store: queued prompts leave the queue, every other id is answered
with where it is, a bad request is INVALID_ARGUMENT naming the field and cancels nothing (its role, submit:
test_auth.py; 1000 malformed requests: tests/reliability/test_api_fuzz.py). And `grpo cancel`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import pytest
from api_support import Api, prompt, submit, violations

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient, cli

Q, L, T, C = (trainer_pb2.PROMPT_STATE_QUEUED, trainer_pb2.PROMPT_STATE_LEASED, trainer_pb2.PROMPT_STATE_TRAINED,
              trainer_pb2.PROMPT_STATE_CANCELLED)


def cancel(api: Api, *ids: str) -> trainer_pb2.CancelPromptsResponse:
    return api.stub.CancelPrompts(trainer_pb2.CancelPromptsRequest(ids=list(ids)))


@pytest.fixture
def run(api: Api) -> Api:
    """a trained in checkpoint 1, b leased by step 2, c d e queued."""
    api.stub.SubmitPrompts(submit(*(prompt(p) for p in "abcde")))
    api.store.lease(1, 1)
    api.store.commit_checkpoint(1, "/ckpt/1")
    api.store.lease(1, 2)
    return api


def test_queued_prompts_are_cancelled_and_every_other_id_says_where_it_is(run: Api) -> None:
    got = cancel(run, "d", "a", "nope", "b", "c")
    assert list(got.cancelled_ids) == ["d", "c"] and list(got.unknown_ids) == ["nope"] and got.queue_depth == 1
    assert [(p.id, p.state, p.step, p.checkpoint_step) for p in got.not_cancelled] == [("a", T, 1, 1), ("b", L, 2, 0)]

    status = run.stub.StepStatus(trainer_pb2.StepStatusRequest()).run
    assert (status.queue_depth, status.prompts_cancelled, status.prompts_trained) == (1, 2, 1)
    listed = run.stub.ListPrompts(trainer_pb2.ListPromptsRequest(state=C)).prompts
    assert [p.id for p in listed] == ["c", "d"]
    assert [r.id for r in run.store.lease(5, 3, partial_after=0.0)] == ["e"]  # the queue skips them

    again = cancel(run, "c")  # harmless, and says it was cancelled before
    assert list(again.cancelled_ids) == [] and [(p.id, p.state) for p in again.not_cancelled] == [("c", C)]


def test_a_cancelled_id_can_be_submitted_again_under_a_new_request_id(run: Api) -> None:
    run.stub.SubmitPrompts(submit(prompt("x"), request_id="r1"))
    assert list(cancel(run, "x").cancelled_ids) == ["x"]
    # The same request id is a replay: the trainer answers as the first time and queues nothing.
    replay = run.stub.SubmitPrompts(submit(prompt("x"), request_id="r1"))
    assert replay.duplicate and run.store.queue_depth() == 3
    fresh = run.stub.SubmitPrompts(submit(prompt("x"), request_id="r2"))
    assert not fresh.duplicate and list(fresh.accepted_ids) == ["x"] and fresh.queue_depth == 4
    states = [p.state for p in run.stub.ListPrompts(trainer_pb2.ListPromptsRequest(ids=["x"])).prompts]
    assert states == [C, Q]


@pytest.mark.parametrize(("ids", "field"), [
    ([], "ids"),
    ([""], "ids[0]"),
    (["c", "x" * 4097], "ids[1]"),
    (["caf\u00e9"], "ids[0]"),
    (["c", "d", "c"], "ids[2]"),
    ([f"p{i}" for i in range(1001)], "ids"),
])
def test_bad_requests_are_invalid_argument_naming_the_field_and_cancel_nothing(
    run: Api, ids: list[str], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        cancel(run, *ids)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(err.value), violations(err.value)
    assert run.store.queue_depth() == 3


def test_the_python_client_cancels_any_number_of_ids_in_chunks(api: Api) -> None:
    api.stub.SubmitPrompts(submit(*(prompt(f"p{i}") for i in range(5))))
    with TrainerClient(api.target) as client:
        got = client.cancel_all([f"p{i}" for i in range(2500)], chunk=1000)  # 3 requests
    assert list(got.cancelled_ids) == [f"p{i}" for i in range(5)]
    assert list(got.unknown_ids) == [f"p{i}" for i in range(5, 2500)] and got.queue_depth == 0


def grpo(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def test_grpo_cancel_by_id_and_by_prompt_file(run: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = grpo("--target", run.target, "cancel", "c")
    assert code == 0 and out == "cancelled 1 queued prompt; queue depth 2\n", out

    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"id": i, "messages": [{"role": "user", "content": "1+1?"}], "answer": "2"}) + "\n"
                         for i in ("d", "e", "b", "c")))
    code, out = grpo("--target", run.target, "cancel", "--file", str(f), "nope")
    assert code == 1, out  # b is leased by step 2 and nope was never submitted: not everything was cancelled
    # A leased prompt is held by its step until a checkpoint covers it, also after the step has finished:
    # the line must not claim the step is still running.
    assert out.splitlines() == [
        "cancelled 2 queued prompts; queue depth 0",
        "not cancelled: b: leased (held by step 2: in training, or trained and not yet in a checkpoint)",
        "not cancelled: c: cancelled (cancelled before)",
        "unknown: nope (never submitted, or deleted under retention.prompt_rows_seconds)",
    ], out

    code, out = grpo("--json", "--target", run.target, "cancel", "c", "d")
    doc = json.loads(out)
    assert code == 0 and doc["cancelled_ids"] == [] and doc["unknown_ids"] == [], doc
    assert [(p["id"], p["state"]) for p in doc["not_cancelled"]] == [
        ("c", "PROMPT_STATE_CANCELLED"), ("d", "PROMPT_STATE_CANCELLED")], doc

    assert cli.main(["--target", run.target, "cancel"]) == 2
    assert "name the prompts to cancel" in capsys.readouterr().err


def test_a_prompt_stored_under_a_higher_id_limit_stays_addressable(api: Api) -> None:
    """A 300-byte id accepted while limits.max_id_bytes was 512, then the trainer restarted with the default
    256: the prompt is queued and will be trained, so it must still be found and cancellable by its id."""
    from grpo_server.types import ChatMessage, PromptRecord, RewardSpec

    pid = "x" * 300
    api.store.submit([PromptRecord(pid, (ChatMessage("user", "What is 1+1?"),), (RewardSpec("math"),), answer="2")],
                     None, 1000)
    [found] = api.stub.ListPrompts(trainer_pb2.ListPromptsRequest(ids=[pid])).prompts
    assert found.id == pid and found.state == Q
    assert list(cancel(api, pid).cancelled_ids) == [pid]
    with pytest.raises(grpc.RpcError) as e:  # past any limit the store could have held: still refused
        cancel(api, "x" * 4097)
    assert list(violations(e.value)) == ["ids[0]"]
