"""Bearer-token auth end to end through the `grpo-server` process with a tokens file (config
`auth.tokens_file`): no or unknown token is UNAUTHENTICATED, a token without the RPC's role is
PERMISSION_DENIED, each role reaches its RPCs, and gRPC health stays open."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from live_trainer import TrainerProcess, config_data, prompts, write_yaml

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_client.client import TrainerError

SUBMIT, READ, ADMIN = "submit-token-1", "read-token-1", "admin-token-1"


def code_of(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(TrainerError) as err:
        call()
    return err.value.code


def test_tokens_and_roles_guard_the_real_trainer(toy_backend, tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    tokens = write_yaml(tmp_path / "tokens.yaml", {"tokens": [
        {"name": "pipeline", "token_sha256": hashlib.sha256(SUBMIT.encode()).hexdigest(), "roles": ["submit", "read"]},
        {"name": "dashboard", "token": READ, "roles": ["read"]},
        {"name": "ops", "token": ADMIN, "roles": ["admin"]},
    ]})
    config = write_yaml(tmp_path / "trainer.yaml", config_data(auth={"tokens_file": str(tokens)}))
    proc = TrainerProcess(config, tmp_path / "store", [("toy", backend.address)], log_path=tmp_path / "trainer.log")
    clients: list[TrainerClient] = []

    def client(token: str | None) -> TrainerClient:
        clients.append(TrainerClient(proc.address, token))
        return clients[-1]

    try:
        proc.wait_ready()  # health answers without a token
        assert proc.health() == health_pb2.HealthCheckResponse.SERVING

        assert code_of(lambda: client(None).step_status()) is grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: client("not-a-token").step_status()) is grpc.StatusCode.UNAUTHENTICATED

        reader, pipeline, ops = client(READ), client(SUBMIT), client(ADMIN)
        assert reader.step_status().run.state in (trainer_pb2.RUN_STATE_IDLE, trainer_pb2.RUN_STATE_TRAINING)
        assert code_of(lambda: reader.submit_prompts(prompts(2))) is grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: pipeline.pause()) is grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: pipeline.set_backend("toy", backend.address)) is grpc.StatusCode.PERMISSION_DENIED

        assert list(pipeline.submit_prompts(prompts(2)).accepted_ids) == ["p0", "p1"]
        for report in pipeline.iter_steps(timeout=120):  # read role: the stream
            assert report.step == 1 and report.state == trainer_pb2.STEP_STATE_COMPLETED
            break
        assert ops.pause().pause_requested  # admin implies every role
        assert not ops.resume().pause_requested
        assert [b.name for b in ops.list_backends().backends] == ["toy"]
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        assert proc.wait(120) == 0
