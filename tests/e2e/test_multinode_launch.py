"""Two "nodes" on loopback, each started by `python -m grpo_server.launch` with the environment a
LeaderWorkerSet gives its pods (LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX): two separate
torchrun process trees, one rank each, DeepSpeed ZeRO-2 on CPU (gloo). The leader's rank 0 serves the
API; the worker's rank follows it. Prompts go in through the Python client, a step completes with both
ranks, and SIGTERM to the leader's launcher (what Kubernetes signals: the container's first process)
drains the group: both launchers exit 0 and the last checkpoint holds both ranks' shards.

What this does not cover: the LeaderWorkerSet controller itself, pod DNS, and NCCL (no cluster, no GPU).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import prompts

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"grpo-server listening on port (\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One launcher (one "pod"): its output collected line by line on a thread."""

    def __init__(self, index: int, group_size: int, port: int, server_args: list[str], nproc: int = 1) -> None:
        env = {
            **os.environ, "LWS_LEADER_ADDRESS": "127.0.0.1", "LWS_GROUP_SIZE": str(group_size),
            "LWS_WORKER_INDEX": str(index), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        cmd = [sys.executable, "-m", "grpo_server.launch", "--nproc-per-node", str(nproc),
               "--rendezvous-port", str(port), "--", *server_args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := pattern.search(self.text):
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern.pattern!r}; output:\n{self.text[-6000:]}")

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        """Cleanup: SIGKILL the launcher's torchrun session and the launcher."""
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.mark.slow
def test_two_nodes_launched_like_a_leaderworkerset_train_and_drain_on_sigterm(
    math_verifier: str, tmp_path: Path
) -> None:
    cfg = yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text())
    cfg["training"].update({"engine": "deepspeed", "zero_stage": 2})
    cfg["algorithm"].update({"prompts_per_step": 2, "group_size": 4})
    cfg["rollout"]["max_new_tokens"] = 6
    cfg["checkpoint"]["every_steps"] = 1
    config = tmp_path / "tiny-deepspeed.yaml"
    config.write_text(yaml.safe_dump(cfg))
    store = tmp_path / "store"
    # The same command on every node, as the chart renders it; only LWS_WORKER_INDEX differs.
    server_args = ["--config", str(config), "--store-dir", str(store), "--listen", "127.0.0.1:0",
                   "--reward-backend", f"math={math_verifier}"]
    port = _free_port()
    leader = Node(0, 2, port, server_args)
    worker = Node(1, 2, port, server_args)
    try:
        api_port = int(leader.wait_for(LISTENING, timeout=300).group(1))
        assert LISTENING.search(worker.text) is None  # only global rank 0 serves
        client = TrainerClient(f"127.0.0.1:{api_port}", timeout=60)
        deadline = time.monotonic() + 300
        while client.step_status().run.state == trainer_pb2.RUN_STATE_STARTING:
            assert time.monotonic() < deadline, "not ready:\n" + leader.text[-4000:]
            time.sleep(1)
        worker.wait_for(re.compile(r"rank 1: following rank 0"), timeout=60)
        client.submit_prompts(prompts(4))
        completed = []
        for report in client.iter_steps(after_step=0, timeout=600):
            if report.state == trainer_pb2.STEP_STATE_COMPLETED:
                completed.append(report)
                break
            assert report.state != trainer_pb2.STEP_STATE_FAILED, report
        assert completed and completed[0].metrics.completions == 8
        assert completed[0].metrics.grad_norm >= 0

        # Kubernetes signals the container's first process: the launcher, not rank 0.
        leader.proc.send_signal(signal.SIGTERM)
        assert leader.wait(timeout=300) == 0, leader.text[-6000:]
        assert worker.wait(timeout=120) == 0, worker.text[-6000:]
        assert "rank 1: stop" in worker.text
        # The drain's last checkpoint is collective: each rank wrote its own ZeRO shard into it.
        checkpoints = sorted((store / "checkpoints").glob("step-*"))
        assert checkpoints, "no checkpoint written"
        shards = {p.name for p in checkpoints[-1].rglob("*optim_states.pt")}
        assert any("rank_0" in s for s in shards) and any("rank_1" in s for s in shards), shards
    finally:
        leader.kill()
        worker.kill()


@pytest.mark.slow
def test_torchrun_and_its_ranks_stop_when_the_launcher_is_killed(math_verifier: str, tmp_path: Path) -> None:
    """`kill -9` of the launcher (outside a pod, where it is not PID 1) left torchrun and the ranks
    running in their own session, holding the store: a new launcher on it failed, "in use by another
    trainer". torchrun now gets SIGTERM when its launcher dies, and stops the ranks."""
    config = REPO / "examples" / "tiny.yaml"
    node = Node(0, 1, _free_port(), ["--config", str(config), "--store-dir", str(tmp_path / "store"),
                                     "--listen", "127.0.0.1:0", "--reward-backend", f"math={math_verifier}"])
    try:
        node.wait_for(LISTENING, timeout=300)
        session = [p for p in psutil.Process(node.proc.pid).children(recursive=True)]
        assert session, "torchrun and its rank"
        node.proc.kill()
        node.wait(30)
        gone, alive = psutil.wait_procs(session, timeout=90)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        node.kill()
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if str(tmp_path / "store") in " ".join(p.cmdline()):
                    p.kill()


@pytest.mark.slow
def test_a_rank_0_that_fails_to_load_lets_the_other_ranks_go_and_keeps_serving(tmp_path: Path) -> None:
    """Rank 0's load failed before it built the engine (a setting checked against the model): the other
    rank waited in DeepSpeed's set-up for it, timed out (10 minutes) and torchrun took rank 0 down with
    it, blaming rank 1. Now rank 0 tells it to leave, and serves its FAILED run until it is stopped."""
    cfg = yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text())
    cfg["training"].update({"engine": "deepspeed", "zero_stage": 2})
    cfg["rollout"].update({"engine": "hf", "max_new_tokens": 600})  # over the tiny model's context: refused in load
    config = tmp_path / "fails.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env_before = os.environ.get("DEEPSPEED_TIMEOUT")
    os.environ["DEEPSPEED_TIMEOUT"] = "1"  # minutes: without the fix rank 1 would give up after 60 s
    try:
        node = Node(0, 1, _free_port(), ["--config", str(config), "--store-dir", str(tmp_path / "store"),
                                         "--listen", "127.0.0.1:0", "--reward-backend", "math=127.0.0.1:1"],
                    nproc=2)
    finally:
        if env_before is None:
            os.environ.pop("DEEPSPEED_TIMEOUT")
        else:
            os.environ["DEEPSPEED_TIMEOUT"] = env_before
    try:
        client = TrainerClient(f"127.0.0.1:{int(node.wait_for(LISTENING, timeout=300).group(1))}", timeout=30)
        deadline = time.monotonic() + 300
        while (run := client.step_status().run).state == trainer_pb2.RUN_STATE_STARTING:
            assert time.monotonic() < deadline, node.text[-4000:]
            time.sleep(1)
        assert run.state == trainer_pb2.RUN_STATE_FAILED and "max_new_tokens" in run.error, run
        node.wait_for(re.compile(r"rank 1: rank 0 could not load the run"), timeout=120)
        time.sleep(75)  # past the 60 s rank 1 would have waited
        assert node.proc.poll() is None, node.text[-4000:]
        assert client.step_status().run.state == trainer_pb2.RUN_STATE_FAILED  # still serving
        node.proc.send_signal(signal.SIGTERM)
        node.wait(120)
    finally:
        node.kill()
