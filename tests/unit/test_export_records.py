"""Exports' progress kept in the store (ExportRecords): GetExport answers for an export of an earlier
process, and an export a stopped trainer left pending or writing is settled at the next start: done when
its destination is whole and matches its manifest, else failed as interrupted. Real SQLite store, real
exports of the tiny model."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def manager(tiny, store: Store, exports: Path, step: int = 3) -> ExportManager:
    model, tok = tiny
    return ExportManager(lambda: (step, copy_weights(model.state_dict().items())), model.config, tok, exports,
                         records=ExportRecords(store))


def fields(job: ExportJob | None) -> dict:
    """What GetExport answers with (the job less its threading.Event)."""
    assert job is not None
    return {k: getattr(job, k) for k in ("export_id", "destination", "step", "state", "progress", "files", "error")}


def test_a_finished_export_is_answered_for_by_the_next_process(tiny, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    first = manager(tiny, store, tmp_path / "exports").start(None, wait=True)
    assert first.state == "done" and any(f["path"] == MANIFEST for f in first.files)
    store.close()

    store = Store(tmp_path / "store")  # a restart: a new store handle and a new manager
    assert ExportRecords(store).close_unfinished() == []
    again = manager(tiny, store, tmp_path / "exports").get(first.export_id)
    assert fields(again) == fields(first)
    assert manager(tiny, store, tmp_path / "exports").get("0123456789abcdef") is None


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
