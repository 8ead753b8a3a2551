"""Exports' progress kept in the store (ExportRecords): GetExport answers for an export of an earlier
process, and an export a stopped trainer left pending or writing is settled at the next start: done when
its destination is whole and matches its manifest, else failed as interrupted. Real SQLite store, real
exports of the tiny model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from grpo_server.checkpoint import (
    INTERRUPTED,
    MANIFEST,
    ExportJob,
    ExportManager,
    ExportRecords,
    copy_weights,
    write_hf_directory,
)
from grpo_server.models.tiny import build_tiny_model
from grpo_server.store import Store
from grpo_server.store.sqlite_store import FILENAME


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def manager(tiny, store: Store, exports: Path, step: int = 3) -> ExportManager:
    model, tok = tiny
    return ExportManager(lambda: (step, copy_weights(model.state_dict().items())), model.config, tok, exports,
                         records=ExportRecords(store))


# What a record held before exports had times.
OLDER_FIELDS = ("export_id", "destination", "step", "state", "progress", "files", "error")


def fields(job: ExportJob | None) -> dict:
    """What GetExport answers with (the job less its threading.Event)."""
    assert job is not None
    return {k: getattr(job, k) for k in (*OLDER_FIELDS, "started_at", "finished_at")}


def test_a_finished_export_is_answered_for_by_the_next_process(tiny, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    first = manager(tiny, store, tmp_path / "exports").start(None, wait=True)
    assert first.state == "done" and any(f["path"] == MANIFEST for f in first.files)
    assert 0 < first.started_at <= first.finished_at
    store.close()

    store = Store(tmp_path / "store")  # a restart: a new store handle and a new manager
    assert ExportRecords(store).close_unfinished() == []
    again = manager(tiny, store, tmp_path / "exports").get(first.export_id)
    assert fields(again) == fields(first)
    assert manager(tiny, store, tmp_path / "exports").get("0123456789abcdef") is None


def test_a_pruned_record_is_not_answered_for_by_the_process_that_made_it(tiny, tmp_path: Path) -> None:
    """Once retention.export_records_seconds deletes a record, GetExport answers NOT_FOUND (None here), as
    ListExports leaves it out, also in the process that made the export (it answered from memory)."""
    import time

    store = Store(tmp_path / "store")
    exports = manager(tiny, store, tmp_path / "exports")
    first = exports.start(str(tmp_path / "a"), wait=True)
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    second = exports.start(str(tmp_path / "b"), wait=True)
    assert fields(exports.get(first.export_id)) == fields(first)
    store.prune(content_before=None, requests_before=None, exports_before=between)  # a's record only
    assert [j.export_id for j in exports.page(None, 0, 10)[0]] == [second.export_id]
    assert exports.get(first.export_id) is None
    assert fields(exports.get(second.export_id)) == fields(second)
    assert first.export_id not in exports._jobs  # forgotten here too, not kept for the process's life
    store.prune(content_before=None, requests_before=None, exports_before=time.time() + 1)
    assert exports.get(second.export_id) is None and exports.page(None, 0, 10)[0] == []


def test_a_failed_export_stays_failed_with_its_error(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    store = Store(tmp_path / "store")
    # Weights the writer cannot save: the export fails in its thread, after the call answered.
    broken = ExportManager(lambda: (2, {"w": "not a tensor"}), model.config, tok, tmp_path / "exports",  # type: ignore[dict-item]
                           records=ExportRecords(store))
    job = broken.start(str(tmp_path / "dest"), wait=True)
    assert job.state == "failed" and job.error
    store.close()

    store = Store(tmp_path / "store")
    assert ExportRecords(store).close_unfinished() == []  # a failed one is settled already
    assert fields(manager(tiny, store, tmp_path / "exports").get(job.export_id)) == fields(job)


def test_an_unfinished_export_without_its_destination_is_failed_as_interrupted(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    records = ExportRecords(store)
    writing = ExportJob(export_id="a" * 16, destination=str(tmp_path / "never-made"), step=4, state="writing",
                        progress=0.4)
    pending = ExportJob(export_id="b" * 16, destination=str(tmp_path / "nor-this"), step=4)
    records.put(writing)
    records.put(pending)
    settled = records.close_unfinished()
    assert [(j.export_id, j.state, j.error) for j in settled] == [
        ("a" * 16, "failed", INTERRUPTED), ("b" * 16, "failed", INTERRUPTED)]
    assert all(j.started_at == 0 and j.finished_at > 0 for j in settled)  # settled now; started unknown
    assert records.get("a" * 16).state == "failed"  # type: ignore[union-attr]
    assert records.close_unfinished() == []  # settled once


def test_an_unfinished_export_whose_destination_is_whole_is_done(tiny, tmp_path: Path) -> None:
    """Renamed into place, then the trainer stopped before it said so: the export is there and verifies."""
    model, tok = tiny
    store = Store(tmp_path / "store")
    records = ExportRecords(store)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for dest in (whole, broken):
        write_hf_directory(copy_weights(model.state_dict().items()), model.config, tok, dest, step=5)
        records.put(ExportJob(export_id=dest.name.ljust(16, "0"), destination=str(dest), step=5, state="writing"))
    (broken / "config.json").write_text("{}")  # not what its manifest says
    settled = {j.destination: j for j in records.close_unfinished()}
    done = settled[str(whole)]
    assert done.state == "done" and done.progress == 1.0 and done.error == ""
    assert {f["path"] for f in done.files} >= {"config.json", "model.safetensors", MANIFEST}
    assert settled[str(broken)].state == "failed" and settled[str(broken)].error == INTERRUPTED


def places(records: ExportRecords, state: str | None = None, before: int = 0, limit: int = 10) -> list[str]:
    return [job.export_id for _, job in records.stored(state, before, limit)]


def test_exports_are_listed_newest_first_and_an_update_keeps_an_exports_place(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    records = ExportRecords(store)
    for name in "abc":
        records.put(ExportJob(export_id=name * 16, destination=str(tmp_path / name), step=1))
    records.put(ExportJob(export_id="a" * 16, destination=str(tmp_path / "a"), step=1, state="done", progress=1.0))
    assert places(records) == ["c" * 16, "b" * 16, "a" * 16]
    assert places(records, state="done") == ["a" * 16] and places(records, state="failed") == []
    (c_place, _), (b_place, _) = records.stored(None, 0, 2)
    assert places(records, before=b_place) == ["a" * 16] and places(records, before=c_place, limit=1) == ["b" * 16]
    store.compact()  # VACUUM may renumber rowids; the places are a column of their own
    assert places(records) == ["c" * 16, "b" * 16, "a" * 16]
    store.close()
    assert places(ExportRecords(Store(tmp_path / "store"))) == ["c" * 16, "b" * 16, "a" * 16]


def test_an_older_stores_exports_are_placed_in_the_order_they_were_stored(tmp_path: Path) -> None:
    """A store written by the trainer that added the exports table (no `seq` column), and a row that
    trainer added to a newer store (seq NULL): each gets a place at the next open, after those it has."""
    Store(tmp_path / "store").close()
    db = sqlite3.connect(tmp_path / "store" / FILENAME)
    db.executescript("DROP INDEX exports_by_seq; DROP TABLE exports; CREATE TABLE exports (export_id TEXT "
                     "PRIMARY KEY, state TEXT NOT NULL, data TEXT NOT NULL, updated_at REAL NOT NULL);")
    records = [ExportJob(export_id=n * 16, destination=str(tmp_path / n), step=2, state="done") for n in "xyz"]
    for job in records[:2]:
        db.execute("INSERT OR REPLACE INTO exports VALUES (?, 'done', ?, 0)",
                   (job.export_id, json.dumps({k: getattr(job, k) for k in OLDER_FIELDS})))
    db.commit()
    db.close()

    store = Store(tmp_path / "store")
    assert places(ExportRecords(store)) == ["y" * 16, "x" * 16]
    store.close()
    db = sqlite3.connect(tmp_path / "store" / FILENAME)
    db.execute("INSERT OR REPLACE INTO exports (export_id, state, data, updated_at) VALUES (?, 'done', ?, 0)",
               (records[2].export_id, json.dumps({k: getattr(records[2], k) for k in OLDER_FIELDS})))
    db.commit()
    db.close()
    store = Store(tmp_path / "store")
    assert places(ExportRecords(store)) == ["z" * 16, "y" * 16, "x" * 16]
    assert fields(ExportRecords(store).get("z" * 16)) == fields(records[2])


class StoreFillsUp(ExportRecords):
    """ExportRecords whose writes fail after the first `room` (a store disk that filled up)."""

    def __init__(self, store: Store, room: int) -> None:
        super().__init__(store)
        self.room = room

    def put(self, job: ExportJob) -> None:
        self.room -= 1
        if self.room < 0:
            raise OSError(28, "No space left on device")
        super().put(job)


def test_a_page_shows_this_processs_progress_over_what_the_store_kept(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    store = Store(tmp_path / "store")
    older = manager(tiny, store, tmp_path / "exports", step=1).start(None, wait=True)
    records = StoreFillsUp(store, room=1)  # the start is stored ('pending'); nothing after it
    mgr = ExportManager(lambda: (2, copy_weights(model.state_dict().items())), model.config, tok,
                        tmp_path / "exports", records=records)
    newer = mgr.start(None, wait=True)
    assert newer.state == "done" and records.get(newer.export_id).state == "pending"  # type: ignore[union-attr]

    page, more = mgr.page(None, 0, 10)
    assert [(j.export_id, j.state) for j in page] == [(newer.export_id, "done"), (older.export_id, "done")]
    assert fields(page[0]) == fields(newer) and more == 0
    # Filtered, the store finds it among the pending ones and this process says it is done: left out.
    assert mgr.page("pending", 0, 10) == ([], 0)
    page, more = mgr.page(None, 0, 1)
    assert [j.export_id for j in page] == [newer.export_id] and more
    assert [j.export_id for j in mgr.page(None, more, 1)[0]] == [older.export_id]
    assert mgr.page(None, more, 1)[1] == 0


def test_a_manager_without_records_lists_the_exports_of_its_process(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    mgr = ExportManager(lambda: (3, copy_weights(model.state_dict().items())), model.config, tok, tmp_path / "ex")
    first = mgr.start(str(tmp_path / "one"), wait=True)
    second = mgr.start(str(tmp_path / "two"), wait=True)
    page, more = mgr.page(None, 0, 1)
    assert [j.export_id for j in page] == [second.export_id] and more
    assert [j.export_id for j in mgr.page(None, more, 1)[0]] == [first.export_id]
    assert mgr.page("done", 0, 10)[0][1].export_id == first.export_id and mgr.page("failed", 0, 10) == ([], 0)


def test_while_the_model_loads_the_api_lists_the_stored_exports(tmp_path: Path) -> None:
    from grpo_server.app import _LazyExporter

    store = Store(tmp_path / "store")
    records = ExportRecords(store)
    for name in "abc":
        records.put(ExportJob(export_id=name * 16, destination=str(tmp_path / name), step=1, state="done"))
    loading = _LazyExporter(records)
    page, more = loading.page(None, 0, 2)
    assert [j.export_id for j in page] == ["c" * 16, "b" * 16] and more
    page, more = loading.page(None, more, 2)
    assert [j.export_id for j in page] == ["a" * 16] and more == 0
    assert loading.page("failed", 0, 2) == ([], 0)
