"""The SDPO teacher is training state: a checkpoint holds it, a resumed SDPO run with the EMA teacher takes
the same next step as running through (as the engine's own resume test shows for GRPO), and a checkpoint
written before teachers were saved still loads, the teacher starting again from the resumed policy."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from variant_support import PromptRewardScorer, arithmetic_prompts, router_for, tiny_config

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.checkpoint import SDPO_TEACHER_FILE
from grpo_server.rollout.base import SamplingConfig, make_engine
from grpo_server.training.engine import OptimConfig
from grpo_server.training.loop import StepRunner, StepSettings
from grpo_server.training.loss import LossConfig
from grpo_server.training.sdpo import SdpoSettings
from grpo_server.training.torch_engine import TorchEngine
from grpo_server.types import ChatMessage, PromptRecord, RewardSpec

# A fast-moving EMA and a large learning rate, so a teacher that is not restored changes the next step.
SDPO = SdpoSettings(weight=1.0, teacher="ema", ema_rate=0.5, is_clip=None)
SETTINGS = StepSettings(prompts_per_step=2, group_size=4, sampling=SamplingConfig(n=4, max_new_tokens=8),
                        loss=LossConfig(beta=0.0, grpo_weight=0.0, sdpo=SDPO), seed=3)


def prompts(step: int) -> list[PromptRecord]:
    return [PromptRecord(f"s{step}-{i}", (ChatMessage("user", f"question {step} {i}"),), (RewardSpec("pr"),))
            for i in range(2)]


def new_runner(tiny_dir: Path, address: str) -> tuple[StepRunner, Any]:
    """A fresh runner on the tiny model as built: its own engine, HF rollout on the same module, router."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.config.use_cache = False
    engine = TorchEngine(model, OptimConfig(learning_rate=5e-2))
    rollout = make_engine("hf", model_path=str(tiny_dir), model=engine.model, tokenizer=tok, dtype="float32",
                          device="cpu", seed=0)
    router, snapshot = router_for({"pr": address})
    return StepRunner(SETTINGS, tokenizer=tok, rollout=rollout, engine=engine, router=router,
                      weights_shared=True), snapshot


def tensors(module: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    assert module is not None
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{what}: {name} differs"


def test_resumed_sdpo_run_with_ema_teacher_takes_the_same_next_step_as_running_through(
    tiny_dir: Path, serve, tmp_path: Path
) -> None:
    address = serve(PromptRewardScorer())
    through, snapshot = new_runner(tiny_dir, address)
    for step in (1, 2):
        m = through.run_step(step, prompts(step), snapshot)
        assert m["sdpo/distilled_fraction"] > 0  # the teacher takes part in every step
    through.engine.save_state(tmp_path / "ckpt")
    through.save_state(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / SDPO_TEACHER_FILE).is_file()
    teacher_at_2 = tensors(through.teacher)
    expected = through.run_step(3, prompts(3), snapshot)
    expected_weights, expected_teacher = tensors(through.engine.model), tensors(through.teacher)

    resumed, snapshot = new_runner(tiny_dir, address)
    resumed.engine.load_state(tmp_path / "ckpt")
    resumed.load_state(tmp_path / "ckpt")
    assert_same(tensors(resumed.teacher), teacher_at_2, "restored teacher")
    got = resumed.run_step(3, prompts(3), snapshot)

    assert got["sdpo/distill_loss"] == expected["sdpo/distill_loss"]
    assert got["grad_norm"] == expected["grad_norm"]
    assert_same(tensors(resumed.engine.model), expected_weights, "policy after step 3")
    assert_same(tensors(resumed.teacher), expected_teacher, "EMA teacher after step 3")

    # Without the teacher (the policy's copy instead), the same resume takes a different step.
    forgetful, snapshot = new_runner(tiny_dir, address)
    forgetful.engine.load_state(tmp_path / "ckpt")
    (tmp_path / "ckpt" / SDPO_TEACHER_FILE).unlink()
    forgetful.load_state(tmp_path / "ckpt")
    other = forgetful.run_step(3, prompts(3), snapshot)
    assert other["sdpo/distill_loss"] != expected["sdpo/distill_loss"]


def test_checkpoint_without_a_teacher_loads_and_restarts_the_teacher_from_the_policy(
    tiny_dir: Path, serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    address = serve(PromptRewardScorer())
    old, snapshot = new_runner(tiny_dir, address)
    old.run_step(1, prompts(1), snapshot)
    old.engine.save_state(tmp_path / "ckpt")  # a checkpoint as written before teachers were saved
    assert not (tmp_path / "ckpt" / SDPO_TEACHER_FILE).exists()

    resumed, _ = new_runner(tiny_dir, address)
    resumed.engine.load_state(tmp_path / "ckpt")
    assert resumed.teacher is not None
    with torch.no_grad():  # a teacher that is neither the built model nor the policy
        for p in resumed.teacher.parameters():
            p.add_(1.0)
    with caplog.at_level(logging.WARNING, logger="grpo_server.training.loop"):
        resumed.load_state(tmp_path / "ckpt")
    assert_same(tensors(resumed.teacher), tensors(old.engine.model), "teacher re-initialised from the policy")
    assert any(SDPO_TEACHER_FILE in r.getMessage() and "resumed policy" in r.getMessage() for r in caplog.records)


def test_trainer_stopped_and_restarted_takes_the_same_sdpo_step_as_running_through(
    serve, start_trainer, tmp_path: Path
) -> None:
    """The trainer end to end (as tests/e2e's GRPO resume test): the drain's checkpoint holds the EMA
    teacher, the restart restores it, and step 3 matches the run that went through."""
    address = serve(PromptRewardScorer())

    def run(store: Path, max_steps: int) -> Any:
        cfg = tiny_config(
            algorithm={"name": "sdpo", "sdpo_teacher": "ema", "sdpo_ema_rate": 0.5, "beta": 0.0},
            training={"max_steps": max_steps, "learning_rate": 5e-2, "seed": 3},
            checkpoint={"every_steps": 5},  # only the drain checkpoints: the resume point is the stop
            rewards={"default": [{"backend": "pr"}]},
        )
        return start_trainer(cfg, store, [("pr", address)])

    def wait_step(app: Any, step: int) -> Any:
        for report in TrainerClient(f"127.0.0.1:{app.api_port}").iter_steps(after_step=step - 1):
            assert report.state == trainer_pb2.STEP_STATE_COMPLETED, report.error
            if report.step == step:
                return report
        raise AssertionError("stream ended")

    through = run(tmp_path / "through", 3)
    TrainerClient(f"127.0.0.1:{through.api_port}").submit_prompts(arithmetic_prompts(6))
    step3 = wait_step(through, 3)
    assert step3.metrics.extra["sdpo/distilled_fraction"] > 0
    weights3, teacher3 = tensors(through.engine.model), tensors(through.loop.runner.teacher)
    through.shutdown()

    first = run(tmp_path / "resumed", 2)
    TrainerClient(f"127.0.0.1:{first.api_port}").submit_prompts(arithmetic_prompts(6))
    wait_step(first, 2)
    first.shutdown()  # the drain writes the checkpoint of step 2
    latest = first.store_dir / "checkpoints" / "step-000002"
    assert (latest / SDPO_TEACHER_FILE).is_file()
    # The teacher was written with the engine's state, before the rename: the manifest covers it.
    listed = {f["path"] for f in json.loads((latest / "manifest.json").read_text())["files"]}
    assert SDPO_TEACHER_FILE in listed
    teacher2, policy2 = tensors(first.loop.runner.teacher), tensors(first.engine.model)
    assert any(not torch.equal(teacher2[k], policy2[k]) for k in teacher2)  # the EMA lags the policy

    saved = load_file(latest / SDPO_TEACHER_FILE)
    state2 = first.loop.runner.teacher.state_dict()  # by every name, tied ones included
    assert saved and all(torch.equal(t, state2[k]) for k, t in saved.items())

    second = run(tmp_path / "resumed", 3)  # its loop starts at once: step 3 shows the teacher was restored
    resumed3 = wait_step(second, 3)
    assert list(resumed3.prompt_ids) == list(step3.prompt_ids)
    for name in ("loss", "grad_norm", "reward_mean"):
        assert getattr(resumed3.metrics, name) == getattr(step3.metrics, name), name
    assert resumed3.metrics.extra["sdpo/distill_loss"] == step3.metrics.extra["sdpo/distill_loss"]
    assert_same(tensors(second.engine.model), weights3, "policy after step 3")
    assert_same(tensors(second.loop.runner.teacher), teacher3, "EMA teacher after step 3")
