"""Helpers for tests of servers picking up renewed TLS files: a directory laid out the way kubelet
mounts a Secret (so files can be swapped as kubelet does), client credentials trusting one CA, and
waits that poll a condition."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from reward_service_kit import TLSFiles

# Each probe its own TCP connection and handshake (gRPC would otherwise share one between equal channels).
PROBE_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
FILES = ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")


class SecretMount:
    """A directory laid out as kubelet mounts a Secret: `NAME -> ..data/NAME`, `..data -> ..vN`, where
    NAME is each of a TLSFiles' file names (ca.pem, server.pem, server-key.pem, client.pem, client-key.pem)."""

    def __init__(self, root: Path, files: TLSFiles) -> None:
        self.root = root
        root.mkdir()
        self._versions = 0
        self.swap(files)
        for name in FILES:
            (root / name).symlink_to(Path("..data") / name)

    def path(self, name: str) -> Path:
        """The path a server is given, e.g. mount.path("server.pem")."""
        return self.root / name

    def swap(self, files: TLSFiles, **override: bytes) -> None:
        """Publish `files` as a new version as kubelet does: write them into a new directory, rename a
        new `..data` symlink over the old one (atomic), remove the old directory. `override` maps file
        names to other bytes (a foreign key, a truncated certificate)."""
        self._versions += 1
        version = self.root / f"..v{self._versions}"
        version.mkdir()
        for name in FILES:
            data = override.get(name)
            (version / name).write_bytes(data if data is not None else (files.ca_cert.parent / name).read_bytes())
        (self.root / "..data_tmp").symlink_to(version.name)
        os.rename(self.root / "..data_tmp", self.root / "..data")
        if self._versions > 1:
            shutil.rmtree(self.root / f"..v{self._versions - 1}")


def credentials(trust: TLSFiles, client: TLSFiles | None = None) -> grpc.ChannelCredentials:
    """Channel credentials trusting only `trust`'s CA; presenting `client`'s client certificate when given."""
    return grpc.ssl_channel_credentials(
        trust.ca_cert.read_bytes(),
        client.client_key.read_bytes() if client else None,
        client.client_cert.read_bytes() if client else None)


def eventually(check: Callable[[], bool], within: float = 5.0) -> float:
    """Seconds until `check()` is true; fails the test after `within` seconds."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"not true within {within} s"
        time.sleep(0.2)
    return time.monotonic() - start


def stays(check: Callable[[], bool], seconds: float = 2.5) -> None:
    """`check()` holds for `seconds` (longer than the servers' 1 s between checks of their files)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert check()
        time.sleep(0.3)
