"""The Grafana dashboard (deploy/grafana/grpo-dashboard.json) charts every metric the trainer and the
reward services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "grpo-dashboard.json"
CHART_COPY = REPO / "helm" / "grpo" / "dashboards" / "grpo-dashboard.json"

TRAINER_METRICS = [
    "grpo_steps_total", "grpo_step_duration_seconds", "grpo_reward_mean", "grpo_reward_std",
    "grpo_backend_reward_mean", "grpo_kl", "grpo_policy_loss", "grpo_entropy", "grpo_grad_norm",
    "grpo_clip_fraction", "grpo_completion_length_tokens", "grpo_zero_variance_groups",
    "grpo_masked_reward_failures_total", "grpo_generated_tokens_total", "grpo_queue_depth",
    "grpo_prompts_submitted_total", "grpo_prompts_trained_total", "grpo_prompts_failed_total",
    "grpo_reward_request_duration_seconds", "grpo_reward_request_failures_total", "grpo_checkpoints_total",
    "grpo_checkpoint_duration_seconds", "grpo_step_phase_seconds", "grpo_run_state", "grpo_build_info",
    "grpo_reward_circuit_state", "grpo_store_bytes", "grpo_store_pruned_total",
    "grpo_truncated_fraction", "grpo_store_volume_available_bytes", "grpo_training_micro_batch_size",
    "grpo_oom_retries_total", "grpo_export_failures_total",
]
REWARD_SERVICE_METRICS = ["grpo_reward_items_total", "grpo_reward_score_duration_seconds", "grpo_reward_in_flight_requests"]
HISTOGRAMS = [
    "grpo_step_duration_seconds", "grpo_reward_request_duration_seconds", "grpo_reward_score_duration_seconds",
    "grpo_checkpoint_duration_seconds",
]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p["targets"]]


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bgrpo_[a-z_]+\b", expr))


@pytest.mark.parametrize("metric", TRAINER_METRICS + REWARD_SERVICE_METRICS)
def test_every_exported_metric_is_charted(dashboard: dict, metric: str) -> None:
    names = set().union(*(_metric_names(e) for e in _exprs(dashboard)))
    suffixes = ("", "_bucket", "_sum", "_count")
    assert any(metric + s in names for s in suffixes), metric


def test_histograms_are_read_through_their_buckets(dashboard: dict) -> None:
    exprs = _exprs(dashboard)
    for metric in HISTOGRAMS:
        assert any("histogram_quantile(0.95, sum by (le" in e and f"{metric}_bucket" in e for e in exprs), metric


def test_no_panel_queries_a_metric_that_is_not_exported(dashboard: dict) -> None:
    known = set()
    for m in TRAINER_METRICS + REWARD_SERVICE_METRICS:
        known |= {m} if m not in HISTOGRAMS else {m + "_bucket", m + "_sum", m + "_count"}
    used = set().union(*(_metric_names(e) for e in _exprs(dashboard)))
    assert used <= known, used - known


def test_panels_use_the_datasource_variable_and_the_namespace_filter(dashboard: dict) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "namespace" in variables
    for p in _panels(dashboard):
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert 'namespace=~"$namespace"' in t["expr"], p["title"]
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboard: dict) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"{p['title']} overlaps another panel"
        cells |= area
    assert dashboard["uid"] == "grpo-training"


def test_charts_dashboard_copy_is_identical_to_deploy_grafana() -> None:
    """The chart ships a copy (.Files.Get cannot read outside the chart); edit deploy/grafana, then copy."""
    assert CHART_COPY.read_bytes() == DASHBOARD.read_bytes()
