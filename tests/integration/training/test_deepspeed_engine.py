"""The DeepSpeed engine on 2 real CPU ranks (gloo) gives the torch engine's update, for ZeRO 1, 2 and 3.

Each test launches ds_ranks.py under torchrun with 2 ranks (about a minute on this 2-core machine; the
first DeepSpeed launch on a machine also compiles its shared-memory communication op once). Rank 0
drives the other rank through the engine's command channel; the record it writes is compared here with
the torch engine doing the same steps in this process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from ds_ranks import LOGPROBS, LOSS_CONFIG, LOSS_FN, MICRO_BATCH_ROWS, OPTIM
from engine_helpers import fixed_batch, load_tiny, split_rows, with_old_and_ref

from grpo_server.models.tiny import build_tiny_model
from grpo_server.training.engine import all_masked_like, make_engine
from grpo_server.training.loss import global_normalizer

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(model_dir: Path, stage: int, workdir: Path, ranks: int = 2) -> dict:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(HERE / "ds_ranks.py"), "--model", str(model_dir), "--stage", str(stage), "--workdir", str(workdir),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"ranks failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return torch.load(workdir / "record.pt", weights_only=False)


def assert_same_weights(got: dict, expected: dict, atol: float) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=atol, msg=f"{name} differs")


@pytest.mark.slow
@pytest.mark.parametrize(("ranks", "stage"), [(2, 1), (2, 2), (2, 3), (1, 3)])
def test_deepspeed_ranks_give_the_same_update_as_one_torch_engine_and_resume_exactly(tiny_dir, tmp_path, ranks, stage):
    """Also one rank alone under ZeRO-3 (its weights are partitioned all the same): forward_logprobs and
    named_weights read the model outside DeepSpeed's forward and gathers, and got empty tensors (the old
    log-probs of inner_iterations > 1 failed the step: "size mismatch, got input (64), mat (64x64), vec (0)")."""
    reference = make_engine("torch", load_tiny(tiny_dir), OPTIM)
    batch = with_old_and_ref(reference.model, fixed_batch(n=10, group=2))  # micro-batches share prompts
    # Rows 6 and 7 failed: micro-batch 3 (rank 1's second) has no loss token.
    batch = replace(batch, completion_mask=batch.completion_mask.index_fill(0, torch.tensor([6, 7]), 0.0))
    torch.save(vars(batch), tmp_path / "batch.pt")
    record = run_ranks(tiny_dir, stage, tmp_path, ranks)
    assert record["world_size"] == ranks

    micro = split_rows(batch, MICRO_BATCH_ROWS)  # 5 micro-batches: rank 1 runs a filler pass
    normalizer = global_normalizer(micro, LOSS_CONFIG.aggregation, LOSS_CONFIG.max_tokens)
    m1 = reference.train_step(micro, LOSS_FN, normalizer)
    w1 = {k: v.clone() for k, v in reference.named_weights()}
    logprobs = reference.forward_logprobs(batch, 1.0, LOGPROBS)
    m2 = reference.train_step(micro, LOSS_FN, normalizer)
    w2 = {k: v.clone() for k, v in reference.named_weights()}
    m3 = reference.train_step([all_masked_like(mb) for mb in micro], LOSS_FN, 1.0)
    w3 = {k: v.clone() for k, v in reference.named_weights()}

    # Same update: gradient summed over ranks (not averaged), clipped by the same global norm, same
    # AdamW; only the order of float additions differs (lr 1e-2, so 1e-6 is 1e-4 of a step).
    assert record["m1"]["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
    assert m1["grad_norm"] > OPTIM.max_grad_norm  # clipping was active
    assert m1["clip_fraction"] > 0 and m1["kl"] > 0
    for key in ("loss", "policy_loss", "kl", "clip_fraction_low", "clip_fraction_high", "entropy"):
        assert record["m1"][key] == pytest.approx(m1[key], rel=1e-5, abs=1e-7), key
    assert record["m1"]["learning_rate"] == m1["learning_rate"]
    assert_same_weights(record["w1"], w1, atol=1e-6)
    assert record["first_weight"] == next(iter(w1))  # and the ranks went on in step after it
    torch.testing.assert_close(record["logprobs"], logprobs, rtol=0, atol=1e-5)
    assert record["m2"]["learning_rate"] == m2["learning_rate"] < m1["learning_rate"]
    assert_same_weights(record["w2"], w2, atol=1e-6)

    # A fresh 2-rank engine loading the state saved after step 1 takes exactly the second step.
    assert record["resumed_step"] == 1
    assert record["m2_resumed"]["grad_norm"] == record["m2"]["grad_norm"]
    assert record["m2_resumed"]["learning_rate"] == record["m2"]["learning_rate"]
    assert_same_weights(record["w2_resumed"], record["w2"], atol=0.0)

    # A step without any loss token: zero gradient on every rank (Adam's momentum still moves weights).
    assert record["m3_empty"]["grad_norm"] == m3["grad_norm"] == 0.0
    assert_same_weights(record["w3_empty"], w3, atol=1e-6)


@pytest.mark.slow
def test_a_forward_that_fails_on_rank_0_alone_fails_the_step_on_every_rank(tiny_dir) -> None:
    """Rank 0's loss forward raised (its GPU out of memory, say) while rank 1 waited in the pass's
    agreement: both ranks hung, and rank 0's close() never returned. Now every rank leaves the pass."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(HERE / "ds_rank_failure.py"), "--model", str(tiny_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"rc {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "rank 0: train_step failed: out of memory on rank 0 (the test's)" in proc.stdout, proc.stdout
    assert "rank 1: train_step failed: FloatingPointError: pass 0 failed on some rank" in proc.stdout, proc.stdout
