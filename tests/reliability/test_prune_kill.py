"""kill -9 while the store prunes (retention.*): each pruned row is deleted and inserted again without its
content, so a crash between the two would lose a prompt's row. It cannot: both are in one transaction.
A child process prunes 20,000 finished prompts in batches of 500 and is killed at random points; after
each kill the store opens intact, every row is there with its state, and the counts agree. The same
for whole rows (retention.prompt_rows_seconds): the counts add back what the delete takes off in the
same transaction, so they stay the run's totals whenever the kill lands."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from grpo_server.store import Store
from grpo_server.store.sqlite_store import FILENAME
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec

ROWS = 20_000
KILLS = 10
PRUNER = """
import sys, time
from grpo_server.store import Store
store = Store(sys.argv[1])
print("ready", flush=True)
kind = sys.argv[2]
cutoffs = {"content_before": None, "requests_before": time.time() + 1}
cutoffs[kind] = time.time() + 1
store.prune(**cutoffs, batch=500)
print("done", flush=True)
"""


def rec(pid: str) -> PromptRecord:
    return PromptRecord(id=pid, messages=(ChatMessage("user", pid + " " + "x" * 400),), rewards=(RewardSpec("math"),),
                        answer="1")


def rows(store_dir: Path) -> tuple[int, int, int]:
    """(rows, rows that kept their content, distinct seqs), from the file."""
    with sqlite3.connect(store_dir / FILENAME) as c:
        n, kept, seqs = c.execute("SELECT count(*), sum(data <> ''), count(DISTINCT seq) FROM prompts").fetchone()
    return int(n), int(kept or 0), int(seqs)


def a_run(store_dir: Path) -> None:
    """ROWS trained prompts in 20 steps, one still queued."""
    store = Store(store_dir)
    for step in range(1, 21):
        store.submit([rec(f"s{step}-{i}") for i in range(ROWS // 20)], f"r{step}", 10**9)
        store.lease(ROWS // 20, step=step)
        store.commit_checkpoint(step, f"/ckpt/{step}")
    store.submit([rec("queued")], None, 10**9)
    store.close()


def prune_killed(store_dir: Path, kind: str, seed: int, max_wait: float) -> Iterator[int]:
    """Start a pruning of `kind` (a Store.prune cutoff) KILLS times and SIGKILL it after a random wait of
    up to `max_wait` s; yield the kill's number after each, the process gone."""
    rng = random.Random(seed)
    for kill in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", PRUNER, str(store_dir), kind], stdout=subprocess.PIPE,
                                 text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, max_wait))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        yield kill


def prune_to_the_end(store_dir: Path, kind: str) -> None:
    done = subprocess.run([sys.executable, "-c", PRUNER, str(store_dir), kind], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["ready", "done"], done.stderr


def test_kill_9_while_pruning_loses_no_row(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    a_run(store_dir)
    kept_before = ROWS + 1
    progress = []
    for kill in prune_killed(store_dir, "content_before", seed=7, max_wait=0.15):
        n, kept, seqs = rows(store_dir)
        assert (n, seqs) == (ROWS + 1, ROWS + 1), f"kill {kill}: {n} rows, {seqs} seqs"  # no row lost or doubled
        assert 1 <= kept <= kept_before, (kill, kept, kept_before)  # pruning only goes forward
        progress.append(kept)
        kept_before = kept
        store = Store(store_dir)  # opens: quick_check passes, the schema is whole
        try:
            counts = store.counts()
            assert (counts[PromptState.TRAINED], counts[PromptState.QUEUED]) == (ROWS, 1), (kill, counts)
            assert [p.messages[0].content for p in store.lease(1, step=99)] == [rec("queued").messages[0].content]
            store.requeue_step(99, count_attempt=False)
        finally:
            store.close()
    # Some kills landed in the middle of the pruning (at least one batch done, the content of some left).
    assert any(1 < k < ROWS + 1 for k in progress), progress
    prune_to_the_end(store_dir, "content_before")
    assert rows(store_dir) == (ROWS + 1, 1, ROWS + 1)  # the queued prompt alone keeps its content


def test_kill_9_while_pruning_whole_rows_keeps_the_counts(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    a_run(store_dir)
    before = ROWS + 1
    progress = []
    for kill in prune_killed(store_dir, "rows_before", seed=11, max_wait=0.1):
        n, kept, seqs = rows(store_dir)
        assert n == seqs == kept and 1 <= n <= before, (kill, n, seqs, kept, before)  # only forward
        progress.append(n)
        before = n
        store = Store(store_dir)
        try:
            counts = store.counts()
            assert (counts[PromptState.TRAINED], counts[PromptState.QUEUED]) == (ROWS, 1), (kill, n, counts)
            assert [e.id for e in store.list_prompts(state=PromptState.QUEUED)] == ["queued"]
        finally:
            store.close()
    assert any(1 < n < ROWS + 1 for n in progress), progress
    prune_to_the_end(store_dir, "rows_before")
    assert rows(store_dir) == (1, 1, 1)
    store = Store(store_dir)
    try:
        assert store.counts()[PromptState.TRAINED] == ROWS
    finally:
        store.close()
