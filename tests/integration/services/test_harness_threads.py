"""A reward service's handler threads cannot be held by callers without a token: a refused call gives its
thread back at once, even when its request message never comes, and health and reflection run on a pool
of their own, so however many of them a peer keeps open, Score calls with a token are answered and health
checks go on answering too.

The servers here take one Score call at a time (max_concurrency=1): 1 + SPARE_THREADS handler threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from reward_service_kit import (
    REWARD_SERVICE,
    health_status,
    item,
    metric_value,
    reflection_services,
    reward_stub,
    scrape_metrics,
)
from test_harness import EchoScorer

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common.server import OPEN_STREAMS, SPARE_THREADS

HELD = SPARE_THREADS + 8  # more calls than the server has handler threads
SCORE = f"/{REWARD_SERVICE}/Score"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
AUTH = (("authorization", "Bearer token-one"),)


class Withheld:
    """Calls whose request messages are never sent: each sends its headers and then waits. All are
    cancelled at the end."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.release = threading.Event()
        self.calls: list[grpc.Future] = []

    def _never(self) -> Iterator[bytes]:
        self.release.wait(60)
        return
        yield b""

    def unary(self, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.Future:
        # A unary method called as client-streaming: on the wire, headers and then no message.
        fut = self.channel.stream_unary(method).future(self._never(), metadata=metadata, timeout=60)
        self.calls.append(fut)
        return fut

    def stream(self, method: str) -> grpc.Call:
        call = self.channel.stream_stream(method)(self._never(), timeout=60)
        self.calls.append(call)
        return call

    def close(self) -> None:
        self.release.set()
        for c in self.calls:
            c.cancel()


@pytest.fixture
def withheld(serve, channel_to, token_file) -> Iterator[tuple[grpc.Channel, Withheld, int]]:
    """(channel, its withheld calls, the metrics port) of a server with a token file."""
    running = serve(EchoScorer(), token_file=token_file, max_concurrency=1, metrics_listen="127.0.0.1:0")
    ch = channel_to(running.address)
    w = Withheld(ch)
    yield ch, w, running.metrics_port
    w.close()


def _answered(ch: grpc.Channel) -> None:
    resp = reward_stub(ch).Score(reward_pb2.ScoreRequest(items=[item("a", "xyz", answer="1")]), metadata=AUTH, timeout=5)
    assert [r.score for r in resp.results] == [3.0]
    assert health_status(ch) == "SERVING"


def test_refused_calls_whose_request_never_comes_hold_no_handler_thread(withheld) -> None:
    ch, w, metrics_port = withheld
    futures = [w.unary(SCORE) for _ in range(HELD)]
    futures += [w.unary(SCORE, (("authorization", "Bearer wrong"),)) for _ in range(HELD)]
    for fut in futures:
        with pytest.raises(grpc.RpcError) as err:
            fut.result(timeout=10)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    _answered(ch)
    # Each refusal is counted, as before.
    text = scrape_metrics(metrics_port)
    assert metric_value(text, "grpo_reward_requests_total", 'code="UNAUTHENTICATED"') == 2 * HELD


def test_health_checks_whose_request_never_comes_leave_score_answering(withheld) -> None:
    ch, w, _ = withheld
    for _ in range(HELD):
        w.unary("/grpc.health.v1.Health/Check")
        w.unary("/grpc.health.v1.Health/Watch")
    time.sleep(0.5)
    resp = reward_stub(ch).Score(reward_pb2.ScoreRequest(items=[item("a", "xy", answer="1")]), metadata=AUTH, timeout=5)
    assert [r.score for r in resp.results] == [2.0]


def test_open_reflection_streams_leave_score_and_health_answering(withheld) -> None:
    ch, w, _ = withheld
    streams = [w.stream(REFLECTION) for _ in range(HELD)]
    time.sleep(0.5)
    _answered(ch)
    refused = [s for s in streams if s.done()]
    assert len(refused) == HELD - OPEN_STREAMS
    assert all(s.code() is grpc.StatusCode.RESOURCE_EXHAUSTED for s in refused)
    assert f"{OPEN_STREAMS} open reflection streams already" in refused[0].details()
    # Once they end, reflection answers again.
    for s in streams:
        s.cancel()
    deadline = time.monotonic() + 10
    while True:
        try:
            assert REWARD_SERVICE in reflection_services(ch)
            break
        except grpc.RpcError as e:
            assert e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
            time.sleep(0.1)
