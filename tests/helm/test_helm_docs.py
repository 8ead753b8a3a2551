"""docs/helm.md's Values table against values.yaml: every key an operator sets is documented."""

from __future__ import annotations

import re
from typing import Any

import yaml
from helm_support import CHART, REPO

# Values whose content is a Kubernetes or program object (documented as a whole, not key by key).
OPAQUE = {
    "config", "resources", "nodeSelector", "tolerations", "affinity", "podSecurityContext",
    "containerSecurityContext", "startupProbe", "readinessProbe", "livenessProbe", "registry", "modelVolume",
    "dns", "labels", "annotations", "podAnnotations", "podLabels", "sandboxSeccompProfile",
    "sandboxAppArmorProfile", "image", "gpu", "podDisruptionBudget", "checkpoints", "extraEnv", "extraEgress",
    "extraBackends", "extraVolumes", "extraVolumeMounts", "tokens", "apiFrom", "metricsFrom", "trainerExtraEgress", "imagePullSecrets", "commonLabels",
    "service",
}


def _keys(node: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if path.startswith("rewards.") and path.count(".") == 1:  # rewards.math -> rewards.<b>
            out += _keys(value, "rewards.<b>.")
        elif isinstance(value, dict) and value and key not in OPAQUE:
            out += _keys(value, path + ".")
        else:
            out.append(path)
    return out


def _values_table() -> str:
    text = (REPO / "docs" / "helm.md").read_text()
    section = text.split("## Values", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("| `"))


def test_every_value_is_documented_in_the_values_table() -> None:
    table = _values_table()
    documented = set(re.findall(r"`([^`]+)`", table))
    words = {w for d in documented for w in re.split(r"[./: ]", d)}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = sorted({k for k in _keys(values) if k not in documented and k.rsplit(".", 1)[-1] not in words})
    assert missing == [], f"values.yaml keys missing from docs/helm.md's Values table: {missing}"
