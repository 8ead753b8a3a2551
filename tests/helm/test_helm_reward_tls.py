"""rewards.tls: the trainer reaches the chart's reward services over TLS, or mTLS, from kubernetes.io/tls
Secrets (tls.crt, tls.key, ca.crt: cert-manager's layout).

The rendering tests check what each pod mounts and is told; the end-to-end test plays kubelet: it writes
each pod's projected Secret volume from the rendered manifest into a temp dir, starts the real reward
service with the rendered command and arguments, scores an item through the trainer's registry
(the rendered registry file) and router, with the paths moved to the temp dir, and GETs the rendered probe.
"""

from __future__ import annotations

import re
import selectors
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from helm_support import (
    DEEPSPEED,
    KUBE_VERSION,
    REPO,
    TRAINER,
    Rendered,
    config_map_yaml,
    container,
    mount,
    render,
    render_error,
    reward_name,
    volume,
)

sys.path.insert(0, str(REPO / "tests" / "integration" / "services"))
sys.path.insert(0, str(REPO / "tests" / "integration" / "rewards"))

from reward_service_kit import TLSFiles, health_status, make_tls_files  # noqa: E402
from scripted_backends import RecordingObserver, group  # noqa: E402

from grpo_server.rewards.registry import RewardRegistry, parse_registry  # noqa: E402
from grpo_server.rewards.router import RewardRouter  # noqa: E402
from grpo_server.types import RewardStatus  # noqa: E402

TLS_DIR = "/etc/grpo/reward-tls"
TLS = {"rewards": {"tls": {"enabled": True, "secretName": "reward-tls"}}}
MTLS = {"rewards": {"tls": {"enabled": True, "secretName": "reward-tls", "mutual": True,
                            "clientSecretName": "trainer-client-tls"}}}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


@pytest.fixture(scope="module")
def tls_render() -> Rendered:
    return render(TLS)


@pytest.fixture(scope="module")
def mtls_render() -> Rendered:
    return render(MTLS)


def _reward_pod(rendered: Rendered, backend: str = "math") -> dict[str, Any]:
    return rendered.get("Deployment", reward_name(backend))["spec"]["template"]


def _trainer_pod(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("StatefulSet", TRAINER)["spec"]["template"]


def _projected(pod: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(secret, key, path) of each file of the pod's reward-tls volume."""
    sources = volume(pod, "reward-tls")["projected"]["sources"]
    return [(s["secret"]["name"], i["key"], i["path"]) for s in sources for i in s["secret"]["items"]]


def test_default_reward_services_are_plaintext_with_grpc_probes(default_render) -> None:
    for backend in ("math", "code"):
        pod = _reward_pod(default_render, backend)
        c = container(pod, backend)
        assert not [a for a in c["args"] if a.startswith("--tls")]
        assert all(c[p]["grpc"] == {"port": 50051} for p in PROBES)
        assert "reward-tls" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert "reward-tls" not in {v["name"] for v in _trainer_pod(default_render)["spec"]["volumes"]}
    backends = config_map_yaml(default_render, f"{TRAINER}-registry", "registry.yaml")["backends"]
    assert {n: (e["tls"], "ca_file" in e) for n, e in backends.items()} == {"math": (False, False), "code": (False, False)}


def test_tls_gives_the_services_their_certificate_and_the_trainer_only_the_ca(tls_render) -> None:
    for backend in ("math", "code"):
        pod = _reward_pod(tls_render, backend)
        c = container(pod, backend)
        assert _projected(pod) == [("reward-tls", "tls.crt", "tls.crt"), ("reward-tls", "tls.key", "tls.key")]
        assert mount(c, "reward-tls") == {"name": "reward-tls", "mountPath": TLS_DIR, "readOnly": True}
        args = " ".join(c["args"])
        assert f"--tls-cert {TLS_DIR}/tls.crt --tls-key {TLS_DIR}/tls.key" in args
        assert "--tls-client-ca" not in args
    trainer = _trainer_pod(tls_render)
    assert _projected(trainer) == [("reward-tls", "ca.crt", "ca.crt")]  # not the services' private key
    assert mount(container(trainer, "trainer"), "reward-tls")["readOnly"] is True
    entries = parse_registry(tls_render.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"])
    assert {n: (e.tls, e.ca_file, e.cert_file, e.key_file) for n, e in entries.items()} == {
        n: (True, f"{TLS_DIR}/ca.crt", None, None) for n in ("math", "code")}


def test_mutual_tls_gives_the_services_the_client_ca_and_the_trainer_its_client_certificate(mtls_render) -> None:
    pod = _reward_pod(mtls_render)
    assert ("trainer-client-tls", "ca.crt", "client-ca.crt") in _projected(pod)
    assert f"--tls-client-ca {TLS_DIR}/client-ca.crt" in " ".join(container(pod, "math")["args"])
    assert _projected(_trainer_pod(mtls_render)) == [
        ("reward-tls", "ca.crt", "ca.crt"), ("trainer-client-tls", "tls.crt", "tls.crt"),
        ("trainer-client-tls", "tls.key", "tls.key")]
    entry = parse_registry(mtls_render.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"])["math"]
    assert (entry.tls, entry.ca_file, entry.cert_file, entry.key_file) == (
        True, f"{TLS_DIR}/ca.crt", f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key")


def test_tls_reward_pods_are_probed_by_http_healthz_since_grpc_probes_speak_no_tls(tls_render, default_render) -> None:
    """GET /healthz on the metrics port (plain HTTP, which every reward pod serves): the gRPC health, drain
    included, which a TCP connect on the gRPC port did not see."""
    for backend in ("math", "code"):
        c, plain = container(_reward_pod(tls_render, backend), backend), container(_reward_pod(default_render, backend), backend)
        for p in PROBES:
            assert "grpc" not in c[p] and "tcpSocket" not in c[p]
            assert c[p]["httpGet"] == {"path": "/healthz", "port": 9090}
            assert {k: v for k, v in c[p].items() if k != "httpGet"} == {k: v for k, v in plain[p].items() if k != "grpc"}
        args = c["args"]
        assert args[args.index("--metrics-listen") + 1] == "0.0.0.0:9090"
    assert container(_reward_pod(tls_render), "math")["readinessProbe"]["periodSeconds"] == 10  # the values' timings


def test_tls_reaches_the_multinode_trainer_pods_and_the_reward_model() -> None:
    rendered = render({**TLS, "rewards": {**TLS["rewards"], "rm": {"enabled": True, "modelVolume": {"emptyDir": {}}}},
                       "trainer": {**DEEPSPEED, "multiNode": {"enabled": True}}})
    assert _projected(_reward_pod(rendered, "rm"))[0] == ("reward-tls", "tls.crt", "tls.crt")
    [lws] = rendered.of_kind("LeaderWorkerSet")
    for role in ("leaderTemplate", "workerTemplate"):  # every rank loads the registry, which names the CA
        pod = lws["spec"]["leaderWorkerTemplate"][role]
        assert _projected(pod) == [("reward-tls", "ca.crt", "ca.crt")]
        assert mount(container(pod, "trainer"), "reward-tls")["mountPath"] == TLS_DIR


def test_the_mutual_tls_objects_validate_strictly_and_pass_checkov(tmp_path: Path) -> None:
    """The projected volumes and httpGet probes as Kubernetes 1.30 reads them, and checkov's checks (a
    probe of every kind is still configured)."""
    from test_helm_checkov import ALLOWED_SKIPS, _checkov

    kv = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate is not installed")
    rendered = render({"rewards": {**MTLS["rewards"], "rm": {"enabled": True, "modelVolume": {"emptyDir": {}}}}})
    for obj in rendered.objects:
        kv.validate(obj, KUBE_VERSION, strict=True)
    report = _checkov(tmp_path, rendered.yaml())
    assert [(c["check_id"], c["resource"]) for c in report["results"].get("failed_checks", [])] == []
    assert {c["check_id"] for c in report["results"].get("skipped_checks", [])} <= set(ALLOWED_SKIPS)


@pytest.mark.parametrize(("tls", "message"), [
    ({"enabled": True}, "rewards.tls.secretName is required when rewards.tls.enabled"),
    ({"enabled": True, "secretName": "s", "mutual": True},
     "rewards.tls.clientSecretName is required when rewards.tls.mutual"),
    ({"mutual": True, "clientSecretName": "c"}, "rewards.tls.mutual needs rewards.tls.enabled"),
])
def test_tls_without_its_secret_names_is_refused_naming_the_value(tls: dict[str, Any], message: str) -> None:
    assert message in render_error({"rewards": {"tls": tls}})


# --- end to end: the rendered manifests run as kubelet would run them, with real certificates ---------


def _materialize(pod: dict[str, Any], secrets: dict[str, dict[str, Path]], root: Path) -> Path:
    """Write the pod's reward-tls projected volume under `root` (as kubelet would); the directory."""
    root.mkdir()
    for secret, key, path in _projected(pod):
        shutil.copy(secrets[secret][key], root / path)
    return root


def _start(command: list[str], args: list[str]) -> tuple[subprocess.Popen[str], int, int, list[str]]:
    """The console script `command[0]` of the venv with `args`; its process, gRPC and metrics ports and
    output so far."""
    proc = subprocess.Popen([str(Path(sys.executable).parent / command[0]), *command[1:], *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=0.2) and (line := proc.stdout.readline()):
            output.append(line)
            if m := re.search(r"listening on \S+:(\d+) \(metrics on \S+:(\d+)", line):
                return proc, int(m.group(1)), int(m.group(2)), output
    proc.kill()
    raise AssertionError("the reward service did not start:\n" + "".join(output) + (proc.stdout.read() or ""))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Two Secrets from two CAs, as the chart's values name them: the services' (server certificate for
    localhost) and the trainer's client certificate; each with the ca.crt of its own issuer."""
    server: TLSFiles = make_tls_files(tmp_path_factory.mktemp("server-ca"))
    client: TLSFiles = make_tls_files(tmp_path_factory.mktemp("client-ca"))
    return {
        "reward-tls": {"tls.crt": server.server_cert, "tls.key": server.server_key, "ca.crt": server.ca_cert},
        "trainer-client-tls": {"tls.crt": client.client_cert, "tls.key": client.client_key, "ca.crt": client.ca_cert},
    }


@pytest.fixture
def running(request: pytest.FixtureRequest, pki: dict[str, dict[str, Path]],
            tmp_path: Path) -> Iterator[tuple[Rendered, int, Path, int]]:
    """The math verifier started from the rendered Deployment (TLS or mTLS); (render, port, tmp dir,
    metrics port)."""
    rendered = render(request.param)
    pod = _reward_pod(rendered)
    c = container(pod, "math")
    local = _materialize(pod, pki, tmp_path / "reward-pod")
    args = [a.replace(TLS_DIR, str(local)) for a in c["args"]]
    args = [a.replace("0.0.0.0:50051", "127.0.0.1:0").replace("0.0.0.0:9090", "127.0.0.1:0") for a in args]
    proc, port, metrics_port, output = _start(c["command"], args)
    assert ("mTLS" if "--tls-client-ca" in args else "TLS") in "".join(output)
    try:
        yield rendered, port, tmp_path, metrics_port
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


@pytest.mark.parametrize("running", [TLS, MTLS], ids=["tls", "mtls"], indirect=True)
def test_the_trainer_scores_through_the_rendered_registry_over_tls(
        running: tuple[Rendered, int, Path, int], pki: dict[str, dict[str, Path]]) -> None:
    rendered, port, tmp_path, _ = running
    trainer_dir = _materialize(_trainer_pod(rendered), pki, tmp_path / "trainer-pod")
    text = rendered.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"]
    # The services' certificate names localhost here; in the cluster, the Service the address names.
    text = text.replace(TLS_DIR, str(trainer_dir)).replace(f"{reward_name('math')}-pods:50051", f"localhost:{port}")
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(text)
    registry = RewardRegistry(registry_file=registry_file)
    router = RewardRouter(registry, observer=RecordingObserver(), max_retries=0)
    try:
        [scored] = router.score([group("p", ["The answer is 42."], rewards=(("math", 1.0),))], registry.snapshot())
    finally:
        router.close()
        registry.stop()
    s = scored.completions[0].scores[0]
    assert (s.score, s.status) == (1.0, RewardStatus.OK), s.message


@pytest.mark.parametrize("running", [TLS], ids=["tls"], indirect=True)
def test_a_tls_reward_service_answers_the_rendered_probe_but_not_a_plaintext_grpc_one(
        running: tuple[Rendered, int, Path, int]) -> None:
    rendered, port, _, metrics_port = running
    c = container(_reward_pod(rendered), "math")
    for p in PROBES:  # kubelet's GET: the port the probe names is the rendered --metrics-listen (moved here)
        get = c[p]["httpGet"]
        assert c["args"][c["args"].index("--metrics-listen") + 1] == f"0.0.0.0:{get['port']}"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}{get['path']}", timeout=c[p]["timeoutSeconds"]) as r:
            assert (r.status, r.read()) == (200, b"SERVING\n")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as err:
        health_status(channel, timeout=3)  # what kubelet's grpc probe would send
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
