"""Store.prune (config retention.*): the content or whole rows of prompts that finished long enough ago,
old request ids and old step reports are forgotten; what the queue, the counts, ListPrompts and a
restart need is kept."""

from __future__ import annotations

import sqlite3
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from grpo_server.store import Store, sqlite_store
from grpo_server.store.sqlite_store import FILENAME
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec, StepReport, StepState

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


def trained_either_side_of_a_cutoff(store: Store) -> float:
    """Train the first queued prompt (step 1), then the next (step 2) after the returned time.time()."""
    store.lease(1, step=1)
    store.commit_checkpoint(1, "/ckpt/1")
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    store.lease(1, step=2)
    store.commit_checkpoint(2, "/ckpt/2")
    return cutoff


def test_only_prompts_finished_before_the_cutoff(store: Store) -> None:
    store.submit([rec("old"), rec("new")], None, BIG)
    cutoff = trained_either_side_of_a_cutoff(store)
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


def transactions(store: Store, call: Callable[[], object]) -> int:
    """How many write transactions `call` makes on the store's connection."""
    begun = []
    store._conn.set_trace_callback(lambda sql: begun.append(sql) if sql.startswith("BEGIN IMMEDIATE") else None)
    try:
        call()
    finally:
        store._conn.set_trace_callback(None)
    return len(begun)


def test_a_prune_adapts_its_transactions_to_how_long_they_hold_the_store(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of 5000 rows of large content held the store (and so every API call) for seconds: each
    transaction's rows double while it takes under half of PRUNE_TRANSACTION_SECONDS and halve while it
    takes longer."""
    counted = {}
    for name, target in (("slow", 0.0), ("fast", 1e9)):  # every transaction too long / every one short
        monkeypatch.setattr(sqlite_store, "PRUNE_TRANSACTION_SECONDS", target)
        s = Store(tmp_path / name)
        s.submit([rec(f"p{i}") for i in range(300)], None, BIG)
        s.lease(300, step=1)
        s.commit_checkpoint(1, "/ckpt/1")
        counted[name] = transactions(s, lambda s=s: s.prune(content_before=time.time() + 1, requests_before=None))
        assert not any(contents(s).values())
        s.close()
    # slow: 64, 32, ..., 2, 1 rows (127 in 7), then one a time, and a last one finding none;
    # fast: 64, 128, then 256 of which 108 are left
    assert counted == {"slow": 7 + (300 - 127) + 1, "fast": 3}, counted


def test_a_prune_of_large_prompts_does_not_read_their_content(store: Store) -> None:
    """Dropping content read each batch's content whole into memory only to write the rows back without
    it (300 MB for 5000 prompts of 60 KB, in a trainer that also holds the model)."""
    text = "x" * 60_000
    store.submit([rec(f"p{i}", text) for i in range(200)], None, BIG)  # 12 MB of content
    store.lease(200, step=1)
    store.commit_checkpoint(1, "/ckpt/1")
    tracemalloc.start()
    try:
        done = store.prune(content_before=time.time() + 1, requests_before=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert done.prompt_contents == 200 and not any(contents(store).values())
    assert peak < 2_000_000, peak  # one prompt's content is 60 kB


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


# ------------------------------------------------------------- retention.prompt_rows_seconds


def test_finished_rows_go_whole_and_the_counts_still_count_them(store: Store) -> None:
    finish_one_of_each(store)
    counts = store.counts()
    done = store.prune(content_before=time.time() + 1, requests_before=None, rows_before=time.time() + 1)
    # The rows went first, content and all: no content is counted as dropped on its own.
    assert (done.prompt_rows, done.prompt_contents) == (3, 0)
    assert [(e.id, e.state) for e in store.list_prompts()] == [("l1", PromptState.LEASED), ("q1", PromptState.QUEUED)]
    assert contents(store) == {4: True, 5: True}
    assert store.counts() == counts  # trained 1, failed 1, cancelled 1, leased 1, queued 1: the run's totals
    cancel = store.cancel(["t1", "q1"])
    assert cancel.unknown_ids == ("t1",) and cancel.cancelled_ids == ("q1",)
    # The counts keep moving from there, and a forgotten id may be submitted again.
    store.commit_checkpoint(3, "/ckpt/3")
    assert store.submit([rec("t1")], None, BIG).accepted_ids == ("t1",)
    after = store.counts()
    assert (after[PromptState.TRAINED], after[PromptState.LEASED], after[PromptState.QUEUED],
            after[PromptState.CANCELLED]) == (2, 0, 1, 2)


def test_only_rows_finished_before_the_cutoff_and_never_an_active_one(store: Store) -> None:
    store.submit([rec("old"), rec("new"), rec("waiting")], None, BIG)
    cutoff = trained_either_side_of_a_cutoff(store)
    store.lease(1, step=3)  # "waiting" is leased: a restart puts it back in the queue, whatever its age
    assert store.prune(content_before=None, requests_before=None, rows_before=cutoff).prompt_rows == 1
    assert [e.id for e in store.list_prompts()] == ["new", "waiting"]
    assert store.prune(content_before=None, requests_before=None, rows_before=time.time() + 1,
                       batch=1).prompt_rows == 1
    assert [e.id for e in store.list_prompts()] == ["waiting"]


# ------------------------------------------------------------ retention.step_reports_seconds


def report(step: int, state: StepState = StepState.COMPLETED, finished: float | None = 1.0) -> StepReport:
    return StepReport(step=step, state=state, started_at=finished or 1.0, finished_at=finished,
                      metrics={"loss": 0.5}, rollout_engine="hf", prompt_ids=(f"p{step}",))


def test_old_step_reports_go_but_not_the_latest_nor_those_after_the_checkpoint(store: Store) -> None:
    for n in range(1, 7):
        state = StepState.SKIPPED if n == 2 else StepState.COMPLETED
        store.record_step(report(n, state), samples=[{"prompt_id": f"p{n}"}])
    store.commit_checkpoint(4, "/ckpt/4")
    assert store.completed_steps(4) == 3 and store.forgotten_steps() == 0
    done = store.prune(content_before=None, requests_before=None, steps_before=time.time(), batch=2)
    assert done.step_reports == 4  # steps 1-4, two transactions of 2 and one that finds none
    assert [r.step for r in store.steps_after(0)] == [5, 6]
    assert store.get_step(3) is None and store.step_samples(report(3)) == []
    assert store.step_samples(report(5)) == [{"prompt_id": "p5"}]
    # What the trainer reads at a start from the checkpoint is as it was: 3 updates up to step 4.
    assert store.completed_steps(4) == 3 and store.completed_steps(6) == 5
    assert store.forgotten_steps() == 4
    with pytest.raises(ValueError, match="up to step 4 were deleted"):
        store.completed_steps(3)
    # With the checkpoint at the latest step, all but the latest may go; the totals add up.
    store.commit_checkpoint(6, "/ckpt/6")
    assert store.prune(content_before=None, requests_before=None, steps_before=time.time()).step_reports == 1
    assert [r.step for r in store.steps_after(0)] == [6] and store.latest_step().step == 6
    assert (store.completed_steps(6), store.forgotten_steps()) == (5, 5)


def test_the_step_that_started_last_is_kept_when_a_stale_report_has_a_higher_number(store: Store) -> None:
    """Killed during step 2 before any checkpoint, the run came back and trained everything in step 1
    (dynamic sampling): step 2's report is the killed run's, FAILED. Pruning took the highest number for
    the latest step and deleted step 1's report, the real latest, leaving the stale one as the latest."""
    first = StepReport(1, StepState.COMPLETED, 10.0, 11.0, {"loss": 0.5}, "hf", ("f0",))
    stale = StepReport(2, StepState.FAILED, 12.0, 13.0, {}, "hf", ("v0",), error="abandoned: ...")
    store.record_step(first)
    store.record_step(stale)
    rerun = StepReport(1, StepState.COMPLETED, 20.0, 21.0, {"loss": 0.4}, "hf", ("f0", "v0"))
    store.record_step(rerun)  # after the restart, replacing the first run's step 1
    store.commit_checkpoint(1, "/ckpt/1")
    assert store.prune(content_before=None, requests_before=None, steps_before=time.time()).step_reports == 0
    assert store.get_step(1) == rerun and store.latest_step() == rerun


def test_the_latest_completed_step_outlives_its_report(store: Store) -> None:
    # Steps 1-2 completed (checkpoint 2), step 3 was skipped in a reward outage; once retention deleted
    # the reports of 1-2, latest_completed_step (grpo_latest_step at a restart) read 0.
    store.record_step(report(1))
    store.record_step(report(2))
    store.commit_checkpoint(2, "/ckpt/2")
    store.record_step(report(3, StepState.SKIPPED))
    assert store.latest_completed_step() == 2
    assert store.prune(content_before=None, requests_before=None, steps_before=time.time()).step_reports == 2
    assert store.get_step(2) is None and store.latest_step().step == 3  # type: ignore[union-attr]
    reopened = Store(store.store_dir)
    try:
        assert reopened.latest_completed_step() == 2
    finally:
        reopened.close()


def test_reports_of_recent_and_running_steps_are_kept(store: Store) -> None:
    now = time.time()
    store.record_step(report(1, finished=now - 100))
    store.record_step(report(2, finished=now - 1))
    store.record_step(report(3, StepState.RUNNING, finished=None))
    store.commit_checkpoint(3, "/ckpt/3")
    assert store.prune(content_before=None, requests_before=None, steps_before=now - 10).step_reports == 1
    assert [r.step for r in store.steps_after(0)] == [2, 3]
    # No checkpoint yet, nothing goes: a restart would run every step again.
    other = Store(store.store_dir.parent / "other")
    try:
        other.record_step(report(1))
        other.record_step(report(2))
        assert other.prune(content_before=None, requests_before=None, steps_before=now).step_reports == 0
        assert other.forgotten_steps() == 0
    finally:
        other.close()


def test_pruning_rows_and_reports_stops_the_file_growing(tmp_path: Path) -> None:
    """With every kind pruned, the file of a long run stays the size of its window: the second half of
    the run adds (almost) nothing, where keeping the rows and reports grows it by the same again."""
    sizes: dict[bool, list[int]] = {}
    for prune in (False, True):
        s = Store(tmp_path / f"store-{prune}")
        sizes[prune] = []
        for step in range(1, 401):
            s.submit([rec(f"s{step}-{i}", "x" * 200) for i in range(8)], f"r{step}", BIG)
            s.lease(8, step=step)
            s.record_step(StepReport(step=step, state=StepState.COMPLETED, started_at=time.time(),
                                     finished_at=time.time(), metrics={f"m{i}": 0.5 for i in range(40)},
                                     rollout_engine="hf", prompt_ids=tuple(f"s{step}-{i}" for i in range(8))))
            s.commit_checkpoint(step, f"/ckpt/{step}")
            if prune:
                s.prune(**{k: time.time() + 1 for k in ("content_before", "requests_before", "rows_before",
                                                        "steps_before")})
            if step in (200, 400):
                s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                sizes[prune].append(s.path.stat().st_size)
        assert s.completed_steps(400) == 400
        s.close()
    kept, pruned = sizes[False], sizes[True]
    assert kept[1] - kept[0] > 300_000, kept  # 1600 rows and 200 reports more
    assert pruned[1] - pruned[0] < 20_000, pruned


def test_finished_export_records_go_and_unfinished_ones_stay(store: Store) -> None:
    for export_id, state in (("old-done", "done"), ("old-failed", "failed"), ("writing", "writing"),
                             ("pending", "pending")):
        store.put_export(export_id, state, {"export_id": export_id, "state": state})
    cutoff = time.time()
    time.sleep(0.01)
    store.put_export("new-done", "done", {"export_id": "new-done", "state": "done"})
    assert store.prune(content_before=None, requests_before=None, exports_before=None).export_records == 0
    done = store.prune(content_before=None, requests_before=None, exports_before=cutoff, batch=1)
    assert done.export_records == 2 and (done.prompt_contents, done.step_reports) == (0, 0)
    assert [data["export_id"] for _, data in store.list_exports()] == ["new-done", "pending", "writing"]
    assert store.get_export("old-done") is None and store.get_export("writing") is not None
    # Unfinished ones stay whatever their age: a trainer writing one updates it when it ends.
    assert store.prune(content_before=None, requests_before=None, exports_before=time.time() + 1).export_records == 1
    assert [data["export_id"] for _, data in store.list_exports()] == ["pending", "writing"]


def test_a_new_export_is_placed_after_pruned_ones_so_an_old_page_token_shows_nothing_newer(store: Store) -> None:
    for export_id in ("e1", "e2", "e3"):
        store.put_export(export_id, "done", {"export_id": export_id})
    [(newest_place, _)] = store.list_exports(limit=1)  # a page of 1: its token points before e3
    store.prune(content_before=None, requests_before=None, exports_before=time.time() + 1)  # all three go
    store.put_export("e4", "pending", {"export_id": "e4"})
    [(place, data)] = store.list_exports()
    assert data["export_id"] == "e4" and place > newest_place
    assert store.list_exports(before_seq=newest_place) == []  # the old token's next page: not e4
    store.close()
    reopened = Store(store.store_dir)
    reopened.put_export("e5", "pending", {"export_id": "e5"})
    assert [d["export_id"] for _, d in reopened.list_exports()] == ["e5", "e4"]
    reopened.close()
