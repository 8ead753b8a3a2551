"""Math verifier throughput: items/s through a real server with 1 and 2 verifier processes.

    .venv/bin/python bench/bench_math.py [--items 512] [--batch 32] [--clients 4]

Prints one line per worker count. Not a test: no assertions on speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration" / "services"))

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc  # noqa: E402
from grpo_rewards.common import start_server  # noqa: E402
from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer  # noqa: E402


def workload(n: int) -> list[reward_pb2.ScoreItem]:
    """`n` items cycling through the test table's forms (integers, fractions, LaTeX, sets, intervals...)."""
    from math_cases import CASES

    return [reward_pb2.ScoreItem(id=f"i{k}", completion=CASES[k % len(CASES)][1], answer=CASES[k % len(CASES)][0])
            for k in range(n)]


def run(workers: int, items: list[reward_pb2.ScoreItem], batch: int, clients: int, cache_size: int) -> float:
    """Items/s for scoring `items` in batches of `batch` from `clients` concurrent clients."""
    scorer = MathVerifierScorer(MathConfig(workers=workers, cache_size=cache_size))
    running = start_server(scorer, max_batch=max(batch, 1),
                           max_concurrency=clients)
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = reward_pb2_grpc.RewardServiceStub(ch)
            # One warm-up call; its answers are not in `items` order again, so the verdict cache (when on)
            # only helps where the workload itself repeats pairs.
            stub.Score(reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(id="w", completion="1", answer="1")]),
                       timeout=120)
            batches = [items[i:i + batch] for i in range(0, len(items), batch)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                done = sum(len(r.results) for r in pool.map(
                    lambda b: stub.Score(reward_pb2.ScoreRequest(items=b), timeout=600), batches))
            elapsed = time.perf_counter() - t0
        return done / elapsed
    finally:
        running.stop(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--clients", type=int, default=4)
    args = p.parse_args(argv)
    items = workload(args.items)
    print(f"math verifier: {args.items} items, batches of {args.batch}, {args.clients} clients; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    for workers in (1, 2):
        rate = run(workers, items, args.batch, args.clients, cache_size=0)
        print(f"  workers={workers}, verdict cache off: {rate:8.1f} items/s")
    rate = run(2, items, args.batch, args.clients, cache_size=8192)
    print(f"  workers=2, verdict cache on (the workload repeats {len(set((i.answer, i.completion) for i in items))} "
          f"distinct pairs): {rate:8.1f} items/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
