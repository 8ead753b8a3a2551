"""`grpo-server` refuses a bad reward backend before it starts anything: from the config file or from
`--reward-backend`, it exits 2 with a message naming the field, and starts no server (no listening
line, no store directory)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from live_trainer import server_command


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*server_command(), "--store-dir", str(tmp_path / "store"), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def run_with_backends(backends: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """grpo-server with a tiny-model config whose `rewards.backends` is `backends`."""
    config = tmp_path / "trainer.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"source": "tiny"},
        "server": {"listen": "127.0.0.1:0"},
        "rewards": {"backends": backends},
    }))
    return run(["--config", str(config)], tmp_path)


def test_bad_backend_in_the_config_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    done = run_with_backends({"math": {"address": "localhost:50061"}, "code": {"address": "sandbox"}}, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "rewards.backends.code.address: 'sandbox' is not HOST:PORT with a port in 1-65535" in done.stderr
    assert "rewards.backends.math" not in done.stderr
    assert "listening" not in done.stdout
    assert not (tmp_path / "store").exists()


def test_bad_reward_backend_flag_exits_2_naming_the_problem(tmp_path: Path) -> None:
    done = run(["--reward-backend", "Math=localhost:50061"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "argument --reward-backend: 'Math=localhost:50061': name: 'Math' is not 1-63 characters of [a-z0-9_-]" in done.stderr
    done = run(["--reward-backend", "math=localhost:70000"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "address: 'localhost:70000' is not HOST:PORT with a port in 1-65535" in done.stderr
    assert not (tmp_path / "store").exists()


def test_bad_registry_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({"backends": {"math": {"address": "localhost:50061", "max_concurrency": 0}}}))
    config = tmp_path / "trainer.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"source": "tiny"},
        "server": {"listen": "127.0.0.1:0"},
        "rewards": {"registry_file": str(registry)},
    }))
    done = run(["--config", str(config)], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "grpo-server: reward registry:" in done.stderr
    assert "max_concurrency" in done.stderr
    assert "Traceback" not in done.stderr
    assert "listening" not in done.stdout


def test_a_backend_file_the_trainer_cannot_read_exits_2_naming_the_field(tmp_path: Path) -> None:
    done = run_with_backends({"math": {"address": "localhost:50061", "tls": True,
                                       "ca_file": str(tmp_path / "missing-ca.pem")}}, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "rewards.backends.math.ca_file: cannot read it on the trainer: No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert "listening" not in done.stdout
    assert not (tmp_path / "store").exists()
