"""The trainer's API (TrainerApp with server.tls_cert / tls_key / tls_client_ca) serves a renewed
certificate and a rotated client CA without a restart, when the files are swapped the way kubelet
updates a mounted Secret. A pair that cannot be served (a key that is not the certificate's) is logged
and skipped: the previous certificate stays in use and the API stays up."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from reward_service_kit import TLSFiles, make_tls_files  # noqa: E402
from tls_rotation import PROBE_OPTIONS, SecretMount, credentials, eventually, stays  # noqa: E402


def answers(port: int, creds: grpc.ChannelCredentials) -> bool:
    """Whether a new connection with `creds` gets a health check answered (False: the handshake failed)."""
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=PROBE_OPTIONS) as ch:
        try:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            return False
    return True


@pytest.fixture
def two_cas(tmp_path: Path) -> tuple[TLSFiles, TLSFiles]:
    """Certificates of two throwaway CAs: a client trusting only one refuses the other's server."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    return make_tls_files(tmp_path / "a"), make_tls_files(tmp_path / "b")


def test_a_renewed_api_certificate_is_served_to_new_connections_and_a_bad_pair_is_not(
        start_trainer, tmp_path, two_cas, caplog) -> None:
    a, b = two_cas
    mount = SecretMount(tmp_path / "tls", a)
    app = start_trainer(tmp_path / "store", server={
        "tls_cert": str(mount.path("server.pem")), "tls_key": str(mount.path("server-key.pem"))})
    port = app.api_port
    opened = grpc.secure_channel(f"127.0.0.1:{port}", credentials(a), options=PROBE_OPTIONS)
    try:
        assert answers(port, credentials(a)) and not answers(port, credentials(b))
        health_pb2_grpc.HealthStub(opened).Check(health_pb2.HealthCheckRequest(), timeout=5)

        with caplog.at_level(logging.WARNING, logger="grpo_server.api.auth"):
            mount.swap(b, **{"server-key.pem": a.server_key.read_bytes()})  # B's certificate with A's key
            stays(lambda: answers(port, credentials(a)) and not answers(port, credentials(b)))
        assert any("not a PEM private key of the certificate" in r.getMessage() and "server-key.pem" in r.getMessage()
                   for r in caplog.records)

        mount.swap(b)
        assert eventually(lambda: answers(port, credentials(b))) < 4
        assert not answers(port, credentials(a))
        # The connection made before the renewal keeps the session it negotiated.
        health_pb2_grpc.HealthStub(opened).Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        opened.close()


def test_a_rotated_client_ca_is_required_of_new_connections(start_trainer, tmp_path, two_cas) -> None:
    a, b = two_cas
    mount = SecretMount(tmp_path / "tls", a)
    app = start_trainer(tmp_path / "store", server={
        "tls_cert": str(mount.path("server.pem")), "tls_key": str(mount.path("server-key.pem")),
        "tls_client_ca": str(mount.path("ca.pem"))})
    port = app.api_port
    assert answers(port, credentials(a, client=a)) and not answers(port, credentials(a, client=b))

    mount.swap(a, **{"ca.pem": b.ca_cert.read_bytes()})  # the same server certificate, B's client CA
    eventually(lambda: answers(port, credentials(a, client=b)))
    assert not answers(port, credentials(a, client=a))
    assert not answers(port, credentials(a))  # still mTLS: no client certificate, no call


def test_a_certificate_with_a_1024_bit_rsa_key_that_grpc_serves_is_not_refused_at_start(start_trainer,
                                                                                         tmp_path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    app = start_trainer(tmp_path / "store", server={"tls_cert": str(tmp_path / "tls.crt"),
                                                    "tls_key": str(tmp_path / "tls.key")})
    assert answers(app.api_port, grpc.ssl_channel_credentials(cert))


def test_a_renewal_that_brings_an_expired_certificate_keeps_the_previous_one(start_trainer, tmp_path, two_cas,
                                                                             caplog) -> None:
    import datetime

    a, _ = two_cas
    (tmp_path / "expired").mkdir()
    expired = make_tls_files(tmp_path / "expired", server_valid=(-datetime.timedelta(days=3), -datetime.timedelta(days=1)))
    mount = SecretMount(tmp_path / "tls", a)
    app = start_trainer(tmp_path / "store", server={
        "tls_cert": str(mount.path("server.pem")), "tls_key": str(mount.path("server-key.pem"))})
    with caplog.at_level(logging.WARNING, logger="grpo_server.api.auth"):
        mount.swap(expired)
        stays(lambda: answers(app.api_port, credentials(a)))
    assert any("the certificate expired at" in r.getMessage() and "server.pem" in r.getMessage() for r in caplog.records)
