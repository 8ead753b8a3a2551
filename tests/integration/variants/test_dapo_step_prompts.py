"""A step's report lists every prompt the step consumed: with DAPO dynamic sampling, the prompts leased
to refill the batch and the prompts of the zero-variance groups it dropped too, in the store's step
record, StepStatus and WatchSteps, with the dropped ones named apart (`dropped_prompt_ids`); and the
step's checkpoint marks all of them trained."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from variant_support import PromptRewardScorer, arithmetic_prompts, router_for, tiny_config

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient, cli
from grpo_server.rollout.base import SamplingConfig, make_engine
from grpo_server.training.engine import OptimConfig
from grpo_server.training.loop import StepRunner, StepSettings
from grpo_server.training.loss import LossConfig
from grpo_server.training.torch_engine import TorchEngine
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec


def prompt(pid: str, flat: bool) -> PromptRecord:
    return PromptRecord(pid, (ChatMessage("user", f"FLAT {pid}" if flat else f"question {pid}"),), (RewardSpec("pr"),))


def test_runner_lists_its_own_and_the_extra_leases_in_lease_order(tiny, serve) -> None:
    model, tok = tiny
    engine = TorchEngine(model, OptimConfig(learning_rate=1e-3))
    rollout = make_engine("hf", model_path=str(model.name_or_path), model=engine.model, tokenizer=tok,
                          dtype="float32", device="cpu", seed=0)
    router, snapshot = router_for({"pr": serve(PromptRewardScorer())})
    batches = [[prompt("n0", False), prompt("f2", True)], [prompt("n1", False)]]
    settings = StepSettings(prompts_per_step=2, group_size=4, sampling=SamplingConfig(n=4, max_new_tokens=8),
                            loss=LossConfig(beta=0.0), dynamic_sampling=True, max_resample_rounds=4)
    runner = StepRunner(settings, tokenizer=tok, rollout=rollout, engine=engine, router=router,
                        weights_shared=True, lease_more=lambda n, step: batches.pop(0) if batches else [])

    m = runner.run_step(1, [prompt("f0", True), prompt("f1", True)], snapshot)
    assert m["dapo/dropped_groups"] == 3 and m["dapo/kept_groups"] == 2
    assert runner.step_prompt_ids == ("f0", "f1", "n0", "f2", "n1")
    assert runner.step_dropped == ("f0", "f1", "f2")

    # The next step starts its own list (nothing carried over from the last one).
    runner.s = StepSettings(**{**vars(settings), "dynamic_sampling": False})
    runner.run_step(2, [prompt("n5", False), prompt("n6", False)], snapshot)
    assert runner.step_prompt_ids == ("n5", "n6")
    assert runner.step_dropped == ()

    # Dynamic sampling that finds no group with variance trains on every group: none dropped.
    runner.s = settings
    m = runner.run_step(3, [prompt("f7", True), prompt("f8", True)], snapshot)
    assert m["dapo/kept_groups"] == 0
    assert runner.step_prompt_ids == ("f7", "f8") and runner.step_dropped == ()
    assert m["dapo/dropped_groups"] == 0  # it said 2 (every group) while dropped_prompt_ids said none


def test_step_record_status_and_watch_list_every_consumed_prompt(serve, start_trainer, tmp_path: Path) -> None:
    cfg = tiny_config(
        algorithm={"prompts_per_step": 2, "group_size": 4, "beta": 0.0, "dynamic_sampling": True,
                   "max_resample_rounds": 2},
        training={"max_steps": 1},
        rewards={"default": [{"backend": "pr"}]},
    )
    app: Any = start_trainer(cfg, tmp_path / "store", [("pr", serve(PromptRewardScorer()))])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    # p0, p1: zero-variance groups (the scorer gives FLAT prompts 0.5 everywhere); p2, p3 refill the batch.
    client.submit_prompts(arithmetic_prompts(2, 0, "FLAT {i}") + arithmetic_prompts(2, 2))
    consumed = ["p0", "p1", "p2", "p3"]

    watched = next(r for r in client.iter_steps(after_step=0) if r.state != trainer_pb2.STEP_STATE_RUNNING)
    assert watched.state == trainer_pb2.STEP_STATE_COMPLETED, watched.error
    assert watched.metrics.extra["dapo/dropped_groups"] == 2 and watched.metrics.extra["dapo/resample_rounds"] == 1
    assert list(watched.prompt_ids) == consumed
    assert list(watched.dropped_prompt_ids) == ["p0", "p1"]
    status = client.step_status(step=1).step
    assert list(status.prompt_ids) == consumed and list(status.dropped_prompt_ids) == ["p0", "p1"]
    record = app.store.get_step(1)
    assert record is not None and list(record.prompt_ids) == consumed
    assert record.dropped_prompt_ids == ("p0", "p1")
    out = io.StringIO()
    assert cli.main(["--target", f"127.0.0.1:{app.api_port}", "status", "--step", "1"], out=out) == 0
    assert "prompts 4 (2 dropped by dynamic sampling)" in out.getvalue(), out.getvalue()

    # Every consumed prompt is in the step's checkpoint: trained there, none left leased or queued.
    states = app.store.prompt_states()
    assert {pid: states[pid] for pid in consumed} == {pid: (PromptState.TRAINED, 1) for pid in consumed}
