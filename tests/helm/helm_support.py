"""Rendering the chart offline for the tests: helm-python-sdk (Helm v4's Go library) renders
helm/grpo with given values, and these helpers turn the manifests into objects to assert on.

No cluster and no helm binary are involved; lookups return nothing (as on a first install).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "grpo"
GPU_VALUES = CHART / "ci" / "gpu-values.yaml"
MULTINODE_VALUES = CHART / "ci" / "multinode-values.yaml"
# trainer values a LeaderWorkerSet needs besides multiNode.enabled: only DeepSpeed's ranks follow rank 0.
DEEPSPEED = {"config": {"training": {"engine": "deepspeed"}}}
RELEASE = "rel"
NAMESPACE = "grpo-test"
KUBE_VERSION = "1.30.0"
# Kinds from CRDs the chart can render (values-gated); schemas for them are not in Kubernetes.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "LeaderWorkerSet"}

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk is not installed (pip install --no-deps helm-python-sdk)"
)


def load_values(path: Path) -> dict[str, Any]:
    """A values file as a dict."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """base with override's keys set recursively (the way Helm coalesces -f files and --set)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Rendered:
    """The chart rendered once: every object by (kind, name), and NOTES.txt."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            self.objects.extend(doc for doc in yaml.safe_load_all(text) if doc)

    def yaml(self) -> str:
        """All objects as one multi-document YAML stream (what `helm template` prints)."""
        return yaml.safe_dump_all(self.objects, sort_keys=False)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}: {self.names()}"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(o["metadata"]["name"] == name for o in self.of_kind(kind))

    def names(self) -> list[str]:
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.objects]

    def pod_templates(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(owner, pod template) for every workload, the LeaderWorkerSet's leader and worker included."""
        for o in self.objects:
            owner = f"{o['kind']}/{o['metadata']['name']}"
            if o["kind"] in ("Deployment", "StatefulSet"):
                yield owner, o["spec"]["template"]
            elif o["kind"] == "LeaderWorkerSet":
                lwt = o["spec"]["leaderWorkerTemplate"]
                yield owner + "#leader", lwt["leaderTemplate"]
                yield owner + "#worker", lwt["workerTemplate"]


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> Rendered:
    """Render helm/grpo with values (merged over the chart's defaults by Helm) as release `rel`."""
    with helm.Chart.load(str(CHART)) as chart:
        return Rendered(chart.render(values, name=RELEASE, namespace=namespace, is_install=True))


def render_error(values: dict[str, Any]) -> str:
    """The error message of a render that must fail."""
    with pytest.raises(helm.HelmError) as info:
        render(values)
    return str(info.value)


def container(pod_template: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod_template["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, f"no container {name}"
    return found[0]


def volume(pod_template: dict[str, Any], name: str) -> dict[str, Any]:
    found = [v for v in pod_template["spec"].get("volumes", []) if v["name"] == name]
    assert len(found) == 1, f"no volume {name}"
    return found[0]


def mount(c: dict[str, Any], name: str) -> dict[str, Any]:
    found = [m for m in c.get("volumeMounts", []) if m["name"] == name]
    assert len(found) == 1, f"no volumeMount {name}"
    return found[0]


def config_map_yaml(rendered: Rendered, name: str, key: str) -> Any:
    """A YAML document held in a ConfigMap's data key."""
    return yaml.safe_load(rendered.get("ConfigMap", name)["data"][key])


TRAINER = f"{RELEASE}-grpo-trainer"


def reward_name(backend: str) -> str:
    return f"{RELEASE}-grpo-{backend}"
