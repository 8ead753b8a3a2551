"""What an operator running `grpo-server` (by hand, under systemd, as a Kubernetes pod) relies on, checked
on the real process or the real trainer:

- its log: every line has a time and a level (no progress bars), and the first ones name the version,
  the store directory, the model and engines, the listen addresses; a line says when it is ready and
  which rollout engine it chose;
- /metrics listens on an IPv6 address written in brackets, as `--listen` does;
- a failed run (a step that raises) keeps the process up: the API answers with run state FAILED, health
  stays SERVING (the API works; alert on `grpo_run_state{state="failed"}`), /metrics says `failed` through
  the drain, SIGTERM stops it with status 1 (the run had failed), and a restart on the same store
  trains every prompt;
- SIGHUP (a closed terminal) drains as SIGTERM does; a second signal during the drain (Ctrl-C twice)
  exits at once with 128 + N, and a restart still accounts for every prompt.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from grpc_health.v1 import health_pb2
from live_trainer import TrainerProcess, config_data, prompt_accounting, prompts, wait_for, write_yaml

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_rewards.common.server import start_server
from grpo_server import __version__
from grpo_server.types import PromptState

# A log line: `2026-01-31 12:00:00,123 INFO name: message` (the trainer's format), or DeepSpeed's own
# `[2026-01-31 12:00:00,123] [WARNING] [file.py:12:func] message` (its logger, from accelerate's import).
LOG_LINE = re.compile(r"^\[?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]? \[?(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


@pytest.fixture(scope="module")
def math_backend() -> Iterator[str]:
    """The real math verifier (grpo-reward-math's scorer, one worker process) on a loopback port."""
    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    server = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0")
    yield server.address
    server.stop(5)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def run_state_metric(exposition: str) -> list[str]:
    """The states grpo_run_state marks 1 in a /metrics text."""
    return re.findall(r'^grpo_run_state\{state="(\w+)"\} 1\.0$', exposition, re.MULTILINE)


def assert_a_restart_trains_the_4_prompts(config: Path, store_dir: Path, backend: str, log_path: Path) -> None:
    """A trainer started again on `store_dir` trains p0..p3 and drains cleanly: none was lost."""
    second = TrainerProcess(config, store_dir, [("toy", backend)], log_path=log_path)
    try:
        second.wait_ready()
        wait_for(lambda: second.client.step_status().run.prompts_trained == 4 or None, 120,
                 lambda: f"the prompts were not trained after the restart; log:\n{second.log_tail()}")
        second.terminate()
        assert second.wait(120) == 0, second.log_tail()
    finally:
        if second.proc.poll() is None:
            second.kill()
    assert {pid: s for pid, (s, _) in prompt_accounting(store_dir).items()} == {
        f"p{i}": PromptState.TRAINED for i in range(4)
    }


def test_every_log_line_has_time_and_level_and_the_first_say_what_runs_where(
    math_backend: str, tmp_path: Path
) -> None:
    config = write_yaml(tmp_path / "trainer.yaml", config_data(rewards={"default": [{"backend": "math"}]}))
    store_dir = tmp_path / "store"
    proc = TrainerProcess(config, store_dir, [("math", math_backend)], log_path=tmp_path / "trainer.log",
                          metrics=True)
    try:
        proc.wait_ready()
        proc.client.submit_prompts(prompts(2))
        wait_for(lambda: proc.client.step_status().run.checkpoint_step >= 1 or None, 120,
                 lambda: f"step 1 was not trained; log:\n{proc.log_tail()}")
        proc.terminate()
        assert proc.wait(120) == 0, proc.log_tail()
    finally:
        if proc.proc.poll() is None:
            proc.kill()

    text = (tmp_path / "trainer.log").read_text()
    assert "\r" not in text, "a progress bar in the log"
    lines = text.splitlines()
    assert lines and not [line for line in lines if not LOG_LINE.match(line)], text[-4000:]
    ours = [line.split(": ", 1)[1] for line in lines if " grpo_server." in line]
    first = ours[0]
    assert first.startswith(f"grpo-server {__version__} (torch {torch.__version__}): "), ours
    assert first.endswith(f"store {store_dir.absolute()}, model tiny (seed 0), training engine torch, "
                          "rollout engine hf"), ours
    assert ours[1] == (f"API listening on 127.0.0.1:0 (port {proc.port}, tls=False, auth=False), metrics on "
                       f"127.0.0.1:0 (port {proc.metrics_port}); health NOT_SERVING while the model loads"), ours
    ready = [line for line in ours if line.startswith("ready in ")]
    assert len(ready) == 1 and ready[0].endswith(": rollout engine hf (rollout.engine hf), training engine torch; "
                                                 "health SERVING"), ours
    assert ours[-1] == "stopped; latest checkpoint step 1", ours


def test_metrics_listen_takes_an_ipv6_address_in_brackets(start_trainer, toy_backend, tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", backend.address)],
                        server={"listen": "[::1]:0", "metrics_listen": "[::1]:0"})
    assert app.metrics_port
    assert f'grpo_build_info{{version="{__version__}"}} 1.0' in scrape(f"http://[::1]:{app.metrics_port}/metrics")


def test_a_failed_run_keeps_failed_in_metrics_through_its_drain(start_trainer, toy_backend, tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", backend.address)])

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("cannot allocate 2.00 GiB")

    app.loop.runner.run_step = out_of_memory  # type: ignore[method-assign]
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(2))
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_FAILED or None, 120,
             lambda: f"the run did not fail: {client.step_status().run}")
    client.close()
    app.shutdown()
    # An alert on grpo_run_state{state="failed"} must not clear because the failed trainer is stopped.
    value = app.metrics.registry.get_sample_value
    assert value("grpo_run_state", {"state": "failed"}) == 1.0
    assert value("grpo_run_state", {"state": "draining"}) == 0.0


def test_a_failed_run_stays_up_serving_status_and_a_restart_trains_its_prompts(
    toy_backend, tmp_path: Path
) -> None:
    _, backend = toy_backend("toy", 0.5)
    config = write_yaml(tmp_path / "trainer.yaml", config_data(checkpoint={"every_steps": 1}))
    store_dir = tmp_path / "store"
    proc = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "first.log",
                          metrics=True)
    try:
        proc.wait_ready()
        # The checkpoint directory cannot be created (a file is in the way): step 1's checkpoint fails,
        # as on a full or read-only disk, and the run with it.
        checkpoints = store_dir / "checkpoints"
        shutil.rmtree(checkpoints, ignore_errors=True)
        checkpoints.write_text("in the way\n")
        proc.client.submit_prompts(prompts(4))
        run = wait_for(lambda: (r := proc.client.step_status().run).state == trainer_pb2.RUN_STATE_FAILED
                       and r or None, 120, lambda: f"the run did not fail; log:\n{proc.log_tail()}")
        assert str(checkpoints) in run.error, run.error
        # The process stays up: status answers, health is SERVING (the API works), /metrics says failed.
        assert proc.proc.poll() is None
        assert proc.health() == health_pb2.HealthCheckResponse.SERVING
        assert run_state_metric(scrape(f"http://127.0.0.1:{proc.metrics_port}/metrics")) == ["failed"]
        proc.terminate()
        assert proc.wait(60) == 1, proc.log_tail()  # the run had failed: systemd and scripts see it
    finally:
        if proc.proc.poll() is None:
            proc.kill()
    assert "stopped; the run had failed" in (tmp_path / "first.log").read_text()

    checkpoints.unlink()
    assert_a_restart_trains_the_4_prompts(config, store_dir, backend.address, tmp_path / "second.log")


def test_sighup_drains_like_sigterm(toy_backend, tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    config = write_yaml(tmp_path / "trainer.yaml", config_data(checkpoint={"every_steps": 100}))
    store_dir = tmp_path / "store"
    proc = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "trainer.log")
    try:
        proc.wait_ready()
        proc.client.submit_prompts(prompts(4))
        wait_for(lambda: proc.client.step_status().run.latest_step >= 1 or None, 120,
                 lambda: f"no step; log:\n{proc.log_tail()}")
        os.kill(proc.proc.pid, signal.SIGHUP)  # the terminal it ran in closed
        assert proc.wait(120) == 0, proc.log_tail()
    finally:
        if proc.proc.poll() is None:
            proc.kill()
    log = (tmp_path / "trainer.log").read_text()
    assert "received SIGHUP" in log
    # The drain checkpointed the steps done (checkpoint.every_steps is 100, so only the drain did): their
    # prompts are trained, the rest queued, none left leased.
    states = [s for s, _ in prompt_accounting(store_dir).values()]
    assert states.count(PromptState.TRAINED) >= 2, prompt_accounting(store_dir)
    assert set(states) <= {PromptState.TRAINED, PromptState.QUEUED}, prompt_accounting(store_dir)


def test_a_second_signal_during_the_drain_exits_at_once_and_loses_nothing(toy_backend, tmp_path: Path) -> None:
    scorer, backend = toy_backend("toy", 0.5)
    scorer.gate = threading.Event()  # the step's Score call waits here: the drain cannot finish
    config = write_yaml(tmp_path / "trainer.yaml", config_data())
    store_dir = tmp_path / "store"
    proc = TrainerProcess(config, store_dir, [("toy", backend.address)], log_path=tmp_path / "first.log")
    try:
        proc.wait_ready()
        proc.client.submit_prompts(prompts(4))
        assert scorer.calls_started.wait(120), proc.log_tail()
        proc.terminate()  # the drain waits for the step, which waits for the backend
        wait_for(lambda: "draining" in proc.log_tail() or None, 30, proc.log_tail)
        started = time.monotonic()
        os.kill(proc.proc.pid, signal.SIGINT)  # Ctrl-C, the second time
        assert proc.wait(30) == 128 + signal.SIGINT, proc.log_tail()
        assert time.monotonic() - started < 10
    finally:
        scorer.gate.set()
        if proc.proc.poll() is None:
            proc.kill()
    assert "received SIGINT again: exiting without finishing the drain" in (tmp_path / "first.log").read_text()

    assert_a_restart_trains_the_4_prompts(config, store_dir, backend.address, tmp_path / "second.log")
