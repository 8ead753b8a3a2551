"""GetExport outlives the trainer: after a restart it still answers for the exports of the earlier
process (done, with their files; failed, with their error), and an export the stopped trainer left
unfinished is answered FAILED as interrupted rather than NOT_FOUND; ListExports lists them with the new
ones; `grpo export-status` shows them; retention.export_records_seconds deletes the records. The real
trainer in process (tiny model) over gRPC, restarted on the same store."""

from __future__ import annotations

import errno
import io
import json
from pathlib import Path
from typing import Any

import grpc
import huggingface_hub
import pytest
from live_trainer import wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_client.cli import main
from grpo_client.client import TrainerError
from grpo_server.checkpoint import INTERRUPTED, ExportJob, ExportRecords
from grpo_server.store import Store


def test_exports_are_answered_for_after_a_restart(start_trainer: Any, toy_backend: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", backend.address)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    done = client.export_checkpoint(str(tmp_path / "export"), wait=True, timeout=120)
    assert done.state == trainer_pb2.EXPORT_STATE_DONE, done

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(huggingface_hub, "save_torch_state_dict", disk_full)
        failed = client.export_checkpoint(str(tmp_path / "full"), wait=True, timeout=120)
    assert failed.state == trainer_pb2.EXPORT_STATE_FAILED and "No space left on device" in failed.error
    client.close()
    app.shutdown()

    # What a trainer killed during an export leaves: its record still "writing", no destination.
    store = Store(store_dir)
    ExportRecords(store).put(ExportJob(export_id="0123456789abcdef", destination=str(tmp_path / "half"), step=0,
                                       state="writing", progress=0.5))
    store.close()

    app = start_trainer(store_dir, [("toy", backend.address)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    assert client.get_export(done.export_id) == done
    assert client.get_export(failed.export_id) == failed
    interrupted = client.get_export("0123456789abcdef")
    assert (interrupted.state, interrupted.error, interrupted.destination) == (
        trainer_pb2.EXPORT_STATE_FAILED, INTERRUPTED, str(tmp_path / "half"))
    assert app.metrics.registry.get_sample_value("grpo_export_failures_total") == 1.0  # counted as it was settled
    with pytest.raises(TrainerError) as err:
        client.get_export("fedcba9876543210")
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    # ListExports lists them, the newest first, each as GetExport answers; then one of this process.
    assert list(client.iter_exports(page_size=1)) == [interrupted, failed, done]
    assert list(client.iter_exports(trainer_pb2.EXPORT_STATE_FAILED)) == [interrupted, failed]
    latest = client.export_checkpoint(str(tmp_path / "latest"), wait=True, timeout=120)
    assert [e.export_id for e in client.iter_exports(trainer_pb2.EXPORT_STATE_DONE)] == [
        latest.export_id, done.export_id]
    client.close()

    # `grpo export-status ID` asks the same: exit 0 for a done export, 1 for a failed or unknown one.
    target = ["--target", f"127.0.0.1:{app.api_port}", "export-status"]
    out = io.StringIO()
    assert main([*target, done.export_id, "--wait"], out=out) == 0
    assert out.getvalue().splitlines() == [
        f"export {done.export_id}: done  step 0  {tmp_path / 'export'}",
        f"  {len(done.files)} files, manifest.json lists their sha256"]
    capsys.readouterr()
    assert main([*target, "0123456789abcdef"], out=io.StringIO()) == 1
    assert f"error: export failed: {INTERRUPTED}" in capsys.readouterr().err.splitlines()
    out = io.StringIO()
    assert main(["--json", *target, failed.export_id], out=out) == 1
    assert json.loads(out.getvalue())["error"].startswith("OSError: [Errno 28] No space left on device")
    assert main([*target, "fedcba9876543210"], out=io.StringIO()) == 1
    assert "NOT_FOUND" in capsys.readouterr().err

    # Restarted with a retention shorter than their age: the finished exports' records go (the exported
    # directories stay), and GetExport's NOT_FOUND names the setting.
    app.shutdown()
    app = start_trainer(store_dir, [("toy", backend.address)], retention={"export_records_seconds": 0.001})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    wait_for(lambda: list(client.iter_exports()) == [] or None, 60,
             lambda: f"export records kept: {[e.export_id for e in client.iter_exports()]}")
    with pytest.raises(TrainerError) as err:
        client.get_export(done.export_id)
    assert err.value.code is grpc.StatusCode.NOT_FOUND and "retention.export_records_seconds" in str(err.value)
    assert (tmp_path / "export" / "config.json").is_file() and (tmp_path / "latest" / "config.json").is_file()
    client.close()


def test_a_drain_finishes_the_export_the_api_accepted(start_trainer: Any, toy_backend: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A SIGTERM drain stopped with an export still being written: nothing at its destination, GetExport
    FAILED "interrupted" after the restart, and nothing in the log. The drain now waits for it (within its
    grace), and says so when it cannot."""
    real = huggingface_hub.save_torch_state_dict

    def slow(*args: Any, **kwargs: Any) -> Any:
        import time

        time.sleep(2.0)  # a larger model's write, still going when the drain starts
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "save_torch_state_dict", slow)
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", backend.address)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    started = client.export_checkpoint(str(tmp_path / "export"), wait=False)
    client.close()
    app.shutdown(grace=60)
    assert (tmp_path / "export" / "manifest.json").is_file()
    store = Store(store_dir)
    try:
        record = ExportRecords(store).get(started.export_id)
        assert record is not None and record.state == "done", record
    finally:
        store.close()

    # A drain too short for the write: the export is named in the log as abandoned.
    app = start_trainer(store_dir, [("toy", backend.address)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    late = client.export_checkpoint(str(tmp_path / "late"), wait=False)
    client.close()
    with caplog.at_level("WARNING", logger="grpo_server.app"):
        app.shutdown(grace=0.2)
    assert any(f"export {late.export_id}" in r.getMessage() and "did not finish within the 0.2 s drain" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
