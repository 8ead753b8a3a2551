"""A drain that begins just as the model finishes loading: the loader's "ready, SERVING, start the loop"
and shutdown's "draining, NOT_SERVING" do not interleave, so the health service never ends up SERVING
on a trainer that is draining (a readiness probe would keep sending it traffic)."""

from __future__ import annotations

import threading
from pathlib import Path

from live_trainer import parsed_config

from grpo_server.api.server import Health
from grpo_server.app import TrainerApp
from grpo_server.control import RunControl


def test_a_drain_at_the_end_of_loading_leaves_health_not_serving(toy_backend, tmp_path: Path, monkeypatch) -> None:
    _, backend = toy_backend("toy", 0.5)
    app = TrainerApp(parsed_config(), tmp_path / "store", backend_overrides=[("toy", backend.address)])
    serving_calls: list[bool] = []
    drain_marked = threading.Event()
    real_set_ready, real_set_serving = RunControl.set_ready, Health.set_serving

    def set_serving(health: Health, serving: bool) -> None:
        serving_calls.append(serving)
        if not serving and serving_calls.count(False) > 1:
            drain_marked.set()  # shutdown's NOT_SERVING (the first False is the server's own at start)
        real_set_serving(health, serving)

    def set_ready(control: RunControl, ready: bool = True) -> None:
        # The loader has decided to start: a SIGTERM lands now. Give shutdown() 2 s to mark the drain.
        stopper.start()
        drain_marked.wait(2.0)
        real_set_ready(control, ready)

    stopper = threading.Thread(target=app.shutdown, kwargs={"grace": 60})
    monkeypatch.setattr(Health, "set_serving", set_serving)
    monkeypatch.setattr(RunControl, "set_ready", set_ready)
    app.start(load_in_background=False)  # loads and starts the loop in this thread
    stopper.join(300)
    assert not stopper.is_alive()
    assert serving_calls[-1] is False, serving_calls  # the last word is the drain's NOT_SERVING
