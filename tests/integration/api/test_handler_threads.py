"""The API's handler threads cannot be held by callers without a token: a refused call gives its thread
back at once, even when its request message never comes, and health and reflection run on a pool of
their own, so however many of them a peer keeps open, callers with a token are answered and health
checks go on answering too.

The server in these tests has 8 handler threads (make_api's max_workers)."""

# ruff: noqa: F811  (test_auth's fixtures, imported, are arguments here)
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from api_support import Api
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_auth import bearer, secured, tokens_file  # noqa: F401  (the fixtures)

from grpo.trainer.v1 import trainer_pb2
from grpo_server.api.server import OPEN_STREAMS

HELD = 12  # more calls than the server has handler threads

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


class Withheld:
    """Calls whose request messages are never sent (until release): each sends its headers and then
    waits. Every call is cancelled at the end."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.release = threading.Event()
        self.calls: list[grpc.Future] = []
        self.streams: list[grpc.Call] = []

    def _never(self) -> Iterator[bytes]:
        self.release.wait(60)
        return
        yield b""  # a generator that yields nothing

    def unary(self, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.Future:
        # A unary method called as client-streaming: on the wire, headers and then no message.
        call = self.channel.stream_unary(method)  # bytes in, bytes out
        fut = call.future(self._never(), metadata=metadata, timeout=60)
        self.calls.append(fut)
        return fut

    def stream(self, method: str) -> grpc.Call:
        call = self.channel.stream_stream(method)(self._never(), timeout=60)
        self.streams.append(call)
        return call

    def close(self) -> None:
        self.release.set()
        for c in self.calls + self.streams:
            c.cancel()


@pytest.fixture
def withheld(secured: Api) -> Iterator[Withheld]:
    w = Withheld(secured.channel)
    yield w
    w.close()


def _answered(api: Api) -> None:
    """A caller with a token is answered, and so is a health check."""
    run = api.stub.StepStatus(trainer_pb2.StepStatusRequest(), metadata=bearer("reader"), timeout=5).run
    assert run.limits.max_queue_depth > 0
    health = health_pb2_grpc.HealthStub(api.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_refused_calls_whose_request_never_comes_hold_no_handler_thread(secured: Api, withheld: Withheld) -> None:
    futures = [withheld.unary("/grpo.trainer.v1.TrainerService/StepStatus") for _ in range(HELD)]
    futures += [withheld.unary("/grpo.trainer.v1.TrainerService/SubmitPrompts",
                               (("authorization", "Bearer not-a-token"),)) for _ in range(HELD)]
    # Each is refused at once, without waiting for its message.
    for fut in futures:
        with pytest.raises(grpc.RpcError) as err:
            fut.result(timeout=10)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    _answered(secured)


def test_a_call_with_a_token_but_no_role_is_refused_without_waiting_for_its_message(secured: Api, withheld: Withheld) -> None:
    fut = withheld.unary("/grpo.trainer.v1.TrainerService/SubmitPrompts", tuple(bearer("reader")))
    with pytest.raises(grpc.RpcError) as err:
        fut.result(timeout=10)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_health_checks_whose_request_never_comes_leave_the_api_answering(secured: Api, withheld: Withheld) -> None:
    for _ in range(HELD):
        withheld.unary("/grpc.health.v1.Health/Check")
        withheld.unary("/grpc.health.v1.Health/Watch")
    time.sleep(0.5)  # let the server take them
    run = secured.stub.StepStatus(trainer_pb2.StepStatusRequest(), metadata=bearer("reader"), timeout=5).run
    assert run.limits.max_queue_depth > 0


def test_open_reflection_streams_leave_the_api_and_health_answering(secured: Api, withheld: Withheld) -> None:
    streams = [withheld.stream(REFLECTION) for _ in range(HELD)]
    time.sleep(0.5)
    _answered(secured)
    # Those past the cap on open streams were refused at once; the others are still open.
    refused = [s for s in streams if s.done()]
    assert len(refused) == HELD - OPEN_STREAMS
    assert all(s.code() is grpc.StatusCode.RESOURCE_EXHAUSTED for s in refused)
    assert f"{OPEN_STREAMS} open reflection streams already" in refused[0].details()


def test_health_watchers_hold_no_thread_and_hear_every_change(secured: Api) -> None:
    health = health_pb2_grpc.HealthStub(secured.channel)
    watches = [health.Watch(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(3 * HELD)]
    try:
        assert {next(w).status for w in watches} == {health_pb2.HealthCheckResponse.NOT_SERVING}
        _answered(secured)
        secured.health.set_serving(True)
        assert {next(w).status for w in watches} == {health_pb2.HealthCheckResponse.SERVING}
    finally:
        for w in watches:
            w.cancel()


def test_a_reflection_stream_that_ends_gives_its_place_back(secured: Api) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    w = Withheld(secured.channel)
    try:
        held = [w.stream(REFLECTION) for _ in range(OPEN_STREAMS)]
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as err:
            ProtoReflectionDescriptorDatabase(secured.channel).get_services()
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        for s in held:
            s.cancel()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert "grpo.trainer.v1.TrainerService" in ProtoReflectionDescriptorDatabase(secured.channel).get_services()
                break
            except grpc.RpcError as e:
                assert e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        w.close()


def test_without_auth_open_streams_leave_the_api_answering(make_api) -> None:
    api = make_api()
    w = Withheld(api.channel)
    try:
        for _ in range(HELD):
            w.stream(REFLECTION)
            w.unary("/grpc.health.v1.Health/Check")
        time.sleep(0.5)
        assert api.stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=5).run.limits.max_queue_depth > 0
    finally:
        w.close()


def test_a_health_watch_keeps_nothing_of_its_service_name_once_it_ends(secured: Api) -> None:
    """grpc_health's servicer kept every name a Watch had asked about, with no token needed: 40 watches of
    new 4 MiB names held 160 MB for good. A known name still hears every change."""
    health = health_pb2_grpc.HealthStub(secured.channel)
    servicer = secured.health.servicer
    unknown = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    for name in ("x" * (4 << 20), "never-heard-of"):  # over the length limit, and a short unknown name
        watches = [health.Watch(health_pb2.HealthCheckRequest(service=f"{i}{name}"), timeout=60) for i in range(5)]
        assert {next(w).status for w in watches} == {unknown}
        for w in watches:
            w.cancel()
    known = health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
    try:
        assert next(known).status == health_pb2.HealthCheckResponse.NOT_SERVING
        deadline = time.monotonic() + 10
        while set(servicer._send_response_callbacks) - {""} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(servicer._send_response_callbacks) == {""}  # the one open watch's name alone
        assert set(servicer._server_status) == {"", "grpo.trainer.v1.TrainerService"}
        secured.health.set_serving(True)
        assert next(known).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        known.cancel()


def test_health_watches_started_and_cancelled_by_the_thousand_leave_the_api_answering(secured: Api) -> None:
    """grpc_health sent a Watch's first response holding its lock, and the callback of a Watch that ended
    took that lock on gRPC's polling thread, the thread the send waited for: one peer without a token
    starting and cancelling Watch streams could deadlock the server. Every ended stream is forgotten."""
    import contextlib

    stop = threading.Event()
    counts = [0] * 4

    def churn(k: int) -> None:
        stub = health_pb2_grpc.HealthStub(secured.channel)
        while not stop.is_set():
            call = stub.Watch(health_pb2.HealthCheckRequest(service=f"{k}-{counts[k]}"), timeout=5)
            with contextlib.suppress(grpc.RpcError):
                next(call)
            call.cancel()
            counts[k] += 1

    workers = [threading.Thread(target=churn, args=(k,), daemon=True) for k in range(4)]
    for w in workers:
        w.start()
    time.sleep(8)
    stop.set()
    for w in workers:
        w.join(10)
    assert sum(counts) > 100, counts
    _answered(secured)
    servicer = secured.health.servicer
    deadline = time.monotonic() + 5
    while servicer._send_response_callbacks and time.monotonic() < deadline:
        time.sleep(0.1)
    assert servicer._send_response_callbacks == {}
    secured.health.shutdown()  # the drain's NOT_SERVING, under the servicer's lock
    assert health_pb2_grpc.HealthStub(secured.channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
        health_pb2.HealthCheckResponse.NOT_SERVING
