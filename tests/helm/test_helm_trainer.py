"""The trainer's StatefulSet, its config, registry and tokens, as the chart renders them."""

from __future__ import annotations

import base64
import hashlib

import yaml
from helm_support import (
    MULTINODE_VALUES,
    TRAINER,
    config_map_yaml,
    container,
    load_values,
    mount,
    render,
    render_error,
    reward_name,
    volume,
)

from grpo_server.config import parse_config
from grpo_server.rewards.registry import parse_registry


def _pod(rendered):
    return rendered.get("StatefulSet", TRAINER)["spec"]["template"]


def test_trainer_runs_the_fixed_entry_point_and_flags(default_render) -> None:
    c = container(_pod(default_render), "trainer")
    assert c["command"] == [
        "grpo-server", "--config", "/etc/grpo/config.yaml", "--listen", "0.0.0.0:50051",
        "--metrics-listen", "0.0.0.0:9090", "--store-dir", "/var/lib/grpo",
    ]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": 50051, "metrics": 9090}


def test_trainer_is_a_single_replica_statefulset(default_render) -> None:
    sts = default_render.get("StatefulSet", TRAINER)
    assert sts["spec"]["replicas"] == 1
    assert default_render.get("Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"


def test_gpu_values_request_gpus_on_gpu_nodes(gpu_render) -> None:
    pod = _pod(gpu_render)
    res = container(pod, "trainer")["resources"]
    assert res["limits"]["nvidia.com/gpu"] == 8 and res["requests"]["nvidia.com/gpu"] == 8
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]


def test_default_trainer_asks_for_one_gpu_and_tolerates_gpu_taints(default_render) -> None:
    pod = _pod(default_render)
    assert container(pod, "trainer")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["spec"]["tolerations"])
    assert "runtimeClassName" not in pod["spec"]


def test_zero_gpus_requests_no_gpu_resource() -> None:
    c = container(_pod(render({"trainer": {"gpu": {"count": 0}}})), "trainer")
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert "nvidia.com/gpu" not in c["resources"]["requests"]


def test_trainer_probes_use_grpc_health_with_a_long_startup(default_render) -> None:
    c = container(_pod(default_render), "trainer")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": 50051}, probe
    startup = c["startupProbe"]
    # Model loading and vLLM warm-up: at least 10 minutes before the kubelet gives up.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_grace_period_covers_the_drain(default_render) -> None:
    # Longer than the trainer's own drain wait, with time left to stop the API and exit.
    from grpo_server.app import DRAIN_SECONDS

    assert _pod(default_render)["spec"]["terminationGracePeriodSeconds"] >= DRAIN_SECONDS + 30


def test_store_and_checkpoints_live_on_a_persistent_volume_claim(gpu_render) -> None:
    sts = gpu_render.get("StatefulSet", TRAINER)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "store"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Ti"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert mount(container(sts["spec"]["template"], "trainer"), "store")["mountPath"] == "/var/lib/grpo"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_dev_shm_is_memory_backed(gpu_render) -> None:
    pod = _pod(gpu_render)
    assert volume(pod, "shm")["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert mount(container(pod, "trainer"), "shm")["mountPath"] == "/dev/shm"


def test_registry_is_its_own_configmap_mounted_as_a_directory(default_render) -> None:
    pod = _pod(default_render)
    m = mount(container(pod, "trainer"), "registry")
    assert m["mountPath"] == "/etc/grpo/registry" and "subPath" not in m
    assert volume(pod, "registry")["configMap"]["name"] == f"{TRAINER}-registry"
    config = config_map_yaml(default_render, f"{TRAINER}-config", "config.yaml")
    assert config["rewards"]["registry_file"] == "/etc/grpo/registry/registry.yaml"


def test_config_is_mounted_as_the_file_passed_to_config(default_render) -> None:
    m = mount(container(_pod(default_render), "trainer"), "config")
    assert (m["mountPath"], m["subPath"]) == ("/etc/grpo/config.yaml", "config.yaml")


def test_rendered_config_is_a_valid_trainer_config(default_render, gpu_render) -> None:
    for rendered in (default_render, gpu_render):
        config = parse_config(config_map_yaml(rendered, f"{TRAINER}-config", "config.yaml"))
        assert config.auth.tokens_file == "/etc/grpo/auth/tokens.yaml"
    assert parse_config(config_map_yaml(gpu_render, f"{TRAINER}-config", "config.yaml")).training.engine == "deepspeed"


def test_registry_lists_each_enabled_backend_at_its_service(gpu_render) -> None:
    text = gpu_render.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"]
    entries = parse_registry(text)
    assert set(entries) == {"math", "code", "rm"}
    for name, entry in entries.items():
        host, _, port = entry.address.rpartition(":")
        # The headless Service of the backend's pods: its name resolves to every ready replica and the
        # trainer's round_robin channel spreads calls over them (a ClusterIP would pin every call of the
        # trainer's one connection to one pod).
        assert host == f"{reward_name(name)}-pods" and port == "50051"
        pods = gpu_render.get("Service", host)
        assert pods["spec"]["clusterIP"] == "None"
        assert pods["spec"]["selector"] == gpu_render.get("Service", reward_name(name))["spec"]["selector"]
        assert [(p["name"], p["port"], p["targetPort"]) for p in pods["spec"]["ports"]] == [("grpc", 50051, "grpc")]
        assert entry.tls is False
    assert entries["code"].timeout_seconds == 60


def test_reward_pods_service_name_stays_a_dns_label_with_a_long_release_name() -> None:
    rendered = render({"fullnameOverride": "x" * 63})
    [registry] = [m for m in rendered.of_kind("ConfigMap") if m["metadata"]["name"].endswith("-registry")]
    entries = parse_registry(registry["data"]["registry.yaml"])
    assert entries
    for entry in entries.values():
        host = entry.address.rpartition(":")[0]
        assert len(host) <= 63 and host.endswith("-pods"), host
        assert rendered.has("Service", host)
    assert all(len(m["metadata"]["name"]) <= 63 for m in rendered.of_kind("Service"))


def test_trainer_workloads_keep_their_pods_with_the_longest_release_names() -> None:
    """A StatefulSet's controller labels each pod controller-revision-hash=<name>-<10-character hash>, at
    most 63 characters: a name over 52 gets no pod. The LWS webhook wants its name a DNS-1035 label, and
    its worker StatefulSets are <name>-<group index>. Both were cut at 63 only, or not at all."""
    import re

    for values in ({}, load_values(MULTINODE_VALUES)):
        # Helm's longest release name (53) gives a full name of 58: "<release>-grpo".
        rendered = render({**values, "fullnameOverride": "x" * 58})
        for sts in rendered.of_kind("StatefulSet"):
            assert len(sts["metadata"]["name"]) <= 52, sts["metadata"]["name"]
        for lws in rendered.of_kind("LeaderWorkerSet"):
            name = lws["metadata"]["name"]
            assert len(name) + len("-999") <= 52 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
        assert rendered.of_kind("StatefulSet") or rendered.of_kind("LeaderWorkerSet")
        kinds_names = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
        assert len(kinds_names) == len(set(kinds_names)), "a shortened name collides with another"


def test_extra_backends_join_the_registry() -> None:
    rendered = render({"trainer": {"extraBackends": {"judge": {"address": "judge.other:50051", "timeout_seconds": 90}}}})
    entries = parse_registry(rendered.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"])
    assert entries["judge"].address == "judge.other:50051" and entries["judge"].timeout_seconds == 90


def test_an_extra_mtls_backend_gets_its_certificates_through_extra_volumes() -> None:
    """An extra backend requiring client certificates: its files come from a Secret the operator mounts
    with trainer.extraVolumes/extraVolumeMounts, and the registry entry names them."""
    tls_dir = "/etc/grpo/judge-tls"
    rendered = render({"trainer": {
        "extraBackends": {"judge": {"address": "judge.other:50051", "tls": True, "ca_file": f"{tls_dir}/ca.crt",
                                    "cert_file": f"{tls_dir}/tls.crt", "key_file": f"{tls_dir}/tls.key"}},
        "extraVolumes": [{"name": "judge-tls", "secret": {"secretName": "judge-client-tls"}}],
        "extraVolumeMounts": [{"name": "judge-tls", "mountPath": tls_dir, "readOnly": True}],
    }})
    entry = parse_registry(rendered.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"])["judge"]
    assert (entry.tls, entry.ca_file, entry.cert_file, entry.key_file) == (
        True, f"{tls_dir}/ca.crt", f"{tls_dir}/tls.crt", f"{tls_dir}/tls.key")
    pod = _pod(rendered)
    assert volume(pod, "judge-tls")["secret"] == {"secretName": "judge-client-tls"}
    assert mount(container(pod, "trainer"), "judge-tls") == {"name": "judge-tls", "mountPath": tls_dir,
                                                               "readOnly": True}


def test_extra_volumes_without_a_name_are_refused_at_install() -> None:
    assert "name" in render_error({"trainer": {"extraVolumes": [{"secret": {"secretName": "x"}}]}})


def _checksum(rendered) -> str:
    return _pod(rendered)["metadata"]["annotations"]["checksum/config"]


def test_config_checksum_restarts_the_trainer_on_a_config_change_only(default_render) -> None:
    config_text = default_render.get("ConfigMap", f"{TRAINER}-config")["data"]["config.yaml"]
    assert _checksum(default_render) == hashlib.sha256(config_text.rstrip("\n").encode()).hexdigest()
    changed_config = render({"trainer": {"config": {"algorithm": {"group_size": 16}}}})
    assert _checksum(changed_config) != _checksum(default_render)
    # A registry change (a backend swapped, added, disabled) must not restart the trainer.
    changed_registry = render({
        "rewards": {"math": {"registry": {"timeout_seconds": 5}}, "code": {"enabled": False}},
        "trainer": {"extraBackends": {"judge": {"address": "judge:50051"}}},
    })
    assert changed_registry.get("ConfigMap", f"{TRAINER}-registry") != default_render.get("ConfigMap", f"{TRAINER}-registry")
    assert _checksum(changed_registry) == _checksum(default_render)
    annotations = _pod(default_render)["metadata"]["annotations"]
    assert [k for k in annotations if k.startswith("checksum/")] == ["checksum/config"]


def _tokens(rendered) -> dict:
    secret = rendered.get("Secret", "rel-grpo-auth")
    return yaml.safe_load(base64.b64decode(secret["data"]["tokens.yaml"]))


def test_tokens_come_from_a_secret_mounted_as_a_directory(default_render) -> None:
    pod = _pod(default_render)
    m = mount(container(pod, "trainer"), "auth")
    assert m["mountPath"] == "/etc/grpo/auth" and "subPath" not in m
    assert volume(pod, "auth")["secret"] == {
        "secretName": "rel-grpo-auth", "items": [{"key": "tokens.yaml", "path": "tokens.yaml"}],
    }


def test_without_tokens_an_admin_token_is_generated_and_only_its_hash_is_mounted(default_render) -> None:
    secret = default_render.get("Secret", "rel-grpo-auth")
    plaintext = base64.b64decode(secret["data"]["admin-token"]).decode()
    assert len(plaintext) >= 32
    (token,) = _tokens(default_render)["tokens"]
    assert token == {"name": "admin", "token_sha256": hashlib.sha256(plaintext.encode()).hexdigest(),
                     "roles": ["submit", "read", "admin"]}
    assert "admin-token" in default_render.notes


def test_listed_tokens_are_written_as_given(gpu_render) -> None:
    assert _tokens(gpu_render)["tokens"] == [{
        "name": "ci", "token_sha256": hashlib.sha256(b"ci-token").hexdigest(), "roles": ["submit", "read", "admin"],
    }]
    assert "admin-token" not in gpu_render.get("Secret", "rel-grpo-auth")["data"]


def test_an_existing_secret_replaces_the_charts_secret() -> None:
    rendered = render({"auth": {"existingSecret": "team-tokens", "existingSecretKey": "grpo.yaml"}})
    assert rendered.of_kind("Secret") == []
    assert volume(_pod(rendered), "auth")["secret"] == {
        "secretName": "team-tokens", "items": [{"key": "grpo.yaml", "path": "tokens.yaml"}],
    }


def test_auth_off_mounts_no_tokens_and_sets_no_tokens_file() -> None:
    rendered = render({"auth": {"enabled": False}})
    assert rendered.of_kind("Secret") == []
    assert all(m["name"] != "auth" for m in container(_pod(rendered), "trainer")["volumeMounts"])
    assert "auth" not in config_map_yaml(rendered, f"{TRAINER}-config", "config.yaml")


def test_model_volume_is_mounted_read_only_at_models(gpu_render) -> None:
    pod = _pod(gpu_render)
    assert volume(pod, "model")["persistentVolumeClaim"] == {"claimName": "policy-weights", "readOnly": True}
    m = mount(container(pod, "trainer"), "model")
    assert m["mountPath"] == "/models" and m["readOnly"] is True
    assert parse_config(config_map_yaml(gpu_render, f"{TRAINER}-config", "config.yaml")).model.path == "/models/policy"


def test_no_init_container_by_default(default_render) -> None:
    assert "initContainers" not in _pod(default_render)["spec"]


def test_compact_store_on_start_runs_before_the_trainer_on_its_store() -> None:
    pod = _pod(render({"trainer": {"compactStoreOnStart": True}}))
    (init,) = pod["spec"]["initContainers"]
    trainer = container(pod, "trainer")
    assert init["name"] == "compact-store" and init["image"] == trainer["image"]
    assert init["command"] == ["grpo-server", "--compact-store", "--config", "/etc/grpo/config.yaml",
                               "--store-dir", "/var/lib/grpo"]
    assert mount(init, "store")["mountPath"] == mount(trainer, "store")["mountPath"] == "/var/lib/grpo"
    assert mount(init, "config") == mount(trainer, "config")  # the same retention.* the trainer applies
    # VACUUM's copy goes on the store's volume: /tmp is a small emptyDir under a read-only root.
    assert {"name": "SQLITE_TMPDIR", "value": "/var/lib/grpo"} in init["env"]
    assert init["securityContext"] == trainer["securityContext"]
    assert "nvidia.com/gpu" in trainer["resources"]["limits"]
    assert not any("gpu" in k for k in init["resources"].get("limits", {}))  # no GPU held for it
