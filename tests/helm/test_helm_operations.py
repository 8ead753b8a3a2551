"""Operations: ServiceMonitor, PodDisruptionBudgets, the dashboard ConfigMap, NOTES.txt and the
LeaderWorkerSet option for several nodes."""

from __future__ import annotations

import json

from helm_support import REPO, TRAINER, render, reward_name

DASHBOARD = REPO / "deploy" / "grafana" / "grpo-dashboard.json"


def test_service_monitor_is_off_by_default(default_render) -> None:
    assert default_render.of_kind("ServiceMonitor") == []


def test_service_monitor_scrapes_the_metrics_port_of_every_service(gpu_render) -> None:
    (sm,) = gpu_render.of_kind("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    selector = sm["spec"]["selector"]["matchLabels"]
    scraped = {
        s["metadata"]["name"]
        for s in gpu_render.of_kind("Service")
        if selector.items() <= s["metadata"]["labels"].items() and any(p["name"] == "metrics" for p in s["spec"]["ports"])
    }
    # The headless Service has no metrics port, so the trainer is scraped once.
    assert scraped == {TRAINER, reward_name("math"), reward_name("code"), reward_name("rm")}


def test_every_workload_has_a_disruption_budget_selecting_it(gpu_render) -> None:
    pdbs = gpu_render.of_kind("PodDisruptionBudget")
    for owner, template in gpu_render.pod_templates():
        labels = template["metadata"]["labels"]
        assert any(p["spec"]["selector"]["matchLabels"].items() <= labels.items() for p in pdbs), owner
    trainer = gpu_render.get("PodDisruptionBudget", TRAINER)
    assert trainer["spec"]["maxUnavailable"] == 0


def test_dashboard_configmap_carries_the_dashboard_for_grafanas_sidecar(default_render) -> None:
    cm = default_render.get("ConfigMap", "rel-grpo-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["grpo-dashboard.json"]) == json.loads(DASHBOARD.read_text())


def test_notes_tell_how_to_reach_the_api(default_render) -> None:
    notes = default_render.notes
    assert f"port-forward svc/{TRAINER} 50051:50051" in notes
    assert "grpo --target localhost:50051" in notes and " status" in notes
    assert "buf curl" in notes and "grpo.trainer.v1.TrainerService/StepStatus" in notes


def test_multinode_is_off_by_default_so_no_crd_is_needed(default_render) -> None:
    assert default_render.of_kind("LeaderWorkerSet") == []
    assert render({"trainer": {"multiNode": {"enabled": False}}}).has("StatefulSet", TRAINER)
