"""An idle run says what its next step waits for: with fewer prompts queued than a step takes, how many
more (or how long without a submission) start one; with an empty queue, nothing (the queue says it)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from live_trainer import prompts, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.types import PromptState


def test_a_short_queue_says_how_many_more_prompts_start_the_step(toy_backend, start_trainer, tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", backend.address)], algorithm={"prompts_per_step": 4},
                        training={"partial_step_after_seconds": 600})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    assert client.step_status().run.waiting_for == ""  # nothing queued

    batch = prompts(4)
    client.submit_prompts(batch[:1])
    run = wait_for(lambda: next((r for r in [client.step_status().run] if r.waiting_for), None), 30,
                   "an idle run with one queued prompt never said what it waits for")
    assert run.state == trainer_pb2.RUN_STATE_IDLE and run.queue_depth == 1
    reason = re.fullmatch(r"1 queued prompt of the 4 a step takes: the next step starts when 3 more are submitted, "
                          r"or on the prompts there are if none is submitted in (\d+\.\d) s", run.waiting_for)
    assert reason and 590 <= float(reason.group(1)) <= 600, run.waiting_for

    client.submit_prompts(batch[1:3])
    wait_for(lambda: re.match(r"3 queued prompts of the 4 a step takes: the next step starts when 1 more is ",
                              client.step_status().run.waiting_for), 30,
             lambda: f"the reason did not follow the queue: {client.step_status().run.waiting_for!r}")

    client.submit_prompts(batch[3:])
    wait_for(lambda: app.store.counts()[PromptState.LEASED] + app.store.counts()[PromptState.TRAINED] == 4 or None,
             120, "the full batch did not start a step")
    run = client.step_status().run
    assert run.queue_depth == 0 and run.waiting_for == "", run


def test_a_run_that_waits_for_a_full_batch_says_so(toy_backend, start_trainer, tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", backend.address)], algorithm={"prompts_per_step": 2},
                        training={"partial_step_after_seconds": 0})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(1))
    run = wait_for(lambda: next((r for r in [client.step_status().run] if r.waiting_for), None), 30,
                   "an idle run with one queued prompt never said what it waits for")
    assert run.waiting_for == ("1 queued prompt of the 2 a step takes: the next step starts when 1 more is "
                               "submitted (training.partial_step_after_seconds is 0: a step waits for a full "
                               "batch)"), run.waiting_for


def test_the_countdown_to_a_partial_step_ends_in_that_step(toy_backend, start_trainer, tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", backend.address)], algorithm={"prompts_per_step": 4},
                        training={"partial_step_after_seconds": 3})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(2))
    submitted = time.monotonic()
    run = wait_for(lambda: next((r for r in [client.step_status().run] if r.waiting_for), None), 30,
                   "an idle run with two queued prompts never said what it waits for")
    left = float(re.search(r"if none is submitted in (\d+\.\d) s$", run.waiting_for).group(1))
    assert 0 <= left <= 3.0, run.waiting_for
    wait_for(lambda: app.store.counts()[PromptState.QUEUED] == 0 or None, 60, "the partial step did not start")
    assert time.monotonic() - submitted >= 2.5  # not before its time
    wait_for(lambda: client.step_status().run.waiting_for == "" or None, 10, "the reason outlived the wait")
