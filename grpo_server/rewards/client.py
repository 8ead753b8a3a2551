"""gRPC plumbing to reward backends: channels cached per (address, TLS, token file), bearer tokens read
from files, and a cache of each backend's Describe answer.

Everything here is blocking grpcio; the router calls it from its worker threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc

if TYPE_CHECKING:  # the registry imports this module
    from grpo_server.rewards.registry import BackendEntry

log = logging.getLogger(__name__)

# Reward requests carry whole prompts and completions (code tests can be large): raise grpcio's 4 MiB
# default deliberately, on both directions.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Reconnect fast after a backend restarts: the default backoff can reach 120 s.
    ("grpc.max_reconnect_backoff_ms", 5000),
    # Spread calls over every address the backend's name resolves to (the replicas behind a headless
    # Kubernetes Service), not one connection to the first: with gRPC's default (pick_first) all calls
    # of a backend went to one replica, and a ClusterIP Service balances connections, not calls. The
    # reward services close connections every few minutes (--max-connection-age), so the name is
    # resolved again and new replicas get calls too.
    ("grpc.lb_policy_name", "round_robin"),
]


def read_token(token_file: str | None) -> str | None:
    """The bearer token in `token_file` (surrounding whitespace stripped), or None without a file.

    Read on every call so that a rotated Secret takes effect without a restart. Raises OSError when the
    file cannot be read and ValueError when it is empty."""
    if not token_file:
        return None
    token = Path(token_file).read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"token file {token_file} is empty")
    return token


def call_metadata(entry: BackendEntry) -> tuple[tuple[str, str], ...]:
    """gRPC metadata for a call to `entry`: `authorization: Bearer <token>` when it has a token file."""
    token = read_token(entry.token_file)
    return (("authorization", f"Bearer {token}"),) if token else ()


class ChannelPool:
    """One grpc.Channel per (address, tls, token_file), created on first use, closed by `close()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[tuple[str, bool, str | None], grpc.Channel] = {}

    def stub(self, entry: BackendEntry) -> reward_pb2_grpc.RewardServiceStub:
        """A RewardService stub on the cached channel for `entry`."""
        key = (entry.address, entry.tls, entry.token_file)
        with self._lock:
            channel = self._channels.get(key)
            if channel is None:
                if entry.tls:
                    channel = grpc.secure_channel(entry.address, grpc.ssl_channel_credentials(), _CHANNEL_OPTIONS)
                else:
                    channel = grpc.insecure_channel(entry.address, _CHANNEL_OPTIONS)
                self._channels[key] = channel
        return reward_pb2_grpc.RewardServiceStub(channel)

    def close(self) -> None:
        """Close every channel."""
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for c in channels:
            c.close()


@dataclass(frozen=True)
class Description:
    """A cached Describe answer. `response` is None when the backend could not be reached."""

    response: reward_pb2.DescribeResponse | None
    fetched_at: float  # monotonic seconds
    error: str = ""


class DescribeCache:
    """Describe answers per registry entry, fetched on first use.

    A reachable backend's answer is kept until its entry changes (a new address means a new entry and a
    new Describe). An unreachable backend is asked again after `retry_seconds`.
    """

    def __init__(
        self,
        pool: ChannelPool,
        *,
        timeout_seconds: float = 2.0,
        retry_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._pool = pool
        self._timeout = timeout_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[BackendEntry, Description] = {}

    def get(self, entry: BackendEntry) -> Description:
        """The Describe answer for `entry`, from the cache or from the backend (blocks at most the
        Describe timeout)."""
        with self._lock:
            cached = self._cache.get(entry)
        if cached is not None and (cached.response is not None or self._clock() - cached.fetched_at < self._retry):
            return cached
        try:
            response = self._pool.stub(entry).Describe(
                reward_pb2.DescribeRequest(), timeout=self._timeout, metadata=call_metadata(entry)
            )
            desc = Description(response, self._clock())
        except (grpc.RpcError, OSError, ValueError) as exc:
            code = exc.code().name if isinstance(exc, grpc.RpcError) else type(exc).__name__
            log.warning("Describe of reward backend %r at %s failed: %s", entry.name, entry.address, code)
            desc = Description(None, self._clock(), code)
        with self._lock:
            self._cache[entry] = desc
        return desc

    def forget_except(self, keep: set[BackendEntry]) -> None:
        """Drop cached answers of entries no longer in the registry."""
        with self._lock:
            for e in [e for e in self._cache if e not in keep]:
                del self._cache[e]
