"""Helpers for testing reward services over real gRPC on loopback: stubs, status details, health,
reflection, metrics scraping, TLS material and running an entry point as a subprocess.

Generic on purpose: the math verifier, code sandbox and reward model tests all use it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
REWARD_SERVICE = "grpo.reward.v1.RewardService"
LISTENING = re.compile(r"listening on (\S+:\d+)")


def reward_stub(channel: grpc.Channel) -> reward_pb2_grpc.RewardServiceStub:
    """A RewardService stub on `channel`."""
    return reward_pb2_grpc.RewardServiceStub(channel)


def item(id: str, completion: str = "", *, answer: str | None = None, prompt: Sequence[tuple[str, str]] = (),
         metadata: dict[str, str] | None = None, code: reward_pb2.CodeTests | None = None) -> reward_pb2.ScoreItem:
    """A ScoreItem; `prompt` is (role, content) pairs."""
    it = reward_pb2.ScoreItem(id=id, completion=completion, metadata=metadata or {},
                              prompt=[reward_pb2.Message(role=r, content=c) for r, c in prompt])
    if answer is not None:
        it.answer = answer
    if code is not None:
        it.code.CopyFrom(code)
    return it


def bad_request_fields(err: grpc.RpcError) -> list[str]:
    """The field paths of the google.rpc.BadRequest detail of a failed call ([] when there is none)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    fields: list[str] = []
    if status is None:
        return fields
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            fields += [v.field for v in br.field_violations]
    return fields


def health_status(channel: grpc.Channel, service: str = "", timeout: float = 5.0) -> str:
    """The health status name ("SERVING", "NOT_SERVING", ...) the server reports for `service`."""
    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def reflection_services(channel: grpc.Channel) -> set[str]:
    """The service names the server lists through gRPC server reflection."""
    return set(ProtoReflectionDescriptorDatabase(channel).get_services())


def scrape_metrics(port: int) -> str:
    """The text of http://127.0.0.1:PORT/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of sample `name{labels}` in a Prometheus exposition (labels as written, e.g. 'status="ok"')."""
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    m = re.search(pattern, text, re.MULTILINE)
    if m is None:
        raise KeyError(f"no sample {name}{{{labels}}}")
    return float(m.group(1))


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def channel_credentials(self, *, client_cert: bool) -> grpc.ChannelCredentials:
        """Client credentials trusting the CA, presenting the client certificate when `client_cert`."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_cert.read_bytes(),
            private_key=self.client_key.read_bytes() if client_cert else None,
            certificate_chain=self.client_cert.read_bytes() if client_cert else None,
        )


def make_tls_files(directory: Path, server_names: Sequence[str] = ("localhost", "127.0.0.1"), *,
                   server_valid: tuple[datetime.timedelta, datetime.timedelta] | None = None) -> TLSFiles:
    """Write a CA, a server cert (SANs `server_names`: DNS names and IP addresses) and a client cert under
    `directory`. `server_valid`: the server cert's (notBefore, notAfter) from now (default: 5 minutes
    ago, a day ahead)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("grpo test CA")).issuer_name(name("grpo test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName],
             valid: tuple[datetime.timedelta, datetime.timedelta] | None = None) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        before, after = valid or (-datetime.timedelta(minutes=5), datetime.timedelta(days=1))
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now + before).not_valid_after(now + after)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key_pem(key)

    def san(name: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            return x509.DNSName(name)

    server_cert, server_key = leaf(server_names[0], ExtendedKeyUsageOID.SERVER_AUTH, [san(n) for n in server_names],
                                   server_valid)
    client_cert, client_key = leaf("trainer", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    files = TLSFiles(*(directory / n for n in ("ca.pem", "server.pem", "server-key.pem", "client.pem",
                                               "client-key.pem")))
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert)
    files.server_key.write_bytes(server_key)
    files.client_cert.write_bytes(client_cert)
    files.client_key.write_bytes(client_key)
    return files


class EntryPoint:
    """A reward service started as `python -m MODULE ARGS...`, its output captured; `address` is parsed
    from its "listening on HOST:PORT" log line."""

    def __init__(self, module: str, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None,
                 launcher: Sequence[str] = (), python: str = sys.executable) -> None:
        """`launcher` goes before the interpreter (e.g. `setpriv ... --` to run as another user) and
        `python` replaces this test's interpreter."""
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [*launcher, python, "-m", module, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, **(env or {})},
        )
        self.address = self._wait_for(LISTENING, timeout).group(1)

    def _wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = self.proc.stdout.readline()
                if line:
                    self.output.append(line)
                    if m := pattern.search(line):
                        return m
                    continue
            if self.proc.poll() is not None:
                break
        self.kill()
        raise AssertionError(f"no {pattern.pattern!r} within {timeout} s; output:\n{''.join(self.output)}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for exit, collect the rest of the output; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        self.output.append(out)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL if still running (cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)

    @property
    def text(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.output)
