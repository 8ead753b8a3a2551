"""Each reward service: its own Deployment, Service and budget, enabled, sized and versioned on its own."""

from __future__ import annotations

import pytest
import yaml
from helm_support import TRAINER, container, mount, render, render_error, reward_name, volume

ENTRY_POINTS = {"math": "grpo-reward-math", "code": "grpo-reward-code", "rm": "grpo-reward-rm"}


@pytest.mark.parametrize("backend", sorted(ENTRY_POINTS))
def test_each_backend_has_a_deployment_service_and_budget(gpu_render, backend: str) -> None:
    name = reward_name(backend)
    dep = gpu_render.get("Deployment", name)
    c = container(dep["spec"]["template"], backend)
    assert c["command"][0] == ENTRY_POINTS[backend]
    assert c["args"][:4] == ["--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9090"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": 50051}
    svc = gpu_render.get("Service", name)
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"grpc": 50051, "metrics": 9090}
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    pdb = gpu_render.get("PodDisruptionBudget", name)
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_reward_model_gets_its_model_directory_and_a_gpu(gpu_render) -> None:
    pod = gpu_render.get("Deployment", reward_name("rm"))["spec"]["template"]
    c = container(pod, "rm")
    assert c["command"] == ["grpo-reward-rm", "--model", "/models/rm"]
    assert mount(c, "model") == {"name": "model", "mountPath": "/models/rm", "readOnly": True}
    assert volume(pod, "model")["persistentVolumeClaim"]["claimName"] == "reward-model-weights"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["spec"]["runtimeClassName"] == "nvidia"


def test_defaults_run_math_and_code_but_not_the_reward_model(default_render) -> None:
    deployments = {d["metadata"]["name"] for d in default_render.of_kind("Deployment")}
    assert deployments == {reward_name("math"), reward_name("code")}


def test_a_disabled_backend_leaves_no_objects_and_no_registry_entry() -> None:
    rendered = render({"rewards": {"math": {"enabled": False}},
                       "trainer": {"config": {"rewards": {"default": [{"backend": "code"}]}}}})
    assert not any(o["metadata"]["name"] == reward_name("math") for o in rendered.objects)
    registry = yaml.safe_load(rendered.get("ConfigMap", f"{TRAINER}-registry")["data"]["registry.yaml"])
    assert set(registry["backends"]) == {"code"}


def test_a_default_reward_backend_the_release_does_not_give_the_trainer_is_refused() -> None:
    """With math disabled and rewards.default still [math], the trainer got `backends: {}` and refused
    every prompt submitted without rewards of its own."""
    error = render_error({"rewards": {"math": {"enabled": False}}})
    assert 'trainer.config.rewards.default names the reward backend "math"' in error
    assert "(known: code)" in error and "enable rewards.math, add it to trainer.extraBackends" in error
    render({"rewards": {"math": {"enabled": False}}, "trainer": {"extraBackends": {"math": {"address": "m.example:50051"}}}})
    render({"rewards": {"math": {"enabled": False}},
            "trainer": {"config": {"rewards": {"default": [{"backend": "judge"}],
                                               "backends": {"judge": {"address": "judge.example:50051"}}}}}})


def test_reward_model_without_a_model_volume_is_refused_with_the_value_to_set() -> None:
    assert "rewards.rm.modelVolume is required" in render_error({"rewards": {"rm": {"enabled": True}}})


def test_each_backend_is_sized_and_versioned_on_its_own() -> None:
    rendered = render({
        "image": {"tag": "1.0.0"},
        "rewards": {
            "math": {"replicas": 5, "image": {"tag": "1.1.0"}, "resources": {"limits": {"cpu": "3"}}},
            "code": {"image": {"repository": "registry.example/sandbox", "digest": "sha256:" + "0" * 64}},
        },
    })
    math = rendered.get("Deployment", reward_name("math"))
    assert math["spec"]["replicas"] == 5
    assert container(math["spec"]["template"], "math")["image"] == "ghcr.io/grpo-service/grpo:1.1.0"
    assert container(math["spec"]["template"], "math")["resources"]["limits"]["cpu"] == "3"
    code = rendered.get("Deployment", reward_name("code"))
    assert container(code["spec"]["template"], "code")["image"] == "registry.example/sandbox@sha256:" + "0" * 64
    trainer = rendered.get("StatefulSet", TRAINER)
    assert container(trainer["spec"]["template"], "trainer")["image"] == "ghcr.io/grpo-service/grpo:1.0.0"


def test_image_tag_defaults_to_the_app_version(default_render) -> None:
    images = {c["image"] for _, t in default_render.pod_templates() for c in t["spec"]["containers"]}
    assert images == {"ghcr.io/grpo-service/grpo:0.1.0"}


def test_code_sandbox_may_create_user_namespaces_but_keeps_every_other_restriction(default_render) -> None:
    pod = default_render.get("Deployment", reward_name("code"))["spec"]["template"]
    sc = container(pod, "code")["securityContext"]
    assert sc["seccompProfile"] == {"type": "Unconfined"}
    assert sc["appArmorProfile"] == {"type": "Unconfined"}
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert "procMount" not in sc and "hostUsers" not in pod["spec"]
    reason = pod["metadata"]["annotations"]["checkov.io/skip1"]
    assert reason.startswith("CKV_K8S_31=") and "bubblewrap" in reason


def test_code_sandbox_can_use_a_localhost_seccomp_profile() -> None:
    profile = {"type": "Localhost", "localhostProfile": "profiles/grpo-sandbox.json"}
    rendered = render({"rewards": {"code": {"sandboxSeccompProfile": profile}}})
    pod = rendered.get("Deployment", reward_name("code"))["spec"]["template"]
    assert container(pod, "code")["securityContext"]["seccompProfile"] == profile


def test_code_sandbox_under_runtime_default_claims_no_seccomp_exception() -> None:
    rendered = render({"rewards": {"code": {"sandboxSeccompProfile": {"type": "RuntimeDefault"}}}})
    pod = rendered.get("Deployment", reward_name("code"))["spec"]["template"]
    assert container(pod, "code")["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any("CKV_K8S_31" in v for v in pod["metadata"]["annotations"].values())


def test_unmasked_proc_uses_a_user_namespaced_pod() -> None:
    rendered = render({"rewards": {"code": {"unmaskedProc": True}}})
    pod = rendered.get("Deployment", reward_name("code"))["spec"]["template"]
    assert pod["spec"]["hostUsers"] is False
    assert container(pod, "code")["securityContext"]["procMount"] == "Unmasked"


def test_code_sandbox_runs_as_the_tested_non_root_mode_without_proc_by_default(default_render) -> None:
    # What tests/integration/services/test_sandbox_security.py runs as mode uid10001-masked-proc: uid and
    # gid 10001, no capabilities, no_new_privs, a masked /proc and the service's --no-proc.
    from grpo_rewards.code_sandbox.server import build_parser, config_from_args

    pod = default_render.get("Deployment", reward_name("code"))["spec"]["template"]
    c = container(pod, "code")
    assert (c["securityContext"]["runAsUser"], c["securityContext"]["runAsGroup"]) == (10001, 10001)
    assert "--no-proc" in c["args"]
    assert config_from_args(build_parser().parse_args(c["args"])).mount_proc is False


def test_an_unmasked_proc_gives_the_sandbox_its_own_proc() -> None:
    # Mode uid10001 of the attack tests.
    from grpo_rewards.code_sandbox.server import build_parser, config_from_args

    pod = render({"rewards": {"code": {"unmaskedProc": True}}}).get("Deployment", reward_name("code"))["spec"]["template"]
    args = container(pod, "code")["args"]
    assert "--no-proc" not in args
    assert config_from_args(build_parser().parse_args(args)).mount_proc is True
