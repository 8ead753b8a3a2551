"""The trainer's /metrics after a few real steps: `promtool check metrics` finds nothing to flag, and
Debian's real `prometheus` server, started here with a temporary config and storage, scrapes the
trainer and a reward service on loopback; a query through its HTTP API returns the step count."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from live_trainer import ConstantScorer, free_port, prompts, wait_for, write_yaml

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_rewards.common.server import start_server

STEPS = 3


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def promtool_problems(exposition: str) -> str:
    done = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True,
                          timeout=60)
    return "" if done.returncode == 0 else done.stdout + done.stderr


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def trained(start_trainer, tmp_path: Path) -> Any:
    """A trainer (metrics on a loopback port) that has run STEPS steps, and a reward service with metrics."""
    backend = start_server(ConstantScorer("toy", 0.5), listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    app = start_trainer(tmp_path / "store", [("toy", backend.address)], training={"max_steps": STEPS},
                        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(2 * STEPS))
    for report in client.iter_steps(timeout=120):
        assert report.state == trainer_pb2.STEP_STATE_COMPLETED
        if report.step == STEPS:
            break
    yield app, backend
    backend.stop(1)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_finds_nothing_to_flag_in_the_trainer_and_reward_service_metrics(trained: Any) -> None:
    app, backend = trained
    exposition = scrape(app.metrics_port)
    for name in ("grpo_latest_step", "grpo_steps_total", "grpo_queue_depth", "grpo_prompts_trained_total",
                 "grpo_reward_request_duration_seconds_bucket", "grpo_checkpoints_total", "grpo_build_info",
                 "grpo_step_duration_seconds_bucket", "grpo_run_state", "grpo_reward_circuit_state"):
        assert f"\n{name}" in exposition, name
    assert f"grpo_latest_step {float(STEPS)}" in exposition
    assert promtool_problems(exposition) == ""
    assert promtool_problems(scrape(backend.metrics_port)) == ""


def test_a_restarted_trainer_shows_the_latest_steps_gauges_before_its_next_step(
    trained: Any, start_trainer, tmp_path: Path
) -> None:
    # The gauges of "the latest step" (reward, loss, micro-batch size...) read 0 after a restart until the
    # next step, while grpo_latest_step already said STEPS: the dashboard's reward fell to 0 at every restart.
    app, backend = trained
    before = scrape(app.metrics_port)
    app.shutdown(grace=60)
    again = start_trainer(tmp_path / "store", [("toy", backend.address)], training={"max_steps": STEPS},
                          server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"})
    after = scrape(again.metrics_port)
    report = again.store.get_step(STEPS)
    assert report is not None and report.metrics["reward_mean"] == 0.5
    for name in ("grpo_latest_step", "grpo_reward_mean", "grpo_entropy", "grpo_training_micro_batch_size"):
        line = next(line for line in before.splitlines() if line.startswith(f"{name} "))
        assert float(line.split()[1]) != 0.0, line
        assert f"\n{line}\n" in after, (line, [x for x in after.splitlines() if x.startswith(f"{name} ")])


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus (Debian package) is not installed")
def test_prometheus_scrapes_trainer_and_reward_service_and_answers_the_step_count(
    trained: Any, tmp_path: Path
) -> None:
    app, backend = trained
    config = write_yaml(tmp_path / "prometheus.yml", {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "grpo-trainer", "static_configs": [{"targets": [f"127.0.0.1:{app.metrics_port}"]}]},
            {"job_name": "grpo-reward", "static_configs": [{"targets": [f"127.0.0.1:{backend.metrics_port}"]}]},
        ],
    })
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def steps() -> list[dict[str, Any]] | None:
            try:
                return query(port, "grpo_latest_step") or None
            except OSError:  # not listening yet
                return None

        result = wait_for(steps, 60, lambda: (tmp_path / "prometheus.log").read_text()[-3000:], interval_s=0.5)
        assert result[0]["metric"]["job"] == "grpo-trainer"
        assert float(result[0]["value"][1]) == STEPS
        completed = wait_for(lambda: query(port, 'sum(grpo_steps_total{state="completed"})') or None, 30)
        assert float(completed[0]["value"][1]) == STEPS
        up = wait_for(lambda: (r := query(port, "up")) and len(r) == 2 and r or None, 30)
        assert {(r["metric"]["job"], r["value"][1]) for r in up} == {("grpo-trainer", "1"), ("grpo-reward", "1")}
    finally:
        server.terminate()
        server.wait(30)
        log.close()
