"""A live trainer for the TypeScript and Go client tests: the tiny model, the math verifier as a real
reward service, bearer-token auth, all on loopback port 0 in this process; and a trainer API whose calls
a test can hold in flight (make_held_trainer), to press Ctrl-C in a client while it waits."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from grpo.trainer.v1 import trainer_pb2

ADMIN_TOKEN = "clients-admin-token"
READER_TOKEN = "clients-reader-token"
REPO = Path(__file__).resolve().parents[3]


@contextmanager
def running_trainer(store_dir: Path, math_address: str, what: str = "trainer", **sections: dict) -> Iterator:
    """A started, ready TrainerApp in this process, shut down on exit: the tiny model, HF rollouts of 8
    tokens, 2 prompts x 2 samples a step, math rewards from `math_address`, the API on a free loopback
    port; `sections` add to (or replace keys of) the config's sections."""
    from grpo_server.app import TrainerApp
    from grpo_server.config import parse_config

    config: dict[str, dict] = {
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": 8},
        "algorithm": {"prompts_per_step": 2, "group_size": 2, "beta": 0.0},
        "server": {"listen": "127.0.0.1:0"},
        "rewards": {"default": [{"backend": "math"}]},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    app = TrainerApp(parse_config(config), store_dir, backend_overrides=[("math", math_address)])
    try:
        app.start()
        if not app.ready.wait(120):
            pytest.fail(f"the {what} did not become ready in 120 s (failed: {app.failed})")
        yield app
    finally:
        app.shutdown(grace=30)


@dataclass(frozen=True)
class LiveTrainer:
    """Where the clients connect. `target` is "127.0.0.1:PORT"; the admin token has every role, the
    reader token only "read"."""

    target: str
    math_address: str
    admin_token: str = ADMIN_TOKEN
    reader_token: str = READER_TOKEN


def _tokens_yaml() -> str:
    def sha(t: str) -> str:
        return hashlib.sha256(t.encode()).hexdigest()

    return (
        "tokens:\n"
        f"  - {{name: admin, token_sha256: {sha(ADMIN_TOKEN)}, roles: [submit, read, admin]}}\n"
        f"  - {{name: reader, token_sha256: {sha(READER_TOKEN)}, roles: [read]}}\n"
    )


@pytest.fixture(scope="module")
def live_trainer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveTrainer]:
    """One trainer per test module: 2 prompts x 2 samples a step, 8 new tokens, math rewards, a
    checkpoint every step. Steps start as soon as the tests submit 2 prompts. Not one per session: a
    trainer left running trains whatever prompts remain queued and reseeds torch's global RNG each step,
    which later tests in this process (seeded HF sampling) would see."""
    from grpo_rewards.common.server import start_server
    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    root = tmp_path_factory.mktemp("clients-trainer")
    tokens = root / "tokens.yaml"
    tokens.write_text(_tokens_yaml())
    math = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0")
    try:
        with running_trainer(root / "store", math.address, checkpoint={"every_steps": 1},
                             auth={"tokens_file": str(tokens)}) as app:
            yield LiveTrainer(target=f"127.0.0.1:{app.api_port}", math_address=math.address)
    finally:
        math.stop(5)


@dataclass(frozen=True)
class TlsTrainer:
    """A trainer serving TLS only (no auth). `ca_file` is the PEM CA that signed its certificate, which
    names 127.0.0.1 and localhost."""

    target: str
    ca_file: Path


def _write_pki(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost, as PEM files: (ca, cert, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
             issuer_key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("clients-test-ca", ca_key, None, ca_key, ca=True)
    srv = cert("localhost", srv_key, ca.subject, ca_key, ca=False)
    paths = root / "ca.pem", root / "server.pem", root / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(srv_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_trainer(tmp_path_factory: pytest.TempPathFactory, live_trainer: LiveTrainer) -> Iterator[TlsTrainer]:
    """A second trainer, TLS only, for the clients' TLS options; it reuses the math verifier."""
    root = tmp_path_factory.mktemp("clients-tls-trainer")
    ca, cert, key = _write_pki(root)
    with running_trainer(root / "store", live_trainer.math_address, "TLS trainer",
                         server={"tls_cert": str(cert), "tls_key": str(key)}) as app:
        yield TlsTrainer(target=f"127.0.0.1:{app.api_port}", ca_file=ca)


MTLS_SERVER_NAME = "grpo-trainer.test"


@dataclass(frozen=True)
class MtlsTrainer:
    """A trainer serving TLS only (no auth) that requires a client certificate signed by its CA, with a
    certificate for `server_name` only: not for 127.0.0.1, the host of `target`. `pki` holds the CA, the
    client certificate and its key (reward_service_kit.TLSFiles)."""

    target: str
    pki: Any
    server_name: str = MTLS_SERVER_NAME


def write_client_pki(directory: Path, server_names: tuple[str, ...] = (MTLS_SERVER_NAME,)) -> Any:
    """A CA, a server certificate for `server_names` and a client certificate with their keys, as PEM files
    under `directory` (reward_service_kit.make_tls_files): a TLSFiles."""
    services = str(REPO / "tests" / "integration" / "services")
    if services not in sys.path:
        sys.path.append(services)  # after this folder: its conftest must stay the one `conftest` names
    from reward_service_kit import make_tls_files

    return make_tls_files(directory, server_names=server_names)


def bad_tls_flag_cases(directory: Path) -> list[tuple[list[str], int]]:
    """(grpo's TLS flags, the exit status it gives them) for flags refused before any call: --cert without
    --key and the reverse, a file without the PEM block it should hold, an encrypted key (2, USAGE), a file
    that cannot be read (1, LOCAL). Writes a PKI and an encrypted key under `directory`."""
    pki = write_client_pki(directory)
    encrypted = directory / "encrypted.pem"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    cert, key, missing = str(pki.client_cert), str(pki.client_key), str(directory / "nope.pem")
    return [
        (["--cert", cert], 2),
        (["--key", key], 2),
        (["--cert", key, "--key", key], 2),
        (["--cert", cert, "--key", cert], 2),
        (["--cert", cert, "--key", str(encrypted)], 2),
        (["--ca", key], 2),
        (["--ca", missing], 1),
        (["--cert", missing, "--key", key], 1),
    ]


@pytest.fixture(scope="module")
def mtls_trainer(tmp_path_factory: pytest.TempPathFactory, live_trainer: LiveTrainer) -> Iterator[MtlsTrainer]:
    """A third trainer, for the examples' --cert/--key and --server-name: mTLS, and a certificate that
    names only grpo-trainer.test (one trainer for both, to start few); it reuses the math verifier."""
    root = tmp_path_factory.mktemp("clients-mtls-trainer")
    pki = write_client_pki(root)
    with running_trainer(root / "store", live_trainer.math_address, "mTLS trainer",
                         server={"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key),
                                 "tls_client_ca": str(pki.ca_cert)}) as app:
        yield MtlsTrainer(target=f"127.0.0.1:{app.api_port}", pki=pki)


def run_tool(cmd: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a build or test command, failing the test with its output when it exits non-zero."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def require_tools(*names: str, hint: str) -> None:
    """Skip when a toolchain binary is missing: the tests need a toolchain that `clients/setup.sh` installs."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed; run `{hint}`")


def grpo_cli(live: LiveTrainer, *args: str, token: str) -> subprocess.CompletedProcess[str]:
    """The Python CLI, `grpo --target ... --token T ARGS`."""
    return run_tool([sys.executable, "-m", "grpo_client.cli", "--target", live.target, "--token", token, *args],
                    cwd=REPO, timeout=120, check=False)


def key_order(doc: Any) -> Any:
    """The keys of every object in `doc`, in order (equality of parsed JSON ignores it)."""
    if isinstance(doc, dict):
        return [(k, key_order(v)) for k, v in doc.items()]
    if isinstance(doc, list):
        return [key_order(v) for v in doc]
    return None


def assert_same_error(proc: subprocess.CompletedProcess[str], py: subprocess.CompletedProcess[str], exit_status: int,
                      *, same_message: bool = True) -> dict[str, Any]:
    """`proc` (a Go or TypeScript command run with --json) failed as the Python CLI's `py` did: both exited
    `exit_status` and printed one `{"error": {...}}` document on stdout, the same members in the same
    order, and the same document (with `same_message` False all but "message", which says what failed in
    the words of that language's libraries: an argument parser, a connection error). Returns the error."""
    assert (proc.returncode, py.returncode) == (exit_status, exit_status), (proc.returncode, proc.stdout, proc.stderr,
                                                                            py.returncode, py.stdout, py.stderr)
    doc, py_doc = json.loads(proc.stdout), json.loads(py.stdout)
    assert key_order(doc) == key_order(py_doc), (proc.stdout, py.stdout)
    error = dict(doc["error"])
    if not same_message:
        assert doc["error"].pop("message") and py_doc["error"].pop("message"), (proc.stdout, py.stdout)
    assert doc == py_doc, (proc.stdout, py.stdout)
    return error


def assert_interrupted_submit_as_grpo(proc: subprocess.CompletedProcess[str], py: subprocess.CompletedProcess[str],
                                     as_json: bool) -> None:
    """`proc` (a Go or TypeScript submit of prompts i0-i2, one a batch, interrupted after the first) reported
    what `grpo submit` (`py`) did: exit status 130, the accepted ids, the same message."""
    if as_json:
        error = assert_same_error(proc, py, 130)
        assert error["code"] == "INTERRUPTED" and error["accepted_ids"] == ["i0"], error
        assert error["message"].startswith("interrupted: the trainer had accepted 1 of the 3 prompts;"), error
    else:
        assert (proc.returncode, py.returncode) == (130, 130), (proc, py)
        assert proc.stdout == py.stdout == "", (proc.stdout, py.stdout)
        message = py.stderr.strip().splitlines()[-1]
        assert message.startswith("interrupted: the trainer had accepted 1 of the 3 prompts;"), py.stderr
        assert proc.stderr.strip().splitlines()[-1] == message, proc.stderr


@pytest.fixture
def paused_trainer(live_trainer: LiveTrainer) -> Iterator[LiveTrainer]:
    """The live trainer, paused (no step leases the prompts a test queues) until the test ends."""
    from grpo_client.client import TrainerClient

    with TrainerClient(live_trainer.target, live_trainer.admin_token) as client:
        client.pause()
        deadline = time.monotonic() + 120
        while client.step_status().run.state != trainer_pb2.RUN_STATE_PAUSED:
            assert time.monotonic() < deadline, "the trainer did not pause in 120 s"
            time.sleep(0.2)
        try:
            yield live_trainer
        finally:
            client.resume()


@dataclass(frozen=True)
class HeldTrainer:
    """A trainer API whose calls a test can catch in flight: `target` ("127.0.0.1:PORT", no auth), `held` is
    set once a call is being held (it waits until the test ends), `servicer` is the trainer's."""

    target: str
    held: threading.Event
    servicer: Any


def _held_servicer(free_submits: int, held: threading.Event, release: threading.Event, **kwargs: Any) -> Any:
    """The trainer's own servicer (grpo_server.api), except that SubmitPrompts answers `free_submits` calls and
    holds the ones after, and StepStatus and ListPrompts hold every call: a held call sets `held` and waits
    for `release`, then runs as usual."""
    from grpo_server.api.servicer import TrainerServicer

    class Held(TrainerServicer):
        submits = 0

        def _hold(self) -> None:
            held.set()
            release.wait(120)

        def SubmitPrompts(self, request: Any, context: Any) -> Any:
            Held.submits += 1
            if Held.submits > free_submits:
                self._hold()
            return super().SubmitPrompts(request, context)

        def StepStatus(self, request: Any, context: Any) -> Any:
            self._hold()
            return super().StepStatus(request, context)

        def ListPrompts(self, request: Any, context: Any) -> Any:
            self._hold()
            return super().ListPrompts(request, context)

    return Held(**kwargs)


@pytest.fixture
def make_held_trainer(tmp_path: Path) -> Iterator[Any]:
    """`make_held_trainer(free_submits=1)` starts a HeldTrainer: the trainer's API (servicer, SQLite store,
    reward registry, run control) on a free loopback port, with no training loop and no model (its exporter
    is never called; `limits.max_prompt_tokens` 0, since there is no tokenizer). All are stopped when the
    test ends."""
    from grpo_server.api.server import build_server
    from grpo_server.api.settings import ApiLimits
    from grpo_server.checkpoint import ExportManager
    from grpo_server.control import RunControl
    from grpo_server.rewards.registry import BackendEntry, RewardRegistry
    from grpo_server.store import Store

    release = threading.Event()
    started: list[tuple[Any, ...]] = []

    def make(free_submits: int = 1) -> HeldTrainer:
        root = tmp_path / f"held{len(started)}"
        store, control = Store(root / "store"), RunControl()
        registry = RewardRegistry([BackendEntry("math", "127.0.0.1:1")])  # never called: no step runs
        held = threading.Event()
        servicer = _held_servicer(free_submits, held, release, store=store, control=control, registry=registry,
                                  exporter=ExportManager(lambda: (0, {}), None, None, root / "exports"),
                                  default_rewards=[("math", 1.0)], limits=ApiLimits(max_prompt_tokens=0))
        server, port, health = build_server(servicer, listen="127.0.0.1:0")
        started.append((server, control, registry, store))
        health.set_serving(True)
        control.set_ready(True)
        control.set_state("idle")
        return HeldTrainer(target=f"127.0.0.1:{port}", held=held, servicer=servicer)

    yield make
    release.set()
    for server, control, registry, store in started:
        control.close()
        server.stop(grace=None).wait()
        registry.stop()
        store.close()


SIGINT_DEFAULT_LAUNCHER = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, "
                           "signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"]


def run_interrupted(cmd: list[str], *, cwd: Path, ready: Callable[[], bool], settle: float = 0.3,
                    timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, press Ctrl-C (SIGINT to the process) once `ready()` holds and `settle` seconds more have
    passed, and return its exit status (negative: killed by a signal) and output."""
    # SIGINT back to its default before `cmd` starts (a shell that starts jobs in the background ignores
    # it in them; a terminal's Ctrl-C does not), by a launcher that execs `cmd`: not by preexec_fn, whose
    # code runs between fork and exec in this process, beside live gRPC threads, and once let gRPC core
    # write its own error line into the child's stderr.
    proc = subprocess.Popen([*SIGINT_DEFAULT_LAUNCHER, *cmd], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=10)
                pytest.fail(f"`{' '.join(cmd)}` never got to the call to interrupt (exit {proc.returncode})\n"
                            f"--- stdout\n{out}\n--- stderr\n{err}")
            time.sleep(0.05)
        time.sleep(settle)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
        proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def python_cli_command(target: str, *args: str) -> list[str]:
    """The command line of `grpo --target TARGET ARGS` (no token)."""
    return [sys.executable, "-m", "grpo_client.cli", "--target", target, *args]


def prompt_lines(path: Path, ids: list[str]) -> Path:
    """Writes a prompt file with one math prompt per id to `path`."""
    path.write_text("".join(json.dumps({"id": i, "messages": [{"role": "user", "content": f"{n} + 1?"}],
                                        "answer": str(n + 1)}) + "\n" for n, i in enumerate(ids)))
    return path
