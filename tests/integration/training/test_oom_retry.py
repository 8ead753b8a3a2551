"""A training pass that runs out of memory before its optimizer step is run again in micro-batches of half
the size, down to 1: the step completes with the update it would have had at that size, the smaller size
stays for the process's later steps, and the step says so (`micro_batch_size`, `oom_retries/training`). Memory that
runs out in the optimizer step, or at micro-batches of 1, fails the step with advice for that case, and the
weights and optimizer are as the pass found them when nothing stepped.

The model is the real tiny one, the rollouts real HF generation, the rewards a real backend on loopback.
What runs out is the host's allocator: the training loss asks it, for each sequence above ROOM in a
micro-batch, for more than any host has (2**50 bytes), as a training pass's activations grow with its
micro-batch. (tests/reliability/test_out_of_memory.py runs the real trainer into a real
memory cap.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "variants"))

from variant_support import PromptRewardScorer, router_for  # noqa: E402

from grpo_rewards.common.server import start_server  # noqa: E402
from grpo_server.rollout.base import SamplingConfig, make_engine  # noqa: E402
from grpo_server.training import loop  # noqa: E402
from grpo_server.training.engine import OptimConfig  # noqa: E402
from grpo_server.training.loop import StepRunner, StepSettings  # noqa: E402
from grpo_server.training.loss import LossConfig  # noqa: E402
from grpo_server.training.torch_engine import TorchEngine  # noqa: E402
from grpo_server.types import ChatMessage, PromptRecord, RewardSpec  # noqa: E402

ROOM = 2  # sequences a training micro-batch may hold before the allocator fails


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from grpo_server.models.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(path, seed=0)
    return path


@pytest.fixture(scope="module")
def backend() -> Any:
    server = start_server(PromptRewardScorer(), listen="127.0.0.1:0")
    yield router_for({"pr": str(server.address)})
    server.stop(5)


def limited(monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """Make the training loss's forward pass fail in the allocator for micro-batches above `room` sequences
    (the loss the step runner builds is grpo_loss, looked up in its module at each pass)."""
    real = loop.grpo_loss

    def loss(model: torch.nn.Module, batch: Any, normalizer: float, **kwargs: Any) -> Any:
        if batch.num_sequences > room:
            torch.empty((batch.num_sequences - room) << 50, dtype=torch.uint8)
        return real(model, batch, normalizer, **kwargs)

    monkeypatch.setattr(loop, "grpo_loss", loss)


def runner_for(tiny_dir: Path, backend: Any, micro_batch_size: int) -> StepRunner:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    model.config.use_cache = False
    engine = TorchEngine(model, OptimConfig(learning_rate=1e-3))
    rollout = make_engine("hf", model_path=str(tiny_dir), model=engine.model, tokenizer=tok, dtype="float32",
                          device="cpu", seed=0)
    settings = StepSettings(prompts_per_step=2, group_size=4, sampling=SamplingConfig(n=4, max_new_tokens=8),
                            loss=LossConfig(beta=0.0), micro_batch_size=micro_batch_size)
    return StepRunner(settings, tokenizer=tok, rollout=rollout, engine=engine, router=backend[0], weights_shared=True)


def prompts(step: int) -> list[PromptRecord]:
    return [PromptRecord(f"s{step}p{i}", (ChatMessage("user", f"question {step} {i}"),), (RewardSpec("pr"),))
            for i in range(2)]


def weights(runner: StepRunner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in runner.engine.model.state_dict().items()}


def test_a_pass_out_of_memory_runs_again_in_halves_and_makes_the_update_of_that_size(
        tiny_dir: Path, backend: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    runner = runner_for(tiny_dir, backend, micro_batch_size=8)
    direct = runner_for(tiny_dir, backend, micro_batch_size=ROOM)
    before = weights(runner)

    with monkeypatch.context() as patch:
        limited(patch, ROOM)
        m = runner.run_step(1, prompts(1), backend[1])
    assert (m["micro_batch_size"], m["oom_retries/training"]) == (2.0, 2.0)  # 8 -> 4 -> 2 sequences a pass
    d = direct.run_step(1, prompts(1), backend[1])
    assert (d["micro_batch_size"], d["oom_retries/training"]) == (2.0, 0.0)
    assert runner.engine.step == direct.engine.step == 1  # one optimizer step, not three
    after, expected = weights(runner), weights(direct)
    assert any(not torch.equal(v, before[k]) for k, v in after.items()), "the step changed nothing"
    for name, value in after.items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-7, msg=name)
    assert m["loss"] == pytest.approx(d["loss"], abs=1e-6) and m["grad_norm"] == pytest.approx(d["grad_norm"])

    said = [r.getMessage() for r in caplog.records if "out of memory in the training pass" in r.getMessage()]
    assert len(said) == 2 and said[0].startswith("step 1: out of memory in the training pass with micro-batches of 8 "
                                                 "sequences (RuntimeError: ") and "can't allocate memory" in said[0]
    assert said[1].endswith("running it again with 2. The trainer keeps 2 until it restarts: set "
                            "training.micro_batch_size to 2 (now 8) to start there"), said[1]

    # The smaller size stays: the next step runs at 2 from the start.
    limited(monkeypatch, ROOM)
    m2 = runner.run_step(2, prompts(2), backend[1])
    assert (m2["micro_batch_size"], m2["oom_retries/training"]) == (2.0, 0.0)
    assert runner.engine.step == 2


def test_out_of_memory_at_one_sequence_fails_with_what_else_to_change(
        tiny_dir: Path, backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = runner_for(tiny_dir, backend, micro_batch_size=8)
    limited(monkeypatch, 0)
    before = weights(runner)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        runner.run_step(1, prompts(1), backend[1])
    assert runner.micro_batch_size == 1 and runner.engine.step == 0
    # What the loop's FAILED report shows: how far the step got and how often it halved (8 -> 4 -> 2 -> 1).
    so_far = runner.step_so_far
    assert (so_far["oom_retries/training"], so_far["micro_batch_size"], so_far["oom_retries/rollout"]) == (3.0, 1.0, 0.0)
    assert so_far["rollout_seconds"] > 0 and "backward_seconds" not in so_far
    assert not runner.update_started  # the weights are the last step's: the loop lets them be exported
    assert all(torch.equal(v, before[k]) for k, v in weights(runner).items())
    assert not runner.engine.optimizer.state  # AdamW has not stepped: no moments
    assert runner.memory_advice() == (
        "out of memory during the training pass with micro-batches of 1 sequence (training.micro_batch_size 8, "
        "halved on running out): set training.gradient_checkpointing: true, shorten the completions "
        "(rollout.max_new_tokens 8), or give the trainer more memory")


def test_out_of_memory_in_the_optimizer_step_is_not_run_again(tiny_dir: Path, backend: Any) -> None:
    runner = runner_for(tiny_dir, backend, micro_batch_size=8)

    def optimizer_state(_optimizer: Any, _args: Any, _kwargs: Any) -> None:
        torch.empty(1 << 50, dtype=torch.uint8)  # AdamW's moments that do not fit

    runner.engine.optimizer.register_step_pre_hook(optimizer_state)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        runner.run_step(1, prompts(1), backend[1])
    assert runner.micro_batch_size == 8  # not halved: the optimizer had begun
    assert (runner.step_so_far["oom_retries/training"], runner.step_so_far["micro_batch_size"]) == (0.0, 8.0)
    assert runner.engine.optimizer_stepping and runner.update_started  # the weights may be partly updated
    assert runner.memory_advice().startswith(
        "out of memory in the optimizer step (AdamW keeps two fp32 numbers for every weight it trains): train a "
        "LoRA adapter instead of every weight (algorithm.lora_rank)")
