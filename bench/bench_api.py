"""API throughput and latency: SubmitPrompts prompts/s and StepStatus p50/p99 with 1, 10 and 50
concurrent clients against a real trainer.

The trainer is `grpo-server` in its own process (tiny model, HF rollouts, SQLite store in a temp dir,
the real math verifier registered as `math`), paused through PauseTraining before the first prompt, so
it stores and answers but does not train. The clients are grpc.aio coroutines in this process, one
channel each; each SubmitPrompts carries --batch prompts with fresh ids.

    .venv/bin/python -m bench.bench_api [--seconds 5] [--clients 1,10,50] [--batch 8] [--json out.json]

The client process shares the 2 cores with the server: on a shared machine the client's own Python
overhead is part of what is measured (read the numbers as a floor).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import (
    BIN,
    exit_on_sigterm,
    load_average,
    machine_info,
    start_math_verifier,
    stop_process,
    wait_for_grpc,
    write_json,
)

SERVER_CONFIG: dict[str, Any] = {
    "model": {"source": "tiny"},
    "rollout": {"engine": "hf", "max_new_tokens": 8},
    "algorithm": {"prompts_per_step": 2, "group_size": 2},
    "checkpoint": {"every_steps": 1000},
    "limits": {"max_queue_depth": 10_000_000},
}


def start_trainer(store_dir: Path, math_address: str) -> tuple[subprocess.Popen[str], str]:
    """`grpo-server` on a free port (it prints the port it bound), ready (health SERVING)."""
    config = store_dir / "config.yaml"
    config.write_text(yaml.safe_dump(SERVER_CONFIG))
    proc = subprocess.Popen(
        [str(BIN / "grpo-server"), "--config", str(config), "--store-dir", str(store_dir / "store"),
         "--listen", "127.0.0.1:0", "--reward-backend", f"math={math_address}", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "grpo-server listening on port N metrics -"
    if "listening on port" not in line:
        stop_process(proc)
        raise RuntimeError(f"grpo-server did not start: {line!r}")
    address = f"127.0.0.1:{int(line.split('port')[1].split()[0])}"
    wait_for_grpc(address)
    return proc, address


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def submit_load(address: str, clients: int, seconds: float, batch: int, tag: str) -> dict[str, Any]:
    """`clients` coroutines calling SubmitPrompts for `seconds`; prompts accepted per second."""
    import grpc

    from grpo.reward.v1 import reward_pb2
    from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc

    latencies: list[float] = []
    accepted = 0
    errors = 0

    async def client(k: int) -> None:
        nonlocal accepted, errors
        async with grpc.aio.insecure_channel(address) as ch:
            stub = trainer_pb2_grpc.TrainerServiceStub(ch)
            n = 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                prompts = [trainer_pb2.Prompt(id=f"{tag}-{k}-{n}-{i}", answer=str(i),
                                              messages=[reward_pb2.Message(role="user", content=f"What is {i}+0?")])
                           for i in range(batch)]
                n += 1
                t0 = time.perf_counter()
                try:
                    r = await stub.SubmitPrompts(trainer_pb2.SubmitPromptsRequest(prompts=prompts), timeout=60)
                    accepted += len(r.accepted_ids)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    return {"clients": clients, "batch": batch, "prompts_per_second": accepted / wall, "requests": len(latencies),
            "errors": errors, "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "load_average": load_average()}


async def status_load(address: str, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` coroutines calling StepStatus for `seconds`; latency percentiles."""
    import grpc

    from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc

    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        async with grpc.aio.insecure_channel(address) as ch:
            stub = trainer_pb2_grpc.TrainerServiceStub(ch)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    await stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=60)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests_per_second": len(latencies) / wall, "requests": len(latencies),
            "errors": errors, "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "mean_ms": 1000 * statistics.fmean(latencies), "load_average": load_average()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers, pause training, measure each concurrency level, stop everything."""
    import grpc

    from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc

    results: dict[str, Any] = {"submit": [], "status": []}
    with tempfile.TemporaryDirectory(prefix="grpo-bench-api-") as tmp:
        verifier, math_address = start_math_verifier(workers=1)
        trainer: subprocess.Popen[str] | None = None
        try:
            trainer, address = start_trainer(Path(tmp), math_address)
            with grpc.insecure_channel(address) as ch:
                trainer_pb2_grpc.TrainerServiceStub(ch).PauseTraining(trainer_pb2.PauseTrainingRequest(), timeout=30)
            for c in args.clients:
                row = asyncio.run(submit_load(address, c, args.seconds, args.batch, tag=f"c{c}"))
                results["submit"].append(row)
                print(f"SubmitPrompts {c:3d} clients x {args.batch} prompts: {row['prompts_per_second']:8.0f} prompts/s "
                      f"p50 {row['p50_ms']:6.1f} ms p99 {row['p99_ms']:6.1f} ms errors {row['errors']} "
                      f"(load {row['load_average']})", flush=True)
            for c in args.clients:
                row = asyncio.run(status_load(address, c, args.seconds))
                results["status"].append(row)
                print(f"StepStatus    {c:3d} clients: {row['requests_per_second']:8.0f} req/s "
                      f"p50 {row['p50_ms']:6.1f} ms p99 {row['p99_ms']:6.1f} ms errors {row['errors']} "
                      f"(load {row['load_average']})", flush=True)
        finally:
            if trainer is not None:
                stop_process(trainer)
            stop_process(verifier)
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    p.add_argument("--clients", default="1,10,50", help="concurrency levels, comma-separated")
    p.add_argument("--batch", type=int, default=8, help="prompts per SubmitPrompts request")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    args.clients = [int(x) for x in args.clients.split(",")]
    print(f"API benchmark; machine {machine_info()}", flush=True)
    results = run(args)
    results["machine"] = machine_info()
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
