"""GET /healthz on a reward service's metrics port is its gRPC health in plain HTTP (the chart's probes with
rewards.tls, which kubelet's grpc probes cannot speak): 200 `SERVING` while serving, 503 `NOT_SERVING`
from the start of a drain, while a slow call still finishes. /metrics on the same port is unchanged.
Real servers (the harness and the math verifier), real HTTP requests."""

from __future__ import annotations

import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from reward_service_kit import health_status, item, metric_value, reward_stub

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common import start_server
from grpo_rewards.math_verifier.server import MathConfig, MathVerifierScorer


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, Content-Type, body) of GET http://127.0.0.1:PORT/PATH; an HTTP error status is returned."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status), response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.headers["Content-Type"], err.read().decode()


class GateScorer:
    """Holds each Score call until `release` is set; `entered` is set once one is inside."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(name="gate", version="1", capabilities=reward_pb2.Capabilities(
            max_batch_size=8, reference_kinds=[reward_pb2.REFERENCE_KIND_ANSWER]))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        self.entered.set()
        self.release.wait(30)
        return [reward_pb2.ScoreResult(id=i.id, score=1.0, status=reward_pb2.SCORE_STATUS_OK) for i in items]

    def close(self) -> None:
        pass


def test_healthz_is_200_while_serving_and_metrics_are_served_as_before(serve) -> None:
    running = serve(MathVerifierScorer(MathConfig(workers=1)), metrics_listen="127.0.0.1:0")
    with grpc.insecure_channel(running.address) as ch:
        assert health_status(ch) == "SERVING"
        reward_stub(ch).Score(reward_pb2.ScoreRequest(items=[item("a", "The answer is 2", answer="2")]), timeout=30)
    assert get(running.metrics_port, "/healthz") == (200, "text/plain; charset=utf-8", "SERVING\n")
    status, content_type, text = get(running.metrics_port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=")
    assert metric_value(text, "grpo_reward_requests_total", 'code="OK"') == 1
    if shutil.which("promtool"):
        proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_healthz_is_503_while_draining_with_a_slow_call_in_flight(serve) -> None:
    scorer = GateScorer()
    running = serve(scorer, metrics_listen="127.0.0.1:0")
    port = running.metrics_port
    with grpc.insecure_channel(running.address) as ch, ThreadPoolExecutor(1) as pool:
        assert get(port, "/healthz")[::2] == (200, "SERVING\n")
        slow = pool.submit(reward_stub(ch).Score, reward_pb2.ScoreRequest(items=[item("slow", answer="1")]),
                           timeout=30)
        assert scorer.entered.wait(10)
        stopped = running.stop(10.0, wait=False)
        assert get(port, "/healthz")[::2] == (503, "NOT_SERVING\n")  # from the moment stop() returns
        assert health_status(ch) == "NOT_SERVING"
        assert get(port, "/metrics")[0] == 200  # still scraped during the drain
        assert not stopped.is_set()
        scorer.release.set()
        assert slow.result(10).results[0].status == reward_pb2.SCORE_STATUS_OK  # the slow call finished
    assert stopped.wait(10)
    with pytest.raises(urllib.error.URLError):  # the endpoint is closed once the drain is over
        get(port, "/healthz")


def test_healthz_is_503_between_binding_the_metrics_port_and_serving(monkeypatch) -> None:
    """The metrics endpoint is up before the gRPC server starts: a probe in between must not pass."""
    import grpo_rewards.common.server as harness

    seen: list[tuple[int, str]] = []
    real = harness.serve_health

    def serve_health_then_probe(httpd, serving):  # type: ignore[no-untyped-def]
        real(httpd, serving)
        seen.append(get(int(httpd.server_address[1]), "/healthz")[::2])

    monkeypatch.setattr(harness, "serve_health", serve_health_then_probe)
    running = start_server(GateScorer(), listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    try:
        assert seen == [(503, "NOT_SERVING\n")]
        assert get(running.metrics_port, "/healthz")[::2] == (200, "SERVING\n")
    finally:
        running.stop(5)
