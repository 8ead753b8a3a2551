"""Bearer tokens and roles, the tokens file reloaded live, TLS and mTLS, health and reflection open."""

from __future__ import annotations

import datetime
import hashlib
import time
from pathlib import Path

import grpc
import pytest
import yaml
from api_support import Api, prompt, submit
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from grpo_server.api.auth import METHOD_ROLES, TokensFileError, TokenStore
from grpo_server.api.settings import AuthSettings

TOKENS = {"sub": "submit-token-1", "reader": "read-token-22", "admin": "admin-token-333", "both": "both-token-4444"}


def write_tokens(path: Path, tokens: dict[str, tuple[str, list[str]]], hashed: bool = True) -> None:
    entries = []
    for name, (token, roles) in tokens.items():
        e: dict = {"name": name, "roles": roles}
        if hashed:
            e["token_sha256"] = hashlib.sha256(token.encode()).hexdigest()
        else:
            e["token"] = token
        entries.append(e)
    path.write_text(yaml.safe_dump({"tokens": entries}))


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    write_tokens(path, {"sub": (TOKENS["sub"], ["submit"]), "reader": (TOKENS["reader"], ["read"]),
                        "admin": (TOKENS["admin"], ["admin"]), "both": (TOKENS["both"], ["submit", "read"])})
    return path


@pytest.fixture
def secured(make_api, tokens_file: Path) -> Api:
    return make_api(auth=AuthSettings(tokens_file=str(tokens_file), reload_interval_seconds=0))


def bearer(name_or_token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS.get(name_or_token, name_or_token)}")]


def code_of(fn, *args, **kw) -> grpc.StatusCode:
    try:
        fn(*args, **kw)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def test_auth_off_without_a_tokens_file(api: Api) -> None:
    assert api.stub.SubmitPrompts(submit(prompt("a"))).queue_depth == 1


def test_missing_or_unknown_token_is_unauthenticated(secured: Api) -> None:
    req = trainer_pb2.StepStatusRequest()
    assert code_of(secured.stub.StepStatus, req) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(secured.stub.StepStatus, req, metadata=bearer("wrong-token")) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(secured.stub.StepStatus, req, metadata=[("authorization", "Basic abc")]) == grpc.StatusCode.UNAUTHENTICATED
    stream = secured.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=10)
    assert code_of(next, stream) == grpc.StatusCode.UNAUTHENTICATED


def test_token_without_the_role_is_permission_denied(secured: Api) -> None:
    e_code = code_of(secured.stub.SubmitPrompts, submit(prompt("a")), metadata=bearer("reader"))
    assert e_code == grpc.StatusCode.PERMISSION_DENIED
    try:
        secured.stub.PauseTraining(trainer_pb2.PauseTrainingRequest(), metadata=bearer("both"))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "'admin' role" in e.details()
    else:
        pytest.fail("a submit+read token paused the run")
    assert secured.store.queue_depth() == 0 and not secured.control.pause_requested


def test_roles_grant_their_rpcs(secured: Api) -> None:
    assert secured.stub.SubmitPrompts(submit(prompt("a")), metadata=bearer("sub")).queue_depth == 1
    assert secured.stub.StepStatus(trainer_pb2.StepStatusRequest(), metadata=bearer("reader")).run.queue_depth == 1
    assert secured.stub.SubmitPrompts(submit(prompt("b")), metadata=bearer("both")).queue_depth == 2


def test_admin_implies_every_role(secured: Api) -> None:
    assert secured.stub.SubmitPrompts(submit(prompt("a")), metadata=bearer("admin")).queue_depth == 1
    assert secured.stub.StepStatus(trainer_pb2.StepStatusRequest(), metadata=bearer("admin")).run.queue_depth == 1
    assert secured.stub.PauseTraining(trainer_pb2.PauseTrainingRequest(), metadata=bearer("admin")).run.pause_requested


# Every RPC with a request that passes validation, and the one role that grants it besides admin.
RPC_REQUESTS = {
    "SubmitPrompts": submit(prompt("z")),
    "StepStatus": trainer_pb2.StepStatusRequest(),
    "GetExport": trainer_pb2.GetExportRequest(export_id="x"),
    "ListExports": trainer_pb2.ListExportsRequest(state=trainer_pb2.EXPORT_STATE_DONE),
    "PauseTraining": trainer_pb2.PauseTrainingRequest(),
    "ResumeTraining": trainer_pb2.ResumeTrainingRequest(),
    "ListRewardBackends": trainer_pb2.ListRewardBackendsRequest(),
    "ListPrompts": trainer_pb2.ListPromptsRequest(state=trainer_pb2.PROMPT_STATE_FAILED),
    "CancelPrompts": trainer_pb2.CancelPromptsRequest(ids=["z"]),
    "SetRewardBackend": trainer_pb2.SetRewardBackendRequest(backend=trainer_pb2.RewardBackend(name="n", address="h:1")),
    "DeleteRewardBackend": trainer_pb2.DeleteRewardBackendRequest(name="rm"),
    "ExportCheckpoint": trainer_pb2.ExportCheckpointRequest(destination="/nonexistent-root-dir/x/y"),
}


def test_role_table_covers_every_rpc_of_the_service() -> None:
    methods = {m.name for m in trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].methods}
    assert {k.rsplit("/", 1)[1] for k in METHOD_ROLES} == methods
    assert set(RPC_REQUESTS) | {"WatchSteps"} == methods


@pytest.mark.parametrize("rpc", sorted(RPC_REQUESTS))
def test_each_rpc_needs_its_documented_role(secured: Api, rpc: str) -> None:
    needed = METHOD_ROLES[f"/grpo.trainer.v1.TrainerService/{rpc}"]
    call = getattr(secured.stub, rpc)
    denied = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
    for name, roles in (("sub", {"submit"}), ("reader", {"read"}), ("admin", {"admin"})):
        code = code_of(call, RPC_REQUESTS[rpc], metadata=bearer(name))
        if needed in roles or "admin" in roles:
            assert code not in denied, (rpc, name, code)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (rpc, name, code)


def test_health_and_reflection_are_open_without_a_token(secured: Api) -> None:
    health = health_pb2_grpc.HealthStub(secured.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    db = ProtoReflectionDescriptorDatabase(secured.channel)
    assert "grpo.trainer.v1.TrainerService" in db.get_services()
    assert db.FindFileContainingSymbol("grpo.trainer.v1.SubmitPromptsRequest") is not None


def test_tokens_file_is_reloaded_when_it_changes(secured: Api, tokens_file: Path) -> None:
    req = trainer_pb2.StepStatusRequest()
    assert code_of(secured.stub.StepStatus, req, metadata=bearer("fresh-token-55555")) == grpc.StatusCode.UNAUTHENTICATED
    write_tokens(tokens_file, {"fresh": ("fresh-token-55555", ["read"])}, hashed=False)
    assert secured.stub.StepStatus(req, metadata=bearer("fresh-token-55555")).run.state
    assert code_of(secured.stub.StepStatus, req, metadata=bearer("reader")) == grpc.StatusCode.UNAUTHENTICATED
    tokens_file.write_text("tokens: [ {name: broken")  # an invalid edit keeps the tokens in force
    assert secured.stub.StepStatus(req, metadata=bearer("fresh-token-55555")).run.state


@pytest.mark.parametrize(("edit", "code"), [("revoked", grpc.StatusCode.UNAUTHENTICATED),
                                             ("demoted", grpc.StatusCode.PERMISSION_DENIED)])
def test_a_watch_stream_ends_when_its_token_is_revoked_or_loses_its_role(secured: Api, tokens_file: Path,
                                                                        edit: str, code: grpc.StatusCode) -> None:
    """Auth was checked once, when the stream opened: a token taken out of the tokens file read on, step
    after step, for as long as the stream stayed open (and kept its place under max_watch_streams)."""
    import threading

    from grpo_server.types import StepReport, StepState

    def publish(step: int) -> None:
        report = StepReport(step, StepState.COMPLETED, 1000.0 + step, 1000.5 + step, {"loss": 0.1}, "hf", (f"p{step}",))
        secured.store.record_step(report)
        secured.control.notify_step(report)

    stream = secured.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), metadata=bearer("reader"), timeout=60)
    got: list[object] = []
    first = threading.Event()

    def read() -> None:
        try:
            for r in stream:
                got.append(r.step.step)
                first.set()
        except grpc.RpcError as err:
            got.append(err.code())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    publish(1)
    assert first.wait(10)
    roles = {"revoked": None, "demoted": ["submit"]}[edit]
    write_tokens(tokens_file, {"admin": (TOKENS["admin"], ["admin"]),
                               **({"reader": (TOKENS["reader"], roles)} if roles else {})})
    reader.join(5)  # ended at the stream's next poll, with no step published
    publish(2)
    reader.join(5)
    assert got == [1, code], got


def test_token_store_checks_the_file_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    write_tokens(path, {"a": ("token-aaaaaaaa", ["read"])})
    now = [0.0]
    store = TokenStore(path, reload_interval=5.0, clock=lambda: now[0])
    write_tokens(path, {"b": ("token-bbbbbbbb", ["read"])})
    now[0] = 4.0
    assert store.lookup("token-aaaaaaaa") is not None  # not checked yet
    now[0] = 5.5
    assert store.lookup("token-aaaaaaaa") is None and store.lookup("token-bbbbbbbb").name == "b"  # type: ignore[union-attr]


@pytest.mark.parametrize("content", [b"", b"tokens:\n  - {name: a, token: token-\xff\xfe, roles: [read]}\n"],
                         ids=["caught empty", "not UTF-8"])
def test_a_tokens_file_that_turns_empty_or_undecodable_keeps_the_previous_tokens(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "t.yaml"
    write_tokens(path, {"a": ("token-aaaaaaaa", ["read"])})
    now = [0.0]
    store = TokenStore(path, reload_interval=1.0, clock=lambda: now[0])
    path.write_bytes(content)  # an in-place rewrite caught half-way, or a stray byte
    now[0] = 2.0
    assert store.lookup("token-aaaaaaaa").name == "a"  # type: ignore[union-attr]
    write_tokens(path, {"b": ("token-bbbbbbbb", ["read"])})  # the edit completed: it is read
    now[0] = 4.0
    assert store.lookup("token-aaaaaaaa") is None and store.lookup("token-bbbbbbbb").name == "b"  # type: ignore[union-attr]


def test_a_tokens_file_that_is_not_utf8_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"tokens: [\xff]\n")
    with pytest.raises(TokensFileError, match="cannot read"):
        TokenStore(path)


@pytest.mark.parametrize("text", ['tokens:\n  - name: a\n    token: "S3cr3t-Pl41n-T0ken\n    roles: [read]\n',
                                  "tokens:\n  - name: a\n    token: S3cr3t-Pl41n-T0ken: x\n    roles: [read]\n"],
                         ids=["unclosed quote", "stray colon"])
def test_a_yaml_error_in_the_tokens_file_names_the_place_not_the_text(tmp_path: Path, text: str, caplog) -> None:
    """PyYAML's message quotes the offending line: a typo on a plain `token:` line printed the secret at
    start and logged it on every reload."""
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(TokensFileError) as err:
        TokenStore(path)
    assert "S3cr3t" not in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert "not valid YAML: " in str(err.value) and " at line " in str(err.value)
    write_tokens(path, {"a": ("token-aaaaaaaa", ["read"])})
    now = [0.0]
    store = TokenStore(path, reload_interval=1.0, clock=lambda: now[0])
    path.write_text(text)
    now[0] = 2.0
    assert store.lookup("token-aaaaaaaa").name == "a"  # type: ignore[union-attr]
    assert "not valid YAML" in caplog.text and "S3cr3t" not in caplog.text


@pytest.mark.parametrize("doc, phrase", [
    ({"tokens": [{"name": "x", "roles": ["read"]}]}, "exactly one of token_sha256 and token"),
    ({"tokens": [{"name": "x", "token": "long-enough", "roles": ["root"]}]}, "unknown roles"),
    ({"tokens": [{"name": "x", "token_sha256": "abc", "roles": ["read"]}]}, "64 hex digits"),
    ({"tokens": [{"name": "x", "token": "short", "roles": ["read"]}]}, "at least 8"),
    ({"tokens": [{"name": "x", "token": "long-enough", "roles": ["read"]},
                 {"name": "x", "token": "long-enough2", "roles": ["read"]}]}, "used twice"),
    # One token under two names: the last entry's roles won in silence.
    ({"tokens": [{"name": "ops", "token": "shared-token", "roles": ["admin"]},
                 {"name": "dash", "token_sha256": hashlib.sha256(b"shared-token").hexdigest(), "roles": ["read"]}]},
     r"tokens\[1\]: the same token as tokens\[0\] \('ops'\)"),
    ({"users": []}, "list `tokens`"),
    # A space: the server took it, and every client refused to send it ("no spaces").
    ({"tokens": [{"name": "x", "token": "correct horse battery staple", "roles": ["read"]}]}, "no space"),
])
def test_a_bad_tokens_file_is_refused_at_start_with_the_reason(tmp_path: Path, doc: dict, phrase: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TokensFileError, match=phrase):
        TokenStore(path)


# ------------------------------------------------------------------------------------ TLS / mTLS


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer_name: x509.Name | None, issuer_key, *, ca: bool, san: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        import ipaddress

        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("test-ca", ca_key, None, ca_key, ca=True)
    srv_key, cli_key = _key(), _key()
    srv = _cert("localhost", srv_key, ca.subject, ca_key, ca=False, san=True)
    cli = _cert("client-1", cli_key, ca.subject, ca_key, ca=False)
    files = {"ca": ca, "server": srv, "server_key": srv_key, "client": cli, "client_key": cli_key}
    out = {}
    for name, obj in files.items():
        (d / f"{name}.pem").write_bytes(_pem(obj))
        out[name] = d / f"{name}.pem"
    return out


def test_tls_server_serves_a_client_that_trusts_its_ca(make_api, pki: dict[str, Path]) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    api: Api = make_api(tls=(str(pki["server"]), str(pki["server_key"]), None), channel_credentials=creds)
    assert api.stub.SubmitPrompts(submit(prompt("a")), timeout=10).queue_depth == 1
    plain = trainer_pb2_grpc.TrainerServiceStub(grpc.insecure_channel(f"localhost:{api.port}"))
    assert code_of(plain.StepStatus, trainer_pb2.StepStatusRequest(), timeout=3) == grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate_from_the_ca(make_api, pki: dict[str, Path]) -> None:
    tls = (str(pki["server"]), str(pki["server_key"]), str(pki["ca"]))
    with_cert = grpc.ssl_channel_credentials(pki["ca"].read_bytes(), pki["client_key"].read_bytes(),
                                             pki["client"].read_bytes())
    api: Api = make_api(tls=tls, channel_credentials=with_cert)
    assert api.stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=10).run.queue_depth == 0
    no_cert = grpc.secure_channel(f"localhost:{api.port}", grpc.ssl_channel_credentials(pki["ca"].read_bytes()))
    stub = trainer_pb2_grpc.TrainerServiceStub(no_cert)
    assert code_of(stub.StepStatus, trainer_pb2.StepStatusRequest(), timeout=5) == grpc.StatusCode.UNAVAILABLE
    no_cert.close()


def test_tls_and_tokens_together(make_api, pki: dict[str, Path], tokens_file: Path) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    api: Api = make_api(tls=(str(pki["server"]), str(pki["server_key"]), None), channel_credentials=creds,
                        auth=AuthSettings(tokens_file=str(tokens_file)))
    assert code_of(api.stub.StepStatus, trainer_pb2.StepStatusRequest(), timeout=10) == grpc.StatusCode.UNAUTHENTICATED
    assert api.stub.StepStatus(trainer_pb2.StepStatusRequest(), metadata=bearer("reader"), timeout=10).run.state


def test_health_reports_not_serving_until_ready_and_after_shutdown(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    check = health_pb2.HealthCheckRequest
    assert health.Check(check()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    api.health.set_serving(True)
    for service in ("", "grpo.trainer.v1.TrainerService"):
        assert health.Check(check(service=service)).status == health_pb2.HealthCheckResponse.SERVING
    api.health.shutdown()
    assert health.Check(check()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    api.health.set_serving(True)  # ignored after shutdown
    time.sleep(0.05)
    assert health.Check(check()).status == health_pb2.HealthCheckResponse.NOT_SERVING
