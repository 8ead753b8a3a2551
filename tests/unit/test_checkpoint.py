"""Exports are loadable Hugging Face directories with a verifiable manifest; training checkpoints are
written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from grpo_server.checkpoint import (
    ExportManager,
    copy_weights,
    prune_checkpoints,
    save_training_checkpoint,
    verify_manifest,
    write_hf_directory,
)
from grpo_server.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_export_loads_with_transformers_and_manifest_verifies(tiny, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = tiny
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(0.5)  # an "update" the export must carry
    dest = tmp_path / "export"
    write_hf_directory(copy_weights(model.state_dict().items()), model.config, tok, dest, step=7)
    manifest = verify_manifest(dest)
    assert manifest["step"] == 7
    names = {f["path"] for f in manifest["files"]}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    loaded = AutoModelForCausalLM.from_pretrained(dest)
    assert torch.equal(loaded.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)
    assert AutoTokenizer.from_pretrained(dest).chat_template == tok.chat_template
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-6)


def test_manifest_detects_a_changed_file(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    dest = tmp_path / "export"
    write_hf_directory(copy_weights(model.state_dict().items()), model.config, tok, dest, step=1)
    with open(dest / "config.json", "a") as f:
        f.write(" ")
    with pytest.raises(ValueError, match="config.json"):
        verify_manifest(dest)


def test_an_export_is_readable_by_other_users_as_the_umask_allows(tiny, tmp_path: Path) -> None:
    import os
    import stat

    model, tok = tiny
    old = os.umask(0o022)
    try:
        dest = tmp_path / "export"
        write_hf_directory(copy_weights(model.state_dict().items()), model.config, tok, dest, step=1)
        made = tmp_path / "made"
        made.mkdir(mode=0o750)  # an empty destination made beforehand keeps its mode
        write_hf_directory(copy_weights(model.state_dict().items()), model.config, tok, made, step=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755 and stat.S_IMODE(made.stat().st_mode) == 0o750
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in dest.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == modes["manifest.json"] == 0o644, modes
    assert set(modes.values()) == {0o644}, modes


def test_export_refuses_a_non_empty_destination(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "x").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_hf_directory(copy_weights(model.state_dict().items()), model.config, tok, dest, step=1)
    assert (dest / "x").read_text() == "keep me"


def test_a_default_export_of_a_step_exported_before_gets_the_next_name(tiny, tmp_path: Path) -> None:
    # After a crash the steps after the checkpoint run again under their numbers: step 3 of the run
    # before was exported to exports/step-000003 (other weights), and the default export of the new step
    # 3 was refused DESTINATION_NOT_EMPTY. The directory of the run before is kept as it is.
    model, tok = tiny
    exports = tmp_path / "exports"
    (exports / "step-000003").mkdir(parents=True)
    (exports / "step-000003" / "model.safetensors").write_text("the run before's weights")
    (exports / "step-000003.2").mkdir()  # empty: taken as a destination
    mgr = ExportManager(lambda: (3, copy_weights(model.state_dict().items())), model.config, tok, exports)
    first, second = mgr.start(None, wait=True), mgr.start(None, wait=True)
    assert (first.state, second.state) == ("done", "done")
    assert [Path(j.destination).name for j in (first, second)] == ["step-000003.2", "step-000003.3"]
    assert (exports / "step-000003" / "model.safetensors").read_text() == "the run before's weights"
    verify_manifest(Path(second.destination))


def test_export_manager_reports_progress_and_files(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    mgr = ExportManager(lambda: (3, copy_weights(model.state_dict().items())), model.config, tok, tmp_path / "exports")
    job = mgr.start(None, wait=True)
    assert job.state == "done" and job.progress == 1.0 and job.step == 3
    assert job.destination.endswith("step-000003")
    assert any(f["path"] == "manifest.json" for f in job.files)
    assert mgr.get(job.export_id).state == "done"  # type: ignore[union-attr]
    assert mgr.get("nope") is None
    with pytest.raises(FileExistsError):
        mgr.start(job.destination, wait=True)


def test_failed_save_leaves_no_checkpoint(tmp_path: Path) -> None:
    def broken(d: Path) -> None:
        (d / "half").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        save_training_checkpoint(broken, tmp_path, 5, {})
    assert not (tmp_path / "checkpoints" / "step-000005").exists()
    assert not list((tmp_path / "checkpoints").glob(".step-*"))


def test_checkpoints_are_pruned_to_keep(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        save_training_checkpoint(lambda d: (d / "state").write_text("s"), tmp_path, step, {"k": step})
    prune_checkpoints(tmp_path, keep_steps=[4], keep=2)
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["step-000003", "step-000004"]
    meta = json.loads((tmp_path / "checkpoints" / "step-000004" / "meta.json").read_text())
    assert meta == {"step": 4, "k": 4}


def test_a_checkpoint_is_flushed_to_disk_before_and_after_its_rename(tmp_path: Path, monkeypatch) -> None:
    """kill -9 cannot tell a flushed checkpoint from one in the page cache: with every fsync gone the suite
    still passed, where a power cut would have left a renamed directory of empty files. Every file and
    directory of the checkpoint is flushed before the rename makes it the checkpoint, and its parent after."""
    import os

    flushed: list[tuple[str, bool]] = []  # (path at the time, whether the final directory existed yet)
    real = os.fsync
    final = tmp_path / "checkpoints" / "step-000005"

    def spy(fd: int) -> None:
        flushed.append((os.readlink(f"/proc/self/fd/{fd}"), final.exists()))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    save_training_checkpoint(lambda d: (d / "sub").mkdir() or (d / "sub" / "state").write_text("s"), tmp_path, 5, {})
    [tmp] = {Path(p).relative_to(tmp_path / "checkpoints").parts[0] for p, _ in flushed if ".step-000005." in p}
    names = {str(Path(p).relative_to(tmp_path / "checkpoints" / tmp)) for p, renamed in flushed
             if not renamed and tmp in p}
    assert {"meta.json", "manifest.json", "sub", "sub/state", "."} <= names, names
    assert (str(tmp_path / "checkpoints"), True) in flushed  # the rename itself, after it
