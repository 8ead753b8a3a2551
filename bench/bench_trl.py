"""The peer: TRL's GRPOTrainer on the same GRPO step as bench/bench_step.py, in its own process.

Same model (SmolLM2-135M-Instruct, float32), same prompts (bench.sum_problems), same batch (8 prompts x
8 samples, micro-batches of 16 completions: per_device_train_batch_size=16 with 4 accumulation steps,
so one optimizer step per generation batch of 64), same completion length (<= 32 new tokens), learning
rate, temperature, beta and loss aggregation ("grpo": per-sequence mean). TRL runs as a CPU user would
run it out of the box: HF `generate` (use_vllm=False), float32 (or bfloat16 autocast with --bf16),
gradient checkpointing (GRPOConfig's default; our trainer's default too), torch's default threads.
Same reward: the math verifier service's own rule, called in process (its scorer's `score_one`: the
final-answer extraction, number words read against a plain-number gold, then math-verify's comparison;
before 2026-12-07 this side called the extraction without number words). Not the common TRL recipe
`verify(parse(gold), parse(completion))`: math-verify's parse of a whole completion reads the first
expression it finds, so "The answer to this equation is 28 + 65." evaluates to 93 and scores 1 for
"What is 28+65?". On SmolLM2's first samples that recipe scored 0.164 where the extraction scored 0.039
(128 completions; most of the difference was completions restating the sum), and the policy learns to
restate the question.

It needs TRL, which lives only in the bench environment (requirements/bench.txt, installed by
`python -m bench.run_all` into .venv/bench-packages):

    PYTHONPATH=.venv/bench-packages .venv/bin/python -m bench.bench_trl --steps 4 --json out.json

Prints one line per step and a summary; with --json writes step seconds, rewards and peak memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bench import PeakRss, load_average, machine_info, self_peak_rss_bytes, sum_problems, write_json


class _InProcessMathScorer:
    """The math verifier service's scorer (``MathVerifierScorer.score_one``: gold clean-up, the
    reasoning block dropped, multiple-choice letters, number words read only against a plain-number gold,
    bounds, the final-answer extraction, math-verify's comparison) with its comparison run in this
    process (``verify_pair``, what the service's worker processes run) instead of in a worker pool, so
    that TRL's measured memory holds no verifier process. Built lazily: only the TRL subprocess needs it."""

    _scorer: Any = None

    @classmethod
    def get(cls) -> Any:
        if cls._scorer is None:
            from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer
            from grpo_rewards.math_verifier.worker import verify_pair

            class InProcess(MathVerifierScorer):
                def __init__(self) -> None:  # no VerifierPool, no dispatch threads, no verdict cache
                    self.config = MathConfig(workers=1, cache_size=0)

                def _verify(self, gold: str, answer: str) -> Any:
                    return verify_pair(gold, answer, self.config.item_timeout_s)

            cls._scorer = InProcess()
        return cls._scorer


def math_reward(completions: list[Any], answer: list[str], **_: Any) -> list[float]:
    """1.0 when the completion's final answer equals the gold answer, else 0.0, by the math verifier
    service's own rule: ``MathVerifierScorer.score_one`` in process (see ``_InProcessMathScorer``), so
    number words ("ninety-three") count against a number gold as in the service; a timeout or an
    invalid item scores 0. TRL's reward-function signature: completions are chat message lists; dataset
    columns arrive as keywords."""
    from grpo.reward.v1 import reward_pb2

    scorer = _InProcessMathScorer.get()
    out = []
    for k, (completion, gold) in enumerate(zip(completions, answer, strict=True)):
        text = completion[0]["content"] if isinstance(completion, list) else str(completion)
        result = scorer.score_one(reward_pb2.ScoreItem(id=str(k), completion=text, answer=str(gold)))
        out.append(float(result.score) if result.status == reward_pb2.SCORE_STATUS_OK else 0.0)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train `args.steps` optimizer steps with GRPOTrainer; returns timings, rewards and peak memory."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; no telemetry or hub look-ups
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as exc:
        raise SystemExit(f"TRL is not installed here ({exc}): `python -m bench.run_all --only step` installs it "
                         "(requirements/bench.txt into .venv/bench-packages) and runs this with it on the path") from None

    from grpo_server.models.smollm2 import prepare_smollm2

    model_dir = args.model_dir or prepare_smollm2()
    problems = sum_problems(args.prompts_per_step * args.steps * 2, seed=args.seed)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": q}], "answer": a} for q, a in problems])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    completions_per_step = args.prompts_per_step * args.group_size
    accumulation = max(completions_per_step // args.micro_batch, 1)
    config = GRPOConfig(
        output_dir=str(args.out_dir),
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=accumulation,
        num_generations=args.group_size,
        max_completion_length=args.max_new_tokens,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        beta=args.beta,
        loss_type="grpo",
        scale_rewards="group",
        max_grad_norm=1.0,
        gradient_checkpointing=True,  # GRPOConfig's default, stated: ours checkpoints too
        max_steps=args.steps,
        use_vllm=False,
        use_cpu=True,
        bf16=args.bf16,  # on CPU: torch.autocast("cpu", bfloat16) around forward and backward
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        disable_tqdm=True,
    )

    class Timer(TrainerCallback):  # type: ignore[misc]
        """Wall time of each optimizer step and the metrics TRL logs for it."""

        def __init__(self) -> None:
            self.marks: list[float] = []
            self.logs: list[dict[str, float]] = []

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.marks.append(time.perf_counter())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.marks.append(time.perf_counter())
            n = len(self.marks) - 1
            print(f"trl step {n}: {self.marks[-1] - self.marks[-2]:.1f} s (load {load_average()})", flush=True)

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logs = kwargs.get("logs")
            if logs:
                self.logs.append(dict(logs))

    timer = Timer()
    with PeakRss(os.getpid()) as rss:
        trainer = GRPOTrainer(model=model, reward_funcs=[math_reward], args=config, train_dataset=data,
                              processing_class=tokenizer, callbacks=[timer])
        trainer.train()
    step_seconds = [b - a for a, b in zip(timer.marks, timer.marks[1:], strict=False)]
    rewards = [float(log["reward"]) for log in timer.logs if "reward" in log]
    return {
        "system": "trl",
        "trl_version": __import__("trl").__version__,
        "model": str(model_dir),
        "step_seconds": step_seconds,
        "median_step_seconds_after_first": statistics.median(step_seconds[1:] or step_seconds),
        "rewards": rewards,
        "peak_rss_bytes_sampled": rss.peak_bytes,
        "peak_rss_bytes_getrusage": self_peak_rss_bytes(),
        "torch_threads": torch.get_num_threads(),
        "logs": timer.logs,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=None, help="HF directory (default: the prepared SmolLM2)")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps (the first counts as warm-up)")
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--micro-batch", type=int, default=16, help="completions per forward/backward pass")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=Path("runs/bench/trl"))
    p.add_argument("--bf16", action="store_true",
                   help="TRL's bf16=True (CPU autocast to bfloat16; weights and optimizer stay float32)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"TRL GRPOTrainer: {args.prompts_per_step} prompts x {args.group_size} samples, <= {args.max_new_tokens} "
          f"tokens, lr {args.learning_rate}; machine {machine_info()}", flush=True)
    result = run(args)
    result["machine"] = machine_info()
    print(f"trl: median step {result['median_step_seconds_after_first']:.1f} s, peak RSS "
          f"{result['peak_rss_bytes_sampled'] / 2**30:.2f} GiB, rewards {[round(r, 3) for r in result['rewards']]}",
          flush=True)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
