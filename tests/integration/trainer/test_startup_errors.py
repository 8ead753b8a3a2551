"""`grpo-server` refuses a setting it cannot start with: an out-of-range port, an address in use, a
missing or invalid tokens or TLS file, a store path that is a file, an out-of-range limit or Adam beta.
Each exits with status 2 and one line naming the field (or the flag that set it) and what is wrong, with
no traceback, and before it creates or locks anything in the store directory."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from live_trainer import config_data, server_command, write_yaml


def start(tmp_path: Path, *flags: str, store_dir: Path | None = None, **sections: Any) -> subprocess.CompletedProcess[str]:
    """Run `grpo-server` on the tiny config (with `sections` updated) until it exits."""
    config = write_yaml(tmp_path / "trainer.yaml", config_data(**sections))
    return subprocess.run(
        [*server_command(), "--config", str(config), "--store-dir", str(store_dir or tmp_path / "store"), *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one `grpo-server:` line of a start refused with status 2 and no traceback."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "listening" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("grpo-server:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_listen_port_above_65535_is_refused_naming_the_flag(tmp_path: Path) -> None:
    line = refused(start(tmp_path, "--listen", "127.0.0.1:99999"))
    assert line == "grpo-server: --listen: '127.0.0.1:99999' is not HOST:PORT with a port in 0-65535 (0 picks a free port)"
    assert not (tmp_path / "store").exists()


def test_a_metrics_port_above_65535_in_the_config_is_refused_naming_the_field(tmp_path: Path) -> None:
    done = start(tmp_path, server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:70000"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert ("  server.metrics_listen: '127.0.0.1:70000' is not HOST:PORT with a port in 0-65535 (0 picks a free port)"
            in done.stderr.splitlines())
    assert not (tmp_path / "store").exists()


def test_a_listen_address_in_use_is_refused_before_the_store_is_created(tmp_path: Path, port_in_use: int) -> None:
    line = refused(start(tmp_path, server={"listen": f"127.0.0.1:{port_in_use}"}))
    assert line == (f"grpo-server: server.listen: cannot listen on 127.0.0.1:{port_in_use}: the port is in use "
                    "(another process listens on it)")
    assert not (tmp_path / "store").exists()


def test_a_metrics_address_in_use_is_refused_before_the_store_is_created(tmp_path: Path, port_in_use: int) -> None:
    line = refused(start(tmp_path, "--metrics-listen", f"127.0.0.1:{port_in_use}"))
    assert line == (f"grpo-server: --metrics-listen: cannot listen on 127.0.0.1:{port_in_use}: the port is in use "
                    "(another process listens on it)")
    assert not (tmp_path / "store").exists()


def test_a_missing_tokens_file_is_refused_before_the_store_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "tokens.yaml"
    line = refused(start(tmp_path, auth={"tokens_file": str(missing)}))
    assert line == f"grpo-server: auth.tokens_file: {missing}: cannot read: No such file or directory"
    assert not (tmp_path / "store").exists()


def test_an_invalid_tokens_file_is_refused_naming_the_entry_and_field(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"tokens": [{"name": "ci", "token": "s3cret-token", "roles": ["root"]}]}))
    line = refused(start(tmp_path, auth={"tokens_file": str(tokens)}))
    assert line == (f"grpo-server: auth.tokens_file: {tokens}: tokens[0].roles: unknown roles ['root']; "
                    "allowed: ['admin', 'read', 'submit']")
    assert not (tmp_path / "store").exists()


def test_a_missing_tls_certificate_is_refused_before_the_store_is_created(tmp_path: Path) -> None:
    line = refused(start(tmp_path, server={"listen": "127.0.0.1:0", "tls_cert": "/nope.pem", "tls_key": "/nope.key"}))
    assert line == "grpo-server: server.tls_cert: /nope.pem: cannot read: No such file or directory"
    assert not (tmp_path / "store").exists()


def test_an_expired_tls_certificate_is_refused_before_the_store_is_created(tmp_path: Path) -> None:
    # Every client refuses it in every handshake: the trainer started and no call could reach it.
    import datetime
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
    from reward_service_kit import make_tls_files

    day = datetime.timedelta(days=1)
    files = make_tls_files(tmp_path, server_valid=(-3 * day, -day))
    line = refused(start(tmp_path, server={"listen": "127.0.0.1:0", "tls_cert": str(files.server_cert),
                                           "tls_key": str(files.server_key)}))
    expiry = (datetime.datetime.now(datetime.UTC) - day).strftime("%Y-%m-%d")
    assert line.startswith(f"grpo-server: server.tls_cert: {files.server_cert}: the certificate expired at {expiry} "), line
    assert not (tmp_path / "store").exists()


def test_a_model_path_that_is_no_model_directory_is_refused_before_the_store_is_created(tmp_path: Path) -> None:
    # It failed the run after the start with transformers' "Repo id must be in the form 'repo_name'...".
    missing = tmp_path / "no-model"
    line = refused(start(tmp_path, model={"source": "path", "path": str(missing)}))
    assert line == f"grpo-server: model.path: {missing}: no such directory"
    missing.mkdir()
    line = refused(start(tmp_path, model={"source": "path", "path": str(missing)}))
    assert line == f"grpo-server: model.path: {missing} holds no config.json: give a Hugging Face model directory"
    assert not (tmp_path / "store").exists()


def test_the_torch_engine_refuses_to_run_as_one_of_several_ranks(tmp_path: Path) -> None:
    # Under a launcher each rank started a whole trainer: one served the API, the others failed on its store.
    import os

    config = write_yaml(tmp_path / "trainer.yaml", config_data())
    done = subprocess.run([*server_command(), "--config", str(config), "--store-dir", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "WORLD_SIZE": "2", "RANK": "1"})
    assert refused(done) == ("grpo-server: training.engine 'torch' runs in one process, but this is one of "
                             "WORLD_SIZE=2 ranks: set training.engine: deepspeed (or start one process)")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("rank", ["0", "1"])
def test_vllm_is_refused_beside_several_deepspeed_ranks(tmp_path: Path, rank: str) -> None:
    """In rank 0's process vLLM joined the DeepSpeed ranks' process group and waited in its set-up for
    ranks that never came: the run never finished loading, and SIGTERM waited for the load."""
    import os

    from grpo_server.app import choose_rollout_engine

    config = write_yaml(tmp_path / "trainer.yaml", config_data(training={"engine": "deepspeed"},
                                                               rollout={"engine": "vllm"}))
    done = subprocess.run([*server_command(), "--config", str(config), "--store-dir", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "WORLD_SIZE": "2", "RANK": rank})
    assert refused(done).startswith("grpo-server: rollout.engine 'vllm' cannot run beside DeepSpeed's WORLD_SIZE=2 "
                                    "ranks: in the trainer's process vLLM joins the ranks' process group")
    assert not (tmp_path / "store").exists()
    assert choose_rollout_engine("auto", ranks=2) == "hf" and choose_rollout_engine("hf", ranks=1) == "hf"


def test_a_store_dir_that_is_a_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    regular = tmp_path / "store.txt"
    regular.write_text("not a store\n")
    line = refused(start(tmp_path, store_dir=regular))
    assert line == f"grpo-server: --store-dir: {regular} exists and is not a directory"
    assert regular.read_text() == "not a store\n"


def test_a_message_limit_above_2_31_is_refused_naming_the_field(tmp_path: Path) -> None:
    done = start(tmp_path, limits={"max_message_bytes": 3_000_000_000})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "  limits.max_message_bytes: Input should be less than or equal to 2147483647" in done.stderr.splitlines()
    assert not (tmp_path / "store").exists()


def test_adam_betas_outside_0_1_are_refused_naming_the_beta(tmp_path: Path) -> None:
    done = start(tmp_path, training={"adam_betas": [1.5, 0.99]})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "  training.adam_betas[0]: Input should be less than 1" in done.stderr.splitlines()
    assert "training.adam_betas[1]" not in done.stderr
    assert not (tmp_path / "store").exists()


def test_a_store_file_that_is_not_sqlite_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    garbage = bytes(range(256)) * 16
    (store / "grpo.sqlite").write_bytes(garbage)
    line = refused(start(tmp_path, "--listen", "127.0.0.1:0"))
    assert line.startswith(f"grpo-server: --store-dir: {store / 'grpo.sqlite'}: cannot open the store: "
                           "file is not a database"), line
    assert "restore it from a backup" in line
    assert (store / "grpo.sqlite").read_bytes() == garbage  # nothing written over it
    assert [p.name for p in store.iterdir()] == ["grpo.sqlite"]  # nor anything beside it: no lock file left


def test_a_store_written_by_a_newer_trainer_is_refused_naming_both_schema_versions(tmp_path: Path) -> None:
    import sqlite3

    from grpo_server.store.sqlite_store import SCHEMA_VERSION

    store = tmp_path / "store"
    store.mkdir()
    with sqlite3.connect(store / "grpo.sqlite") as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    line = refused(start(tmp_path, "--listen", "127.0.0.1:0"))
    assert line == (f"grpo-server: --store-dir: {store / 'grpo.sqlite'} has schema version {SCHEMA_VERSION + 1}; "
                    f"this trainer reads up to {SCHEMA_VERSION}")
    with sqlite3.connect(store / "grpo.sqlite") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION + 1,)]
    conn.close()


def test_a_store_database_path_that_is_a_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "grpo.sqlite").mkdir(parents=True)
    line = refused(start(tmp_path, "--listen", "127.0.0.1:0"))
    assert line == (f"grpo-server: --store-dir: {store / 'grpo.sqlite'}: cannot open the store: it is a directory, "
                    "where the store's database file goes: move it out of the way")
    assert [p.name for p in store.iterdir()] == ["grpo.sqlite"]  # no lock file left beside it


def test_a_config_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("# caf\u00e9\nmodel: {source: tiny}\n".encode("latin-1"))
    done = subprocess.run([*server_command(), "--config", str(config), "--store-dir", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120, check=False)
    line = refused(done)
    assert line == (f"grpo-server: config {config} is not UTF-8 text (byte 5: invalid continuation byte); "
                    "save it as UTF-8"), line
    assert not (tmp_path / "store").exists()
