"""retention.prompt_rows_seconds and retention.step_reports_seconds through the real trainer: finished
prompts' rows and old step reports leave the store, StepStatus and WatchSteps say that an old step is gone, the run's
totals stay whole, and a restart after the reports went still counts the optimizer steps taken
(training.max_steps ends the run where it would have)."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import pytest
from live_trainer import prompts, wait_for
from test_store_retention_live import kept_contents, pruned_counts

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_client.cli import main
from grpo_client.client import TrainerError

FORGET = {"prompt_rows_seconds": 0.001, "step_reports_seconds": 0.001}


def test_old_rows_and_reports_go_and_the_run_keeps_count(toy_backend, start_trainer, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", backend.address)], training={"max_steps": 3})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(6))
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_FINISHED or None, 120,
             lambda: f"the run did not finish: {client.step_status().run}")
    assert client.step_status(1).step.step == 1  # kept by default
    app.shutdown()

    # The start prunes: every finished prompt's row, and the reports of steps 1 and 2 (step 3 is the latest).
    app = start_trainer(store_dir, [("toy", backend.address)], training={"max_steps": 3}, retention=FORGET,
                        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    wait_for(lambda: not client.list_prompts().prompts or None, 60,
             lambda: f"the finished prompts are still listed: {client.list_prompts()}")
    for gone in (1, 2):
        with pytest.raises(TrainerError) as err:
            client.step_status(gone)
        assert err.value.code is grpc.StatusCode.NOT_FOUND and err.value.resource == ("step", str(gone))
        assert err.value.message == (f"step {gone}'s report is no longer kept (retention.step_reports_seconds "
                                     "deleted the reports of steps up to 2)")
    with pytest.raises(TrainerError, match="step 9 has not run; the latest step is 3"):
        client.step_status(9)
    status = client.step_status()
    assert status.step.step == 3 and status.step.state == trainer_pb2.STEP_STATE_COMPLETED
    assert (status.run.prompts_trained, status.run.prompts_failed, status.run.checkpoint_step) == (6, 0, 3)
    assert list(client.cancel_prompts(["p0"]).unknown_ids) == ["p0"]
    # The rows took the content with them; the counters go up once the whole pruning is done.
    expected = {"prompt_rows": 6, "step_reports": 2, "prompt_content": 0, "request_ids": 0, "export_records": 0}
    wait_for(lambda: pruned_counts(app.metrics_port) == expected, 30,
             lambda: f"grpo_store_pruned_total: {pruned_counts(app.metrics_port)}")
    # WatchSteps says what it cannot send: after step 0 or 1, the reports up to step 2 are gone.
    for after, through in ((0, 2), (1, 2), (2, 0)):
        stream = client.watch_steps(after, timeout=30)
        first = next(stream)
        stream.close()
        assert (first.step.step, first.forgotten_through) == (3, through), f"after_step {after}"
    follow = client.follow_steps(1)
    first = next(follow)
    follow.close()
    assert (first.step.step, first.forgotten_through) == (3, 2)
    out = io.StringIO()
    assert main(["--target", f"127.0.0.1:{app.api_port}", "watch", "--after", "0", "--max-steps", "1"], out=out) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "no longer kept" in line]
    assert said == ["steps 1-2: no longer kept (retention.step_reports_seconds)"]
    assert [line.split()[0] for line in out.getvalue().splitlines()[1:]] == ["3"]
    app.shutdown()

    # Started again with one step more: 3 optimizer steps were taken, though only step 3's report is left,
    # so the run trains exactly one step (2 prompts) and finishes with the other 2 still queued.
    app = start_trainer(store_dir, [("toy", backend.address)], training={"max_steps": 4}, retention=FORGET)
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(4, prefix="q"))
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_FINISHED or None, 120,
             lambda: f"the run did not finish after one more step: {client.step_status().run}")
    run = client.step_status().run
    assert (run.latest_step, run.prompts_trained, run.queue_depth) == (4, 8, 2)
    # WatchSteps replays what is kept: the checkpoint at step 4 let step 3's report go too.
    first = next(iter(client.watch_steps(0, timeout=30)))
    assert first.step.step == 4


def test_a_finished_trainer_still_prunes(toy_backend, start_trainer, tmp_path: Path) -> None:
    """No step, no checkpoint: retention.* is applied every idle_prune_seconds all the same, so the content
    of the run's prompts does not outlive its retention on a trainer left up after its run."""
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", backend.address)], training={"max_steps": 1},
                        retention={"prompt_content_seconds": 1.0})
    app.loop.idle_prune_seconds = 0.2  # 600 s by default
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(2))
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_FINISHED or None, 120,
             lambda: f"the run did not finish: {client.step_status().run}")
    checkpoint = client.step_status().run.checkpoint_step
    wait_for(lambda: kept_contents(store_dir) == {"p0": 0, "p1": 0} or None, 30,
             lambda: f"the finished run's prompts kept their content: {kept_contents(store_dir)}")
    run = client.step_status().run
    assert (run.state, run.checkpoint_step, run.prompts_trained) == (trainer_pb2.RUN_STATE_FINISHED, checkpoint, 2)
