"""GET /healthz on the trainer's metrics port is the gRPC health in plain HTTP (the chart's probes with
trainer.tls, which kubelet's grpc probes cannot speak): 503 `NOT_SERVING` before the API's health exists,
while the model loads, after a failed load and while draining; 200 `SERVING` once the model has loaded.
/metrics on the same port is served as before. The real TrainerApp (tiny model), real HTTP requests."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from live_trainer import parsed_config, prompts, wait_for

import grpo_server.app as app_module
from grpo_client import TrainerClient
from grpo_server.app import TrainerApp

METRICS = {"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"}


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:PORT/PATH; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def grpc_health(api_port: int) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{api_port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))


def held(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> tuple[threading.Event, threading.Event]:
    """Make `target.name` wait for a release before it runs (the real one); (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    real = getattr(target, name)

    def wait_then_run(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(120), "never released"
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wait_then_run)
    return entered, release


def test_healthz_follows_the_grpc_health_from_start_to_drain(toy_backend, tmp_path: Path, monkeypatch) -> None:
    scorer, backend = toy_backend("toy", 0.5)
    app = TrainerApp(parsed_config(server=METRICS), tmp_path / "store", backend_overrides=[("toy", backend.address)])
    # Hold the start after the metrics port is bound but before the API (and its Health) exists, then the
    # loader before the model loads: each state is looked at for as long as the test needs.
    store_entered, store_release = held(monkeypatch, TrainerApp, "_open_store")
    load_entered, load_release = held(monkeypatch, app_module, "load_policy")
    starter = threading.Thread(target=app.start)
    starter.start()
    stopper: threading.Thread | None = None
    try:
        assert store_entered.wait(60)
        assert app.metrics_port
        assert get(app.metrics_port, "/healthz") == (503, "NOT_SERVING\n")  # no Health yet
        store_release.set()
        starter.join(60)
        assert load_entered.wait(60)
        assert grpc_health(app.api_port) == "NOT_SERVING"
        assert get(app.metrics_port, "/healthz") == (503, "NOT_SERVING\n")  # the model is loading
        status, text = get(app.metrics_port, "/metrics")
        assert status == 200 and 'grpo_run_state{state="starting"} 1.0' in text
        load_release.set()
        assert app.ready.wait(300), app.failed
        assert grpc_health(app.api_port) == "SERVING"
        assert get(app.metrics_port, "/healthz") == (200, "SERVING\n")
        status, text = get(app.metrics_port, "/metrics")  # every other path: the metrics, as before
        assert status == 200 and "grpo_queue_depth" in text and "SERVING" not in text

        # Drain with a step held in its reward phase: NOT_SERVING until the process stops serving at all.
        scorer.gate = threading.Event()
        with TrainerClient(f"127.0.0.1:{app.api_port}") as client:
            client.submit_prompts(prompts(2))
        assert scorer.calls_started.wait(120)
        stopper = threading.Thread(target=app.shutdown, kwargs={"grace": 60})
        stopper.start()
        wait_for(lambda: grpc_health(app.api_port) == "NOT_SERVING" or None, 30, "gRPC health stayed SERVING")
        assert get(app.metrics_port, "/healthz") == (503, "NOT_SERVING\n")
        assert stopper.is_alive()  # still draining: the step waits on the gate
        scorer.gate.set()
        stopper.join(120)
        assert not stopper.is_alive()
        with pytest.raises(urllib.error.URLError):  # the port is closed: refused, not a hang
            get(app.metrics_port, "/healthz")
    finally:
        store_release.set()
        load_release.set()
        if scorer.gate is not None:
            scorer.gate.set()
        starter.join(60)
        if stopper is None:
            app.shutdown(grace=60)
        else:
            stopper.join(120)


def test_healthz_stays_503_when_the_model_fails_to_load(toy_backend, tmp_path: Path) -> None:
    """What the startup probe needs to restart a trainer whose model did not load."""
    _, backend = toy_backend("toy", 0.5)
    not_a_model = tmp_path / "not-a-model"  # passes the start's check (a config.json), fails the load
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text('{"model_type": "no-such-architecture"}')
    app = TrainerApp(parsed_config(server=METRICS, model={"source": "path", "path": str(not_a_model)}),
                     tmp_path / "store", backend_overrides=[("toy", backend.address)])
    app.start()
    try:
        wait_for(lambda: app.failed, 120, "the model loaded from an empty directory")
        assert app.metrics_port
        assert grpc_health(app.api_port) == "NOT_SERVING"
        assert get(app.metrics_port, "/healthz") == (503, "NOT_SERVING\n")
        assert 'grpo_run_state{state="failed"} 1.0' in get(app.metrics_port, "/metrics")[1]
    finally:
        app.shutdown(grace=60)
