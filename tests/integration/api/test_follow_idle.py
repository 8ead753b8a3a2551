"""follow_steps counts the trainer as down from the last time it answered, not from the last report:
an idle trainer (no step runs, so no report comes) that accepted the stream resets the give-up count.

The trainer here is the real servicer, RunControl and SQLite store on a fixed loopback port, stopped
and started again the way a drained trainer goes away and comes back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from api_support import FileExporter, InMemoryRegistry

from grpo_client import TrainerClient, TrainerError
from grpo_server.api.server import build_server
from grpo_server.api.servicer import TrainerServicer
from grpo_server.api.settings import ApiLimits
from grpo_server.control import RunControl
from grpo_server.store import Store

# Seconds down before follow_steps gives up. Generous: after refused connections gRPC's channel backs
# off (1 s, then 1.6 s, ...) before it tries again, so a trainer that is back is seen a second or two late.
GIVE_UP = 4.0
DOWN = 1.0  # how long the trainer is away, well inside GIVE_UP
RETRY = 0.1


class Trainer:
    """The trainer's API parts on `port`, serving until stop()."""

    def __init__(self, store_dir: Path, port: int) -> None:
        self.store = Store(store_dir)
        self.control = RunControl()
        servicer = TrainerServicer(
            store=self.store, control=self.control, registry=InMemoryRegistry({"math": {"answer"}}),
            exporter=FileExporter(store_dir / "exports"), limits=ApiLimits(max_prompt_tokens=0), default_rewards=[],
        )
        self.server, _, _ = build_server(servicer, listen=f"127.0.0.1:{port}", max_workers=4)

    def stop(self) -> None:
        """As a drain ends: open streams end, the port closes, the store is closed."""
        self.control.close()
        self.server.stop(0).wait()
        self.store.close()


_SERVE = """
import sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
from test_follow_idle import Trainer
print("loaded", flush=True)
sys.stdin.readline()
trainer = Trainer(Path({store!r}), {port})  # kept: a collected server stops
print("serving", flush=True)
time.sleep(600)
"""


class KillableTrainer:
    """A Trainer in a process of its own (imports done, not serving until serve()); kill() is kill -9."""

    def __init__(self, store_dir: Path, port: int) -> None:
        here = str(Path(__file__).parent)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE.format(here=here, store=str(store_dir), port=port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": here})
        assert self._line() == "loaded"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def serve(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self._line() == "serving"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


@pytest.fixture
def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def follower(port: int) -> Iterator[TrainerClient]:
    client = TrainerClient(f"127.0.0.1:{port}")
    yield client
    client.close()


def follow_in_background(client: TrainerClient) -> tuple[threading.Thread, dict[str, object]]:
    """follow_steps on a thread; the result dict gets "error" (the TrainerError) and "at" (when)."""
    result: dict[str, object] = {"reconnects": 0}

    def reconnecting(_reason: str) -> None:
        result["reconnects"] = int(result["reconnects"]) + 1  # type: ignore[call-overload]

    def follow() -> None:
        try:
            for _ in client.follow_steps(retry_seconds=RETRY, give_up_seconds=GIVE_UP, on_reconnect=reconnecting):
                pass
        except TrainerError as exc:
            result["error"], result["at"] = exc, time.monotonic()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread, result


def assert_gave_up_a_whole_give_up_time_after(down: float, thread: threading.Thread,
                                              result: dict[str, object]) -> None:
    """follow_steps ended with UNAVAILABLE no earlier than GIVE_UP after `down` (when the trainer went
    away), not at once as if the count had run from an earlier outage."""
    thread.join(GIVE_UP * 4)
    assert not thread.is_alive(), "follow_steps never gave up on a trainer that stayed down"
    error = result["error"]
    assert isinstance(error, TrainerError) and error.code is grpc.StatusCode.UNAVAILABLE, error
    waited = float(result["at"]) - down  # type: ignore[arg-type]
    assert waited >= GIVE_UP - 2 * RETRY, f"gave up {waited:.2f} s after the trainer went away"


def test_an_idle_trainer_that_answered_resets_the_give_up_count(tmp_path: Path, port: int,
                                                                  follower: TrainerClient) -> None:
    thread, result = follow_in_background(follower)  # nothing listens yet: down from now
    time.sleep(DOWN)
    trainer = Trainer(tmp_path / "store", port)
    time.sleep(GIVE_UP + 1.0)  # up, idle, the stream open: past the give-up time, and no report
    assert "error" not in result, result
    trainer.stop()
    assert_gave_up_a_whole_give_up_time_after(time.monotonic(), thread, result)


def test_a_trainer_back_within_the_give_up_time_is_followed_again(tmp_path: Path, port: int,
                                                                    follower: TrainerClient) -> None:
    first = Trainer(tmp_path / "store", port)
    thread, result = follow_in_background(follower)
    time.sleep(DOWN)
    first.stop()
    time.sleep(DOWN)
    second = Trainer(tmp_path / "store", port)
    try:
        time.sleep(GIVE_UP)  # past the give-up time since the first went down
        assert "error" not in result and thread.is_alive(), result
        assert int(result["reconnects"]) >= 2  # type: ignore[call-overload]
    finally:
        second.stop()
    thread.join(GIVE_UP * 4)
    assert not thread.is_alive() and "error" in result


def test_a_trainer_killed_while_idle_is_given_the_whole_give_up_time(tmp_path: Path, port: int,
                                                                      follower: TrainerClient) -> None:
    # killed, not drained: the stream breaks (UNAVAILABLE) rather than ends, so only the headers the
    # trainer sent when it accepted the stream tell the follower that it answered.
    trainer = KillableTrainer(tmp_path / "store", port)
    try:
        thread, result = follow_in_background(follower)  # nothing listens yet: down from now
        time.sleep(DOWN)
        trainer.serve()
        time.sleep(GIVE_UP + 1.0)  # up and idle, longer than the give-up time since the follower began
        assert "error" not in result, result
    finally:
        trainer.kill()
    assert_gave_up_a_whole_give_up_time_after(time.monotonic(), thread, result)
