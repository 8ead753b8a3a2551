"""trainer.tls: the trainer's gRPC API over TLS, or mTLS, from a kubernetes.io/tls Secret (tls.crt, tls.key:
cert-manager's layout) and, for mTLS, a Secret whose ca.crt the clients' certificates must chain to.

The rendering tests check what the trainer pods mount and are told, that the probes switch to HTTP GET
/healthz on the metrics port (kubelet's grpc probes speak no TLS) and the metrics endpoint does not change. The end-to-end test plays kubelet: it writes the pod's projected Secret
volume, its config, registry and tokens from the rendered manifests into a temp dir, starts the real
`grpo-server` with the rendered command and config file (tiny model; paths moved to the temp dir), and
calls it as NOTES.txt says, over TLS and mTLS; plaintext and certificate-less clients are refused, and
the rendered probe (its path and port) answers 200.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helm_support import (
    CRD_KINDS,
    DEEPSPEED,
    KUBE_VERSION,
    NAMESPACE,
    REPO,
    TRAINER,
    Rendered,
    container,
    deep_merge,
    mount,
    render,
    render_error,
    volume,
)

sys.path.insert(0, str(REPO / "tests" / "integration" / "services"))

from reward_service_kit import TLSFiles, make_tls_files  # noqa: E402

from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc  # noqa: E402
from grpo_client import TrainerClient  # noqa: E402
from grpo_client.client import TrainerError  # noqa: E402
from grpo_server.config import parse_config  # noqa: E402

TLS_DIR = "/etc/grpo/api-tls"
TLS = {"trainer": {"tls": {"enabled": True, "secretName": "api-tls"}}}
MTLS = {"trainer": {"tls": {"enabled": True, "secretName": "api-tls", "mutual": True,
                            "clientCASecretName": "api-clients"}}}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


@pytest.fixture(scope="module")
def tls_render() -> Rendered:
    return render(TLS)


@pytest.fixture(scope="module")
def mtls_render() -> Rendered:
    return render(MTLS)


def _trainer_pods(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    """(role, pod template) of the trainer: "single" (StatefulSet), or "leader" and "worker" (LeaderWorkerSet)."""
    if rendered.has("StatefulSet", TRAINER):
        return [("single", rendered.get("StatefulSet", TRAINER)["spec"]["template"])]
    [lws] = rendered.of_kind("LeaderWorkerSet")
    lwt = lws["spec"]["leaderWorkerTemplate"]
    return [("leader", lwt["leaderTemplate"]), ("worker", lwt["workerTemplate"])]


def _pod(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("StatefulSet", TRAINER)["spec"]["template"]


def _config(rendered: Rendered) -> dict[str, Any]:
    data = yaml.safe_load(rendered.get("ConfigMap", f"{TRAINER}-config")["data"]["config.yaml"])
    assert isinstance(data, dict)
    return data


def _projected(pod: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(secret, key, path) of each file of the pod's api-tls volume."""
    sources = volume(pod, "api-tls")["projected"]["sources"]
    return [(s["secret"]["name"], i["key"], i["path"]) for s in sources for i in s["secret"]["items"]]


def _volume_names(pod: dict[str, Any]) -> set[str]:
    return {v["name"] for v in pod["spec"].get("volumes", [])}


def _without_generated_token(rendered: Rendered) -> list[dict[str, Any]]:
    """The objects with the auth Secret's data blanked (a generated admin token differs at every render)."""
    return [{**o, "data": None} if o["kind"] == "Secret" else o for o in rendered.objects]


# --- rendering ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["default_render", "gpu_render", "multinode_render"])
def test_by_default_the_api_is_plaintext_with_grpc_probes(which: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    assert "server" not in _config(rendered)
    for role, pod in _trainer_pods(rendered):
        assert "api-tls" not in _volume_names(pod)
        c = container(pod, "trainer")
        assert "api-tls" not in {m["name"] for m in c["volumeMounts"]}
        if role != "worker":  # a worker serves nothing and has no probes
            assert all(c[p]["grpc"] == {"port": 50051} for p in PROBES), role
    assert "https" not in rendered.notes and "--ca" not in rendered.notes


def test_secret_names_alone_change_nothing_while_tls_is_off(default_render) -> None:
    off = render({"trainer": {"tls": {"enabled": False, "secretName": "api-tls", "clientCASecretName": "c"}}})
    assert _without_generated_token(off) == _without_generated_token(default_render)
    assert off.notes == default_render.notes


def test_tls_mounts_the_certificate_read_only_and_points_the_trainer_config_at_it(tls_render) -> None:
    pod = _pod(tls_render)
    assert _projected(pod) == [("api-tls", "tls.crt", "tls.crt"), ("api-tls", "tls.key", "tls.key")]
    assert mount(container(pod, "trainer"), "api-tls") == {"name": "api-tls", "mountPath": TLS_DIR, "readOnly": True}
    server = parse_config(_config(tls_render)).server  # the trainer's own config model accepts it
    assert (server.tls_cert, server.tls_key, server.tls_client_ca) == (f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key", None)


def test_mutual_tls_adds_the_client_ca(mtls_render) -> None:
    assert _projected(_pod(mtls_render)) == [
        ("api-tls", "tls.crt", "tls.crt"), ("api-tls", "tls.key", "tls.key"), ("api-clients", "ca.crt", "client-ca.crt")]
    server = parse_config(_config(mtls_render)).server
    assert (server.tls_cert, server.tls_key, server.tls_client_ca) == (
        f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key", f"{TLS_DIR}/client-ca.crt")


def test_a_user_config_section_server_is_kept_beside_the_tls_files() -> None:
    rendered = render(deep_merge(TLS, {"trainer": {"config": {"server": {"max_workers": 80}}}}))
    assert _config(rendered)["server"] == {"max_workers": 80, "tls_cert": f"{TLS_DIR}/tls.crt",
                                           "tls_key": f"{TLS_DIR}/tls.key"}


def _metrics_listen(c: dict[str, Any]) -> str:
    command = c["command"]
    return str(command[command.index("--metrics-listen") + 1])


def test_tls_probes_get_healthz_on_the_metrics_port_with_the_values_timings(tls_render, default_render) -> None:
    """Not a TCP connect on the API port, which opens before the model has loaded: /healthz answers 200 only
    while the gRPC health is SERVING. The metrics port the probes name is the one the trainer serves."""
    tls, plain = container(_pod(tls_render), "trainer"), container(_pod(default_render), "trainer")
    for p in PROBES:
        assert "grpc" not in tls[p] and "tcpSocket" not in tls[p]
        assert tls[p]["httpGet"] == {"path": "/healthz", "port": 9090}
        assert {k: v for k, v in tls[p].items() if k != "httpGet"} == {k: v for k, v in plain[p].items() if k != "grpc"}
    assert _metrics_listen(tls) == "0.0.0.0:9090"
    moved = container(_pod(render(deep_merge(TLS, {"trainer": {"grpcPort": 6000, "metricsPort": 9400}}))), "trainer")
    assert all(moved[p]["httpGet"] == {"path": "/healthz", "port": 9400} for p in PROBES)
    assert _metrics_listen(moved) == "0.0.0.0:9400"


def test_tls_changes_the_config_checksum_so_the_trainer_restarts(tls_render, default_render) -> None:
    def checksum(r: Rendered) -> str:
        return str(_pod(r)["metadata"]["annotations"]["checksum/config"])

    assert checksum(tls_render) != checksum(default_render)


def test_the_metrics_endpoint_and_the_services_are_untouched_by_tls() -> None:
    """Metrics stay plain HTTP on their own port: the ServiceMonitor, the Services and the NetworkPolicy
    are those of a plaintext install."""
    monitored = {"serviceMonitor": {"enabled": True}}
    plain, tls = render(monitored), render(deep_merge(MTLS, monitored))
    for kind in ("ServiceMonitor", "Service", "NetworkPolicy"):
        assert tls.of_kind(kind) == plain.of_kind(kind), kind
    [monitor] = tls.of_kind("ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                             "scrapeTimeout": "10s"}]  # no scheme: https, no tlsConfig
    ports = container(_pod(tls), "trainer")["ports"]
    assert ports == container(_pod(plain), "trainer")["ports"]


def test_in_a_leaderworkerset_only_the_leader_gets_the_key() -> None:
    """Global rank 0, on the leader, serves the API; the workers' ranks never read the files."""
    rendered = render(deep_merge(MTLS, {"trainer": {**DEEPSPEED, "multiNode": {"enabled": True}}}))
    pods = dict(_trainer_pods(rendered))
    leader, worker = pods["leader"], pods["worker"]
    assert [p for _, _, p in _projected(leader)] == ["tls.crt", "tls.key", "client-ca.crt"]
    assert mount(container(leader, "trainer"), "api-tls")["mountPath"] == TLS_DIR
    assert all(container(leader, "trainer")[p]["httpGet"] == {"path": "/healthz", "port": 9090} for p in PROBES)
    assert _metrics_listen(container(leader, "trainer")) == "0.0.0.0:9090"  # passed on to rank 0
    assert not any(p in container(worker, "trainer") for p in PROBES)  # workers serve nothing: no probes
    assert "api-tls" not in _volume_names(worker)
    assert "api-tls" not in {m["name"] for m in container(worker, "trainer")["volumeMounts"]}
    assert parse_config(_config(rendered)).server.tls_cert == f"{TLS_DIR}/tls.crt"


@pytest.mark.parametrize(("tls", "message"), [
    ({"enabled": True}, "trainer.tls.secretName is required when trainer.tls.enabled"),
    ({"enabled": True, "secretName": "s", "mutual": True},
     "trainer.tls.clientCASecretName is required when trainer.tls.mutual"),
    ({"mutual": True, "clientCASecretName": "c"}, "trainer.tls.mutual needs trainer.tls.enabled"),
])
def test_tls_without_its_secret_names_is_refused_naming_the_value(tls: dict[str, Any], message: str) -> None:
    assert message in render_error({"trainer": {"tls": tls}})


def test_the_tls_files_in_the_trainer_config_are_refused_pointing_at_trainer_tls() -> None:
    for values in ({}, TLS):  # set by hand they would get no volume (and, off, grpc probes that never pass)
        error = render_error(deep_merge(values, {"trainer": {"config": {"server": {"tls_client_ca": "/x/ca.crt"}}}}))
        assert "trainer.config.server.tls_client_ca" in error and "trainer.tls" in error


def test_the_schema_refuses_an_unknown_tls_key() -> None:
    assert "clientCASecret" in render_error({"trainer": {"tls": {"clientCASecret": "c"}}})


def test_the_mutual_tls_objects_validate_strictly_and_pass_checkov(tmp_path: Path) -> None:
    """The projected volume and httpGet probes as Kubernetes 1.30 reads them (the LeaderWorkerSet's pod
    templates as core Pods), and checkov's checks (a probe of every kind is still configured)."""
    from test_helm_checkov import ALLOWED_SKIPS, _checkov

    kv = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate is not installed")
    rendered = render(MTLS)
    for obj in rendered.objects:
        kv.validate(obj, KUBE_VERSION, strict=True)
    multinode = render(deep_merge(MTLS, {"trainer": {**DEEPSPEED, "multiNode": {"enabled": True}}}))
    for obj in multinode.objects:
        if obj["kind"] not in CRD_KINDS:
            kv.validate(obj, KUBE_VERSION, strict=True)
    for _, template in multinode.pod_templates():
        kv.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **template["metadata"]},
                     "spec": template["spec"]}, KUBE_VERSION, strict=True)
    report = _checkov(tmp_path, rendered.yaml())
    assert [(c["check_id"], c["resource"]) for c in report["results"].get("failed_checks", [])] == []
    assert {c["check_id"] for c in report["results"].get("skipped_checks", [])} <= set(ALLOWED_SKIPS)


# --- end to end: the rendered trainer pod run as kubelet would run it, with real certificates -------

TOKEN = "trainer-tls-admin-token"
# The chart's config with the tiny model (built from a config, no download) and HF rollouts; nothing is
# submitted, so no step runs and the unreachable reward addresses of the rendered registry are never dialled.
E2E_VALUES = {
    "trainer": {"config": {"model": {"source": "tiny", "cache_dir": None, "dtype": "float32"},
                           "rollout": {"engine": "hf", "max_new_tokens": 8},
                           "algorithm": {"prompts_per_step": 2, "group_size": 2}}},
    "auth": {"tokens": [{"name": "ci", "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                         "roles": ["submit", "read", "admin"]}]},
}
SERVICE_NAMES = [TRAINER, f"{TRAINER}.{NAMESPACE}", f"{TRAINER}.{NAMESPACE}.svc", "localhost"]


def _server_certificate(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for the trainer Service's names and localhost, as the
    kubernetes.io/tls Secret cert-manager would write (tls.crt, tls.key, ca.crt). Not make_tls_files's,
    which names only localhost: NOTES.txt's buf curl checks the Service's name (--servername)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def builder(cn: str, public_key: Any, issuer: x509.Name) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(issuer).public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trainer API test CA")])
    ca = (builder("trainer API test CA", ca_key.public_key(), ca_name)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (builder(TRAINER, key.public_key(), ca.subject)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([*map(x509.DNSName, SERVICE_NAMES),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"tls.crt": directory / "tls.crt", "tls.key": directory / "tls.key", "ca.crt": directory / "ca.crt"}
    files["tls.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["tls.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    files["ca.crt"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Path]], TLSFiles]:
    """The Secrets the values name (the API's certificate; the clients' CA, from another issuer), and the
    clients' files: a certificate from the clients' CA, and a CA of its own."""
    clients: TLSFiles = make_tls_files(tmp_path_factory.mktemp("clients-ca"))
    secrets = {"api-tls": _server_certificate(tmp_path_factory.mktemp("api-ca")),
               "api-clients": {"tls.crt": clients.client_cert, "tls.key": clients.client_key,
                               "ca.crt": clients.ca_cert}}
    return secrets, clients


@dataclass
class RunningTrainer:
    rendered: Rendered
    port: int
    metrics_port: int
    ca: Path  # the ca.crt of the API's Secret, what clients trust
    client: TLSFiles  # a client certificate signed by the clients' CA
    tmp: Path


def _kubelet(rendered: Rendered, secrets: dict[str, dict[str, Path]], root: Path) -> Path:
    """Write what the trainer container sees under /etc/grpo into `root` (the projected TLS volume, the
    config and registry ConfigMaps, the tokens of the auth Secret), with the config's /etc/grpo paths
    moved there; the config file."""
    pod = _pod(rendered)
    (root / "api-tls").mkdir(parents=True)
    for secret, key, path in _projected(pod):
        shutil.copy(secrets[secret][key], root / "api-tls" / path)
    (root / "registry").mkdir()
    (root / "registry" / "registry.yaml").write_text(
        rendered.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"])
    (root / "auth").mkdir()
    [auth] = rendered.of_kind("Secret")
    (root / "auth" / "tokens.yaml").write_bytes(base64.b64decode(auth["data"]["tokens.yaml"]))
    config = root / "config.yaml"
    text = rendered.get("ConfigMap", f"{TRAINER}-config")["data"]["config.yaml"]
    config.write_text(text.replace(TLS_DIR, str(root / "api-tls")).replace("/etc/grpo/", f"{root}/"))
    return config


def _start(command: list[str], log: Path) -> tuple[subprocess.Popen[str], int, int]:
    """The rendered command (its first word: this virtualenv's entry point); its process and the API's and
    metrics' ports from the line grpo-server prints once it listens."""
    proc = subprocess.Popen([str(Path(sys.executable).with_name(command[0])), *command[1:]], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=log.open("wb"), text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    found: list[re.Match[str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if m := re.search(r"grpo-server listening on port (\d+) metrics (\d+)", line):
                found.append(m)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(120)
    if not found:
        proc.kill()
        proc.wait(30)
        raise AssertionError("grpo-server did not start:\n" + log.read_text(errors="replace")[-4000:])
    return proc, int(found[0].group(1)), int(found[0].group(2))


def _credentials(ca: Path, client: TLSFiles | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.client_key.read_bytes() if client else None,
        certificate_chain=client.client_cert.read_bytes() if client else None)


def _health(channel: grpc.Channel) -> int:
    return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status)


@contextmanager
def _running(values: dict[str, Any], pki: tuple[dict[str, dict[str, Path]], TLSFiles], tmp: Path,
             ) -> Iterator[RunningTrainer]:
    """grpo-server started from the StatefulSet rendered with `values`, SERVING."""
    secrets, clients = pki
    rendered = render(deep_merge(E2E_VALUES, values))
    config = _kubelet(rendered, secrets, tmp / "etc-grpo")
    moved = {"/etc/grpo/config.yaml": str(config), "0.0.0.0:50051": "127.0.0.1:0", "0.0.0.0:9090": "127.0.0.1:0",
             "/var/lib/grpo": str(tmp / "store")}
    command = [moved.get(a, a) for a in container(_pod(rendered), "trainer")["command"]]
    log = tmp / "trainer.log"
    proc, port, metrics_port = _start(command, log)
    running = RunningTrainer(rendered, port, metrics_port, secrets["api-tls"]["ca.crt"], clients, tmp)
    try:
        assert re.search(r"API listening on .*tls=True, auth=True", log.read_text()), log.read_text()[-4000:]
        mutual = bool(_config(rendered)["server"].get("tls_client_ca"))
        with grpc.secure_channel(f"localhost:{port}", _credentials(running.ca, clients if mutual else None)) as ch:
            deadline = time.monotonic() + 180
            while _health(ch) != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "the trainer never turned SERVING:\n" + log.read_text()[-4000:]
                time.sleep(0.2)
        yield running
    finally:
        proc.terminate()
        proc.communicate(timeout=120)


@pytest.fixture(scope="module")
def tls_trainer(pki: tuple[dict[str, dict[str, Path]], TLSFiles],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTrainer]:
    with _running(TLS, pki, tmp_path_factory.mktemp("tls-trainer-pod")) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_trainer(pki: tuple[dict[str, dict[str, Path]], TLSFiles],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTrainer]:
    with _running(MTLS, pki, tmp_path_factory.mktemp("mtls-trainer-pod")) as running:
        yield running


@pytest.fixture(params=["tls_trainer", "mtls_trainer"], ids=["tls", "mtls"])
def trainer(request: pytest.FixtureRequest) -> RunningTrainer:
    running: RunningTrainer = request.getfixturevalue(request.param)
    return running


def test_the_python_client_reaches_the_rendered_trainer_over_tls(tls_trainer: RunningTrainer) -> None:
    with TrainerClient(f"localhost:{tls_trainer.port}", TOKEN, ca=tls_trainer.ca) as client:
        assert client.step_status().run.state == trainer_pb2.RUN_STATE_IDLE
        assert {b.name for b in client.list_backends().backends} == {"math", "code"}  # the rendered registry
        assert client.pause().pause_requested  # an admin call: the token's role
        assert not client.resume().pause_requested


def test_with_mutual_tls_only_a_client_certificate_from_the_client_ca_gets_in(mtls_trainer: RunningTrainer) -> None:
    t = mtls_trainer
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.secure_channel(f"localhost:{t.port}", _credentials(t.ca, t.client)) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        status = stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=10, metadata=metadata)
        assert status.run.state == trainer_pb2.RUN_STATE_IDLE
    with TrainerClient(f"localhost:{t.port}", TOKEN, ca=t.ca, cert=t.client.client_cert, key=t.client.client_key,
                       server_name=TRAINER) as client:  # the Python client too, checking the Service's name
        assert client.step_status().run.state == trainer_pb2.RUN_STATE_IDLE
    # The API's CA verifies the server, but a client without a certificate is turned away in the handshake.
    with TrainerClient(f"localhost:{t.port}", TOKEN, ca=t.ca, timeout=5) as client, pytest.raises(TrainerError) as err:
        client.step_status()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_the_rendered_probes_pass_on_the_serving_trainer(trainer: RunningTrainer) -> None:
    """kubelet's GET of each rendered probe: the port it names is the metrics port the rendered command
    serves (moved to a free port here), and the answer, once the trainer is SERVING, is 200."""
    c = container(_pod(trainer.rendered), "trainer")
    for p in PROBES:
        get = c[p]["httpGet"]
        assert _metrics_listen(c) == f"0.0.0.0:{get['port']}"
        url = f"http://127.0.0.1:{trainer.metrics_port}{get['path']}"
        with urllib.request.urlopen(url, timeout=c[p]["timeoutSeconds"]) as response:
            assert (response.status, response.read()) == (200, b"SERVING\n")


def test_a_plaintext_client_is_refused(trainer: RunningTrainer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{trainer.port}") as channel, pytest.raises(grpc.RpcError) as err:
        _health(channel)  # what kubelet's grpc probe would send
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with TrainerClient(f"127.0.0.1:{trainer.port}", TOKEN, timeout=5) as client, pytest.raises(TrainerError) as e:
        client.step_status()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_metrics_stay_plain_http(trainer: RunningTrainer) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{trainer.metrics_port}/metrics", timeout=10) as response:
        assert "grpo_queue_depth" in response.read().decode()


def test_the_commands_notes_prints_work_as_printed(trainer: RunningTrainer) -> None:
    """Each `grpo ... status` and `buf curl` line of NOTES.txt, run in a directory holding the files it names
    (grpo-ca.crt from the Secret; client.crt, client.key), against the port instead of the port-forward."""
    notes = trainer.rendered.notes.replace("\\\n", " ")
    commands = [line.strip() for line in notes.splitlines()
                if re.match(r"\s+(grpo --target \S+ .*status$|buf curl )", line)]
    buf = REPO / "node_modules" / ".bin" / "buf"
    if not buf.exists():
        commands = [c for c in commands if not c.startswith("buf ")]
    assert any(c.startswith("grpo ") for c in commands), notes  # the CLI in both modes, mTLS included
    work = trainer.tmp / "notes"
    work.mkdir(exist_ok=True)
    shutil.copy(trainer.ca, work / "grpo-ca.crt")
    shutil.copy(trainer.client.client_cert, work / "client.crt")
    shutil.copy(trainer.client.client_key, work / "client.key")
    env = {**os.environ, "GRPO_TOKEN": TOKEN,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{buf.parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        assert "localhost:50051" in command
        proc = subprocess.run(["bash", "-c", command.replace("localhost:50051", f"localhost:{trainer.port}")],
                              cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        assert re.search(r"^run: idle|\"state\": \"RUN_STATE_IDLE\"", proc.stdout, re.MULTILINE), proc.stdout
