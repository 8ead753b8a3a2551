"""A reward backend that requires client certificates (mTLS), added to a running trainer through
SetRewardBackend with its CA, certificate and key files: the trainer trains on its scores. Files it cannot
read, or TLS files without `tls`, are refused naming the field, and nothing is set. The real math
verifier served with TLS by the real harness; the real trainer (TrainerApp) on the tiny model."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from live_trainer import prompts, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from reward_service_kit import TLSFiles, make_tls_files  # noqa: E402

from grpo.trainer.v1 import trainer_pb2  # noqa: E402
from grpo_client import TrainerClient, TrainerError  # noqa: E402
from grpo_rewards.common.server import TLSConfig, start_server  # noqa: E402
from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer  # noqa: E402


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("mtls"))


@pytest.fixture
def mtls_math(tls_files: TLSFiles) -> Iterator[str]:
    tls = TLSConfig(tls_files.server_cert, tls_files.server_key, client_ca_file=tls_files.ca_cert)
    server = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0", tls=tls)
    yield server.address
    server.stop(5)


def test_an_mtls_backend_set_through_the_api_scores_the_steps(start_trainer, mtls_math: str, tls_files: TLSFiles,
                                                              tmp_path: Path) -> None:
    app = start_trainer(tmp_path / "store", rewards={"default": [{"backend": "secure"}]})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    files = {"ca_file": str(tls_files.ca_cert), "cert_file": str(tls_files.client_cert),
             "key_file": str(tls_files.client_key)}
    stored = client.set_backend("secure", mtls_math, tls=True, **files).backend
    assert (stored.ca_file, stored.cert_file, stored.key_file) == (files["ca_file"], files["cert_file"],
                                                                   files["key_file"])
    client.submit_prompts(prompts(2))
    report = wait_for(lambda: (r := client.step_status()).step.state == trainer_pb2.STEP_STATE_COMPLETED and r or None,
                      180, "no step completed")
    assert report.step.metrics.masked_reward_failures == 0  # every completion was scored over mTLS
    assert report.step.metrics.completions == 8


@pytest.mark.parametrize(("fields", "tls", "field", "words"), [
    ({"ca_file": "/nonexistent/ca.crt"}, True, "backend.ca_file", "cannot read it on the trainer: No such file"),
    ({"cert_file": "/nonexistent/tls.crt", "key_file": "KEY"}, True, "backend.cert_file",
     "cannot read it on the trainer: No such file"),
    ({"ca_file": "CA"}, False, "backend.ca_file", "is a TLS setting: set tls: true as well"),
    ({"cert_file": "CERT"}, True, "backend.key_file", "cert_file and key_file go together"),
])
def test_tls_files_it_cannot_use_are_refused_naming_the_field(start_trainer, tls_files: TLSFiles, tmp_path: Path,
                                                              fields: dict[str, str], tls: bool, field: str,
                                                              words: str) -> None:
    app = start_trainer(tmp_path / "store")
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    real = {"CA": str(tls_files.ca_cert), "CERT": str(tls_files.client_cert), "KEY": str(tls_files.client_key)}
    given = {k: real.get(v, v) for k, v in fields.items()}
    with pytest.raises(TrainerError) as err:
        client.set_backend("secure", "127.0.0.1:50099", tls=tls, **given)
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    found = {v.field: v.description for v in err.value.field_violations}
    assert field in found and words in found[field], found
    assert "secure" not in {b.name for b in client.list_backends().backends}  # nothing set
