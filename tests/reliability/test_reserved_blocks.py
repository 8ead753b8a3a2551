"""A trainer that does not run as root (the Helm chart runs it as uid 10001) on an ext4 volume, which keeps
blocks for root (5% by default, 10% here): the room it reports (grpo_store_volume_available_bytes, what
GrpoStoreVolumeFilling reads) and its full-disk check (a checkpoint write failing with under 1 MiB left
is reported as the full disk it was) count what that process may still write, not the reserved blocks
it can never use. A real ext4 file system on a loop device is filled by a process running as `nobody`
until the kernel says ENOSPC; root, on the same volume, still has its reserve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_server.checkpoint import FULL_BELOW_BYTES, disk_full_error
from grpo_server.store.space import volume_bytes

VOLUME_BYTES = 64 << 20
RESERVED_PERCENT = 10
NOBODY = 65534

# Run as `nobody`: fill the directory until ENOSPC, then report what the trainer's checks see.
FILL_AND_LOOK = """
import errno, json, os, sys
from pathlib import Path
from grpo_server.checkpoint import disk_full_error
from grpo_server.store.space import volume_bytes
d = Path(sys.argv[1])
before = volume_bytes(d)[0]
fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)
block = b"\\0" * (1 << 16)
err = None
try:
    while True:
        os.write(fd, block)
except OSError as e:
    err = e.errno
os.close(fd)
after = volume_bytes(d)[0]
# What torch raises when a checkpoint does not fit, which says nothing of the disk itself.
found = disk_full_error(RuntimeError("[enforce fail at inline_container.cc] unexpected pos 140672 vs 140560"),
                        d, "the checkpoint of step 3")
print(json.dumps({"euid": os.geteuid(), "errno": err, "before": before, "after": after,
                  "found": None if found is None else [found.errno, str(found)]}))
"""


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    """An ext4 file system of VOLUME_BYTES with RESERVED_PERCENT of its blocks kept for root, mounted from a
    loop device for this test (unmounted after it), with a directory `nobody` owns."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    if shutil.which("mkfs.ext4") is None or shutil.which("setpriv") is None:
        pytest.skip("needs mkfs.ext4 (e2fsprogs) and setpriv (util-linux)")
    image = tmp_path / "volume.img"
    with open(image, "wb") as f:
        f.truncate(VOLUME_BYTES)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", str(RESERVED_PERCENT), str(image)], check=True, timeout=60)
    # Mounted where `nobody` can reach it (pytest's own temporary directories are root's alone).
    mount = Path(tempfile.mkdtemp(prefix="grpo-ext4-"))
    mount.chmod(0o755)
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a loop device here: {done.stderr.strip()}")
    try:
        store = mount / "store"
        store.mkdir()
        os.chown(store, NOBODY, NOBODY)
        yield store
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def as_nobody(store: Path) -> dict[str, object]:
    # The interpreter and the code live under root-owned, world-readable directories; the working directory
    # and HOME are the store, which nobody may write.
    done = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c", FILL_AND_LOOK,
         str(store)],
        capture_output=True, text=True, timeout=120, cwd=store, env={**os.environ, "HOME": str(store)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_non_root_trainer_counts_the_room_it_may_write_not_roots_reserve(ext4: Path) -> None:
    seen = as_nobody(ext4)
    assert seen["euid"] == NOBODY and seen["errno"] == 28  # ENOSPC for nobody
    assert int(seen["before"]) > 40 << 20  # about 50 MiB free at first
    # Full for this process: under 1 MiB is reported, so the metric reads (almost) 0 and the alert fires...
    assert int(seen["after"]) < FULL_BELOW_BYTES, seen
    # ... and a checkpoint write that failed now is told apart as the full disk it was.
    assert seen["found"] is not None and seen["found"][0] == 28, seen
    assert "No space left on device: the checkpoint of step 3 did not fit in" in seen["found"][1]
    # Root still sees the reserve, which nobody could never have used: counting it would read as over 5 MiB
    # free and miss both.
    root_free, size = volume_bytes(ext4)
    assert root_free > RESERVED_PERCENT * size // 100 // 2, (root_free, size)


def test_root_counts_the_reserve_it_may_use_and_knows_a_full_volume(ext4: Path) -> None:
    """The trainer run as root (outside the chart) writes into root's reserve: it is room for it. Once it
    filled the volume, statvfs still counts ext4's own reserve free (2% of the volume here), which no write
    can take: the full-disk check looks past it (it once read 1.3 MiB free and missed the full disk)."""
    free, size = volume_bytes(ext4)
    assert free > RESERVED_PERCENT * size // 100  # root's reserve included
    fd = os.open(ext4 / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as err:
            while True:
                os.write(fd, b"\0" * (1 << 16))
    finally:
        os.close(fd)
    assert err.value.errno == 28
    found = disk_full_error(RuntimeError("[enforce fail at inline_container.cc] unexpected pos 140672 vs 140560"),
                            ext4, "the checkpoint of step 3")
    assert found is not None and found.errno == 28 and "(0 bytes were free when writing it failed" in str(found)
    # The metric overstates by ext4's own reserve at most: under 10% free, the alert fires all the same.
    assert volume_bytes(ext4)[0] <= 2 * size // 100 + FULL_BELOW_BYTES
