"""A store whose disk is full: a write fails whole with StoreFull (the cause, not a failed ROLLBACK), stores
nothing, and leaves the store usable once there is room. The full disk is SQLite's own limit on the file
(PRAGMA max_page_count), which fails a write as a full disk does (SQLITE_FULL, the transaction rolled
back by SQLite itself); tests/reliability/test_disk_full.py fills a real filesystem."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_server.store import Store, StoreFull
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec, StepReport, StepState

BIG = 10**9


def rec(pid: str, size: int = 4000) -> PromptRecord:
    return PromptRecord(id=pid, messages=(ChatMessage("user", f"{pid} " + "x" * size),),
                        rewards=(RewardSpec("math", 1.0),), answer="42")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store")
    yield s
    s.close()


def limit_pages(store: Store, extra: int | None) -> None:
    """Let the store's file grow by `extra` pages at most (None: no limit). The limit is per connection,
    so it is set on the store's own."""
    if extra is None:
        store._conn.execute("PRAGMA max_page_count = 1073741823")
        return
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + extra}")


def test_a_submission_that_does_not_fit_stores_nothing_and_says_why(store: Store) -> None:
    store.submit([rec("a0"), rec("a1")], "first", BIG)
    before = (store.counts(), [(e.seq, e.id, e.state) for e in store.list_prompts(limit=1000)])
    limit_pages(store, 4)
    with pytest.raises(StoreFull) as raised:
        store.submit([rec(f"b{i}") for i in range(200)], "second", BIG)  # ~800 KB: over 4 pages mid-way
    err = raised.value
    assert isinstance(err, sqlite3.OperationalError) and err.sqlite_errorname == "SQLITE_FULL"
    assert "the store's disk is full" in str(err) and str(store.store_dir) in str(err), err
    assert "nothing of it was stored" in str(err) and "database or disk is full" in str(err), err
    assert not store._conn.in_transaction
    assert (store.counts(), [(e.seq, e.id, e.state) for e in store.list_prompts(limit=1000)]) == before

    limit_pages(store, None)  # room made: the same request goes through, as new (it was never stored)
    result = store.submit([rec(f"b{i}") for i in range(200)], "second", BIG)
    assert not result.duplicate and len(result.accepted_ids) == 200 and result.queue_depth == 202


def test_a_step_that_does_not_fit_leaves_the_step_and_its_lease_as_they_were(store: Store) -> None:
    store.submit([rec("a0", 10), rec("a1", 10)], None, BIG)
    ids = tuple(p.id for p in store.lease(2, step=1))
    store.record_step(StepReport(1, StepState.RUNNING, 1.0, None, {}, "hf", ids))
    limit_pages(store, 0)
    samples = [{"prompt_id": "a0", "completion": "y" * 200_000}]  # the samples' row needs new pages
    report = StepReport(1, StepState.COMPLETED, 1.0, 2.0, {"loss": 0.5}, "hf", ids)
    with pytest.raises(StoreFull):
        store.record_step(report, samples=samples, keep_sample_steps=4)
    assert store.prompt_states() == {"a0": (PromptState.LEASED, 1), "a1": (PromptState.LEASED, 1)}
    assert store.get_step(1).state is StepState.RUNNING
    limit_pages(store, None)
    store.record_step(report, samples=samples, keep_sample_steps=4)
    assert store.get_step(1).state is StepState.COMPLETED
