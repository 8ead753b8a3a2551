"""How long a run is and how it ends, on the real trainer: `training.max_steps` counts optimizer steps,
so steps skipped while the reward backends are down do not use it up; a run that reaches it writes
its checkpoint before it reports FINISHED (its last prompts TRAINED without waiting for a drain); and a
tail of fewer prompts than a batch is trained once nothing has been submitted for
`training.partial_step_after_seconds`, instead of waiting for ever."""

from __future__ import annotations

import time
from pathlib import Path

from live_trainer import free_port, prompts, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.types import PromptState, StepState


def test_skipped_steps_do_not_count_toward_max_steps_and_finishing_checkpoints(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    port = free_port()  # the backend is down at first: nothing listens here
    app = start_trainer(tmp_path / "store", [("toy", f"127.0.0.1:{port}")],
                        training={"max_steps": 2}, checkpoint={"every_steps": 100})
    app.loop.outage_backoff_seconds = 0.2
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(6))
    wait_for(lambda: len([r for r in app.store.steps_after(0) if r.state is StepState.SKIPPED]) >= 3 or None, 120,
             "the outage did not skip three steps")
    assert client.step_status().run.state != trainer_pb2.RUN_STATE_FINISHED  # 3 steps, no update yet

    toy_backend("toy", 0.5, listen=f"127.0.0.1:{port}")  # the backend comes up
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_FINISHED or None, 120,
             lambda: f"the run did not finish: {client.step_status()}")
    steps = app.store.steps_after(0)
    completed = [r.step for r in steps if r.state is StepState.COMPLETED]
    assert len(completed) == 2 and steps[-1].step == completed[-1] > 2, [(r.step, r.state) for r in steps]
    # FINISHED came with a checkpoint of the last step (every_steps is 100): its prompts are TRAINED.
    run = client.step_status().run
    assert run.checkpoint_step == run.latest_step == completed[-1]
    trained = {pid for pid, (state, _) in app.store.prompt_states().items() if state is PromptState.TRAINED}
    assert trained == {pid for r in steps if r.state is StepState.COMPLETED for pid in r.prompt_ids}
    assert len(trained) == 4 and run.prompts_trained == 4 and run.queue_depth == 2


def test_a_tail_shorter_than_a_batch_is_trained_once_submissions_stop(toy_backend, start_trainer, tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    waiting = start_trainer(tmp_path / "a", [("toy", backend.address)], algorithm={"prompts_per_step": 4},
                            training={"partial_step_after_seconds": 0})
    quick = start_trainer(tmp_path / "b", [("toy", backend.address)], algorithm={"prompts_per_step": 4},
                          training={"partial_step_after_seconds": 2})
    submitted = time.monotonic()
    for app in (waiting, quick):
        TrainerClient(f"127.0.0.1:{app.api_port}").submit_prompts(prompts(3))

    report = wait_for(lambda: quick.store.get_step(1) if quick.store.counts()[PromptState.TRAINED] == 3 else None,
                      60, "the tail of 3 prompts was not trained")
    assert time.monotonic() - submitted >= 2  # not before submissions had stopped for 2 s
    assert report.state is StepState.COMPLETED and sorted(report.prompt_ids) == ["p0", "p1", "p2"]
    assert report.metrics["prompts"] == 3 and report.metrics["completions"] == 12
    # With 0 the trainer waits for a full batch of 4: the 3 prompts stay queued.
    assert waiting.store.latest_step() is None and waiting.store.queue_depth() == 3


def test_a_pause_asked_for_during_the_last_step_still_finishes_the_run_with_its_checkpoint(
    start_trainer, tmp_path: Path
) -> None:
    """The loop looked at the pause before training.max_steps: the run stayed PAUSED, without the final
    checkpoint max_steps promises, until someone resumed it only for it to finish."""
    import threading

    from live_trainer import ConstantScorer, serve

    scorer = ConstantScorer("toy", 1.0)
    scorer.gate = threading.Event()
    backend = serve(scorer)
    try:
        app = start_trainer(tmp_path / "store", [("toy", backend.address)], training={"max_steps": 1},
                            checkpoint={"every_steps": 5})
        client = TrainerClient(f"127.0.0.1:{app.api_port}")
        client.submit_prompts(prompts(2))
        assert scorer.calls_started.wait(60)  # step 1, the last, is scoring
        client.pause()
        scorer.gate.set()
        run = wait_for(lambda: (r := client.step_status().run).state == trainer_pb2.RUN_STATE_FINISHED and r or None,
                       60, lambda: f"the run did not finish: {client.step_status().run}")
        assert run.checkpoint_step == run.latest_step == 1 and run.prompts_trained == 2
    finally:
        backend.stop(1)
