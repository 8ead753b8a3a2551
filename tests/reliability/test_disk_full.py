"""The store's volume fills up under the real `grpo-server`: a real filesystem of 64 MiB (tmpfs, mounted
by this test, which needs root: CI runs as root) holds the store directory, and a filler file takes its
free space.

0. The trainer's gauges of its store volume (grpo_store_volume_{size,available}_bytes) see the volume
   and its filling.
1. A checkpoint that does not fit: the run fails with the cause and what to do, the checkpoint's
   temporary directory is removed (the failed write leaks no space), and nothing trained is lost.
2. A store write that does not fit: SubmitPrompts is refused with RESOURCE_EXHAUSTED (subject "store",
   RetryInfo) and stores nothing, and so is ExportCheckpoint, which writes nothing; the reads still answer.
3. A restart with no room made: the API serves, the run fails again with the same advice (no crash loop).
4. Space freed and the trainer restarted: the run resumes from its last checkpoint and trains every
   prompt it accepted, each once; the refused ones were never stored.

And a start on a volume with no room for the store's files at all: exit status 2 and one line saying so;
`grpo-server --compact-store` without room for the lock file, then for VACUUM's copy: one line each,
saying what it needs, and the store as it was.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "trainer"))

from live_trainer import (  # noqa: E402
    ConstantScorer,
    TrainerProcess,
    config_data,
    prompt_accounting,
    prompts,
    serve,
    server_command,
    wait_for,
    write_yaml,
)

from grpo.trainer.v1 import trainer_pb2  # noqa: E402
from grpo_client import SubmitError, TrainerError  # noqa: E402
from grpo_server.store import Store  # noqa: E402
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec  # noqa: E402

pytestmark = pytest.mark.slow

VOLUME_BYTES = 64 << 20


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of VOLUME_BYTES mounted for this test (unmounted after it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting the small filesystem this test fills needs root")
    mount = tmp_path / "volume"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME_BYTES}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(volume: Path, leave_bytes: int) -> Path:
    """Take the volume's free space but `leave_bytes` with a file of zeros (written, not sparse)."""
    filler = volume / "filler"
    block = b"\0" * (1 << 16)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    os.truncate(filler, max(filler.stat().st_size - leave_bytes, 0))
    return filler


@pytest.fixture
def backend() -> Iterator[str]:
    """The address of a reward service giving every completion 1."""
    server = serve(ConstantScorer("toy", 1.0))
    yield server.address
    server.stop(1)


def volume_metrics(trainer: TrainerProcess) -> dict[str, float]:
    """grpo_store_volume_{available,size}_bytes from the trainer's /metrics."""
    assert trainer.metrics_port is not None
    text = urllib.request.urlopen(f"http://127.0.0.1:{trainer.metrics_port}/metrics", timeout=10).read().decode()
    return {s.name.removeprefix("grpo_store_volume_").removesuffix("_bytes"): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if s.name.startswith("grpo_store_volume_")}


def run_status(trainer: TrainerProcess) -> trainer_pb2.RunStatus:
    return trainer.client.step_status().run


def test_a_full_volume_loses_nothing(volume: Path, backend: str, tmp_path: Path) -> None:
    store_dir = volume / "store"
    config = write_yaml(tmp_path / "trainer.yaml", config_data(checkpoint={"every_steps": 1, "keep": 2}))
    log = tmp_path / "trainer.log"
    first = [p.id for p in prompts(4, prefix="a")]
    second = [p.id for p in prompts(4, prefix="b")]
    refused = [p.id for p in prompts(2, prefix="c")]
    trainer = TrainerProcess(config, store_dir, [("toy", backend)], log_path=log, metrics=True)
    try:
        trainer.wait_ready()
        room = volume_metrics(trainer)
        assert room["size"] == VOLUME_BYTES and 0 < VOLUME_BYTES - room["available"] < 8 << 20, room
        trainer.client.submit_prompts(prompts(4, prefix="a"))
        wait_for(lambda: run_status(trainer).checkpoint_step >= 2, 120,
                 lambda: f"the first 4 prompts were not trained; log:\n{trainer.log_tail()}")
        checkpoint_bytes = sum(f.stat().st_size for f in (store_dir / "checkpoints" / "step-000002").rglob("*")
                               if f.is_file())

        # 1. Room for the store's writes but not for the next checkpoint.
        trainer.client.pause()
        trainer.client.submit_prompts(prompts(4, prefix="b"))
        filler = fill(volume, leave_bytes=checkpoint_bytes // 2)
        room = volume_metrics(trainer)  # what an alert on the trainer's own gauges sees
        assert room["size"] == VOLUME_BYTES and room["available"] <= checkpoint_bytes // 2, room
        trainer.client.resume()
        failed = wait_for(lambda: (s := run_status(trainer)).state == trainer_pb2.RUN_STATE_FAILED and s, 120,
                          lambda: f"the run did not fail on the full disk; log:\n{trainer.log_tail()}")
        assert "No space left on device" in failed.error, failed.error
        assert f"make room on the volume that holds {store_dir}" in failed.error, failed.error
        assert "resumes from the checkpoint of step 2 and no submitted prompt is lost" in failed.error, failed.error
        assert failed.checkpoint_step == 2
        leftovers = sorted(p.name for p in (store_dir / "checkpoints").iterdir())
        assert leftovers == ["step-000001", "step-000002"], leftovers  # no temporary .step-* left behind

        # 2. No room at all: a submission is refused whole, and the reads still answer.
        fill(volume, leave_bytes=0)
        with pytest.raises(TrainerError) as refusal:
            trainer.client.submit_prompts(prompts(2, prefix="c"))
        err = refusal.value
        assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert "the store's disk is full" in err.message and "nothing of it was stored" in err.message, err.message
        assert err.quota_subjects == ["store"], err
        assert err.retry_delay_seconds and err.retry_delay_seconds > 0, err
        with pytest.raises(SubmitError) as stopped:  # the client's account of it: not a full queue
            trainer.client.submit_all(prompts(2, prefix="c"), max_attempts=1)
        assert "The trainer's store disk stayed full through the retries: once its operator has made room" in \
            stopped.value.progress(), stopped.value.progress()
        listed = trainer.client.list_prompts(ids=refused)
        assert list(listed.prompts) == [], listed
        # An export is refused the same way, at once: its record is written before anything else, and
        # does not fit. Nothing is left of it (its destination is on another volume, with room).
        with pytest.raises(TrainerError) as refusal:
            trainer.client.export_checkpoint(str(tmp_path / "export"))
        err = refusal.value
        assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "the store's disk is full" in err.message, err
        assert not (tmp_path / "export").exists() and list(trainer.client.iter_exports()) == []
        assert trainer.client.step_status().run.state == trainer_pb2.RUN_STATE_FAILED
        assert "SubmitPrompts refused: the store's disk is full" in trainer.log_tail(20000)
    finally:
        trainer.kill()

    # 3. A restart without room made (as much left as in 1) serves, and fails the run with the same advice.
    filler.unlink()
    filler = fill(volume, leave_bytes=checkpoint_bytes // 2)
    trainer = TrainerProcess(config, store_dir, [("toy", backend)], log_path=log)
    try:
        trainer.wait_ready()
        again = wait_for(lambda: (s := run_status(trainer)).state == trainer_pb2.RUN_STATE_FAILED and s, 120,
                         lambda: f"the restarted run did not fail on the full disk; log:\n{trainer.log_tail()}")
        assert "a disk is full: make room" in again.error and again.checkpoint_step == 2, again
    finally:
        trainer.kill()

    # 4. Room made again, the trainer restarted on the same store: it trains everything it accepted.
    filler.unlink()
    trainer = TrainerProcess(config, store_dir, [("toy", backend)], log_path=log)
    try:
        trainer.wait_ready()
        assert not run_status(trainer).error
        wait_for(lambda: run_status(trainer).checkpoint_step >= 4 or None, 120,
                 lambda: f"the 4 prompts queued before the disk filled were not trained; log:\n{trainer.log_tail()}")
        time.sleep(0.5)  # no further step may come: nothing is left to train
        status = run_status(trainer)
        assert (status.checkpoint_step, status.latest_step, status.prompts_trained) == (4, 4, 8), status
    finally:
        trainer.terminate()
        trainer.wait(60)
    accounting = prompt_accounting(store_dir)
    assert sorted(accounting) == sorted(first + second), accounting  # the refused prompts were never stored
    assert {pid: state for pid, (state, _) in accounting.items()} == {pid: PromptState.TRAINED for pid in first + second}
    steps = {pid: step for pid, (_, step) in accounting.items()}
    assert {steps[p] for p in first} == {1, 2} and {steps[p] for p in second} == {3, 4}, steps


def test_a_start_on_a_full_volume_says_so(volume: Path, backend: str, tmp_path: Path) -> None:
    store_dir = volume / "store"
    Store(store_dir).close()  # a store closed cleanly: its WAL and lock file are to be made at the next start
    fill(volume, leave_bytes=0)
    before = sorted(p.name for p in store_dir.iterdir())
    config = write_yaml(tmp_path / "trainer.yaml", config_data())
    done = subprocess.run([*server_command(), "--config", str(config), "--store-dir", str(store_dir),
                           "--reward-backend", f"toy={backend}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [x for x in done.stderr.splitlines() if x.startswith("grpo-server:")]
    assert lines == [f"grpo-server: --store-dir: cannot use {store_dir}: No space left on device"], done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in store_dir.iterdir()) == before


def compact(store_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*server_command(), "--compact-store", "--store-dir", str(store_dir)],
                          capture_output=True, text=True, timeout=120)


def test_compacting_without_room_says_what_it_needs_and_changes_nothing(volume: Path) -> None:
    store_dir = volume / "store"
    store = Store(store_dir)
    store.submit([PromptRecord(id=f"p{i}", messages=(ChatMessage("user", f"{i} " + "x" * 4000),),
                               rewards=(RewardSpec("toy", 1.0),)) for i in range(500)], None, 10**9)
    store.close()
    database = (store_dir / "grpo.sqlite").read_bytes()

    # No room for the lock file: refused before the store is opened.
    filler = fill(volume, leave_bytes=0)
    done = compact(store_dir)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.strip() == f"grpo-server: cannot use the store directory {store_dir}: No space left on device"
    assert sorted(p.name for p in store_dir.iterdir()) == ["grpo.sqlite"]

    # Room for the lock file and a little more, not for VACUUM's copy (about 2 MB).
    filler.unlink()
    fill(volume, leave_bytes=200_000)
    done = compact(store_dir)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "grpo-server: --compact-store: database or disk is full; VACUUM needs room for a copy of the database (" \
        in done.stderr and "(nothing is lost:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    store = Store(store_dir)
    try:
        assert store.queue_depth() == 500 and store.counts()[PromptState.QUEUED] == 500
    finally:
        store.close()
    assert (store_dir / "grpo.sqlite").read_bytes() == database  # the store closed cleanly: WAL folded back
