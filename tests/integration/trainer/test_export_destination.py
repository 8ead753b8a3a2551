"""ExportCheckpoint checks its destination before it answers: one the trainer cannot write is refused at
once with FAILED_PRECONDITION `DESTINATION_UNWRITABLE` naming the path (not accepted and failed later
in the background), and the refusal leaves nothing behind. Real trainer in process (tiny model), the
real ExportManager, the call over gRPC. Tests run as root, where file modes stop nothing, so the
unwritable places are ones no one can write: /proc, and a path below a regular file."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from grpo_client import TrainerClient
from grpo_client.client import TrainerError


def tree(root: Path) -> set[str]:
    """Every path under `root`, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def precondition(err: grpc.RpcError) -> error_details_pb2.PreconditionFailure.Violation:
    """The one PreconditionFailure violation of a failed call."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, err
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            found += list(failure.violations)
    [violation] = found
    return violation


def test_an_unwritable_export_destination_is_refused_at_once_naming_it_and_leaves_nothing(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    _, toy = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", toy.address)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    place = tmp_path / "exports"
    place.mkdir()
    blocker = place / "a-file"
    blocker.write_text("not a directory")
    unwritable = [
        "/proc/foo2",  # /proc takes no new file, root or not
        "/proc/foo2/deeper/export",  # nor a new directory
        "/proc/self/export",  # an existing directory that takes no new file
        str(blocker / "export"),  # the parent is a regular file
        str(blocker / "x" / "y" / "export"),  # ... further up
    ]
    before = tree(place)

    with grpc.insecure_channel(f"127.0.0.1:{app.api_port}") as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        for destination in unwritable:
            with pytest.raises(grpc.RpcError) as caught:  # without `wait`: refused by the call itself
                stub.ExportCheckpoint(trainer_pb2.ExportCheckpointRequest(destination=destination), timeout=60)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (destination, caught.value)
            violation = precondition(caught.value)
            assert (violation.type, violation.subject) == ("DESTINATION_UNWRITABLE", destination)
            assert destination in (caught.value.details() or ""), caught.value.details()

    # The Python client (what `grpo export` uses) sees the same.
    with pytest.raises(TrainerError) as refused:
        client.export_checkpoint("/proc/foo2")
    assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.preconditions == ["DESTINATION_UNWRITABLE"]
    assert "cannot write the export to /proc/foo2" in refused.value.message

    assert tree(place) == before  # no directory made, no probe file left
    assert not (store_dir / "exports").exists()
    assert not os.path.exists("/proc/foo2")
    assert app.metrics.registry.get_sample_value("grpo_checkpoints_total", {"kind": "export"}) in (None, 0.0)
    with contextlib.closing(sqlite3.connect(f"file:{app.store.path}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT count(*) FROM exports").fetchone()[0] == 0  # no export record either

    # A writable destination whose parent directories do not exist yet: they are made, the export is
    # written, and nothing else is left beside it.
    destination = place / "new" / "deeper" / "export"
    export = client.export_checkpoint(str(destination), wait=True)
    assert export.state == trainer_pb2.EXPORT_STATE_DONE, export
    assert os.listdir(destination.parent) == ["export"]
    assert (destination / "manifest.json").is_file()
    # The trainer turns the KV cache off to train; the exported model has it on, as HF's default.
    assert json.loads((destination / "config.json").read_text())["use_cache"] is True


def test_a_destination_the_export_cannot_be_renamed_onto_is_refused_at_once(toy_backend, start_trainer,
                                                                           tmp_path: Path) -> None:
    """A symbolic link (to an empty directory, or to nothing), a mount point and a path through `..` were
    accepted, and the export failed in the background after writing everything (NotADirectoryError,
    "Device or resource busy"); the `..` one left a directory behind."""
    import subprocess

    _, toy = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", toy.address)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    place = tmp_path / "exports"
    (place / "empty").mkdir(parents=True)
    (place / "link").symlink_to(place / "empty")
    (place / "dangling").symlink_to(place / "nothing")
    mounted = place / "volume"
    mounted.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mounted)], capture_output=True)
    try:
        cases = [(place / "link", "it is a symbolic link"), (place / "dangling", "it is a symbolic link")]
        if mount.returncode == 0:  # root here; where mounting is not allowed the case is left out
            cases.append((mounted, "it is a mount point"))
        for destination, words in cases:
            with pytest.raises(TrainerError) as refused:
                client.export_checkpoint(str(destination))
            assert refused.value.preconditions == ["DESTINATION_UNWRITABLE"] and words in refused.value.message
        with pytest.raises(TrainerError) as refused:
            client.export_checkpoint(f"{place}/missing/../out")
        assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT and "`..`" in refused.value.message
        assert not (place / "missing").exists() and not (place / "nothing").exists()
        assert sorted(os.listdir(place)) == ["dangling", "empty", "link", "volume"]
        assert os.listdir(place / "empty") == [] and os.listdir(mounted) == []
    finally:
        if mount.returncode == 0:
            subprocess.run(["umount", str(mounted)], check=True)
