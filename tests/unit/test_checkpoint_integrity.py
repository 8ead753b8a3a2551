"""What an operator relies on from checkpoints on disk: a damaged training checkpoint is named before a
restart loads it, retention counts steps as numbers, two exports never race for one destination, and an
export killed half way leaves no directory that looks done and no temporary copy behind. Real files,
the tiny model, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_server.checkpoint import (
    ExportManager,
    check_checkpoint_fits,
    checkpoint_dir,
    copy_weights,
    parameter_shapes,
    prune_checkpoints,
    save_training_checkpoint,
    verify_manifest,
)
from grpo_server.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="module")
def tiny(tiny_path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_path), AutoTokenizer.from_pretrained(tiny_path)


def save_state_of(model: torch.nn.Module):  # type: ignore[no-untyped-def]
    """What the torch engine writes: the weights (safetensors) and a torch.save'd state."""
    from safetensors.torch import save_model

    def save(directory: Path) -> None:
        save_model(model, str(directory / "model.safetensors"))
        torch.save({"step": 2, "optimizer": {"state": {}}}, directory / "trainer_state.pt")

    return save


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "deleted"])
def test_a_damaged_training_checkpoint_is_refused_naming_the_file(tiny, tmp_path: Path, damage: str) -> None:
    model, _ = tiny
    shapes = parameter_shapes(model)
    directory = save_training_checkpoint(save_state_of(model), tmp_path, 2, {"parameters": shapes})
    check_checkpoint_fits(directory, shapes, "tiny")  # intact: passes

    target = directory / "model.safetensors"
    data = bytearray(target.read_bytes())
    if damage == "flipped byte":  # a weight's bits: safetensors itself still loads it without a word
        data[-100] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncated":
        target.write_bytes(bytes(data[: len(data) // 2]))
    else:
        target.unlink()
    with pytest.raises(ValueError) as refused:
        check_checkpoint_fits(directory, shapes, "tiny")
    message = str(refused.value)
    assert type(refused.value).__name__ == "CheckpointCorrupt", message
    assert f"step 2 is damaged: {target}: " in message, message
    expected = {"flipped byte": "sha256", "truncated": f"{len(data) // 2} bytes", "deleted": "missing"}[damage]
    assert expected in message and "Restore" in message, message


def test_a_missing_training_checkpoint_directory_is_named(tmp_path: Path) -> None:
    gone = checkpoint_dir(tmp_path, 4)
    with pytest.raises(ValueError, match=f"checkpoint {gone} is missing"):
        check_checkpoint_fits(gone, {}, "tiny")


def test_retention_keeps_the_newest_steps_by_number_past_step_999999(tmp_path: Path) -> None:
    for step in (999_990, 999_995, 1_000_000, 1_000_005):
        save_training_checkpoint(lambda d: (d / "state").write_text("s"), tmp_path, step, {})
    prune_checkpoints(tmp_path, keep_steps=[1_000_005, 1_000_000], keep=2)
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["step-1000000", "step-1000005"]


class GatedTokenizer:
    """The real tokenizer, whose save_pretrained waits for `gate`: holds an export in its writing."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.gate = threading.Event()
        self.reached = threading.Event()

    def save_pretrained(self, directory: Any) -> Any:
        self.reached.set()
        assert self.gate.wait(60)
        return self.tokenizer.save_pretrained(directory)


def test_a_second_export_to_a_destination_being_written_is_refused_at_once(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    gated = GatedTokenizer(tok)
    mgr = ExportManager(lambda: (3, copy_weights(model.state_dict().items())), model.config, gated,
                        tmp_path / "exports")
    def finish(export_id: str) -> Path:
        gated.gate.set()
        finished = mgr.get(export_id)
        deadline = time.monotonic() + 60
        while finished is not None and finished.state not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
            finished = mgr.get(export_id)
        assert finished is not None and finished.state == "done", finished
        verify_manifest(Path(finished.destination))
        assert [p.name for p in Path(finished.destination).parent.iterdir() if p.name.startswith(".")] == []
        return Path(finished.destination)

    first = mgr.start(str(tmp_path / "mine"), wait=False)
    assert gated.reached.wait(60)
    with pytest.raises(FileExistsError, match=f"being written by export {first.export_id}"):
        mgr.start(str(tmp_path / "mine"), wait=False)
    finish(first.export_id)
    # The default destination of the step is taken while it is written: a second default export of the
    # step gets the next name (step-N.2) rather than the same directory.
    gated.gate.clear()
    gated.reached.clear()
    first = mgr.start(None, wait=False)
    assert gated.reached.wait(60)
    second = mgr.start(None, wait=False)
    assert (Path(first.destination).name, Path(second.destination).name) == ("step-000003", "step-000003.2")
    assert finish(first.export_id).name == "step-000003" and finish(second.export_id).name == "step-000003.2"


_EXPORT_THEN_HANG = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from grpo_server.checkpoint import ExportManager, copy_weights

    model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
    tok = AutoTokenizer.from_pretrained(sys.argv[1])

    class Hang:  # the process is killed while the export writes its tokenizer files
        def save_pretrained(self, directory):
            tok.save_pretrained(directory)
            print("writing", flush=True)
            time.sleep(600)

    mgr = ExportManager(lambda: (5, copy_weights(model.state_dict().items())), model.config, Hang(), Path(sys.argv[2]))
    mgr.start(None, wait=True)
""")


def test_an_export_killed_half_way_leaves_nothing_that_looks_done_and_its_copy_is_removed(
    tiny, tiny_path: Path, tmp_path: Path
) -> None:
    model, tok = tiny
    exports = tmp_path / "exports"
    proc = subprocess.Popen([sys.executable, "-c", _EXPORT_THEN_HANG, str(tiny_path), str(exports)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not (exports / "step-000005").exists()  # never at its destination, so never taken for done
    [left] = list(exports.iterdir())  # the hidden copy it was building, weights and tokenizer in it
    assert left.name.startswith(".step-000005.") and (left / "model.safetensors").is_file()
    (exports / "mine").mkdir()  # not the trainer's: stays

    mgr = ExportManager(lambda: (5, copy_weights(model.state_dict().items())), model.config, tok, exports)
    assert sorted(p.name for p in exports.iterdir()) == ["mine"]
    job = mgr.start(None, wait=True)  # the same step exports as if nothing had happened
    assert job.state == "done", job.error
    verify_manifest(exports / "step-000005")
