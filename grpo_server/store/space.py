"""Room on the volume that holds the store (its database and the checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def volume_bytes(directory: Path) -> tuple[int, int]:
    """The volume of `directory` from one statvfs: the bytes this process may still write on it (root may
    also use the blocks a file system reserves, 5% on ext4; others may not), and its size. OSError when it
    cannot be asked."""
    st = os.statvfs(directory)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize, st.f_blocks * st.f_frsize
