"""Parts for tests of the whole trainer: toy reward backends served by the real harness, the trainer's
config as data, and `grpo-server` run as a real subprocess (so it can be killed with SIGKILL or drained
with SIGTERM) on loopback ports it picks itself.

Toy backends (`ConstantScorer`) give every completion the same score, so the per-backend reward mean of
a step says which backend scored it. They can be slowed down or held on a gate to land a kill, a
registry swap or a backend outage in the reward phase of a step.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_client.client import TrainerError
from grpo_rewards.common.server import RunningServer, start_server
from grpo_server.store import Store
from grpo_server.types import PromptState

T = TypeVar("T")

_LISTENING = re.compile(r"grpo-server listening on port (\d+) metrics (\S+)")


# ------------------------------------------------------------------------------------ reward backends


class ConstantScorer:
    """A reward backend (grpo_rewards Scorer) giving every item `value`.

    delay_s: seconds each Score call sleeps before answering (a slow backend).
    gate: when set, each call waits on it (at most `gate_timeout_s`) before answering; `calls_started`
    is set as soon as a call arrives, so a test knows the trainer is in the reward phase.
    """

    def __init__(self, name: str, value: float, *, delay_s: float = 0.0) -> None:
        self.name = name
        self.value = value
        self.delay_s = delay_s
        self.gate: threading.Event | None = None
        self.gate_timeout_s = 60.0
        self.calls_started = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name=self.name,
            version="1",
            capabilities=reward_pb2.Capabilities(
                max_batch_size=256,
                reference_kinds=[reward_pb2.REFERENCE_KIND_NONE, reward_pb2.REFERENCE_KIND_ANSWER],
                score_min=0.0,
                score_max=1.0,
            ),
        )

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        with self._lock:
            self.calls += 1
        self.calls_started.set()
        gate = self.gate
        if gate is not None:
            gate.wait(self.gate_timeout_s)
        if self.delay_s:
            time.sleep(self.delay_s)
        return [
            reward_pb2.ScoreResult(id=i.id, score=self.value, status=reward_pb2.SCORE_STATUS_OK) for i in items
        ]

    def close(self) -> None:
        pass


def serve(scorer: Any, listen: str = "127.0.0.1:0") -> RunningServer:
    """Serve `scorer` with the real reward-service harness on loopback."""
    return start_server(scorer, listen=listen)


# --------------------------------------------------------------------------------------- the config


def config_data(**sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny model's trainer config as a dict: HF rollouts, 2 prompts x 4 samples a step, a
    checkpoint every step, API on a free loopback port. `sections` update the named sections."""
    base: dict[str, dict[str, Any]] = {
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": 8},
        "algorithm": {"prompts_per_step": 2, "group_size": 4, "beta": 0.04},
        "training": {"learning_rate": 1e-3, "threads": 1},
        "checkpoint": {"every_steps": 1},
        "server": {"listen": "127.0.0.1:0"},
        "rewards": {"default": [{"backend": "toy"}]},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


def parsed_config(**sections: dict[str, Any]) -> Any:
    """config_data(...) as a validated grpo_server Config (for TrainerApp in process)."""
    from grpo_server.config import parse_config

    return parse_config(config_data(**sections))


def write_yaml(path: Path, data: Any) -> Path:
    """Write `data` as YAML to `path` atomically (a watcher never reads half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------- prompts


def prompts(n: int, start: int = 0, prefix: str = "p") -> list[trainer_pb2.Prompt]:
    """n arithmetic prompts with answers, ids <prefix><start>..."""
    return [
        trainer_pb2.Prompt(
            id=f"{prefix}{i}",
            messages=[reward_pb2.Message(role="user", content=f"What is {i}+{i}? Answer with just the number.")],
            answer=str(2 * i),
        )
        for i in range(start, start + n)
    ]


# --------------------------------------------------------------------------------- the subprocess


def queue_in_store(store_dir: Path, queued: Sequence[trainer_pb2.Prompt], backend: str,
                   weights: dict[str, float] | None = None) -> None:
    """Queue `queued` (scored by `backend`, with weight 1 or the one `weights` gives a prompt id) straight
    into the store at `store_dir`, bypassing the API: as a trainer with another config (a larger context,
    another chat template) would have taken them."""
    from grpo_server.api.convert import prompt_from_proto

    store = Store(store_dir)
    try:
        store.submit([prompt_from_proto(p, [(backend, (weights or {}).get(p.id, 1.0))]) for p in queued], None, 100)
    finally:
        store.close()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a server that must keep its address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command() -> list[str]:
    """The `grpo-server` entry point of this virtualenv (or the module when the script is missing)."""
    script = Path(sys.executable).with_name("grpo-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "grpo_server.cli"]


class TrainerProcess:
    """`grpo-server` as a subprocess. The constructor returns once it has printed its listening line
    (the API is up; the model may still be loading). stderr goes to `log_path`."""

    def __init__(self, config: Path, store_dir: Path, backends: Sequence[tuple[str, str]] = (),
                 *, log_path: Path, metrics: bool = False, start_timeout_s: float = 120.0,
                 listen: str = "127.0.0.1:0") -> None:
        cmd = [*server_command(), "--config", str(config), "--store-dir", str(store_dir),
               "--listen", listen, "--log-level", "INFO"]
        if metrics:
            cmd += ["--metrics-listen", "127.0.0.1:0"]
        for name, address in backends:
            cmd += ["--reward-backend", f"{name}={address}"]
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, env=env, text=True)
        self._client: TrainerClient | None = None  # before _read_ports: its kill() on a failed start closes it
        self.port, self.metrics_port = self._read_ports(start_timeout_s)
        self.address = f"127.0.0.1:{self.port}"

    def _read_ports(self, timeout_s: float) -> tuple[int, int | None]:
        found: list[tuple[int, int | None]] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                m = _LISTENING.search(line)
                if m:
                    found.append((int(m.group(1)), None if m.group(2) == "-" else int(m.group(2))))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not found:
            self.kill()
            raise AssertionError(f"grpo-server printed no listening line; log:\n{self.log_tail()}")
        return found[0]

    @property
    def client(self) -> TrainerClient:
        """A TrainerClient on the process's API (one per process)."""
        if self._client is None:
            self._client = TrainerClient(self.address)
        return self._client

    def health(self) -> int:
        """The overall gRPC health status (health_pb2.HealthCheckResponse.SERVING / NOT_SERVING)."""
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Block until health is SERVING (the model has loaded and the run resumed)."""
        wait_for(lambda: self.health() == health_pb2.HealthCheckResponse.SERVING or None, timeout_s,
                 lambda: f"the trainer never became SERVING; log:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL (kill -9) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(60)
        self._close()

    def terminate(self) -> None:
        """SIGTERM: ask it to drain."""
        os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        """Wait for the exit; returns the exit code."""
        code = self.proc.wait(timeout_s)
        self._close()
        return code

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the process's log (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# ----------------------------------------------------------------------------------- observation


def wait_for(check: Callable[[], T | None], timeout_s: float, message: Callable[[], str] | str = "timed out",
             interval_s: float = 0.05) -> T:
    """Poll `check` until it returns something other than None/False; return it. Errors from a server
    that is still starting (UNAVAILABLE) count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except TrainerError as err:
            if err.code is not grpc.StatusCode.UNAVAILABLE:
                raise
            value = None
        except grpc.RpcError as err:
            if err.code() is not grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                raise
            value = None
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval_s)


def iter_reports(client: TrainerClient, after_step: int = 0, *,
                 include_running: bool = False) -> Iterator[trainer_pb2.StepReport]:
    """Step reports as the trainer publishes them (WatchSteps)."""
    yield from client.iter_steps(after_step=after_step, include_running=include_running)


def prompt_accounting(store_dir: Path) -> dict[str, tuple[PromptState, int | None]]:
    """id -> (state, step) read from the store file directly (the trainer process must be gone)."""
    store = Store(store_dir)
    try:
        return store.prompt_states()
    finally:
        store.close()
