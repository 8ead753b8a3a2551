"""Room on the volume that holds the store (its database and the checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def volume_bytes(directory: Path) -> tuple[int, int]:
    """The volume of `directory` from one statvfs: the bytes this process may still write on it (root may
    also use the blocks a file system reserves for it, 5% on ext4; others may not), and its size. OSError
    when it cannot be asked. For root on ext4 the first overstates by the file system's own reserve (2% of
    the volume, at most 4096 blocks), which statvfs counts free but nobody may write: see unreserved_bytes."""
    st = os.statvfs(directory)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize, st.f_blocks * st.f_frsize


def unreserved_bytes(directory: Path) -> int:
    """The bytes free on the volume of `directory` beyond every reserve (statvfs f_bavail): what a process
    that is not root may still write. 0 once root has filled the volume, where volume_bytes may still read
    a few MiB for root on ext4. OSError when it cannot be asked."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize
