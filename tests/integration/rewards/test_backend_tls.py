"""Reward backends behind TLS with a private CA, and behind mTLS (the service requires a client
certificate): the registry entry's ca_file, cert_file and key_file. The real math verifier served by the
real harness with TLS on loopback; certificates from a throwaway CA."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted_backends import RecordingObserver, group

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from reward_service_kit import TLSFiles, make_tls_files  # noqa: E402

from grpo_rewards.common.server import TLSConfig, start_server  # noqa: E402
from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer  # noqa: E402
from grpo_server.rewards.registry import BackendEntry, RegistryError, RewardRegistry, parse_registry  # noqa: E402
from grpo_server.rewards.router import RewardRouter  # noqa: E402
from grpo_server.types import RewardStatus  # noqa: E402


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("backend-tls"))


@pytest.fixture(scope="module")
def mtls_verifier(tls_files: TLSFiles) -> Iterator[str]:
    """The math verifier requiring a client certificate signed by the test CA."""
    tls = TLSConfig(tls_files.server_cert, tls_files.server_key, client_ca_file=tls_files.ca_cert)
    server = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0", tls=tls)
    yield server.address
    server.stop(5)


def score(address: str, **tls: object) -> tuple[float | None, RewardStatus, str]:
    """One completion ("42", correct) scored through a router on `address` with the entry's TLS settings."""
    registry = RewardRegistry([BackendEntry("a", address, timeout_seconds=10, tls=True, **tls)])  # type: ignore[arg-type]
    router = RewardRouter(registry, observer=RecordingObserver(), max_retries=0)
    try:
        [scored] = router.score([group("p", ["The answer is 42."])], registry.snapshot())
    finally:
        router.close()
        registry.stop()
    s = scored.completions[0].scores[0]
    return s.score, s.status, s.message


def test_a_client_certificate_and_a_private_ca_reach_an_mtls_backend(mtls_verifier: str, tls_files: TLSFiles) -> None:
    assert score(mtls_verifier, ca_file=str(tls_files.ca_cert), cert_file=str(tls_files.client_cert),
                 key_file=str(tls_files.client_key))[:2] == (1.0, RewardStatus.OK)


@pytest.mark.parametrize("case", ["no client certificate", "gRPC's default roots"])
def test_without_what_the_backend_requires_the_items_are_masked_unavailable(
        mtls_verifier: str, tls_files: TLSFiles, case: str) -> None:
    tls = {"ca_file": str(tls_files.ca_cert)} if case == "no client certificate" else {
        "cert_file": str(tls_files.client_cert), "key_file": str(tls_files.client_key)}
    value, status, _ = score(mtls_verifier, **tls)
    assert (value, status) == (None, RewardStatus.UNAVAILABLE)


def test_a_tls_file_that_cannot_be_read_masks_the_items_naming_it(mtls_verifier: str, tls_files: TLSFiles,
                                                                  tmp_path: Path) -> None:
    """A file removed after start (at start, one the trainer cannot read is refused)."""
    missing = tmp_path / "gone.crt"
    shutil.copy(tls_files.ca_cert, missing)
    entry = BackendEntry("a", mtls_verifier, timeout_seconds=10, tls=True, ca_file=str(missing),
                         cert_file=str(tls_files.client_cert), key_file=str(tls_files.client_key))
    registry = RewardRegistry([entry])
    router = RewardRouter(registry, observer=RecordingObserver(), max_retries=0)
    try:
        missing.unlink()
        [scored] = router.score([group("p", ["The answer is 42."])], registry.snapshot())
    finally:
        router.close()
        registry.stop()
    s = scored.completions[0].scores[0]
    assert (s.score, s.status) == (None, RewardStatus.UNAVAILABLE)
    assert s.message == f"cannot read the backend's ca_file {missing}: No such file or directory"


def test_a_renewed_client_certificate_is_used_by_the_next_call(mtls_verifier: str, tls_files: TLSFiles,
                                                               tmp_path: Path) -> None:
    """The files are read when a channel opens; one replaced on disk (cert-manager renewing it, a Secret's
    symlink swap) opens a new channel for the next call."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(tls_files.server_cert, cert)  # a certificate the backend does not accept as a client's
    shutil.copy(tls_files.server_key, key)
    entry = BackendEntry("a", mtls_verifier, timeout_seconds=10, tls=True, ca_file=str(tls_files.ca_cert),
                         cert_file=str(cert), key_file=str(key))
    registry = RewardRegistry([entry])
    router = RewardRouter(registry, observer=RecordingObserver(), max_retries=0)
    try:
        [first] = router.score([group("p", ["The answer is 42."])], registry.snapshot())
        assert first.completions[0].scores[0].status is RewardStatus.UNAVAILABLE
        for src, dst in ((tls_files.client_cert, cert), (tls_files.client_key, key)):
            tmp = dst.with_suffix(".new")
            shutil.copy(src, tmp)
            os.replace(tmp, dst)
        [second] = router.score([group("p", ["The answer is 42."])], registry.snapshot())
        assert second.rewards == [1.0]
    finally:
        router.close()
        registry.stop()


@pytest.mark.parametrize(("fields", "violation"), [
    ("ca_file: /ca.crt", "backends.a.ca_file: is a TLS setting: set tls: true as well"),
    ("tls: true\n    cert_file: /tls.crt", "backends.a.key_file: cert_file and key_file go together"),
    ("tls: true\n    key_file: /tls.key", "backends.a.cert_file: cert_file and key_file go together"),
])
def test_tls_files_without_tls_or_a_certificate_without_its_key_are_refused(fields: str, violation: str) -> None:
    with pytest.raises(RegistryError) as err:
        parse_registry(f"backends:\n  a:\n    address: 127.0.0.1:1\n    {fields}\n")
    assert violation in str(err.value)


def test_tls_files_gRPC_cannot_use_are_refused_at_start_naming_them(tls_files: TLSFiles, tmp_path: Path) -> None:
    """Readable was all that was checked: a CA in DER form, or a client key of another certificate, failed
    every handshake ("Failed to create security handshaker"), an outage without end naming no file."""
    import ssl

    der = tmp_path / "ca.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert(tls_files.ca_cert.read_text()))
    cases = [({"ca_file": str(der)}, f"rewards.backends.a.ca_file: {der}: not PEM CA certificates"),
             ({"cert_file": str(tls_files.client_cert), "key_file": str(tls_files.server_key)},
              f"rewards.backends.a.key_file: {tls_files.server_key}: not a PEM private key of the certificate "
              f"{tls_files.client_cert}")]
    for files, words in cases:
        with pytest.raises(RegistryError) as err:
            RewardRegistry([BackendEntry("a", "127.0.0.1:1", tls=True, **files)])  # type: ignore[arg-type]
        assert words in str(err.value), str(err.value)
    RewardRegistry([BackendEntry("a", "127.0.0.1:1", tls=True, ca_file=str(tls_files.ca_cert),
                                 cert_file=str(tls_files.client_cert), key_file=str(tls_files.client_key))]).stop()
