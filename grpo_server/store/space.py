"""Room left on the volume that holds the store (its database and the checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def writable_bytes(directory: Path) -> int:
    """Bytes this process may still write on the volume of `directory` (root may also use the blocks a
    file system reserves, 5% on ext4; others may not). OSError when it cannot be asked."""
    st = os.statvfs(directory)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
