"""The alerting rules (deploy/prometheus/grpo-alerts.yaml) and the chart's PrometheusRule: Debian's real
`promtool` checks every rule and runs the unit tests of grpo-alerts-test.yaml; the chart ships the same
rules plus its release-bound ones, which promtool checks and tests as rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_support import CHART, DEEPSPEED, NAMESPACE, REPO, TRAINER, render, render_error

RULES = REPO / "deploy" / "prometheus" / "grpo-alerts.yaml"
CHART_RULES = CHART / "alerts" / "grpo-alerts.yaml"
RULE_TESTS = Path(__file__).with_name("grpo-alerts-test.yaml")
RELEASE_REWARD = "rel-grpo-math"  # a reward service's target of the same release

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool (Debian package prometheus) is not installed")


def promtool(*args: str, cwd: Path | None = None) -> str:
    """Run promtool; its output, after asserting it succeeded."""
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"]}


def prometheus_rule(values: dict[str, Any]) -> dict[str, Any]:
    found = render(values).of_kind("PrometheusRule")
    assert len(found) == 1, found
    return found[0]


ENABLED = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}


@needs_promtool
def test_promtool_finds_every_rule_valid() -> None:
    out = promtool("check", "rules", str(RULES))
    assert "SUCCESS: 8 rules found" in out, out


@needs_promtool
def test_each_alert_fires_when_it_should_and_only_then() -> None:
    out = promtool("test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in out, out
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for t in case["alert_rule_test"]}
    assert tested == set(alerts(yaml.safe_load(RULES.read_text())["groups"]))  # every alert has a test


def test_the_chart_ships_the_same_rules() -> None:
    assert CHART_RULES.read_text() == RULES.read_text(), f"copy {RULES} to {CHART_RULES}"


def test_off_by_default(default_render) -> None:
    assert default_render.of_kind("PrometheusRule") == []


def test_the_prometheus_rule_holds_the_file_and_the_release_rules() -> None:
    rule = prometheus_rule({**ENABLED, "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}})
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE and rule["metadata"]["labels"]["release"] == "kps"
    groups = rule["spec"]["groups"]
    # The file's rules as written (annotations' {{ }} kept), each grpo_* selector scoped to the namespace.
    scope = f'namespace="{NAMESPACE}"'
    written = yaml.safe_load(RULES.read_text())["groups"]
    assert [(g["name"], [r["alert"] for r in g["rules"]]) for g in groups[:-1]] == \
        [(g["name"], [r["alert"] for r in g["rules"]]) for g in written]
    for shipped, original in zip((r for g in groups[:-1] for r in g["rules"]),
                                 (r for g in written for r in g["rules"]), strict=True):
        assert {k: v for k, v in shipped.items() if k != "expr"} == {k: v for k, v in original.items() if k != "expr"}
        names = re.findall(r"\bgrpo_[a-z_]+", original["expr"])
        assert names and re.findall(r"\bgrpo_[a-z_]+(?=\{" + re.escape(scope) + r"[,}])", shipped["expr"]) == names, \
            shipped["expr"]
        assert shipped["expr"].replace(scope + ", ", "").replace("{" + scope + "}", "") == original["expr"]
    release = alerts(groups[-1:])
    assert set(release) == {"GrpoTrainerDown"}
    assert release["GrpoTrainerDown"]["expr"] == f'up{{namespace="{NAMESPACE}", service="{TRAINER}"}} == 0'


def test_the_store_volume_alert_takes_the_charts_threshold() -> None:
    rule = prometheus_rule({**ENABLED, "prometheusRule": {"enabled": True, "storeVolumeFreeFraction": 0.25}})
    expr = alerts(rule["spec"]["groups"])["GrpoStoreVolumeFilling"]["expr"]
    scope = f'{{namespace="{NAMESPACE}"}}'
    assert expr.strip() == (f"grpo_store_volume_available_bytes{scope} / grpo_store_volume_size_bytes{scope} < 0.25")
    # The same for a multi-node trainer: its leader exports the store volume's room, whatever the claim.
    multi = prometheus_rule({**ENABLED, "trainer": {**DEEPSPEED, "multiNode": {"enabled": True}}})
    assert alerts(multi["spec"]["groups"])["GrpoStoreVolumeFilling"]["expr"].strip().endswith("< 0.1")


def test_rules_without_the_service_monitor_are_refused() -> None:
    message = render_error({"prometheusRule": {"enabled": True}})
    assert "prometheusRule.enabled needs serviceMonitor.enabled" in message


@pytest.mark.parametrize("fraction", [0, 1, 1.5, "0.1"])
def test_a_free_fraction_outside_0_1_is_refused(fraction: Any) -> None:
    message = render_error({**ENABLED, "prometheusRule": {"enabled": True, "storeVolumeFreeFraction": fraction}})
    assert "storeVolumeFreeFraction" in message


@needs_promtool
def test_the_rendered_rules_pass_promtool_and_the_release_alerts_fire(tmp_path: Path) -> None:
    """The rules as the chart renders them, checked and unit-tested by promtool: the store alert fires at the
    chart's threshold for this release's namespace only, the down alert for its trainer's target only, and
    the file's other alerts (a failed run here) for this release's namespace only."""
    groups = prometheus_rule({**ENABLED, "prometheusRule": {"enabled": True, "storeVolumeFreeFraction": 0.2}})[
        "spec"]["groups"]
    rules = tmp_path / "rendered.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    assert "SUCCESS: 9 rules found" in promtool("check", "rules", str(rules))
    volume = f'namespace="{NAMESPACE}", instance="10.0.0.5:9090"'
    other = 'namespace="elsewhere", instance="10.1.0.5:9090"'
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # This release's store: 100 GiB, its free space falling 1 GiB a minute from 30 GiB.
                {"series": f"grpo_store_volume_size_bytes{{{volume}}}", "values": "107374182400x40"},
                {"series": f"grpo_store_volume_available_bytes{{{volume}}}", "values": "32212254720-1073741824x40"},
                # A trainer in another namespace, nearly full: not this release's.
                {"series": f"grpo_store_volume_size_bytes{{{other}}}", "values": "100x40"},
                {"series": f"grpo_store_volume_available_bytes{{{other}}}", "values": "1x40"},
                {"series": f'up{{namespace="{NAMESPACE}", service="{TRAINER}", instance="10.0.0.5:9090"}}',
                 "values": "1x3 0x20"},
                {"series": f'up{{namespace="{NAMESPACE}", service="{RELEASE_REWARD}", instance="10.0.0.6:9091"}}',
                 "values": "0x23"},
                # A failed run in this release's namespace and one in another: only the first alerts here.
                {"series": f'grpo_run_state{{namespace="{NAMESPACE}", state="failed", instance="10.0.0.5:9090"}}',
                 "values": "1x10"},
                {"series": 'grpo_run_state{namespace="elsewhere", state="failed", instance="10.1.0.5:9090"}',
                 "values": "1x10"},
            ],
            "alert_rule_test": [
                # Below 20% free from minute 11 (20 GiB left); 15 minutes later it fires.
                {"eval_time": "20m", "alertname": "GrpoStoreVolumeFilling", "exp_alerts": []},
                {"eval_time": "27m", "alertname": "GrpoStoreVolumeFilling", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "namespace": NAMESPACE, "instance": "10.0.0.5:9090"},
                    "exp_annotations": {
                        "summary": "The store volume of the trainer on 10.0.0.5:9090 has 3% of its space left.",
                        "description": alerts(groups)["GrpoStoreVolumeFilling"]["annotations"]["description"]}}]},
                {"eval_time": "5m", "alertname": "GrpoRunFailed", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "namespace": NAMESPACE, "state": "failed",
                                   "instance": "10.0.0.5:9090"},
                    "exp_annotations": {k: v.replace("{{ $labels.instance }}", "10.0.0.5:9090") for k, v in
                                        alerts(groups)["GrpoRunFailed"]["annotations"].items()}}]},
                {"eval_time": "6m", "alertname": "GrpoTrainerDown", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "GrpoTrainerDown", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "namespace": NAMESPACE, "service": TRAINER,
                                   "instance": "10.0.0.5:9090"},
                    "exp_annotations": alerts(groups)["GrpoTrainerDown"]["annotations"]}]},
            ],
        }],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    assert "SUCCESS" in promtool("test", "rules", "test.yaml", cwd=tmp_path)

