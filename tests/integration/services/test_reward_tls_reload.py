"""A reward service serves a renewed TLS certificate without a restart: the files are swapped the way
kubelet updates a mounted Secret (new files in a new directory, then the `..data` symlink renamed over)
or rewritten in place. New connections get the new certificate within a couple of seconds, open ones
keep theirs, and a pair that cannot be served (a key that is not the certificate's, a missing or
truncated file) is skipped: the previous certificate stays in use and the server stays up."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from reward_service_kit import EntryPoint, TLSFiles, health_status, item, make_tls_files, reward_stub
from tls_rotation import PROBE_OPTIONS, SecretMount, credentials, eventually, stays

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common import TLSConfig


class OneScorer:
    """Scores every item 1.0."""

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(name="one", version="0.0.1", capabilities=reward_pb2.Capabilities(
            max_batch_size=8, reference_kinds=[reward_pb2.REFERENCE_KIND_ANSWER]))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        return [reward_pb2.ScoreResult(id=it.id, score=1.0, status=reward_pb2.SCORE_STATUS_OK) for it in items]

    def close(self) -> None:
        pass


def scores(address: str, creds: grpc.ChannelCredentials) -> bool:
    """Whether a new connection with `creds` gets a Score call through (False: the handshake failed)."""
    with grpc.secure_channel(address, creds, options=PROBE_OPTIONS) as ch:
        try:
            reward_stub(ch).Score(reward_pb2.ScoreRequest(items=[item("a", answer="1")]), timeout=5)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            return False
    return True


@pytest.fixture
def ca_a(tmp_path: Path) -> TLSFiles:
    """Certificates of one throwaway CA."""
    (tmp_path / "a").mkdir()
    return make_tls_files(tmp_path / "a")


@pytest.fixture
def ca_b(tmp_path: Path) -> TLSFiles:
    """Certificates of another throwaway CA (a client trusting only A refuses B's server certificate)."""
    (tmp_path / "b").mkdir()
    return make_tls_files(tmp_path / "b")


def test_a_secret_swapped_like_kubelet_does_is_served_to_new_connections_and_open_ones_keep_theirs(
        serve, tmp_path, ca_a, ca_b):
    mount = SecretMount(tmp_path / "mount", ca_a)
    running = serve(OneScorer(), tls=TLSConfig(mount.path("server.pem"), mount.path("server-key.pem")))
    opened = grpc.secure_channel(running.address, credentials(ca_a), options=PROBE_OPTIONS)
    try:
        assert health_status(opened) == "SERVING"
        assert not scores(running.address, credentials(ca_b))

        mount.swap(ca_b)
        assert eventually(lambda: scores(running.address, credentials(ca_b))) < 4
        assert not scores(running.address, credentials(ca_a))
        assert health_status(opened) == "SERVING"  # the connection made before the swap keeps its session
    finally:
        opened.close()


def test_an_in_place_rewrite_is_served_only_once_the_key_matches_the_certificate(
        serve, tmp_path, ca_a, ca_b, caplog):
    d = tmp_path / "plain"
    d.mkdir()
    cert, key = d / "tls.crt", d / "tls.key"
    cert.write_bytes(ca_a.server_cert.read_bytes())
    key.write_bytes(ca_a.server_key.read_bytes())
    running = serve(OneScorer(), tls=TLSConfig(cert, key))
    assert scores(running.address, credentials(ca_a))

    with caplog.at_level(logging.WARNING, logger="grpo_rewards.tls"):
        cert.write_bytes(ca_b.server_cert.read_bytes())  # the key is still A's: half-way through a rewrite
        stays(lambda: scores(running.address, credentials(ca_a)) and not scores(running.address, credentials(ca_b)))
    assert [r for r in caplog.records if str(key) in r.getMessage() and "--tls-key" in r.getMessage()]

    key.write_bytes(ca_b.server_key.read_bytes())
    eventually(lambda: scores(running.address, credentials(ca_b)))
    assert not scores(running.address, credentials(ca_a))


def test_a_pair_that_cannot_be_served_keeps_the_previous_certificate_and_a_good_one_is_picked_up_later(
        serve, tmp_path, ca_a, ca_b, caplog):
    mount = SecretMount(tmp_path / "mount", ca_a)
    running = serve(OneScorer(), tls=TLSConfig(mount.path("server.pem"), mount.path("server-key.pem")))
    address = running.address
    assert scores(address, credentials(ca_a))

    with caplog.at_level(logging.WARNING, logger="grpo_rewards.tls"):
        mount.swap(ca_b, **{"server-key.pem": ca_a.server_key.read_bytes()})  # B's certificate, A's key
        stays(lambda: scores(address, credentials(ca_a)) and not scores(address, credentials(ca_b)))
        mount.swap(ca_b, **{"server.pem": ca_b.server_cert.read_bytes()[:100]})  # a truncated certificate
        stays(lambda: scores(address, credentials(ca_a)))
        (mount.root / "..data").unlink()  # the files gone
        stays(lambda: scores(address, credentials(ca_a)))
    messages = [r.getMessage() for r in caplog.records]
    assert any("not a PEM private key of the certificate" in m and "server-key.pem" in m for m in messages)
    assert any("not a PEM certificate" in m and "server.pem" in m for m in messages)
    assert any("cannot read" in m for m in messages)

    mount.swap(ca_b)  # good files again: tried on a later connection, not given up on
    eventually(lambda: scores(address, credentials(ca_b)))
    assert not scores(address, credentials(ca_a))


def test_mtls_picks_up_a_rotated_client_ca(serve, tmp_path, ca_a, ca_b):
    mount = SecretMount(tmp_path / "mount", ca_a)
    running = serve(OneScorer(), tls=TLSConfig(mount.path("server.pem"), mount.path("server-key.pem"),
                                               mount.path("ca.pem")))
    assert scores(running.address, credentials(ca_a, client=ca_a))
    assert not scores(running.address, credentials(ca_a, client=ca_b))

    # Same server certificate, client CA now B's.
    mount.swap(ca_a, **{"ca.pem": ca_b.ca_cert.read_bytes()})
    eventually(lambda: scores(running.address, credentials(ca_a, client=ca_b)))
    assert not scores(running.address, credentials(ca_a, client=ca_a))
    assert not scores(running.address, credentials(ca_a))  # still mTLS: no certificate, no call


def test_the_math_verifier_entry_point_serves_a_renewed_certificate(tmp_path, ca_a, ca_b):
    mount = SecretMount(tmp_path / "mount", ca_a)
    proc = EntryPoint("grpo_rewards.math_verifier.server", "--listen", "127.0.0.1:0", "--workers", "1",
                      "--tls-cert", str(mount.path("server.pem")), "--tls-key", str(mount.path("server-key.pem")))
    try:
        assert scores(proc.address, credentials(ca_a))
        mount.swap(ca_b)
        eventually(lambda: scores(proc.address, credentials(ca_b)))
        assert not scores(proc.address, credentials(ca_a))
        assert proc.terminate() == 0
    finally:
        proc.kill()


def test_a_key_that_is_not_the_certificates_is_refused_at_start_naming_the_flag_and_file(ca_a, ca_b):
    from grpo_rewards.common import start_server

    with pytest.raises(ValueError) as exc:
        start_server(OneScorer(), tls=TLSConfig(ca_a.server_cert, ca_b.server_key))
    assert str(exc.value).startswith(f"--tls-key {ca_b.server_key}: not a PEM private key of the certificate "
                                     f"{ca_a.server_cert}")


def test_a_certificate_outside_its_validity_period_is_refused_at_start_and_not_swapped_in(serve, tmp_path, ca_a,
                                                                                         caplog):
    """Every client refuses an expired certificate, or one valid only from tomorrow, in every handshake:
    the service refuses it at start naming the flag, file and date, and a renewal that brings one keeps the
    previous certificate in use. A notBefore a minute ahead (an issuer whose clock runs ahead) is served."""
    from datetime import timedelta

    from grpo_rewards.common import start_server

    day, minute = timedelta(days=1), timedelta(minutes=1)
    for name, valid, words in (("expired", (-2 * day, -day), "the certificate expired at "),
                               ("future", (day, 2 * day), "the certificate is valid only from ")):
        (tmp_path / name).mkdir()
        files = make_tls_files(tmp_path / name, server_valid=valid)
        with pytest.raises(ValueError) as exc:
            start_server(OneScorer(), tls=TLSConfig(files.server_cert, files.server_key))
        assert str(exc.value).startswith(f"--tls-cert {files.server_cert}: {words}"), exc.value

    (tmp_path / "expired-b").mkdir()
    expired_b = make_tls_files(tmp_path / "expired-b", server_valid=(-2 * day, -day))
    mount = SecretMount(tmp_path / "mount", ca_a)
    running = serve(OneScorer(), tls=TLSConfig(mount.path("server.pem"), mount.path("server-key.pem")))
    assert scores(running.address, credentials(ca_a))
    with caplog.at_level(logging.WARNING, logger="grpo_rewards.tls"):
        mount.swap(expired_b)
        stays(lambda: scores(running.address, credentials(ca_a)) and not scores(running.address, credentials(expired_b)))
    assert any("the certificate expired at" in r.getMessage() and "server.pem" in r.getMessage() for r in caplog.records)

    (tmp_path / "skewed").mkdir()
    skewed = make_tls_files(tmp_path / "skewed", server_valid=(minute, day))
    assert serve(OneScorer(), tls=TLSConfig(skewed.server_cert, skewed.server_key)).address  # it starts
