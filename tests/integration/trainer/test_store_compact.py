"""`grpo-server --compact-store`: retention applied, the database rewritten to what it holds, the run's
accounting and queue intact; refused while a trainer holds the store; nothing to do where there is none."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from grpo_server.store import Store, lock_store
from grpo_server.store.sqlite_store import FILENAME
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec, StepReport, StepState

BIG = 10**9


def rec(pid: str, size: int = 4000) -> PromptRecord:
    return PromptRecord(id=pid, messages=(ChatMessage("user", f"{pid} " + "x" * size),),
                        rewards=(RewardSpec("math", 1.0),), answer="42")


def compact(store_dir: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "grpo_server.cli", "--compact-store", "--store-dir", str(store_dir)]
    return subprocess.run(cmd + (["--config", str(config)] if config else []), capture_output=True, text=True,
                          timeout=120)


def a_run(store_dir: Path) -> None:
    """1000 prompts of 4 KB trained in 50 steps, 3 still queued, a request id per step."""
    store = Store(store_dir)
    for step in range(1, 51):
        store.submit([rec(f"s{step}-{i}") for i in range(20)], f"req-{step}", BIG)
        store.lease(20, step=step)
        store.commit_checkpoint(step, f"/ckpt/{step}")
    store.submit([rec("q0"), rec("q1"), rec("q2")], None, BIG)
    store.close()


def test_compaction_shrinks_the_file_and_keeps_the_run(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    a_run(store_dir)
    config = tmp_path / "c.yaml"
    config.write_text("retention:\n  prompt_content_seconds: 0.001\n  request_ids_seconds: 0.001\n")
    time.sleep(0.01)
    size = (store_dir / FILENAME).stat().st_size
    assert size > 4_000_000

    done = compact(store_dir, config)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"grpo-server compacted {store_dir}: "), done.stdout
    assert "(dropped the content of 1000 finished prompts, 0 finished prompts' rows, 50 request ids, 0 step reports and 0 export records)" in lines[0]
    after = (store_dir / FILENAME).stat().st_size
    assert after < size / 10, (size, after)
    assert not (store_dir / (FILENAME + "-wal")).exists() or (store_dir / (FILENAME + "-wal")).stat().st_size == 0

    store = Store(store_dir)
    try:
        counts = store.counts()
        assert (counts[PromptState.TRAINED], counts[PromptState.QUEUED]) == (1000, 3)
        assert len(store.list_prompts(limit=2000)) == 1003 and store.latest_checkpoint().step == 50
        # The queue trains as before, from the prompts' whole content.
        assert [p.messages[0].content for p in store.lease(3, step=51)] == [rec(f"q{i}").messages[0].content
                                                                            for i in range(3)]
    finally:
        store.close()


def test_default_retention_keeps_recent_content_and_still_compacts(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    a_run(store_dir)
    done = compact(store_dir)  # no config: 7 days of content and request ids are kept
    assert done.returncode == 0, done.stderr
    assert "(dropped the content of 0 finished prompts, 0 finished prompts' rows, 0 request ids, 0 step reports and 0 export records)" in done.stdout
    store = Store(store_dir)
    try:
        assert store.submit([rec(f"s1-{i}") for i in range(20)], "req-1", BIG).duplicate  # still remembered
    finally:
        store.close()


def test_rows_and_step_reports_go_when_the_config_says_so(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    a_run(store_dir)
    store = Store(store_dir)
    for step in range(1, 51):
        store.record_step(StepReport(step=step, state=StepState.COMPLETED, started_at=1.0, finished_at=2.0,
                                     metrics={"loss": 0.5}, rollout_engine="hf", prompt_ids=(f"s{step}-0",)))
    store.close()
    config = tmp_path / "c.yaml"
    config.write_text("retention:\n  prompt_rows_seconds: 0.001\n  step_reports_seconds: 0.001\n")
    time.sleep(0.01)
    done = compact(store_dir, config)
    assert done.returncode == 0, done.stderr
    assert ("(dropped the content of 0 finished prompts, 1000 finished prompts' rows, 0 request ids, 49 step "
            "reports and 0 export records)") in done.stdout  # step 50, the latest, stays
    store = Store(store_dir)
    try:
        counts = store.counts()
        assert (counts[PromptState.TRAINED], counts[PromptState.QUEUED]) == (1000, 3)  # the run's totals
        assert [e.id for e in store.list_prompts(limit=2000)] == ["q0", "q1", "q2"]
        assert [r.step for r in store.steps_after(0)] == [50] and store.completed_steps(50) == 50
    finally:
        store.close()


def test_refused_while_a_trainer_holds_the_store(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    Store(store_dir).close()
    before = (store_dir / FILENAME).read_bytes()
    lock = lock_store(store_dir)
    try:
        done = compact(store_dir)
    finally:
        assert lock is not None
        lock.close()
    assert done.returncode == 2 and done.stdout == ""
    assert "is in use by another trainer" in done.stderr, done.stderr
    assert (store_dir / FILENAME).read_bytes() == before


def test_no_store_is_nothing_to_do(tmp_path: Path) -> None:
    # The chart's init container runs it before the first start too.
    done = compact(tmp_path / "nothing")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"grpo-server compacted nothing: no store in {tmp_path / 'nothing'} (no {FILENAME})\n"
    assert not (tmp_path / "nothing").exists()  # nothing created


def test_flags_replace_bad_values_of_the_config_before_it_is_checked(tmp_path: Path) -> None:
    """configuration.md: "Flags override the file (before it is checked)": a config whose store_dir and
    math backend are invalid is used with --store-dir and --reward-backend math=... (it was refused)."""
    store_dir = tmp_path / "store"
    Store(store_dir).close()
    config = tmp_path / "c.yaml"
    config.write_text("store_dir: ''\nrewards:\n  backends:\n    math: {address: nope}\n")
    cmd = [sys.executable, "-m", "grpo_server.cli", "--compact-store", "--config", str(config)]
    done = subprocess.run(cmd + ["--store-dir", str(store_dir), "--reward-backend", "math=127.0.0.1:50061"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"grpo-server compacted {store_dir}: "), done.stdout
    refused = subprocess.run(cmd + ["--store-dir", str(store_dir)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "rewards.backends.math.address: 'nope'" in refused.stderr, refused.stderr
    # Two flags naming one port: the flags are named, not config fields.
    both = subprocess.run([sys.executable, "-m", "grpo_server.cli", "--compact-store", "--store-dir", str(store_dir),
                           "--listen", "127.0.0.1:5999", "--metrics-listen", "127.0.0.1:5999"],
                          capture_output=True, text=True, timeout=120)
    assert both.returncode == 2 and both.stderr.strip().splitlines()[-1] == (
        "grpo-server: --listen and --metrics-listen are both 127.0.0.1:5999: the gRPC API and the metrics endpoint "
        "need ports of their own"), both.stderr
