"""Rollout speed: vLLM (in process) against HF `generate` on SmolLM2-135M-Instruct, and weight-sync time.

For each engine and each batch size B it samples B prompts x n completions of at most --max-new-tokens
tokens (the same chat-templated sums for both engines, fixed seed), after one untimed warm-up call,
and reports generated tokens per second (median over --repeats). Weight sync: seconds to push all
parameters of an fp32 copy of the model into the engine (the HF engine here holds a private copy; when
it shares the trainer's module, as the trainer runs it, the sync costs nothing).

Precision: vLLM runs its `auto` dtype (bfloat16 on a CPU with bfloat16 instructions, else float32) and
HF `generate` --hf-dtype (float32 by default: the trainer's weights). With the defaults on a bfloat16
CPU the vLLM / HF ratio is therefore bfloat16 against float32, not the engines alone; `--hf-dtype
bfloat16` runs HF in bfloat16 too, for an engine-only comparison there.

    .venv/bin/python bench/bench_rollout.py                      # both engines, B = 1, 4, 8
    .venv/bin/python bench/bench_rollout.py --hf-dtype bfloat16  # HF in bfloat16, like vLLM's auto on such a CPU
    .venv/bin/python bench/bench_rollout.py --engines vllm --vllm-torch-threads 1 --json out.json

Results and the machine they came from: docs/rollout.md, "Measured".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def build_prompts(tokenizer: Any, count: int) -> list[list[int]]:
    """`count` chat-templated "What is a+b?" prompts (deterministic)."""
    out = []
    for i in range(count):
        a, b = 3 + (7 * i) % 17, 2 + (5 * i) % 19
        msgs = [{"role": "user", "content": f"What is {a}+{b}? Answer with just the number."}]
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def _engine_dtype(engine: Any, asked: str) -> str:
    """The dtype the engine samples in: vLLM's weights as it holds them (its `auto` resolves at start),
    HF's model's; what was asked for where neither can be read."""
    for found in (getattr(engine, "_param_dtype", None), getattr(getattr(engine, "model", None), "dtype", None)):
        if found is not None:
            return str(found).removeprefix("torch.")
    return asked


def bench_engine(kind: str, args: argparse.Namespace, model_dir: Path, tokenizer: Any) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from grpo_server.rollout.base import SamplingConfig, make_engine

    options: dict[str, Any] = {}
    if kind == "vllm":
        options = {"gpu_memory_utilization": args.vllm_memory, "max_model_len": 2048, "enforce_eager": True,
                   "torch_threads": args.vllm_torch_threads}
    t0 = time.perf_counter()
    dtype = "auto" if kind == "vllm" else args.hf_dtype
    engine = make_engine(kind, model_path=str(model_dir), model=None, tokenizer=tokenizer,
                         dtype=dtype, device="cpu", seed=0, **options)
    start_s = time.perf_counter() - t0
    result: dict[str, Any] = {"engine": kind, "dtype": _engine_dtype(engine, dtype), "start_seconds": start_s,
                              "threads": torch.get_num_threads(), "batches": []}
    try:
        prompts = build_prompts(tokenizer, max(args.batch_sizes))
        sampling = SamplingConfig(n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  seed=0)
        t0 = time.perf_counter()
        engine.generate(prompts[:1], sampling)  # warm-up (vLLM compiles / allocates on its first call)
        result["first_call_seconds"] = time.perf_counter() - t0
        for b in args.batch_sizes:
            rates, secs, tokens = [], [], 0
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = engine.generate(prompts[:b], sampling)
                dt = time.perf_counter() - t0
                tokens = sum(len(c.token_ids) for g in out for c in g)
                rates.append(tokens / dt)
                secs.append(dt)
            row = {"prompts": b, "sequences": b * args.n, "tokens": tokens,
                   "seconds": statistics.median(secs), "tokens_per_second": statistics.median(rates)}
            result["batches"].append(row)
            print(f"  {kind:5s} ({result['dtype']}) B={b:3d} x n={args.n}: {row['tokens']:5d} tokens in {row['seconds']:6.2f} s "
                  f"= {row['tokens_per_second']:7.1f} tokens/s", flush=True)
        trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        syncs = []
        for _ in range(args.sync_repeats):
            t0 = time.perf_counter()
            engine.load_weights(trainer.named_parameters())
            syncs.append(time.perf_counter() - t0)
        result["weight_sync_seconds"] = statistics.median(syncs)
        print(f"  {kind:5s} weight sync: {result['weight_sync_seconds']:.2f} s (median of {len(syncs)})", flush=True)
    finally:
        engine.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="HF directory (default: prepared SmolLM2)")
    parser.add_argument("--engines", default="hf,vllm", help="comma-separated: hf, vllm")
    parser.add_argument("--batch-sizes", default="1,4,8", help="prompts per call, comma-separated")
    parser.add_argument("--n", type=int, default=8, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per batch size (median)")
    parser.add_argument("--sync-repeats", type=int, default=3)
    parser.add_argument("--vllm-memory", type=float, default=0.3, help="vLLM gpu_memory_utilization")
    parser.add_argument("--hf-dtype", default="float32", choices=["float32", "bfloat16"],
                        help="HF generate's weights and compute (default float32, the trainer's weights; "
                             "vLLM always runs its auto dtype, bfloat16 on a CPU with bfloat16 instructions)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads for the whole run (default: torch's choice)")
    parser.add_argument("--vllm-torch-threads", type=int, default=None,
                        help="torch threads while vLLM serves (default: as before vLLM started)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]

    import torch
    from transformers import AutoTokenizer

    from grpo_server.models.smollm2 import prepare_smollm2

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    model_dir = args.model_dir or prepare_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "load_average_1m": os.getloadavg()[0], "python": sys.version.split()[0]}
    print(f"model {model_dir}; n={args.n}, max_new_tokens={args.max_new_tokens}, T={args.temperature}; "
          f"{machine['cores']} cores, load {machine['load_average_1m']:.1f}", flush=True)
    results = [bench_engine(kind.strip(), args, model_dir, tokenizer) for kind in args.engines.split(",")]

    print()
    print(f"{'engine':6s} {'dtype':9s} {'B':>3s} {'seqs':>5s} {'tokens':>7s} {'seconds':>8s} {'tokens/s':>9s}")
    for r in results:
        for row in r["batches"]:
            print(f"{r['engine']:6s} {r['dtype']:9s} {row['prompts']:3d} {row['sequences']:5d} {row['tokens']:7d} "
                  f"{row['seconds']:8.2f} {row['tokens_per_second']:9.1f}")
    print()
    for r in results:
        print(f"{r['engine']:6s} ({r['dtype']}) start {r['start_seconds']:.1f} s, first call {r['first_call_seconds']:.1f} s, "
              f"weight sync {r['weight_sync_seconds']:.2f} s, torch threads {r['threads']}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine,
                                         "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
