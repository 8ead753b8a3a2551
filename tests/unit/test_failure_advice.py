"""What a failed run says about its cause: a full disk (the store's StoreFull, ENOSPC, a library quoting it,
a checkpoint writer that does not say it) and exhausted memory (torch's CPU allocator, CUDA, MemoryError)
are told apart from other errors, through the chain of exceptions a traceback shows."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
import torch

from grpo_server.checkpoint import disk_full_error
from grpo_server.memory import out_of_memory
from grpo_server.store import StoreFull
from grpo_server.training.loop import _disk_full


class _LibraryError(Exception):
    """A writer's error that only quotes the OS (safetensors' SafetensorError)."""


def test_the_run_failure_names_a_full_disk_only_when_one_was_full(tmp_path: Path) -> None:
    full = StoreFull(tmp_path, sqlite3.OperationalError("database or disk is full"))
    assert _disk_full(full)
    assert _disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert _disk_full(_LibraryError("Error while serializing: I/O error: No space left on device (os error 28)"))
    try:  # raised while handling a full disk (a re-queue after the write that failed)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("could not re-queue") from None
    except RuntimeError as chained:
        assert not _disk_full(chained)  # `from None` cut the chain: nothing says the disk was full
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("could not re-queue")  # noqa: B904 - the implicit chain is what is tested
    except RuntimeError as chained:
        assert _disk_full(chained)
    assert not _disk_full(RuntimeError("CUDA out of memory"))
    assert not _disk_full(OSError(errno.EACCES, "Permission denied"))


def test_a_failed_write_on_a_volume_with_room_is_not_called_full(tmp_path: Path) -> None:
    # This volume has room (the test's tmp directory): the writer's own error stands.
    assert disk_full_error(RuntimeError("unexpected pos 140672 vs 140560"), tmp_path, "a checkpoint") is None
    # An error that says ENOSPC itself stands as it is.
    assert disk_full_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path, "a checkpoint") is None
    # A directory that cannot be asked: the error stands.
    assert disk_full_error(RuntimeError("x"), tmp_path / "missing", "a checkpoint") is None


def test_memory_that_ran_out_is_recognised_and_nothing_else() -> None:
    with pytest.raises(RuntimeError) as host:  # a real allocation the host cannot give (a pebibyte)
        torch.empty(1 << 50, dtype=torch.uint8)
    assert "can't allocate memory" in str(host.value)
    assert out_of_memory(host.value)
    # CUDA's error cannot be raised without a GPU: its type and message, as torch raises them, stand in.
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                                                 "total capacity of 79.10 GiB of which 1.19 GiB is free."))
    assert out_of_memory(MemoryError())
    try:
        try:
            raise MemoryError()
        except MemoryError as exc:
            raise RuntimeError("the step failed") from exc
    except RuntimeError as chained:
        assert out_of_memory(chained)
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x64 and 32x64)"))
    assert not out_of_memory(OSError(errno.ENOSPC, "No space left on device"))
