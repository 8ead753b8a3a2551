"""CancelPrompts on the real trainer: prompts cancelled while the run is paused are never leased by a
step (the steps train the others, in order), a restart does not bring them back, and
`grpo_prompts_cancelled_total` on /metrics and StepStatus's `run.prompts_cancelled` count them. After the
restart `grpo_latest_step` is the last completed step at once (it read 0 until the next step)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from live_trainer import prompts, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.types import PromptState, StepState


def _scraped(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert m is not None, f"{name} is not exposed"
    return float(m.group(1))


def test_cancelled_prompts_are_never_trained_and_stay_cancelled_across_a_restart(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    _, backend = toy_backend("toy", 0.5)
    store = tmp_path / "store"
    app = start_trainer(store, [("toy", backend.address)], server={"metrics_listen": "127.0.0.1:0"})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.pause()
    client.submit_prompts(prompts(6))  # p0..p5
    got = client.cancel_prompts(["p1", "p4"])
    assert list(got.cancelled_ids) == ["p1", "p4"] and got.queue_depth == 4
    assert _scraped(app.metrics_port, "grpo_prompts_cancelled_total") == 2
    client.resume()

    wait_for(lambda: app.store.counts()[PromptState.TRAINED] == 4 or None, 180,
             lambda: f"the 4 other prompts were not trained: {app.store.counts()}")
    last = max(r.step for r in app.store.steps_after(0) if r.state is StepState.COMPLETED)
    leased = [pid for r in app.store.steps_after(0) if r.state is StepState.COMPLETED for pid in r.prompt_ids]
    assert leased == ["p0", "p2", "p3", "p5"], leased  # in submission order, without p1 and p4
    run = client.step_status().run
    assert (run.prompts_cancelled, run.prompts_trained, run.queue_depth) == (2, 4, 0)
    client.close()
    app.shutdown(grace=60)

    # The restart's recovery leaves them cancelled.
    again = start_trainer(store, [("toy", backend.address)], server={"metrics_listen": "127.0.0.1:0"})
    assert _scraped(again.metrics_port, "grpo_latest_step") == last
    client = TrainerClient(f"127.0.0.1:{again.api_port}")
    states = {p.id: p.state for p in client.iter_prompts()}
    assert states["p1"] == states["p4"] == trainer_pb2.PROMPT_STATE_CANCELLED
    assert client.step_status().run.queue_depth == 0
    client.close()
