"""The durable store: queue semantics, idempotency, checkpoints, recovery, and survival of kill -9."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from grpo_server.store import DuplicatePromptError, QueueFullError, RequestIdReusedError, Store, StoreError
from grpo_server.store.sqlite_store import ABANDONED, FILENAME, SCHEMA_VERSION
from grpo_server.types import (
    ChatMessage,
    CodeReference,
    IOCase,
    PromptRecord,
    PromptState,
    RewardSpec,
    StepReport,
    StepState,
)

BIG = 10**9


def rec(pid: str, **kw: object) -> PromptRecord:
    return PromptRecord(
        id=pid,
        messages=(ChatMessage("user", f"What is {pid}?"),),
        rewards=(RewardSpec("math", 1.0),),
        answer="42",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store")
    yield s
    s.close()


def ids(records) -> list[str]:
    return [r.id for r in records]


def test_prompt_round_trips_through_the_store_unchanged(store: Store) -> None:
    code = CodeReference(test_code="def check(c): assert c(1) == 2", entry_point="inc",
                         io_cases=(IOCase("1\n", "2\n"),), timeout_seconds=3.0)
    original = PromptRecord(
        id="c1",
        messages=(ChatMessage("system", "Be terse."), ChatMessage("user", "Write inc ✓")),
        rewards=(RewardSpec("code", 2.0), RewardSpec("rm", 0.5)),
        code=code,
        metadata={"task": "humaneval", "ünï": "cödé"},
    )
    store.submit([original], None, BIG)
    [leased] = store.lease(1, step=1)
    assert leased == original


def test_lease_is_fifo_and_all_or_nothing(store: Store) -> None:
    store.submit([rec("a"), rec("b"), rec("c")], None, BIG)
    assert store.lease(4, step=1) == []  # fewer than asked: nothing leased
    assert store.queue_depth() == 3
    assert ids(store.lease(2, step=1)) == ["a", "b"]
    assert ids(store.lease(1, step=2)) == ["c"]
    assert store.queue_depth() == 0


def test_submit_with_an_active_id_stores_nothing_and_names_the_ids(store: Store) -> None:
    store.submit([rec("a"), rec("b")], None, BIG)
    store.lease(1, step=1)  # a is leased, b queued
    with pytest.raises(DuplicatePromptError) as e:
        store.submit([rec("x"), rec("a"), rec("b")], None, BIG)
    assert e.value.ids == ("a", "b")
    assert "x" not in store.prompt_states()
    assert store.queue_depth() == 1


def test_trained_id_may_be_submitted_again(store: Store) -> None:
    store.submit([rec("a")], None, BIG)
    store.lease(1, step=1)
    store.commit_checkpoint(1, "/ckpt/1")
    store.submit([rec("a")], None, BIG)
    assert store.prompt_states()["a"] == (PromptState.QUEUED, None)
    assert store.counts()[PromptState.TRAINED] == 1


def test_request_id_replay_returns_first_answer_and_stores_nothing(store: Store) -> None:
    first = store.submit([rec("a"), rec("b")], "req-1", BIG)
    assert not first.duplicate and first.accepted_ids == ("a", "b") and first.queue_depth == 2
    store.lease(2, step=1)  # a replay must not trip over its own, now leased, prompts
    again = store.submit([rec("a"), rec("b")], "req-1", BIG)
    assert again.duplicate
    assert (again.accepted_ids, again.queue_depth) == (first.accepted_ids, first.queue_depth)
    assert sum(store.counts().values()) == 2


def test_a_request_is_replayed_by_the_digest_of_its_prompts_as_sent(store: Store) -> None:
    assert store.replay("req-1", "digest-1") is None  # never seen
    first = store.submit([rec("a")], "req-1", BIG, sent="digest-1")
    again = store.replay("req-1", "digest-1")
    assert again is not None and again.duplicate and again.accepted_ids == ("a",)
    assert again.queue_depth == first.queue_depth
    assert store.replay("req-1", "digest-2") is None  # other prompts: validated, then refused by submit
    with pytest.raises(RequestIdReusedError):
        store.submit([rec("b")], "req-1", BIG, sent="digest-2")
    # Records that resolve differently (another default backend after a restart) still replay by it.
    other_default = PromptRecord(id="a", messages=(ChatMessage("user", "What is a?"),),
                                 rewards=(RewardSpec("other", 1.0),), answer="42")
    assert store.submit([other_default], "req-1", BIG, sent="digest-1").duplicate


def test_a_request_id_recorded_by_an_older_trainer_is_decided_by_its_records(store: Store) -> None:
    store.submit([rec("a")], "req-1", BIG)  # no digest as sent: the digest of the records, as before
    assert store.replay("req-1", "digest-1") is None  # cannot tell before validation
    assert store.submit([rec("a")], "req-1", BIG, sent="digest-1").duplicate
    with pytest.raises(RequestIdReusedError):
        store.submit([rec("b")], "req-1", BIG, sent="digest-1")
    assert sum(store.counts().values()) == 1


def test_queue_full_stores_nothing(store: Store) -> None:
    store.submit([rec("a"), rec("b")], None, 3)
    with pytest.raises(QueueFullError) as e:
        store.submit([rec("c"), rec("d")], "r", 3)
    assert (e.value.depth, e.value.requested, e.value.max_depth) == (2, 2, 3)
    assert store.queue_depth() == 2
    # The request id of a rejected request is not remembered: a retry once there is room goes through.
    store.lease(2, step=1)
    assert not store.submit([rec("c"), rec("d")], "r", 3).duplicate


def test_requeued_step_goes_back_to_its_original_position(store: Store) -> None:
    store.submit([rec("a"), rec("b")], None, BIG)
    store.lease(2, step=1)
    store.submit([rec("c"), rec("d")], None, BIG)
    store.requeue_step(1, count_attempt=False)
    assert ids(store.lease(2, step=2)) == ["a", "b"]


def test_prompt_fails_after_max_attempts(tmp_path: Path) -> None:
    s = Store(tmp_path, max_attempts=2)
    s.submit([rec("a"), rec("b")], None, BIG)
    s.lease(2, step=1)
    s.requeue_step(1, count_attempt=True)
    assert s.queue_depth() == 2
    s.lease(2, step=2)
    s.requeue_step(2, count_attempt=True, reason="every reward failed")
    assert s.counts()[PromptState.FAILED] == 2
    why = "gave up after 2 failed attempts; the last: every reward failed"
    assert s.failure_reasons() == {"a": why, "b": why}
    s.close()


def test_commit_checkpoint_trains_exactly_the_prompts_of_steps_up_to_it(store: Store) -> None:
    store.submit([rec(c) for c in "abcd"], None, BIG)
    store.lease(2, step=1)
    store.lease(2, step=2)
    store.commit_checkpoint(1, "/ckpt/1")
    st = store.prompt_states()
    assert st["a"] == st["b"] == (PromptState.TRAINED, 1)
    assert st["c"] == st["d"] == (PromptState.LEASED, 2)
    assert store.latest_checkpoint().step == 1  # type: ignore[union-attr]


def test_recover_requeues_leased_prompts_and_abandons_running_steps(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.submit([rec(c) for c in "abcdef"], None, BIG)
    s.lease(2, step=1)
    s.record_step(StepReport(1, StepState.COMPLETED, 1.0, 2.0, {"loss": 0.5}, "hf", ("a", "b")))
    s.commit_checkpoint(1, "/ckpt/1")
    s.lease(2, step=2)
    s.record_step(StepReport(2, StepState.COMPLETED, 2.0, 3.0, {}, "hf", ("c", "d")))
    s.lease(2, step=3)
    s.record_step(StepReport(3, StepState.RUNNING, 3.0, None, {}, "hf", ("e", "f")))
    s.close()  # as a crash would leave it

    s = Store(tmp_path)
    assert s.recover() == 4
    st = s.prompt_states()
    assert {k: v[0] for k, v in st.items()} == {
        "a": PromptState.TRAINED, "b": PromptState.TRAINED,
        "c": PromptState.QUEUED, "d": PromptState.QUEUED, "e": PromptState.QUEUED, "f": PromptState.QUEUED,
    }
    assert ids(s.lease(4, step=2)) == ["c", "d", "e", "f"]  # original order
    step3 = s.get_step(3)
    assert step3 is not None and step3.state is StepState.FAILED and step3.error == ABANDONED
    assert s.get_step(1).state is StepState.COMPLETED  # type: ignore[union-attr]
    s.close()


def test_the_latest_step_after_a_restart_is_the_one_the_resumed_run_started_last(tmp_path: Path) -> None:
    # Steps 3-4 completed after checkpoint 2 and step 5 was running at the crash; the restart runs step
    # 3 again. StepStatus and RunStatus said the latest step was 5 (FAILED, abandoned) until the run got
    # back there: the highest number, not the latest step.
    s = Store(tmp_path)
    s.submit([rec(f"p{i}") for i in range(10)], None, BIG)
    for step in (1, 2, 3, 4):
        s.record_step(StepReport(step, StepState.COMPLETED, float(step), step + 0.5, {}, "hf", ids(s.lease(2, step))))
        if step == 2:
            s.commit_checkpoint(2, "/ckpt/2")
    s.record_step(StepReport(5, StepState.RUNNING, 5.0, None, {}, "hf", ids(s.lease(2, 5))))
    s.close()
    s = Store(tmp_path)
    s.recover()
    assert s.latest_step().step == 5  # type: ignore[union-attr]  # nothing has run since: the run before's last
    started = StepReport(3, StepState.RUNNING, 100.0, None, {}, "hf", tuple(ids(s.lease(2, 3))))
    s.record_step(started)
    assert s.latest_step() == started
    s.record_step(StepReport(3, StepState.COMPLETED, 100.0, 100.5, {}, "hf", started.prompt_ids))
    latest = s.latest_step()
    assert (latest.step, latest.state) == (3, StepState.COMPLETED)  # type: ignore[union-attr]
    assert s.latest_completed_step() == 3
    s.close()


def test_a_prompt_given_up_on_says_how_many_attempts_it_made(tmp_path: Path) -> None:
    # Failed 3 times under max_attempts 5, then once more after a restart with max_attempts 2: the reason
    # said "gave up after 2 failed attempts" beside attempts = 4.
    s = Store(tmp_path, max_attempts=5)
    s.submit([rec("a")], None, BIG)
    for step in (1, 2, 3):
        s.lease(1, step=step)
        s.requeue_step(step, count_attempt=True, reason="no reward")
    s.close()
    s = Store(tmp_path, max_attempts=2)
    s.lease(1, step=4)
    assert s.requeue_step(4, count_attempt=True, reason="no reward") == 1
    assert s.failure_reasons() == {"a": "gave up after 4 failed attempts; the last: no reward"}
    s.close()


def test_step_reports_are_recorded_updated_and_listed(store: Store) -> None:
    assert store.latest_step() is None
    running = StepReport(1, StepState.RUNNING, 10.0, None, {}, "vllm", ("a",))
    store.record_step(running)
    assert store.get_step(1) == running
    done = StepReport(1, StepState.COMPLETED, 10.0, 12.5, {"reward_mean": 0.25, "reward/math": 0.5}, "vllm",
                      ("a", "c"), dropped_prompt_ids=("c",))
    store.record_step(done)
    store.record_step(StepReport(2, StepState.SKIPPED, 13.0, 14.0, {}, "vllm", ("b",), "all rewards failed"))
    assert store.get_step(1) == done
    assert store.latest_step().step == 2  # type: ignore[union-attr]
    assert [r.step for r in store.steps_after(0)] == [1, 2]
    assert [r.step for r in store.steps_after(1)] == [2]
    assert store.get_step(7) is None


def test_state_survives_reopening(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.submit([rec("a"), rec("b")], "r1", BIG)
    s.lease(1, step=1)
    s.commit_checkpoint(1, "/c/1")
    s.close()
    s = Store(tmp_path)
    assert s.prompt_states() == {"a": (PromptState.TRAINED, 1), "b": (PromptState.QUEUED, None)}
    assert s.submit([rec("a"), rec("b")], "r1", BIG).duplicate  # the key and what it was for survive
    with pytest.raises(RequestIdReusedError) as err:
        s.submit([rec("zzz")], "r1", BIG)
    assert err.value.first_ids == ("a", "b")
    assert s.latest_checkpoint().path == "/c/1"  # type: ignore[union-attr]
    s.close()


def test_store_commits_reach_the_disk(tmp_path: Path) -> None:
    """kill -9 cannot see what only the page cache holds: with synchronous=OFF the suite still passed, where
    a power cut loses committed prompts. FULL: each commit waits for the disk."""
    s = Store(tmp_path)
    try:
        with s._read() as c:
            assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        s.close()


def test_store_uses_wal_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    Store(tmp_path).close()
    con = sqlite3.connect(tmp_path / FILENAME)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(tmp_path)


def _rows_by_state(path: Path) -> dict[PromptState, int]:
    out = {s: 0 for s in PromptState}
    con = sqlite3.connect(path / FILENAME)
    try:
        for state, n in con.execute("SELECT state, count(*) FROM prompts GROUP BY state"):
            out[PromptState(state)] = int(n)
    finally:
        con.close()
    return out


def test_counts_are_the_rows_in_each_state_through_every_kind_of_change(tmp_path: Path) -> None:
    # counts() and queue_depth() read counters kept by triggers (counting rows costs time in proportion
    # to the run's history); a seeded random run of every operation that moves prompts keeps them equal.
    rng = random.Random(7)
    s = Store(tmp_path, max_attempts=2)
    step, submitted, leased_steps = 0, 0, []
    for _ in range(400):
        op = rng.choice(["submit", "submit", "lease", "requeue", "requeue_counted", "checkpoint", "reopen", "resubmit"])
        if op == "submit":
            n = rng.randint(1, 6)
            with contextlib.suppress(QueueFullError):
                s.submit([rec(f"p{submitted + k}") for k in range(n)], rng.choice([None, f"r{submitted}"]), 60)
            submitted += n
        elif op == "resubmit":  # active ids are refused, trained or failed ones are queued again
            with contextlib.suppress(DuplicatePromptError, QueueFullError):
                s.submit([rec(f"p{rng.randrange(max(submitted, 1))}")], None, 60)
        elif op == "lease":
            step += 1
            if s.lease(rng.randint(1, 4), step):
                leased_steps.append(step)
        elif op in ("requeue", "requeue_counted") and leased_steps:
            s.requeue_step(leased_steps.pop(rng.randrange(len(leased_steps))), count_attempt=op == "requeue_counted")
        elif op == "checkpoint" and step:
            s.commit_checkpoint(step, f"/c/{step}")
            leased_steps.clear()
        elif op == "reopen":  # a restart: recover() puts every leased prompt back
            s.close()
            s = Store(tmp_path, max_attempts=2)
            s.recover()
            leased_steps.clear()
        rows = _rows_by_state(tmp_path)
        assert s.counts() == rows, op
        assert s.queue_depth() == rows[PromptState.QUEUED], op
    assert rows[PromptState.TRAINED] > 0 and rows[PromptState.FAILED] > 0
    s.close()


def test_a_version_1_store_gets_the_state_counters(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.submit([rec(f"p{k}") for k in range(5)], None, BIG)
    s.lease(2, 1)
    s.close()
    con = sqlite3.connect(tmp_path / FILENAME)  # back to version 1: no counters, no triggers, no dropped ids
    con.executescript(
        "DROP TRIGGER prompts_count_insert; DROP TRIGGER prompts_count_delete; DROP TRIGGER prompts_count_update;"
        "DROP TABLE state_counts; ALTER TABLE steps DROP COLUMN dropped_prompt_ids; DROP INDEX prompts_by_id;"
        "DROP TABLE run_values; ALTER TABLE requests DROP COLUMN fingerprint;"
        "UPDATE schema_version SET version = 1;"
    )
    con.close()
    s = Store(tmp_path)
    assert s.queue_depth() == 3 and s.counts()[PromptState.LEASED] == 2
    s.submit([rec("p9")], None, BIG)
    assert s.queue_depth() == 4 and s.recover() == 2 and s.queue_depth() == 6
    assert s.counts()[PromptState.LEASED] == 0
    s.close()
    con = sqlite3.connect(tmp_path / FILENAME)
    assert con.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 4
    con.close()


def test_a_version_2_store_keeps_its_step_history_and_records_dropped_prompts(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.record_step(StepReport(1, StepState.COMPLETED, 10.0, 12.0, {"reward_mean": 0.5}, "hf", ("a", "b")))
    s.close()
    con = sqlite3.connect(tmp_path / FILENAME)  # back to version 2: steps without dropped_prompt_ids
    con.executescript("ALTER TABLE steps DROP COLUMN dropped_prompt_ids; DROP INDEX prompts_by_id;"
                      "DROP TABLE run_values; ALTER TABLE requests DROP COLUMN fingerprint;"
                      "UPDATE schema_version SET version = 2;")
    con.close()
    s = Store(tmp_path)
    old = s.get_step(1)
    assert old is not None and old.prompt_ids == ("a", "b") and old.dropped_prompt_ids == ()
    new = StepReport(2, StepState.COMPLETED, 13.0, 14.0, {}, "hf", ("c", "d"), dropped_prompt_ids=("d",))
    s.record_step(new)
    assert s.get_step(2) == new
    s.close()
    con = sqlite3.connect(tmp_path / FILENAME)
    plan = " ".join(str(r) for r in con.execute("EXPLAIN QUERY PLAN SELECT seq FROM prompts WHERE id = 'a'"))
    con.close()
    assert "prompts_by_id" in plan, plan  # ListPrompts by id does not walk the table


def test_cancel_takes_only_queued_prompts_out_and_the_queue_never_gives_them_back(tmp_path: Path) -> None:
    s = Store(tmp_path, max_attempts=1)
    s.submit([rec(k) for k in "abcdef"], None, BIG)
    s.lease(1, 1)  # a
    s.commit_checkpoint(1, "/c/1")  # a trained
    s.lease(1, 2)  # b leased
    assert [r.id for r in s.lease(1, 3)] == ["c"]
    assert s.requeue_step(3, count_attempt=True) == 1  # c failed
    got = s.cancel(["d", "b", "zz", "a", "f", "c"])
    assert got.cancelled_ids == ("d", "f") and got.unknown_ids == ("zz",) and got.queue_depth == 1
    assert [(e.id, e.state) for e in got.not_cancelled] == [
        ("b", PromptState.LEASED), ("a", PromptState.TRAINED), ("c", PromptState.FAILED)]
    again = s.cancel(["d"])  # harmless, and says so
    assert again.cancelled_ids == () and [(e.id, e.state) for e in again.not_cancelled] == [("d", PromptState.CANCELLED)]
    counts = s.counts()
    assert (counts[PromptState.CANCELLED], counts[PromptState.QUEUED]) == (2, 1)
    # Neither a step nor a restart's recovery nor a failed step's requeue brings a cancelled prompt back.
    s.requeue_step(2, count_attempt=False)  # b back in the queue, before e
    assert s.recover() == 0
    assert [r.id for r in s.lease(5, 4, partial_after=0.0)] == ["b", "e"]
    # A cancelled id may be submitted again (a new submission; the old one stays cancelled).
    s.submit([rec("d")], None, BIG)
    assert [(e.id, e.state) for e in s.list_prompts(ids=["d"])] == [("d", PromptState.CANCELLED), ("d", PromptState.QUEUED)]
    s.close()
    s = Store(tmp_path)  # durable
    assert s.counts()[PromptState.CANCELLED] == 2 and s.cancel(["f"]).not_cancelled[0].state is PromptState.CANCELLED
    s.close()


def test_a_version_3_store_gets_the_cancelled_state_and_request_fingerprints(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.submit([rec(k) for k in "ab"], "old", BIG)
    s.close()
    con = sqlite3.connect(tmp_path / FILENAME)  # back to version 3: no 'cancelled' counter
    con.executescript("DELETE FROM state_counts WHERE state = 'cancelled'; ALTER TABLE requests DROP COLUMN fingerprint;"
                      "UPDATE schema_version SET version = 3;")
    con.close()
    s = Store(tmp_path)
    assert s.cancel(["a"]).cancelled_ids == ("a",)
    assert s.counts()[PromptState.CANCELLED] == 1 and s.queue_depth() == 1
    # A request stored before fingerprints is replayed as before, whatever it is sent with; new ones are checked.
    assert s.submit([rec("zz")], "old", BIG).duplicate
    s.submit([rec("c")], "new", BIG)
    with pytest.raises(RequestIdReusedError):
        s.submit([rec("zz")], "new", BIG)
    s.close()


def test_run_values_survive_reopening_and_none_deletes(tmp_path: Path) -> None:
    s = Store(tmp_path)
    assert s.get_value("paused") is None
    s.set_value("paused", True)
    s.set_value("backends", {"code2": {"address": "127.0.0.1:5"}})
    s.close()
    s = Store(tmp_path)
    assert s.get_value("paused") is True and s.get_value("backends") == {"code2": {"address": "127.0.0.1:5"}}
    s.set_value("paused", None)
    assert s.get_value("paused") is None
    s.close()


def test_concurrent_submitters_and_a_leaser_lose_and_duplicate_nothing(store: Store) -> None:
    leased: list[str] = []
    done = threading.Event()

    def submitter(t: int) -> None:
        for b in range(20):
            store.submit([rec(f"t{t}-{b}-{k}") for k in range(5)], f"t{t}-{b}", BIG)

    def leaser() -> None:
        step = 0
        while not done.is_set() or store.queue_depth() >= 3:
            step += 1
            leased.extend(ids(store.lease(3, step)))

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(4)]
    lt = threading.Thread(target=leaser)
    lt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    lt.join()
    states = store.prompt_states()
    assert len(states) == 400
    assert len(leased) == len(set(leased))
    assert {k for k, v in states.items() if v[0] is PromptState.LEASED} == set(leased)
    assert store.counts()[PromptState.QUEUED] + len(leased) == 400


# ------------------------------------------------------------------------------- kill -9 crash tests

WORKER = r'''
import json, random, sys
from collections.abc import Callable
from pathlib import Path
from grpo_server.store import Store
from grpo_server.types import ChatMessage, PromptRecord, RewardSpec

store_dir, round_no, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
store = Store(store_dir)
store.recover()
latest = store.latest_checkpoint()
step = latest.step if latest else 0
n = 0
pad = "x" * 200
print("READY", flush=True)
while True:
    n += 1
    size = rng.randint(1, 400)
    rid = f"r{round_no}-{n}"
    batch = [PromptRecord(f"{rid}s{size}-{k}", (ChatMessage("user", pad + str(k)),), (RewardSpec("math", 1.0),), answer="1")
             for k in range(size)]
    store.submit(batch, rid, 10**9)
    print("ACK " + rid, flush=True)
    step += 1
    got = store.lease(rng.randint(1, 300), step)
    if got:
        action = rng.random()
        if action < 0.3:
            store.requeue_step(step, count_attempt=False)
        elif action < 0.6:
            store.commit_checkpoint(step, f"/ckpt/{step}")
'''


def _check_accounting(store_dir: Path, acked: set[str]) -> dict[str, int]:
    """After recover: every acknowledged request's prompts are all there, each TRAINED or QUEUED; every
    stored request is whole (all of its prompts or none); trained prompts are in a recorded checkpoint."""
    s = Store(store_dir)
    s.recover()
    states = s.prompt_states()
    latest = s.latest_checkpoint()
    s.close()
    by_request: dict[str, list[str]] = {}
    for pid in states:
        by_request.setdefault(pid.split("s")[0], []).append(pid)
    for rid, members in by_request.items():
        size = int(members[0].split("s")[1].split("-")[0])
        assert len(members) == size, f"request {rid} stored partly: {len(members)} of {size}"
    missing = acked - set(by_request)
    assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
    bad = {pid: st for pid, st in states.items() if st[0] not in (PromptState.TRAINED, PromptState.QUEUED)}
    assert not bad, f"prompts neither trained nor queued after recover: {list(bad.items())[:5]}"
    for pid, (st, ckpt) in states.items():
        if st is PromptState.TRAINED:
            assert latest is not None and ckpt is not None and ckpt <= latest.step, pid
    counts: dict[str, int] = {}
    for st, _ in states.values():
        counts[st.value] = counts.get(st.value, 0) + 1
    return counts


def test_kill_9_at_random_moments_loses_no_submitted_prompt(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    store_dir = tmp_path / "store"
    rng = random.Random(1234)
    acked: set[str] = set()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for round_no in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(store_dir), str(round_no), str(rng.randrange(10**6))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.strip() == "READY", proc.stderr.read() if proc.stderr else ready
        time.sleep(rng.uniform(0.1, 0.8))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        round_acks = {line.split()[1] for line in out.splitlines() if line.startswith("ACK ")}
        assert round_acks, "the worker acknowledged nothing before the kill; the test proves nothing"
        acked |= round_acks
        counts = _check_accounting(store_dir, acked)
    assert counts.get("trained", 0) > 0 and counts.get("queued", 0) > 0


def test_a_partial_lease_takes_the_tail_only_once_submissions_have_stopped(store: Store) -> None:
    store.submit([rec(f"p{k}") for k in range(3)], None, BIG)
    assert store.lease(4, 1) == []  # a full batch or nothing
    assert store.lease(4, 1, partial_after=3600.0) == []  # submitted just now: wait for more
    assert ids(store.lease(4, 1, partial_after=0.0)) == ["p0", "p1", "p2"]
    assert store.lease(4, 2, partial_after=0.0) == []  # nothing queued: nothing leased


def test_completed_steps_counts_optimizer_steps_up_to_a_step(store: Store) -> None:
    for n, state in enumerate([StepState.COMPLETED, StepState.SKIPPED, StepState.COMPLETED, StepState.FAILED], 1):
        store.record_step(StepReport(n, state, float(n), float(n) + 0.5, {}, "hf", ()))
    assert [store.completed_steps(n) for n in range(5)] == [0, 1, 1, 2, 2]


def _vm_steps(s: Store, call: Callable[[], object]) -> int:
    """SQLite virtual-machine steps (in hundreds) that `call` takes on the store's connection: the work a
    query does, counted whatever the machine's speed."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    s._conn.set_progress_handler(count, 100)
    try:
        call()
    finally:
        s._conn.set_progress_handler(None, 100)
    return steps


def test_looking_prompts_up_by_id_does_not_walk_every_prompt_in_a_state(tmp_path: Path) -> None:
    """ListPrompts by ids and a state, CancelPrompts and SubmitPrompts' check of active ids look ids up
    in prompts_by_id: SQLite's planner chose prompts_by_state, a walk of the run's whole trained history
    (or the whole queue), under the store's lock, on every such call (80 ms at 200k trained prompts)."""
    s = Store(tmp_path)
    work: list[tuple[int, int, int, int]] = []
    for n in (1000, 2000):
        s.submit([rec(f"t{n}-{i}") for i in range(n)], None, BIG)
        assert len(s.lease(n, n)) == n
        s.commit_checkpoint(n, f"/c/{n}")
        s.submit([rec(f"q{n}-{i}") for i in range(n)], None, BIG)  # the queue grows as much
        work.append((
            _vm_steps(s, lambda: s.list_prompts(ids=["t1000-7"], state=PromptState.TRAINED)),
            _vm_steps(s, lambda: s.list_prompts(ids=["q1000-7"], state=PromptState.QUEUED)),
            _vm_steps(s, lambda: s.cancel(["never-submitted"])),
            _vm_steps(s, lambda: s.list_prompts(ids=["t1000-7"])),
        ))
    assert s.list_prompts(ids=["t1000-7"], state=PromptState.TRAINED)[0].id == "t1000-7"
    assert s.cancel(["q2000-7"]).cancelled_ids == ("q2000-7",)
    s.close()
    (small, large) = work
    # Twice the history and twice the queue: the same work (a walk of them would double it).
    for before, after in zip(small, large, strict=True):
        assert after <= before + 2, work
