"""A reward backend killed in the middle of a step and brought back on the same port. Items it could
not score are masked (never scored 0) and counted; a prompt none of whose completions was scored goes
back to the queue even when the rest of its step trains; a step in which every item failed is SKIPPED
and its prompts go back to the queue; the circuit breaker lets calls through again once the backend is
back, and every prompt is trained in the end."""

from __future__ import annotations

import threading
from pathlib import Path

from live_trainer import prompts, serve, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.store import Store
from grpo_server.types import PromptState

GROUP = 4


def test_backend_killed_mid_step_masks_skips_requeues_then_recovers(toy_backend, start_trainer, tmp_path: Path) -> None:
    flaky_scorer, flaky = toy_backend("flaky", 0.5)
    _, steady = toy_backend("steady", 0.25)
    store_dir = tmp_path / "store"
    app = start_trainer(
        store_dir, [("flaky", flaky.address), ("steady", steady.address)],
        algorithm={"prompts_per_step": 2, "group_size": GROUP, "beta": 0.04},
        rewards={"default": [{"backend": "flaky"}], "max_retries": 1, "breaker_failures": 2,
                 "breaker_reset_seconds": 1.0},
    )
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    # Step 1: both backends. Step 2: one prompt on each (held, then the flaky one dies: half masked).
    # Steps 3 on: the flaky backend only (every item fails while it is down: skipped).
    batch = prompts(4, prefix="both")
    for i, p in enumerate(batch):
        del p.rewards[:]
        p.rewards.add(backend="flaky" if i % 2 == 0 else "steady", weight=1.0)
    client.submit_prompts(batch)
    client.submit_prompts(prompts(6, prefix="flaky"))

    reports = client.iter_steps(include_running=True, timeout=180)
    for report in reports:
        if report.step == 1 and report.state == trainer_pb2.STEP_STATE_COMPLETED:
            flaky_scorer.calls_started.clear()
            flaky_scorer.gate = threading.Event()
            break
    assert flaky_scorer.calls_started.wait(60)  # step 2 is being scored
    port = flaky.port
    flaky.stop(grace=0.1)  # killed with the call in flight: the trainer's call is cut off
    flaky_scorer.gate.set()  # (only now may the dead server's handler thread finish)

    skipped: list[trainer_pb2.StepReport] = []
    step2 = None
    for report in reports:
        if report.state == trainer_pb2.STEP_STATE_RUNNING:
            continue
        if report.step == 2:
            step2 = report
        if report.state == trainer_pb2.STEP_STATE_SKIPPED:
            skipped.append(report)
            if len(skipped) == 4:  # more than the store's 3 attempts per prompt
                break
    assert step2 is not None and step2.state == trainer_pb2.STEP_STATE_COMPLETED
    assert step2.metrics.masked_reward_failures == GROUP  # the flaky prompt's group, masked
    assert step2.metrics.backend_reward_means["steady"] == 0.25
    assert step2.metrics.reward_mean == 0.25  # the masked items count for nothing, not for 0
    # Step 2 leased both2 (flaky) and both3 (steady): both2 took no update, so it is not reported as
    # trained there; it went back to the queue at its position (the head), so the next steps lease it.
    assert list(step2.prompt_ids) == ["both3"]
    assert all("no reward could be obtained" in r.error for r in skipped)
    assert all("(first failure: backend 'flaky': UNAVAILABLE" in r.error for r in skipped), skipped[0].error
    # A skipped step still says what it did: its completions, all masked, and the tokens generated.
    for r in skipped:
        assert r.metrics.masked_reward_failures == r.metrics.completions == 2 * GROUP, r.metrics
        assert r.metrics.prompts == 2 and r.metrics.extra["generated_tokens"] > 0 and r.metrics.rollout_seconds > 0
    assert {tuple(r.prompt_ids) for r in skipped} == {("both2", "flaky0")}  # the same prompts each time
    circuit = {b.name: b.circuit for b in client.list_backends().backends}
    assert circuit["flaky"] != trainer_pb2.CIRCUIT_STATE_CLOSED

    # Skipped prompts are back in the queue, not failed: an outage does not use up their attempts. The
    # queue gauge says so too (it kept what it was set to at the skipped step's lease: 0 while they waited).
    client.pause()
    wait_for(lambda: client.step_status().run.state == trainer_pb2.RUN_STATE_PAUSED or None, 60, "never paused")
    status = client.step_status()
    assert status.run.prompts_failed == 0 and status.run.queue_depth > 0
    assert app.metrics.registry.get_sample_value("grpo_queue_depth") == status.run.queue_depth
    client.resume()
    skipped_ids = {pid for r in skipped for pid in r.prompt_ids}

    # Back on the same port: the breaker's trial call succeeds and training goes on.
    revived = serve(flaky_scorer.__class__("flaky", 0.5), f"127.0.0.1:{port}")
    # Step 2 used a slot on both2 without training it, so the 10 prompts leave one waiting for a full
    # step of 2: one more prompt fills it, and all 11 are trained.
    client.submit_prompts(prompts(1, prefix="last"))
    try:
        wait_for(lambda: client.step_status().run.prompts_trained == 11 or None, 120,
                 lambda: f"training did not finish after the backend came back: {client.step_status()}")
        circuit = {b.name: b.circuit for b in client.list_backends().backends}
        assert circuit["flaky"] == trainer_pb2.CIRCUIT_STATE_CLOSED
        failures = app.metrics.registry.get_sample_value(
            "grpo_reward_request_failures_total", {"backend": "flaky", "code": "item_unavailable"})
        assert failures is not None and failures >= GROUP
        masked = app.metrics.registry.get_sample_value("grpo_masked_reward_failures_total")
        assert masked is not None and masked >= GROUP + 4 * 2 * GROUP  # step 2's group and the skipped steps'
        app.shutdown()
    finally:
        revived.stop(1)
    store = Store(store_dir)
    try:
        states = store.prompt_states()
        completed = [s for s in store.steps_after(0) if s.state.value == "completed"]
    finally:
        store.close()
    assert {s for s, _ in states.values()} == {PromptState.TRAINED}
    trained_in = {pid for s in completed for pid in s.prompt_ids}
    assert skipped_ids <= trained_in  # the skipped steps' prompts were trained later
    assert "both2" in trained_in  # and so was the prompt masked in step 2
