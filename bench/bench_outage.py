"""What a reward backend's restart costs a run: the real math verifier (`grpo-reward-math`, its own
process) is killed (SIGKILL) while the trainer trains, stays down `--down` seconds and comes back on the
same port. Printed: the steps skipped meanwhile (each rolled out its completions for nothing) and how long
after the verifier was back training resumed (the first completed step that started after it).

Two breaker settings side by side in one invocation, each with a fresh trainer: the defaults (an open
breaker first waits `rewards.breaker_first_reset_seconds`, 2 s, doubling to `breaker_reset_seconds`, 30 s)
and a fixed 30 s wait (first = reset = 30 s). The trainer is the real one (grpo_server.app.TrainerApp in
this process, the tiny model, HF rollouts: a step takes about a second here, so the rollouts wasted are
what shows; on a GPU with a large model each skipped step costs a full rollout).

    .venv/bin/python -m bench.bench_outage --down 3 --json out.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import (
    exit_on_sigterm,
    load_average,
    machine_info,
    start_service,
    stop_process,
    sum_problems,
    wait_ready,
    write_json,
)

SETTINGS = {"backoff": (2.0, 30.0), "fixed": (30.0, 30.0)}  # (breaker_first_reset_seconds, breaker_reset_seconds)


def trainer_config(first_s: float, reset_s: float) -> dict[str, Any]:
    """The tiny model's trainer config with the given breaker waits (the rest: the defaults)."""
    return {
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": 8},
        "algorithm": {"prompts_per_step": 2, "group_size": 4},
        "training": {"learning_rate": 1e-4, "threads": 1},
        "checkpoint": {"every_steps": 100_000},
        "rewards": {"default": [{"backend": "math"}], "breaker_first_reset_seconds": first_s,
                    "breaker_reset_seconds": reset_s},
        "server": {"listen": "127.0.0.1:0"},
    }


def measure(name: str, first_s: float, reset_s: float, down_s: float, store_dir: Path) -> dict[str, Any]:
    """One trainer, one restart of its reward service; returns what it cost."""
    from grpo.reward.v1 import reward_pb2
    from grpo.trainer.v1 import trainer_pb2
    from grpo_client import TrainerClient
    from grpo_server.app import TrainerApp
    from grpo_server.config import parse_config
    from grpo_server.types import StepState

    verifier, address, _ = start_service("grpo-reward-math", "--workers", "1")
    port = int(address.rsplit(":", 1)[1])
    app = TrainerApp(parse_config(trainer_config(first_s, reset_s)), store_dir, backend_overrides=[("math", address)])
    try:
        app.start()
        wait_ready(app, 600)
        with TrainerClient(f"127.0.0.1:{app.api_port}") as client:
            client.submit_prompts([trainer_pb2.Prompt(id=f"o{i}", answer=a,
                                                      messages=[reward_pb2.Message(role="user", content=q)])
                                   for i, (q, a) in enumerate(sum_problems(1000))])
        deadline = time.monotonic() + 300
        while app.loop.updates < 3:  # training is under way
            if time.monotonic() > deadline or app.control.error:
                raise RuntimeError(f"no training before the outage: {app.control.error}")
            time.sleep(0.1)
        verifier.kill()
        verifier.wait()
        killed = time.time()
        time.sleep(down_s)
        verifier, _, _ = start_service("grpo-reward-math", "--workers", "1", port=port)
        back = time.time()
        deadline = time.monotonic() + 300
        resumed = None
        while resumed is None:
            if time.monotonic() > deadline:
                raise RuntimeError("training did not resume within 300 s of the verifier's return")
            resumed = next((r for r in app.store.steps_after(0)
                            if r.state is StepState.COMPLETED and r.started_at >= back), None)
            time.sleep(0.1)
        during = [r for r in app.store.steps_after(0) if r.started_at >= killed - 1 and r.step < resumed.step]
        skipped = [r for r in during if r.state is StepState.SKIPPED]
        result = {
            "setting": name, "breaker_first_reset_seconds": first_s, "breaker_reset_seconds": reset_s,
            "down_seconds": round(back - killed, 2), "skipped_steps": len(skipped),
            "wasted_rollout_seconds": round(sum(r.metrics.get("rollout_seconds", 0.0) for r in skipped), 2),
            "resumed_after_back_seconds": round(resumed.started_at - back, 2), "load": load_average(),
        }
        print(f"{name:8s} first {first_s:4.0f} s  reset {reset_s:4.0f} s  down {result['down_seconds']:5.1f} s  "
              f"skipped steps {len(skipped):3d}  rollout time wasted {result['wasted_rollout_seconds']:5.1f} s  "
              f"resumed {result['resumed_after_back_seconds']:5.1f} s after the verifier was back  "
              f"(load {result['load']})", flush=True)
        return result
    finally:
        app.shutdown(grace=60)
        stop_process(verifier)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", type=float, default=3.0, help="seconds the verifier stays down (default: 3)")
    parser.add_argument("--only", choices=sorted(SETTINGS), help="one setting instead of both")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if not args.down > 0:
        parser.error("--down must be > 0 seconds")
    exit_on_sigterm()
    print(f"machine: {machine_info()}", flush=True)
    results = []
    for name, (first_s, reset_s) in SETTINGS.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory(prefix="grpo-bench-outage-") as tmp:
            results.append(measure(name, first_s, reset_s, args.down, Path(tmp) / "store"))
    write_json(args.json, {"machine": machine_info(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
