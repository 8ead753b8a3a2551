"""The demo names a dead trainer's exit status even when the failed call comes back before the exit.

A killed process closes its sockets before its parent can reap it, so the demo's stream fails while
poll() still says the trainer runs. The end-to-end `kill -9` test hits this race only sometimes; here a
real child process that ends half a second after the call fails makes it certain. The client is a
stand-in whose stream fails at once, as a real one does when the trainer's socket closes."""
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from grpo_client import TrainerError
from grpo_server.demo import DemoError, follow_training, wait_ready


class SocketClosed:
    def watch_steps(self, after_step: int, include_running: bool = False):  # TrainerClient.watch_steps
        raise TrainerError(grpc.StatusCode.UNAVAILABLE, "Stream removed (Socket closed)")
        yield  # a generator, like the client's

    def step_status(self):
        raise TrainerError(grpc.StatusCode.UNAVAILABLE, "Socket closed")


def dying_trainer() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import os, time; time.sleep(0.5); os._exit(9)"])


def test_a_stream_cut_by_a_dying_trainer_names_its_exit_status(tmp_path: Path) -> None:
    trainer = dying_trainer()
    with pytest.raises(DemoError, match=r"the trainer exited with 9 \(UNAVAILABLE"):
        follow_training(SocketClosed(), trainer, steps=3, kl_measured=True, log_path=tmp_path / "trainer.log")


def test_a_trainer_dying_while_starting_names_its_exit_status(tmp_path: Path) -> None:
    trainer = dying_trainer()
    with pytest.raises(DemoError, match="the trainer exited with 9 while starting"):
        wait_ready(SocketClosed(), trainer, timeout=30, log_path=tmp_path / "trainer.log")


def test_a_live_trainer_that_stops_answering_is_said_so(tmp_path: Path) -> None:
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(DemoError, match="the trainer stopped answering"):
            follow_training(SocketClosed(), trainer, steps=3, kl_measured=True, log_path=tmp_path / "trainer.log")
    finally:
        trainer.kill()
        trainer.wait()
