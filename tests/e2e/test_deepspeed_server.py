"""`grpo-server` under a 2-rank DeepSpeed launch (CPU, gloo): rank 0 serves the API and drives the
loop, rank 1 follows; steps train, an export works, SIGTERM drains both ranks with exit code 0."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import prompts

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.checkpoint import verify_manifest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_rank_deepspeed_trainer_serves_trains_and_drains(math_verifier: str, tmp_path: Path) -> None:
    cfg = {
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": 6},
        "algorithm": {"prompts_per_step": 2, "group_size": 4, "beta": 0.0},
        "training": {"engine": "deepspeed", "zero_stage": 2, "learning_rate": 1e-3, "max_steps": 2},
        "checkpoint": {"every_steps": 1},
    }
    config = tmp_path / "ds.yaml"
    config.write_text(yaml.safe_dump(cfg))
    grpo_server = str(Path(sys.executable).parent / "grpo-server")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), grpo_server, "--config", str(config), "--store-dir", str(tmp_path / "store"),
        "--listen", "127.0.0.1:0", "--reward-backend", f"math={math_verifier}",
    ]  # fmt: skip
    scratch = tmp_path / "tmp"  # the ranks' TMPDIR: rank 1 built the tiny model in a directory it left there
    scratch.mkdir()
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 300
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            output.append(line)
            match = re.search(r"grpo-server listening on port (\d+) metrics \S+ pid (\d+)", line)
            if match:
                port, rank0_pid = int(match.group(1)), int(match.group(2))
        assert port is not None, "".join(output[-80:])
        client = TrainerClient(f"127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 300
        while client.step_status().run.state == trainer_pb2.RUN_STATE_STARTING:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(1)
        client.submit_prompts(prompts(4))
        reports = []
        for report in client.iter_steps(after_step=0, timeout=600):
            if report.state == trainer_pb2.STEP_STATE_COMPLETED:
                reports.append(report)
            if report.step >= 2 and report.state != trainer_pb2.STEP_STATE_RUNNING:
                break
        assert [r.state for r in reports] == [trainer_pb2.STEP_STATE_COMPLETED] * 2
        assert reports[-1].metrics.grad_norm >= 0 and reports[-1].metrics.completions == 8
        export = client.export_checkpoint(str(tmp_path / "export"), wait=True, timeout=300)
        assert export.state == trainer_pb2.EXPORT_STATE_DONE
        assert verify_manifest(Path(export.destination))["step"] == 2
        # SIGTERM to rank 0 drains it; it then stops rank 1, and the launcher exits 0. (A launcher that
        # gets SIGTERM itself forwards it and kills the ranks after its own grace period.)
        os.kill(rank0_pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=300)
        output.append(rest)
        assert proc.returncode == 0, "".join(output)[-6000:]
        assert (tmp_path / "store" / "checkpoints" / "step-000002").is_dir()
        assert not list(scratch.glob("grpo-rank-*"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_a_deepspeed_trainer_started_without_a_launcher_runs_as_one_rank(tmp_path: Path) -> None:
    """`grpo-server` with training.engine deepspeed and no launcher (no RANK, WORLD_SIZE): DeepSpeed looked
    for MPI and the run failed, "No module named 'mpi4py'". It now runs as a single rank."""
    cfg = {"model": {"source": "tiny"}, "rollout": {"engine": "hf", "max_new_tokens": 6},
           "algorithm": {"prompts_per_step": 2, "group_size": 2, "beta": 0.0},
           "training": {"engine": "deepspeed", "zero_stage": 2}}
    config = tmp_path / "ds.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                              "MASTER_PORT")}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "grpo-server"), "--config", str(config), "--store-dir",
                             str(tmp_path / "store"), "--listen", "127.0.0.1:0", "--reward-backend", "math=127.0.0.1:1"],
                            env={**env, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        assert proc.stdout is not None
        port = None
        while port is None:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(output[-80:])
            output.append(line)
            match = re.search(r"grpo-server listening on port (\d+)", line)
            port = int(match.group(1)) if match else None
        client = TrainerClient(f"127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 300
        while (run := client.step_status().run).state == trainer_pb2.RUN_STATE_STARTING:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(1)
        assert run.state == trainer_pb2.RUN_STATE_IDLE, run.error
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, ("".join(output) + rest)[-6000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
