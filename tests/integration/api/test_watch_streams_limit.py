"""WatchSteps streams are capped (`limits.max_watch_streams`): each open stream holds one of the server's
handler threads, so without a cap a few watchers left open could take every thread and the other RPCs,
health checks included, would wait for ever. One stream over the cap is RESOURCE_EXHAUSTED with a retry
delay; the other RPCs keep being answered; a closed stream frees its place; `follow_steps` waits and
tries again rather than failing."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from api_support import Api

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.api.settings import ApiLimits
from grpo_server.config import ConfigError, parse_config
from grpo_server.types import StepReport, StepState


def open_stream(api: Api) -> grpc.Future:
    """A WatchSteps stream the server has admitted (its headers arrived)."""
    call = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest())
    call.initial_metadata()  # blocks until the server sent its headers: the stream holds its thread now
    return call


def test_a_stream_over_the_cap_is_resource_exhausted_and_the_other_rpcs_still_answer(make_api) -> None:
    api: Api = make_api(limits=ApiLimits(max_watch_streams=2))
    first, second = open_stream(api), open_stream(api)
    with pytest.raises(grpc.RpcError) as err:
        next(api.stub.WatchSteps(trainer_pb2.WatchStepsRequest()))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "2 WatchSteps streams are open" in err.value.details() and "limits.max_watch_streams" in err.value.details()
    assert api.stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=5).run.queue_depth == 0

    first.cancel()
    deadline = time.monotonic() + 10
    while True:  # the server notices the cancelled stream within its poll interval and frees the place
        try:
            third = open_stream(api)
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline, e
            time.sleep(0.2)
    second.cancel()
    third.cancel()


def test_a_stream_whose_client_hangs_up_frees_its_place_at_once(make_api) -> None:
    # A client that hangs up and watches again at once (the load test's clients) must find its place
    # free: it used to be held until the stream's next poll (WATCH_POLL_SECONDS, 1 s), so 50 such clients
    # went over a cap of 48.
    api: Api = make_api(limits=ApiLimits(max_watch_streams=1))
    for _ in range(5):
        first = open_stream(api)
        time.sleep(0.1)  # the stream is waiting for a step now
        first.cancel()
        time.sleep(0.2)
        again = open_stream(api)
        time.sleep(0.1)
        # Refused (RESOURCE_EXHAUSTED, the call over) while the cancelled stream still held the place.
        assert not again.done(), f"{again.code()}: {again.details()}"
        again.cancel()
        time.sleep(0.2)


def test_follow_steps_waits_for_a_place_instead_of_failing(make_api) -> None:
    api: Api = make_api(limits=ApiLimits(max_watch_streams=1))
    holder = open_stream(api)
    reasons: list[str] = []
    got: list[trainer_pb2.WatchStepsResponse] = []
    client = TrainerClient(api.target)

    def follow() -> None:
        for response in client.follow_steps(retry_seconds=0.1, on_reconnect=reasons.append):
            got.append(response)
            return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not reasons and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reasons and "no room for another stream" in reasons[0], reasons
    report = StepReport(1, StepState.COMPLETED, time.time(), time.time(), {"reward_mean": 0.5}, "hf", ("a",))
    api.store.record_step(report)
    holder.cancel()  # a place frees up: the follower gets in and reads the step from the backlog
    t.join(20)
    client.close()
    assert got and got[0].step.step == 1


def test_the_cap_must_leave_handler_threads_for_the_other_rpcs() -> None:
    with pytest.raises(ConfigError, match=r"limits.max_watch_streams \(16\) must be less than server.max_workers \(16\)"):
        parse_config({"server": {"max_workers": 16}, "limits": {"max_watch_streams": 16}})
    assert parse_config({}).limits.max_watch_streams < parse_config({}).server.max_workers
