"""A reward backend with several replicas: the trainer spreads its calls over every address the
backend's name resolves to, and the reward services close connections after --max-connection-age so
that a client resolves the name again and reaches replicas added later.

Real math verifiers on loopback. A Kubernetes headless Service resolves to one address per ready pod;
gRPC's `ipv4:` target with two addresses stands in for that DNS answer here (the resolution itself,
on a cluster, is not tested here).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from grpo.reward.v1 import reward_pb2
from grpo_server.rewards.client import ChannelPool
from grpo_server.rewards.registry import BackendEntry


def _start(**kwargs: object) -> object:
    from grpo_rewards.common.server import start_server
    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    return start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0", **kwargs)


def _ok_calls(server: object) -> float:
    value = server.servicer.metrics.registry.get_sample_value(  # type: ignore[attr-defined]
        "grpo_reward_requests_total", {"code": "OK"})
    return float(value or 0.0)


def _request(n: int) -> reward_pb2.ScoreRequest:
    return reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(id=f"i{n}", completion="The answer is 4", answer="4")])


@pytest.fixture
def replicas() -> Iterator[list[object]]:
    servers = [_start(), _start()]
    yield servers
    for s in servers:
        s.stop(grace=1.0)  # type: ignore[attr-defined]


def test_calls_to_one_backend_are_spread_over_its_replicas(replicas: list[object]) -> None:
    address = "ipv4:" + ",".join(f"127.0.0.1:{s.port}" for s in replicas)  # type: ignore[attr-defined]
    pool = ChannelPool()
    try:
        stub = pool.stub(BackendEntry("math", address))
        for n in range(20):
            resp = stub.Score(_request(n), timeout=30, wait_for_ready=True)
            assert resp.results[0].score == 1.0
    finally:
        pool.close()
    calls = [_ok_calls(s) for s in replicas]
    assert sum(calls) == 20
    # gRPC's default policy (pick_first) sent all 20 to the first address.
    assert min(calls) >= 5, f"calls per replica: {calls}"


def test_a_reward_service_closes_client_connections_after_max_connection_age() -> None:
    server = _start(max_connection_age=1.0)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")  # type: ignore[attr-defined]
    states: list[grpc.ChannelConnectivity] = []
    went_idle = threading.Event()

    def on_change(state: grpc.ChannelConnectivity) -> None:
        states.append(state)
        if state is grpc.ChannelConnectivity.IDLE and grpc.ChannelConnectivity.READY in states:
            went_idle.set()

    try:
        from grpo.reward.v1 import reward_pb2_grpc

        reward_pb2_grpc.RewardServiceStub(channel).Score(_request(0), timeout=30)
        channel.subscribe(on_change, try_to_connect=False)
        # The server sends GOAWAY about a second after the connection opened (gRPC adds +-10% jitter):
        # the channel leaves READY, and its next call connects again (resolving the name again).
        assert went_idle.wait(10), f"the connection was not closed: states {states}"
        resp = reward_pb2_grpc.RewardServiceStub(channel).Score(_request(1), timeout=30)
        assert resp.results[0].score == 1.0
    finally:
        channel.close()
        server.stop(grace=1.0)  # type: ignore[attr-defined]


def test_without_max_connection_age_the_connection_stays_open() -> None:
    server = _start(max_connection_age=0.0)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")  # type: ignore[attr-defined]
    states: list[grpc.ChannelConnectivity] = []
    try:
        from grpo.reward.v1 import reward_pb2_grpc

        reward_pb2_grpc.RewardServiceStub(channel).Score(_request(0), timeout=30)
        channel.subscribe(states.append, try_to_connect=False)
        threading.Event().wait(3.0)
        assert grpc.ChannelConnectivity.IDLE not in states, states
    finally:
        channel.close()
        server.stop(grace=1.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "soon"])
def test_max_connection_age_flag_refuses_bad_values(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from grpo_rewards.common.server import base_arg_parser

    with pytest.raises(SystemExit) as exc:
        base_arg_parser("svc", "test").parse_args(["--max-connection-age", value])
    assert exc.value.code == 2
    assert "--max-connection-age" in capsys.readouterr().err


def test_max_connection_age_flag_default_and_off() -> None:
    from grpo_rewards.common.server import DEFAULT_MAX_CONNECTION_AGE_SECONDS, base_arg_parser

    assert base_arg_parser("svc", "test").parse_args([]).max_connection_age == DEFAULT_MAX_CONNECTION_AGE_SECONDS
    assert base_arg_parser("svc", "test").parse_args(["--max-connection-age", "0"]).max_connection_age == 0.0
