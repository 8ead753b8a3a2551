"""Where the trainer's memory goes during the GRPO step of bench/bench_step.py: resident memory by
phase, and what is resident between steps.

The same trainer, model and step as bench_step (SmolLM2-135M-Instruct, 8 prompts x 8 samples, <= 32
tokens, micro-batches of 16, vLLM in process with a 0.25 GiB KV cache). This process's RSS is sampled
every 20 ms and each sample is charged to the phase running then: `rollout`, `forward N` / `backward N`
of micro-batch N (the forward ends when the loss returns; its backward runs until the next micro-batch
starts), `optimizer` (clipping, AdamW, the schedule), `weight sync`. Each step's 8 prompts are submitted
only after the previous step's reading, so nothing is queued while it is taken: after each step, once
the loop is idle (it found the queue empty), glibc's free pages are returned (malloc_trim) and the
resident memory is split into what is known: the training weights, the AdamW state, the gradients still held, the KV cache (its resident
pages, from mincore: the engine hands them back after each rollout), the file-backed
pages (shared libraries; the training weights too, which are mapped from model.safetensors and
counted there until the first update writes them) and the anonymous rest.

    .venv/bin/python -m bench.bench_memory --steps 3 --json out.json

Not a test: it prints numbers (docs/benchmarks.md, "Where the memory goes").
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import exit_on_sigterm, machine_info, sum_problems, write_json
from bench.bench_step import TrainerHarness, step_config

GIB = 2**30
PROMPTS_PER_STEP = 8


def wait_idle(h: TrainerHarness, timeout_s: float = 120.0) -> None:
    """Return once the training loop is idle: it finished its step and found no prompt to lease."""
    from grpo_server.control import RunState

    deadline = time.monotonic() + timeout_s
    while h.app.control.state is not RunState.IDLE:
        if h.app.control.error:
            raise RuntimeError(f"the run failed: {h.app.control.error}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the loop was not idle within {timeout_s:.0f} s (state {h.app.control.state})")
        time.sleep(0.02)


class PhaseRss:
    """Samples this process's RSS every `interval_s` and keeps, per phase label, the peak and the
    first value seen (the RSS when the phase began)."""

    def __init__(self, interval_s: float = 0.02) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval_s = interval_s
        self.phase = "idle"
        self.peak: dict[str, int] = {}
        self.entry: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="phase-rss", daemon=True)

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, phase = self.rss(), self.phase
            self.entry.setdefault(phase, rss)
            self.peak[phase] = max(self.peak.get(phase, 0), rss)
            self._stop.wait(self.interval_s)

    def take(self) -> dict[str, dict[str, float]]:
        """Per phase {peak_gib, entry_gib} since the last take, and reset."""
        out = {p: {"peak_gib": self.peak[p] / GIB, "entry_gib": self.entry.get(p, self.peak[p]) / GIB}
               for p in self.peak}
        self.peak, self.entry = {}, {}
        return out

    def __enter__(self) -> PhaseRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _labelled(rec: PhaseRss, fn: Callable[..., Any], label: str, after: str | None = None) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rec.phase = label
        try:
            return fn(*args, **kwargs)
        finally:
            if after is not None:
                rec.phase = after
    return wrapper


@contextmanager
def instrument(runner: Any, rec: PhaseRss) -> Iterator[None]:
    """Label the phases of `runner` (the trainer's step runner) on `rec`, by wrapping the methods of
    its engine and rollout instances (the classes are left alone); undone on exit."""
    engine, rollout = runner.engine, runner.rollout
    train_step, clip = engine.train_step, engine._clip
    generate, load_weights = rollout.generate, rollout.load_weights

    def labelled_train_step(micro_batches: Any, loss_fn: Callable[..., Any], normalizer: float) -> Any:
        count = iter(range(len(micro_batches)))

        def loss(*args: Any, **kwargs: Any) -> Any:
            n = next(count)
            rec.phase = f"forward {n}"
            result = loss_fn(*args, **kwargs)
            rec.phase = f"backward {n}"
            return result
        try:
            return train_step(micro_batches, loss, normalizer)
        finally:
            rec.phase = "idle"

    engine.train_step = labelled_train_step
    engine._clip = _labelled(rec, clip, "optimizer")
    rollout.generate = _labelled(rec, generate, "rollout", after="idle")
    rollout.load_weights = _labelled(rec, load_weights, "weight sync", after="idle")
    try:
        yield
    finally:
        for obj, name in ((engine, "train_step"), (engine, "_clip"), (rollout, "generate"),
                          (rollout, "load_weights")):
            vars(obj).pop(name, None)


def _smaps_rollup() -> dict[str, int]:
    """/proc/self/smaps_rollup's fields in bytes (Rss, Anonymous, ...)."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[key] = int(parts[0]) * 1024
    return out


def kv_cache_resident_gib(runner: Any) -> float:
    """How much of vLLM's KV cache is resident now (0 for another rollout engine). The engine hands its
    pages back after each call (VLLMEngine.release_kv_cache), so between steps this is about 0."""
    from grpo_server.malloc import resident_bytes

    caches: list[Any] = getattr(runner.rollout, "_kv_caches", lambda: [])()
    return sum(resident_bytes(t) for t in caches) / GIB


def idle_breakdown(runner: Any, kv_cache_gib: float) -> dict[str, float]:
    """The resident memory between steps, after malloc_trim, split into what is known (GiB)."""
    from grpo_server.malloc import trim

    trim()
    time.sleep(0.2)
    model, optimizer = runner.engine.model, runner.engine.optimizer
    params = list(model.parameters())
    rollup = _smaps_rollup()
    return {
        "rss_gib": rollup["Rss"] / GIB,
        "file_backed_gib": (rollup["Rss"] - rollup["Anonymous"]) / GIB,
        "anonymous_gib": rollup["Anonymous"] / GIB,
        "training_weights_gib": sum(p.numel() * p.element_size() for p in params) / GIB,
        "gradients_held_gib": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None) / GIB,
        "optimizer_state_gib": sum(t.numel() * t.element_size() for state in optimizer.state.values()
                                   for t in state.values() if hasattr(t, "numel") and t.dim() > 0) / GIB,
        "kv_cache_gib": kv_cache_resident_gib(runner),
        "kv_cache_allocated_gib": kv_cache_gib,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = step_config(vllm_kv_gib=args.vllm_kv_gib or None, micro_batch=args.micro_batch, prompts_per_step=PROMPTS_PER_STEP)
    problems = sum_problems(PROMPTS_PER_STEP * args.steps, seed=0)  # the same sums, in the same order, as before
    steps: list[dict[str, Any]] = []
    with TrainerHarness(config) as h, PhaseRss() as rec:
        runner = h.app.loop.runner
        ready = idle_breakdown(runner, args.vllm_kv_gib)
        print(f"ready: RSS {ready['rss_gib']:.2f} GiB (file-backed {ready['file_backed_gib']:.2f})", flush=True)
        rec.take()
        with instrument(runner, rec):
            for n in range(1, args.steps + 1):
                # One step's prompts at a time (before 2026-12-07 all steps' were queued at once, so the
                # reading between steps ran during the next step's rollout).
                h.submit(problems[PROMPTS_PER_STEP * (n - 1):PROMPTS_PER_STEP * n])
                metrics = h.wait_step(n)
                wait_idle(h)
                phases = rec.take()
                idle = idle_breakdown(runner, args.vllm_kv_gib)
                steps.append({"step": n, "step_seconds": metrics["step_seconds"], "phases": phases, "idle": idle})
                top = max(phases.items(), key=lambda kv: kv[1]["peak_gib"])
                print(f"step {n}: {metrics['step_seconds']:.1f} s, peak {top[1]['peak_gib']:.2f} GiB in {top[0]}; "
                      f"between steps {idle['rss_gib']:.2f} GiB = weights {idle['training_weights_gib']:.2f} + "
                      f"AdamW {idle['optimizer_state_gib']:.2f} + KV cache {idle['kv_cache_gib']:.2f} + "
                      f"gradients {idle['gradients_held_gib']:.2f} + rest "
                      f"{idle['rss_gib'] - idle['training_weights_gib'] - idle['optimizer_state_gib'] - idle['kv_cache_gib'] - idle['gradients_held_gib']:.2f}",
                      flush=True)
                for phase, v in sorted(phases.items(), key=lambda kv: -kv[1]["peak_gib"]):
                    print(f"    {phase:12s} entry {v['entry_gib']:.2f}  peak {v['peak_gib']:.2f} GiB", flush=True)
    return {"ready": ready, "steps": steps}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="steps to run (8 prompts x 8 samples each)")
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--vllm-kv-gib", type=float, default=0.25, help="vLLM's KV cache, GiB (as bench_step)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    print(f"machine {machine_info()}, pid {os.getpid()}", flush=True)
    result = run(args)
    result["machine"] = machine_info()
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
