"""Store.prune (config retention.*): the content of prompts that finished long enough ago and old
request ids are forgotten; what the queue, the counts and ListPrompts need is kept."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_server.store import Store
from grpo_server.store.sqlite_store import FILENAME
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec

BIG = 10**9


def rec(pid: str, text: str = "") -> PromptRecord:
    return PromptRecord(id=pid, messages=(ChatMessage("user", text or f"What is {pid}?"),),
                        rewards=(RewardSpec("math", 1.0),), answer="42")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store", max_attempts=1)
    yield s
    s.close()


def contents(store: Store) -> dict[int, bool]:
    """seq -> whether the row still holds its prompt's content, read from the file itself."""
    with sqlite3.connect(store.path) as c:
        return {seq: data != "" for seq, data in c.execute("SELECT seq, data FROM prompts ORDER BY seq")}


def everything(store: Store) -> list[tuple[object, ...]]:
    """What ListPrompts and the counts answer."""
    return [(e.seq, e.id, e.state, e.step, e.checkpoint_step, e.attempts, e.reason) for e in store.list_prompts(
        limit=1000)] + [tuple(store.counts().items())]


def finish_one_of_each(store: Store) -> None:
    """t1 trained (checkpoint of step 1), f1 failed (step 2 gave up on it), c1 cancelled, q1 queued, l1
    leased by step 3."""
    store.submit([rec("t1"), rec("f1"), rec("c1"), rec("l1"), rec("q1")], None, BIG)
    assert [p.id for p in store.lease(1, step=1)] == ["t1"]
    store.commit_checkpoint(1, "/ckpt/1")
    assert [p.id for p in store.lease(1, step=2)] == ["f1"]
    assert store.requeue_step(2, count_attempt=True, reason="boom") == 1
    assert store.cancel(["c1"]).cancelled_ids == ("c1",)
    assert [p.id for p in store.lease(1, step=3)] == ["l1"]


def test_finished_prompts_lose_their_content_and_keep_their_row(store: Store) -> None:
    finish_one_of_each(store)
    before = everything(store)
    done = store.prune(content_before=time.time() + 1, requests_before=None)
    assert done.prompt_contents == 3 and done.request_ids == 0
    assert contents(store) == {1: False, 2: False, 3: False, 4: True, 5: True}  # leased and queued keep theirs
    assert everything(store) == before  # states, steps, reasons, counts: all as they were
    assert store.prune(content_before=time.time() + 1, requests_before=None).prompt_contents == 0  # once
    # The leased prompt goes back to the queue on a restart and is leased again whole, as is the queued one.
    assert store.recover() == 1
    again = store.lease(2, step=4)
    assert [(p.id, p.messages[0].content) for p in again] == [("l1", "What is l1?"), ("q1", "What is q1?")]


def test_only_prompts_finished_before_the_cutoff(store: Store) -> None:
    store.submit([rec("old"), rec("new")], None, BIG)
    store.lease(1, step=1)
    store.commit_checkpoint(1, "/ckpt/1")
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    store.lease(1, step=2)
    store.commit_checkpoint(2, "/ckpt/2")
    assert store.prune(content_before=cutoff, requests_before=None).prompt_contents == 1
    assert contents(store) == {1: False, 2: True}


def test_a_pruned_id_can_be_submitted_again_and_trains_with_its_new_content(store: Store) -> None:
    store.submit([rec("p", "first")], None, BIG)
    store.lease(1, step=1)
    store.commit_checkpoint(1, "/ckpt/1")
    store.prune(content_before=time.time() + 1, requests_before=None)
    store.submit([rec("p", "second")], None, BIG)
    assert [p.messages[0].content for p in store.lease(1, step=2)] == ["second"]
    assert [(e.id, e.state) for e in store.list_prompts()] == [("p", PromptState.TRAINED), ("p", PromptState.LEASED)]


def test_many_rows_go_in_several_short_transactions(store: Store) -> None:
    store.submit([rec(f"p{i}") for i in range(25)], "r1", BIG)
    store.lease(25, step=1)
    store.commit_checkpoint(1, "/ckpt/1")
    done = store.prune(content_before=time.time() + 1, requests_before=None, batch=4)
    assert done.prompt_contents == 25 and not any(contents(store).values())


def test_old_request_ids_are_forgotten_and_recent_ones_still_answer_a_retry(store: Store) -> None:
    first = store.submit([rec("a")], "old-request", BIG)
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    store.submit([rec("b")], "new-request", BIG)
    assert store.prune(content_before=None, requests_before=cutoff).request_ids == 1
    assert contents(store) == {1: True, 2: True}  # request ids only: no content went
    retry_new = store.submit([rec("b")], "new-request", BIG)
    assert retry_new.duplicate and retry_new.accepted_ids == ("b",)
    # The old id is forgotten: the same request is a new submission (a is still queued: refused as such).
    store.lease(1, step=1)
    store.commit_checkpoint(1, "/ckpt/1")
    retry_old = store.submit([rec("a")], "old-request", BIG)
    assert not retry_old.duplicate and retry_old.accepted_ids == first.accepted_ids
    assert [e.id for e in store.list_prompts(state=PromptState.QUEUED)] == ["b", "a"]


def test_none_keeps_everything(store: Store) -> None:
    finish_one_of_each(store)
    store.submit([rec("r")], "req", BIG)
    done = store.prune(content_before=None, requests_before=None)
    assert (done.prompt_contents, done.request_ids) == (0, 0)
    assert all(contents(store).values())
    assert store.submit([rec("r")], "req", BIG).duplicate


def test_pruning_stops_the_file_growing_with_the_run(tmp_path: Path) -> None:
    """The freed pages are reused: a run that trains 1 KB prompts and prunes as it goes ends far smaller
    than one that keeps them all."""
    sizes = {}
    for prune in (False, True):
        s = Store(tmp_path / f"store-{prune}")
        for step in range(1, 201):
            s.submit([rec(f"s{step}-{i}", "x" * 1000) for i in range(8)], f"r{step}", BIG)
            s.lease(8, step=step)
            s.commit_checkpoint(step, f"/ckpt/{step}")
            if prune:
                s.prune(content_before=time.time() + 1, requests_before=time.time() + 1)
        s.close()  # checkpoints the WAL into the file
        sizes[prune] = (tmp_path / f"store-{prune}" / FILENAME).stat().st_size
    assert sizes[False] > 1_600_000  # 1600 prompts of 1 KB
    assert sizes[True] < sizes[False] / 4, sizes
