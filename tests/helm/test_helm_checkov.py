"""checkov (--framework kubernetes, offline) finds no failed check; each skip is justified in the chart."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helm_support import GPU_VALUES, MULTINODE_VALUES, deep_merge, load_values, render

VALUES_FILES = {"default": None, "gpu": GPU_VALUES, "multinode": MULTINODE_VALUES}


def _values(which: str) -> dict[str, Any] | None:
    path = VALUES_FILES[which]
    return load_values(path) if path else None



def _checkov_command() -> list[str]:
    script = Path(sys.executable).with_name("checkov")
    if script.exists():
        return [str(script)]
    found = shutil.which("checkov")
    if found is None:
        pytest.skip("checkov is not installed (see docs/helm.md for the pip commands)")
    return [found]


def _checkov(tmp_path: Path, manifest: str) -> dict[str, Any]:
    path = tmp_path / "rendered.yaml"
    path.write_text(manifest)
    proc = subprocess.run(
        [*_checkov_command(), "-f", str(path), "--framework", "kubernetes", "--skip-download", "-o", "json", "--compact"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    # One framework gives one report; with nothing to scan checkov prints a bare summary.
    assert isinstance(report, dict) and "results" in report, proc.stdout[:2000]
    return report


# What the chart may skip, and why (the same reasons are the annotations' text in the chart).
ALLOWED_SKIPS = {
    "CKV_K8S_43": "image digest",  # only while no image.digest is set: the chart cannot know it
    "CKV_K8S_31": "bubblewrap",  # only the code sandbox, whose bubblewrap needs user namespaces
}


@pytest.mark.parametrize("which", ["default", "gpu"])
def test_checkov_reports_no_failed_check_and_every_skip_is_justified(which: str, tmp_path: Path) -> None:
    report = _checkov(tmp_path, render(_values(which)).yaml())
    failed = [(c["check_id"], c["resource"]) for c in report["results"].get("failed_checks", [])]
    assert failed == []
    assert report["summary"]["passed"] > 100
    for skipped in report["results"].get("skipped_checks", []):
        check, resource = skipped["check_id"], skipped["resource"]
        assert check in ALLOWED_SKIPS, f"unexpected skip {check} on {resource}"
        comment = skipped["check_result"].get("suppress_comment", "")
        assert ALLOWED_SKIPS[check] in comment, f"{check} on {resource} skipped without its reason: {comment!r}"
        if check == "CKV_K8S_31":
            assert resource.endswith("-code"), f"only the code sandbox may leave RuntimeDefault: {resource}"


def test_checkov_skips_no_digest_check_once_the_image_is_pinned(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    values = deep_merge(load_values(GPU_VALUES), {"image": {"digest": digest}})
    rendered = render(values)
    report = _checkov(tmp_path, rendered.yaml())
    assert report["results"].get("failed_checks", []) == []
    skipped = {c["check_id"] for c in report["results"].get("skipped_checks", [])}
    assert "CKV_K8S_43" not in skipped
    images = {c["image"] for _, t in rendered.pod_templates() for c in t["spec"]["containers"]}
    assert images == {f"ghcr.io/grpo-service/grpo@{digest}"}


def test_checkov_fails_a_pod_without_the_chart_hardening(tmp_path: Path) -> None:
    """The scan can fail: a bare Deployment trips the checks the chart passes."""
    bare = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bare, namespace: grpo-test}\n"
        "spec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
        "    spec:\n      containers: [{name: c, image: 'x:1'}]\n"
    )
    failed = {c["check_id"] for c in _checkov(tmp_path, bare)["results"].get("failed_checks", [])}
    assert {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_31", "CKV_K8S_37", "CKV_K8S_40"} <= failed
