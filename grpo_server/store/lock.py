"""One trainer per store directory.

Two trainers on one store would each re-queue the other's leased prompts at start-up and train them
twice, and write over each other's checkpoints. `lock_store` takes an exclusive `flock` on
`<store-dir>/trainer.lock` for as long as the trainer runs (the kernel drops it when the process dies,
so a crash never leaves the store locked) and writes the holder's pid and host into the file for the
error a second trainer gets.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import TextIO

from grpo_server.store.records import StoreError

log = logging.getLogger(__name__)

LOCK_FILE = "trainer.lock"


class StoreInUse(StoreError):
    """Another trainer holds the store directory."""


def lock_store(directory: Path) -> TextIO | None:
    """Take the store directory's lock; keep the returned file open while the trainer runs (close it to
    release). Raises StoreInUse when another process holds it. Returns None, with a warning, on a file
    system without locks (the one-trainer rule is then up to the deployment)."""
    path = Path(directory) / LOCK_FILE
    existed = path.exists()
    handle = open(path, "a+")  # noqa: SIM115 - held open for the trainer's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreInUse(
            f"the store directory {directory} is in use by another trainer ({holder}); one store serves one "
            "trainer: stop that one, or give this one another --store-dir"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            handle.close()
            raise
        log.warning("%s: this file system cannot lock (%s); make sure one trainer uses the store", path, exc)
        handle.close()
        return None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
    except OSError:  # a full disk: the lock is ours, so the file this call made can go with it
        if not existed:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # closing flushes the unwritten line again
            handle.close()
        raise
    return handle
