"""Math verifier throughput: items/s through a real server with 1 and 2 verifier processes.

    .venv/bin/python bench/bench_math.py [--items 512] [--batch 32] [--clients 4]

The workload cycles through the test table (tests/integration/services/math_cases.py); --items 512
holds each distinct (answer, completion) pair of the table about twice. Before each configuration is
timed, every verifier process is warmed with one pass over the table (the pairs its items send to a
worker, submitted to each worker directly), and one Score call warms the server; the verdict cache is
then emptied, so that with the cache on the timed run fills it itself. (Before 2026-12-07 the warm-up
was one trivial item, so each fresh worker's first pass over the table's forms, about twice as slow,
was inside every timed run.)

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


def warm_up(scorer: MathVerifierScorer, stub: reward_pb2_grpc.RewardServiceStub) -> int:
    """Warm every verifier process with one pass over the test table, and the server with one call, then
    empty the verdict cache; returns the number of pairs each worker verified. The pairs are what the
    scorer itself sends to a worker for each table item (its extraction runs here, its comparison is only
    recorded), submitted to each worker process directly: the pool would hand a pass to whichever worker
    is free, leaving each only part of it."""
    from grpo_rewards.math_verifier.worker import Verdict

    table = workload(len(__import__("math_cases").CASES))
    pairs: list[tuple[str, str]] = []

    def record(gold: str, answer: str) -> Verdict:
        pairs.append((gold, answer))
        return Verdict(equal=False)

    scorer._verify = record  # type: ignore[method-assign]  # this instance only, undone below
    try:
        for item in table:
            scorer.score_one(item)
    finally:
        del scorer._verify
    pool = scorer.pool
    futures = [w.submit(gold, answer, pool.item_timeout_s) for w in pool._all for gold, answer in pairs]
    for f in futures:
        f.result(timeout=120)
    stub.Score(reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(id="w", completion="1", answer="1")]),
               timeout=120)
    with scorer._cache_lock:
        scorer._cache.clear()
    return len(pairs)


def run(workers: int, items: list[reward_pb2.ScoreItem], batch: int, clients: int, cache_size: int) -> float:
    """Items/s for scoring `items` in batches of `batch` from `clients` concurrent clients."""
    scorer = MathVerifierScorer(MathConfig(workers=workers, cache_size=cache_size))
    running = start_server(scorer, max_batch=max(batch, 1),
                           max_concurrency=clients)
    try:
        with grpc.insecure_channel(running.address) as ch:
            stub = reward_pb2_grpc.RewardServiceStub(ch)
            # Warm-up, then an empty verdict cache: the cache (when on) helps only where the workload
            # itself repeats pairs.
            warm_up(scorer, stub)
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
    distinct = len(set((i.answer, i.completion) for i in items))
    print(f"math verifier: {args.items} items, batches of {args.batch}, {args.clients} clients; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; each worker warmed with one pass over the table")
    for workers in (1, 2):
        rate = run(workers, items, args.batch, args.clients, cache_size=0)
        print(f"  workers={workers}, verdict cache off: {rate:8.1f} items/s")
    rate = run(2, items, args.batch, args.clients, cache_size=8192)
    repeats = (f"{distinct} distinct pairs among the {len(items)} items" if distinct < len(items)
               else f"no pair repeats: {distinct} distinct pairs")
    print(f"  workers=2, verdict cache on ({repeats}): {rate:8.1f} items/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
