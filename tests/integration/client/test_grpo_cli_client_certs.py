"""The `grpo` CLI and TrainerClient against a trainer API that requires a client certificate (mTLS), and
one whose certificate does not name the address dialled (--server-name)."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
from pathlib import Path

import grpc
import pytest
from trainer_api import TrainerApi

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient, TrainerError
from grpo_client.cli import main
from grpo_client.tlscheck import client_certificate_refusal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
from reward_service_kit import TLSFiles, make_tls_files  # noqa: E402


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `grpo` in process; returns (exit code, stdout, stderr)."""
    out = io.StringIO()
    capsys.readouterr()
    code = main(list(argv), out=out)
    return code, out.getvalue(), capsys.readouterr().err


@pytest.fixture
def mtls(make_api, tmp_path: Path) -> tuple[TrainerApi, TLSFiles]:
    """A trainer API serving TLS that requires a client certificate signed by its CA."""
    (tmp_path / "pki-mtls").mkdir()
    pki = make_tls_files(tmp_path / "pki-mtls")
    api = make_api(tls=(str(pki.server_cert), str(pki.server_key), str(pki.ca_cert)))
    return api, pki


@pytest.fixture
def renamed(make_api, tmp_path: Path) -> tuple[TrainerApi, TLSFiles]:
    """A trainer API serving TLS with a certificate for grpo-trainer.test only (not 127.0.0.1)."""
    (tmp_path / "pki-renamed").mkdir()
    pki = make_tls_files(tmp_path / "pki-renamed", server_names=("grpo-trainer.test",))
    api = make_api(tls=(str(pki.server_cert), str(pki.server_key), None))
    return api, pki


def test_the_cli_presents_a_client_certificate_to_a_trainer_that_requires_one(mtls, capsys) -> None:
    api, pki = mtls
    tls = ["--target", api.target, "--ca", str(pki.ca_cert)]
    code, out, err = cli(capsys, *tls, "--cert", str(pki.client_cert), "--key", str(pki.client_key), "--json", "status")
    assert code == 0, err
    assert json.loads(out)["run"]["state"] == "RUN_STATE_IDLE"
    code, out, _ = cli(capsys, *tls, "--timeout", "5", "--json", "status")  # no certificate: refused
    assert code == 1 and json.loads(out)["error"]["code"] == "UNAVAILABLE", out


def test_the_sdk_presents_a_client_certificate(mtls) -> None:
    api, pki = mtls
    with TrainerClient(api.target, ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key) as client:
        assert client.step_status().run.state == trainer_pb2.RUN_STATE_IDLE
    with TrainerClient(api.target, ca=pki.ca_cert, timeout=5) as client, pytest.raises(TrainerError) as err:
        client.step_status()
    assert err.value.code is grpc.StatusCode.UNAVAILABLE


def test_server_name_checks_the_certificate_against_another_name(renamed, capsys) -> None:
    api, pki = renamed
    tls = ["--target", api.target, "--ca", str(pki.ca_cert), "--timeout", "5", "--json"]
    code, out, _ = cli(capsys, *tls, "status")  # the certificate does not name 127.0.0.1
    assert code == 1 and json.loads(out)["error"]["code"] == "UNAVAILABLE", out
    code, out, err = cli(capsys, *tls, "--server-name", "grpo-trainer.test", "status")
    assert code == 0 and json.loads(out)["run"]["state"] == "RUN_STATE_IDLE", (out, err)
    code, out, _ = cli(capsys, *tls, "--server-name", "other.test", "status")  # still checked, against it
    assert code == 1 and json.loads(out)["error"]["code"] == "UNAVAILABLE", out
    with TrainerClient(api.target, ca=pki.ca_cert, server_name="grpo-trainer.test") as client:
        assert client.step_status().run.state == trainer_pb2.RUN_STATE_IDLE


def test_a_trainer_certificate_that_fails_verification_is_not_retried(renamed, tmp_path: Path, capsys) -> None:
    """A certificate not named for the address dialled (the usual port-forward mistake: --ca without
    --server-name), or not signed by the CA given, was retried as a trainer that is down: `submit` four
    times over 15 s, `watch --follow` for ten minutes."""
    api, pki = renamed
    (tmp_path / "other").mkdir()
    other_ca = make_tls_files(tmp_path / "other").ca_cert
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p1", "messages": [{"role": "user", "content": "1+1?"}], "answer": "2"}\n')
    for tls in (["--ca", str(pki.ca_cert)], ["--ca", str(other_ca), "--server-name", "grpo-trainer.test"]):
        base = ["--target", api.target, *tls, "--json"]
        code, out, err = cli(capsys, *base, "submit", str(prompts))
        error = json.loads(out)["error"]
        assert code == 1 and error["code"] == "UNAVAILABLE" and "sending it again" not in err, (out, err)
        assert error["submission"]["refused_batch_queued"] is False
        assert "The trainer's certificate could not be verified: with the CA that signed it (--ca) and a name it " \
               "holds (--server-name), run the same command again" in error["submission"]["progress"]
        code, out, err = cli(capsys, *base, "watch", "--follow", "--max-steps", "1")
        assert code == 1 and "reconnecting" not in err, (out, err)
        with TrainerClient(api.target, ca=tls[1], server_name=(tls[3] if len(tls) > 2 else None), timeout=5) as client, \
                pytest.raises(TrainerError) as raised:
            client.step_status()
        assert raised.value.server_certificate_unverified and raised.value.tls_refused, raised.value


def test_cert_and_key_go_together_and_bad_files_are_named_before_any_call(mtls, tmp_path: Path, capsys) -> None:
    api, pki = mtls
    base = ["--target", api.target, "--ca", str(pki.ca_cert)]
    code, _, err = cli(capsys, *base, "--cert", str(pki.client_cert), "status")
    assert code == 2 and "error: --cert needs --key: a client certificate and its private key go together" in err, err
    code, _, err = cli(capsys, *base, "--key", str(pki.client_key), "status")
    assert code == 2 and "error: --key needs --cert" in err, err
    code, _, err = cli(capsys, *base, "--cert", str(pki.client_key), "--key", str(pki.client_key), "status")
    assert code == 2 and f"error: --cert {pki.client_key}: no PEM certificate in it" in err, err
    code, _, err = cli(capsys, *base, "--cert", str(pki.client_cert), "--key", str(pki.client_cert), "status")
    assert code == 2 and f"error: --key {pki.client_cert}: no unencrypted private key in it" in err, err
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    code, _, err = cli(capsys, *base, "--cert", str(pki.client_cert), "--key", str(encrypted), "status")
    assert code == 2 and f"error: --key {encrypted}: no unencrypted private key in it" in err, err
    missing = tmp_path / "nope.pem"
    code, out, _ = cli(capsys, *base, "--cert", str(missing), "--key", str(pki.client_key), "--json", "status")
    assert code == 1 and json.loads(out)["error"] == {
        "code": "LOCAL", "message": f"--cert: cannot read {missing}: No such file or directory"}, out
    assert "ssl_transport_security" not in err  # gRPC's own log lines: it never got that far
    with pytest.raises(ValueError, match="cert and key go together"):
        TrainerClient(api.target, cert=pki.client_cert)


def test_a_key_that_is_not_the_certificates_is_refused_before_any_call(mtls, capsys) -> None:
    # gRPC took the pair and failed every handshake (UNAVAILABLE after the timeout), logging SSL errors.
    api, pki = mtls
    base = ["--target", api.target, "--ca", str(pki.ca_cert), "--timeout", "5"]
    code, _, err = cli(capsys, *base, "--cert", str(pki.client_cert), "--key", str(pki.server_key), "status")
    assert code == 2, err
    assert (f"error: --cert {pki.client_cert}, --key {pki.server_key}: not a certificate and its private key: "
            "KEY_VALUES_MISMATCH") in err, err
    assert "ssl_transport_security" not in err
    with pytest.raises(ValueError, match=f"cert {pki.client_cert}, key {pki.server_key}: not a certificate and its "
                                         "private key: KEY_VALUES_MISMATCH"):
        TrainerClient(api.target, ca=pki.ca_cert, cert=pki.client_cert, key=pki.server_key)


def test_a_refused_client_certificate_is_named_and_not_retried(mtls, tmp_path: Path, capsys) -> None:
    """A TLS 1.3 trainer (gRPC core) refuses a missing or untrusted client certificate by closing the
    connection after the handshake, and gRPC said only "Socket closed": the message now says what was
    refused, and `submit`, which waits for a trainer that is down, gives up at once."""
    api, pki = mtls
    (tmp_path / "stranger").mkdir()
    stranger = make_tls_files(tmp_path / "stranger")  # a client certificate of a CA the trainer does not trust
    base = ["--target", api.target, "--ca", str(pki.ca_cert), "--json"]
    for cert, why in (
        ([], "it requires a client certificate and none was given"),
        (["--cert", str(stranger.client_cert), "--key", str(stranger.client_key)],
         f"it did not accept the client certificate {stranger.client_cert} (is it signed by a CA the trainer "
         "trusts for clients?)"),
    ):
        code, out, _ = cli(capsys, *base, *cert, "status")
        error = json.loads(out)["error"]
        assert code == 1 and error["code"] == "UNAVAILABLE", out
        assert error["message"].endswith(
            f"Socket closed (the trainer closed the connection right after the TLS 1.3 handshake: {why})"), error
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p1", "messages": [{"role": "user", "content": "1+1?"}], "answer": "2"}\n')
    code, out, err = cli(capsys, *base, "submit", str(prompts))
    error = json.loads(out)["error"]
    assert code == 1 and "none was given" in error["message"], out
    assert "retry" not in err, err  # refused at once, not waited on as a trainer that is down
    assert error["submission"]["refused_batch_queued"] is False  # no request was sent: the connection closed first
    assert error["submission"]["progress"] == (
        "Batch 1 was not queued. Nothing was accepted before it. The trainer refused the client certificate: with "
        "one it accepts (--cert, --key), run the same command again (same batch size and request id): the trainer "
        "answers the batches it already accepted as duplicates, by their request ids, and queues nothing twice.")
    with TrainerClient(api.target, ca=pki.ca_cert, timeout=5) as client, pytest.raises(TrainerError) as raised:
        client.step_status()
    assert raised.value.client_certificate_refused and "none was given" in raised.value.message, raised.value
    with TrainerClient(api.target, ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key) as client:
        assert client.step_status().run.state == trainer_pb2.RUN_STATE_IDLE
    assert client_certificate_refusal(api.target, ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key,
                                      server_name=None) is None  # accepted: the trainer answers


def test_a_trainer_that_is_down_is_not_called_a_certificate_refusal(tmp_path: Path) -> None:
    """Only a connection closed after the handshake is a refusal: nothing listening, a server that is no
    TLS server and a target that is no HOST:PORT are not."""
    (tmp_path / "pki").mkdir()
    pki = make_tls_files(tmp_path / "pki")
    files = {"ca": pki.ca_cert, "cert": None, "key": None, "server_name": None}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert client_certificate_refusal(f"127.0.0.1:{free}", **files) is None
    with socket.socket() as listener:  # accepts, reads the ClientHello and closes: no TLS server
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            conn.recv(4096)
            conn.close()

        threading.Thread(target=serve, daemon=True).start()
        assert client_certificate_refusal(f"127.0.0.1:{listener.getsockname()[1]}", **files) is None
    assert client_certificate_refusal("unix:/tmp/trainer.sock", **files) is None
