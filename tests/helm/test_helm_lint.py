"""Helm's strict lint (with a Kubernetes version) and the values schema, offline through helm-python-sdk."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helm_support import CHART, GPU_VALUES, KUBE_VERSION, MULTINODE_VALUES, helm, load_values

VALUES_FILES = {"default": None, "gpu": GPU_VALUES, "multinode": MULTINODE_VALUES}


def _values(which: str) -> dict[str, Any] | None:
    path = VALUES_FILES[which]
    return load_values(path) if path else None



@pytest.mark.parametrize("which", sorted(VALUES_FILES))
def test_chart_lints_strict_with_kube_version(which: str) -> None:
    report = helm.lint(
        str(CHART), _values(which), strict=True, kube_version=f"v{KUBE_VERSION}", namespace="grpo-test"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], json.dumps(report, indent=1)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"trainer": {"grpcPort": "50051"}}, "/trainer/grpcPort"),
        ({"trainer": {"gpus": 8}}, "gpus"),  # a typo of trainer.gpu is refused, not ignored
        ({"auth": {"tokens": [{"name": "ci", "token_sha256": "not-hex", "roles": ["read"]}]}}, "token_sha256"),
        ({"auth": {"tokens": [{"name": "ci", "token_sha256": "0" * 64, "roles": ["root"]}]}}, "roles"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"rewards": {"code": {"sandboxSeccompProfile": {"type": "Privileged"}}}}, "sandboxSeccompProfile"),
    ],
)
def test_values_schema_rejects_bad_values_naming_the_field(values: dict[str, Any], field: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema(values)
    assert field in str(info.value)


def test_values_schema_accepts_every_shipped_values_file() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        for path in VALUES_FILES.values():
            chart.validate_schema(load_values(path) if path else {})
