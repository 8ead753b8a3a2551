"""Every pod runs non-root with a read-only root filesystem, no capabilities and RuntimeDefault seccomp
(the code sandbox's seccomp/AppArmor profile being the one documented exception)."""

from __future__ import annotations

import pytest

RENDERS = ["default_render", "gpu_render", "multinode_render"]


def _containers(rendered):
    for owner, template in rendered.pod_templates():
        for c in template["spec"]["containers"] + template["spec"].get("initContainers", []):
            yield owner, template, c


@pytest.mark.parametrize("which", RENDERS)
def test_every_container_is_non_root_read_only_and_without_capabilities(request, which: str) -> None:
    for owner, template, c in _containers(request.getfixturevalue(which)):
        pod_sc, sc = template["spec"]["securityContext"], c["securityContext"]
        where = f"{owner}/{c['name']}"
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] >= 10000, where
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, where
        assert sc["capabilities"] == {"drop": ["ALL"]}, where
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        if c["name"] != "code":
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "appArmorProfile" not in sc, where


@pytest.mark.parametrize("which", RENDERS)
def test_no_pod_gets_a_service_account_token(request, which: str) -> None:
    rendered = request.getfixturevalue(which)
    for owner, template in rendered.pod_templates():
        assert template["spec"]["automountServiceAccountToken"] is False, owner
    for sa in rendered.of_kind("ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("which", RENDERS)
def test_writable_paths_are_volumes_under_the_read_only_root(request, which: str) -> None:
    for owner, _, c in _containers(request.getfixturevalue(which)):
        paths = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/tmp" in paths and "/var/cache/grpo" in paths, f"{owner}/{c['name']}"


@pytest.mark.parametrize("which", RENDERS)
def test_every_container_has_requests_and_limits(request, which: str) -> None:
    for owner, _, c in _containers(request.getfixturevalue(which)):
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{owner}/{c['name']} {kind}"


@pytest.mark.parametrize("which", RENDERS)
def test_objects_are_placed_in_the_release_namespace(request, which: str) -> None:
    from helm_support import NAMESPACE

    for obj in request.getfixturevalue(which).objects:
        assert obj["metadata"]["namespace"] == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
