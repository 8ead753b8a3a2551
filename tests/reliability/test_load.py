"""Load (issue 8): 50 concurrent clients for 60 seconds mixing SubmitPrompts, StepStatus and WatchSteps
against a real, training trainer: zero errors.

The trainer is `grpo-server` in its own process (tiny model, HF rollouts, real SQLite store in a temp
dir, the real math verifier registered as `math`), training while the clients run. The clients are
grpc.aio coroutines in this process, one channel each. Afterwards: no call failed, every accepted
prompt is in the store exactly once, training advanced during the load, and every watch started after a
step had ended got its backlog (a stream that stays silent is an error, not a quiet trainer).

GRPO_LOAD_SECONDS and GRPO_LOAD_CLIENTS change the duration and the client count (defaults 60, 50).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SECONDS = float(os.environ.get("GRPO_LOAD_SECONDS", "60"))
CLIENTS = int(os.environ.get("GRPO_LOAD_CLIENTS", "50"))
BIN = Path(sys.executable).parent


@dataclass
class Server:
    address: str
    store_dir: Path


def _wait_serving(address: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} not SERVING after {timeout_s} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from grpo_rewards.common.server import start_server
    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    verifier = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0")
    tmp = tmp_path_factory.mktemp("load")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": 8},
        "algorithm": {"prompts_per_step": 2, "group_size": 4},
        "training": {"learning_rate": 1e-3},
        "checkpoint": {"every_steps": 5},
        # Sized for the load: 50 clients spend most of their time in short watches (about 44 open on
        # average), and the default limits.max_watch_streams of 48 refused one now and then, as documented.
        "limits": {"max_queue_depth": 10_000_000, "max_watch_streams": CLIENTS + 14},
        "server": {"max_workers": CLIENTS + 46},
    }))
    proc = subprocess.Popen(
        [str(BIN / "grpo-server"), "--config", str(config), "--store-dir", str(tmp / "store"),
         "--listen", "127.0.0.1:0", "--reward-backend", f"math={verifier.address}", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on port" in line, line
        address = f"127.0.0.1:{int(line.split('port')[1].split()[0])}"
        _wait_serving(address)
        yield Server(address, tmp / "store")
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        verifier.stop(5)


@dataclass
class Tally:
    calls: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    watched_steps: set[int] = field(default_factory=set)
    latest_seen: int = 0  # the highest latest_step a status call has returned
    backlog_watches: Counter[bool] = field(default_factory=Counter)  # include_running -> watches owed a backlog


async def client(k: int, address: str, end: float, tally: Tally) -> None:
    """One client: a random mix of submit (4 prompts), status and a short watch, until `end`."""
    rng = random.Random(k)
    n = 0
    async with grpc.aio.insecure_channel(address) as ch:
        stub = trainer_pb2_grpc.TrainerServiceStub(ch)
        while time.monotonic() < end:
            op = rng.choices(["submit", "status", "watch"], weights=[4, 4, 2])[0]
            try:
                if op == "submit":
                    ids = [f"c{k}-{n}-{i}" for i in range(4)]
                    n += 1
                    prompts = [trainer_pb2.Prompt(id=pid, answer=str(2 * i), messages=[
                        reward_pb2.Message(role="user", content=f"What is {i}+{i}? Answer with just the number.")])
                        for i, pid in enumerate(ids)]
                    r = await stub.SubmitPrompts(trainer_pb2.SubmitPromptsRequest(prompts=prompts), timeout=60)
                    assert list(r.accepted_ids) == ids
                    tally.accepted.update(ids)
                elif op == "status":
                    r2 = await stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=60)
                    assert r2.run.latest_step >= 0
                    tally.latest_seen = max(tally.latest_seen, r2.run.latest_step)
                else:
                    include_running = rng.random() < 0.5
                    # Once step 2 has started, step 1 has ended: a watch from step 0 owes its backlog at once,
                    # and a stream that stays silent then is a failure, not a quiet trainer.
                    owed = tally.latest_seen >= 2
                    tally.backlog_watches[include_running] += owed
                    call = stub.WatchSteps(trainer_pb2.WatchStepsRequest(after_step=0, include_running=include_running))
                    got = 0
                    try:
                        for _ in range(3):  # the backlog, then live steps; we hang up after 3 or 2 s
                            msg = await asyncio.wait_for(call.read(), timeout=10.0 if owed and not got else 2.0)
                            if msg is grpc.aio.EOF:
                                tally.errors.append("watch: the server ended the stream")
                                break
                            got += 1
                            tally.watched_steps.add(msg.step.step)
                    except TimeoutError:
                        if owed and not got:
                            tally.errors.append(f"watch (include_running={include_running}): no report within 10 s "
                                                f"though step {tally.latest_seen} had started")
                        # else no step finished within 2 s: the client hangs up, which is not an error
                    finally:
                        call.cancel()
                tally.calls[op] += 1
            except grpc.aio.AioRpcError as exc:
                tally.errors.append(f"{op}: {exc.code().name}: {exc.details()}")
            except AssertionError as exc:
                tally.errors.append(f"{op}: wrong answer: {exc}")


def test_fifty_clients_mixing_submit_status_and_watch_for_a_minute_see_no_errors(server: Server) -> None:
    tally = Tally()

    async def main() -> tuple[int, int]:
        async with grpc.aio.insecure_channel(server.address) as ch:
            stub = trainer_pb2_grpc.TrainerServiceStub(ch)
            first = (await stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=30)).run.latest_step
            end = time.monotonic() + SECONDS
            await asyncio.gather(*(client(k, server.address, end, tally) for k in range(CLIENTS)))
            last = (await stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=30)).run.latest_step
            return first, last

    first, last = asyncio.run(main())
    print(f"\nload: {dict(tally.calls)} in {SECONDS:.0f} s from {CLIENTS} clients; steps {first} -> {last}; "
          f"{len(tally.accepted)} prompts accepted; errors {len(tally.errors)}")
    assert tally.errors == [], tally.errors[:20]
    assert min(tally.calls[op] for op in ("submit", "status", "watch")) > 0, tally.calls
    assert last > first, "training did not advance under load"
    assert tally.watched_steps, "no watcher received a step"
    assert tally.backlog_watches[True] and tally.backlog_watches[False], tally.backlog_watches  # both kinds tried

    db = sqlite3.connect(f"file:{server.store_dir / 'grpo.sqlite'}?mode=ro", uri=True)
    try:
        rows = Counter(pid for (pid,) in db.execute("SELECT id FROM prompts"))
    finally:
        db.close()
    assert set(rows) == tally.accepted, "the store and the accepted ids differ"
    assert max(rows.values()) == 1, "an accepted prompt was stored twice"
