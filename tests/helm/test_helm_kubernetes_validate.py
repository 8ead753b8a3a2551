"""kubernetes-validate --strict accepts every rendered object (the values-gated CRDs aside)."""

from __future__ import annotations

from typing import Any

import pytest
from helm_support import CRD_KINDS, GPU_VALUES, KUBE_VERSION, MULTINODE_VALUES, load_values, render

VALUES_FILES = {"default": None, "gpu": GPU_VALUES, "multinode": MULTINODE_VALUES}


def _values(which: str) -> dict[str, Any] | None:
    path = VALUES_FILES[which]
    return load_values(path) if path else None


kv = pytest.importorskip(
    "kubernetes_validate.utils", reason="kubernetes-validate is not installed (pip install --no-deps kubernetes-validate)"
)


def _validate_strict(obj: dict[str, Any]) -> None:
    kv.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("which", sorted(VALUES_FILES))
def test_every_rendered_object_validates_strictly_against_kubernetes_1_30(which: str) -> None:
    rendered = render(_values(which))
    errors = []
    crds_seen = set()
    for obj in rendered.objects:
        if obj["kind"] in CRD_KINDS:
            crds_seen.add(obj["kind"])
            continue
        try:
            _validate_strict(obj)
        except kv.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {err.message}")
    assert errors == []
    # Only the values-gated CRDs are left unchecked, and only when asked for.
    expected_crds = {"default": set(), "gpu": {"ServiceMonitor", "PrometheusRule"},
                     "multinode": {"ServiceMonitor", "PrometheusRule", "LeaderWorkerSet"}}
    assert crds_seen == expected_crds[which]


def test_leaderworkerset_pod_templates_validate_as_pods(multinode_render) -> None:
    """The LWS schema is a CRD's, so its two pod templates are checked as core Pods."""
    for owner, template in multinode_render.pod_templates():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **template["metadata"]}, "spec": template["spec"]}
        try:
            _validate_strict(pod)
        except kv.ValidationError as err:
            pytest.fail(f"{owner}: {'.'.join(str(p) for p in err.path)}: {err.message}")


def test_kubernetes_validate_catches_an_invalid_object() -> None:
    """The validation above can fail: a misspelt field is rejected in strict mode."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    with pytest.raises(kv.ValidationError):
        _validate_strict(bad)
