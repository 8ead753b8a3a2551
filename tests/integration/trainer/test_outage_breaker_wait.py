"""A step skipped because its reward backend is down, with the backend's circuit breaker open: every
call would fail fast until the breaker's trial call, so the trainer waits for that instead of rolling out
a step a second only to skip it. The breaker's wait starts short and doubles with each failed trial, so a
backend back after a short restart is called again within seconds, not after the longest wait."""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from pathlib import Path

from live_trainer import ConstantScorer, prompts, serve, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.types import PromptState, StepState

FIRST_S = 1.5


def _skipped(app) -> list:
    return [r for r in app.store.steps_after(0) if r.state is StepState.SKIPPED]


def _circuit(app) -> str:
    """The toy backend's breaker state as the trainer's /metrics page says it (grpo_reward_circuit_state)."""
    page = urllib.request.urlopen(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=10).read().decode()
    states = dict(re.findall(r'grpo_reward_circuit_state\{backend="toy",state="(\w+)"\} (\S+)', page))
    assert sorted(states) == ["closed", "half_open", "open"] and sorted(states.values()) == ["0.0", "0.0", "1.0"], page
    return next(state for state, value in states.items() if value == "1.0")


def test_an_open_breaker_holds_the_next_step_until_its_trial_call(start_trainer, tmp_path: Path, caplog) -> None:
    with socket.socket() as s:  # an address where nothing listens yet
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    caplog.set_level("INFO", logger="grpo_server")
    app = start_trainer(
        tmp_path / "store", [("toy", address)], algorithm={"prompts_per_step": 2},
        rewards={"max_retries": 0, "breaker_failures": 1, "breaker_first_reset_seconds": FIRST_S,
                 "breaker_reset_seconds": 30.0},
        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"},
    )
    assert _circuit(app) == "closed"  # never called yet
    TrainerClient(f"127.0.0.1:{app.api_port}").submit_prompts(prompts(2))

    first, second, third = wait_for(lambda: _skipped(app)[:3] if len(_skipped(app)) >= 3 else None, 120,
                                    lambda: f"three skipped steps were not recorded: {app.store.steps_after(0)}")
    # The first skip opened the breaker for 1.5 s; the second step's trial failed and opened it for 3 s:
    # each next step waited for the trial, not just the 1 s outage backoff.
    gaps = [second.started_at - first.finished_at, third.started_at - second.finished_at]
    assert gaps[0] >= 1.0 and gaps[1] >= 2 * FIRST_S - 0.5, f"gaps between the skipped steps: {gaps}"
    assert any("reward backend 'toy' is down (circuit open)" in r.getMessage() and "trial call" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    # An outage is no prompt's fault: nothing failed for good.
    assert app.store.counts()[PromptState.FAILED] == 0
    assert _circuit(app) in ("open", "half_open")
    # While it waits, no step runs: the run is IDLE, and its status says for what and for how long.
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    run = wait_for(lambda: next((r for r in [client.step_status().run] if r.waiting_for), None), 30,
                   "StepStatus never said what the run waits for")
    assert run.state == trainer_pb2.RUN_STATE_IDLE, run
    assert re.fullmatch(r"reward backend 'toy' is down( \(circuit open\))?: the next step (starts|waits for the "
                        r"trial call) in \d+\.\d s", run.waiting_for), run.waiting_for
    waits = set()
    for _ in range(40):
        waits.update(re.findall(r" in (\d+\.\d) s$", client.step_status().run.waiting_for))
        time.sleep(0.05)
    assert len(waits) > 1, f"the seconds left did not count down: {waits}"
    # A skipped step keeps its completions too, each saying why it has no reward.
    samples = client.step_status(first.step, include_samples=True).samples
    assert len(samples) == 4 and not any(c.reward_valid for c in samples), samples
    assert {(b.backend, b.status, b.scored) for c in samples for b in c.scores} == {("toy", "unavailable", False)}

    backend = serve(ConstantScorer("toy", 0.5), address)  # back: the next trial call succeeds
    try:
        wait_for(lambda: app.store.counts()[PromptState.TRAINED] == 2 or None, 120,
                 lambda: f"the prompts were not trained after the backend came back: {app.store.steps_after(0)}")
        assert _circuit(app) == "closed"
        assert client.step_status().run.waiting_for == ""
    finally:
        app.shutdown()
        backend.stop(1)


def test_a_backend_restarted_in_two_seconds_is_called_again_seconds_later(toy_backend, start_trainer,
                                                                           tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    port = backend.port
    app = start_trainer(tmp_path / "store", [("toy", backend.address)], algorithm={"prompts_per_step": 2},
                        checkpoint={"every_steps": 100})  # the rewards section's defaults: 5 failures, 2 s to 30 s
    TrainerClient(f"127.0.0.1:{app.api_port}").submit_prompts(prompts(200))
    wait_for(lambda: app.loop.updates >= 2 or None, 120, "two steps did not complete")

    backend.stop(0.1)
    wait_for(lambda: _skipped(app) or None, 60, "no step was skipped while the backend was down")
    time.sleep(2.0)
    revived = serve(ConstantScorer("toy", 0.5), f"127.0.0.1:{port}")
    back = time.time()
    try:
        resumed = wait_for(lambda: next((r for r in app.store.steps_after(0) if r.state is StepState.COMPLETED
                                         and r.started_at >= back), None), 120, "training did not resume")
        # With one fixed 30 s wait, the first trial came up to 30 s after the backend was back.
        assert resumed.started_at - back < 20.0, f"training resumed {resumed.started_at - back:.1f} s after"
        assert len(_skipped(app)) <= 8, [(r.step, r.error[:80]) for r in _skipped(app)]
    finally:
        app.shutdown()
        revived.stop(1)
