"""gRPC plumbing to reward backends: channels cached per (address, TLS, token file), bearer tokens read
from files, and a cache of each backend's Describe answer.

Everything here is blocking grpcio; the router calls it from its worker threads.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc
from grpo_server.rewards.registry import TLS_FILE_FIELDS, FieldViolation

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
    # Each channel keeps its own connections. gRPC otherwise shares them process-wide by address: a new
    # channel to an address some other channel had failed to reach (a backend restarted or re-registered
    # at the same address, the Describe pool beside the router's) took over that failure and its
    # reconnect wait, so its calls failed at once with UNAVAILABLE against a backend that was up; five
    # such attempts open the backend's breaker for reset_seconds.
    ("grpc.use_local_subchannel_pool", 1),
]


def read_token(token_file: str | None) -> str | None:
    """The bearer token in `token_file`, or None without a file: its one line that is not blank nor a `#`
    comment, surrounding whitespace stripped (the reward services' --token-file format, so that one
    Secret can serve both; a byte-order mark is skipped).

    Read on every call so that a rotated Secret takes effect without a restart. Raises OSError when the
    file cannot be read and ValueError when it holds no token, more than one, or one that a bearer header
    cannot carry (gRPC refused such a call as "Invalid metadata", an INTERNAL failure of every item)."""
    if not token_file:
        return None
    lines = (line.strip() for line in Path(token_file).read_text(encoding="utf-8-sig").splitlines())
    tokens = [line for line in lines if line and not line.startswith("#")]
    if not tokens:
        raise ValueError(f"token file {token_file} is empty")
    if len(tokens) > 1:
        raise ValueError(f"token file {token_file} holds {len(tokens)} tokens (lines that are not blank nor # "
                         "comments); the trainer sends one: keep one")
    token = tokens[0]
    if not all("!" <= c <= "~" for c in token):
        raise ValueError(f"token file {token_file}: the token holds a space, a control or a non-ASCII character, "
                         "which a bearer token cannot carry")
    return token


def unreadable_files(entry: Any, prefix: str = "") -> list[FieldViolation]:
    """A violation for each file `entry` names (token_file, ca_file, cert_file, key_file) that the trainer
    cannot read now, or an empty token file; field paths start with `prefix`. `entry` is a BackendEntry
    or a RewardBackend message (empty strings: not set). Every call to such a backend would fail as an
    outage, so the places an operator is there to see it (start, SetRewardBackend) refuse it."""
    out = []
    if entry.token_file:
        try:
            read_token(entry.token_file)
        except OSError as exc:
            out.append(FieldViolation(f"{prefix}token_file", f"cannot read it on the trainer: {exc.strerror or exc}"))
        except ValueError as exc:  # empty, or not UTF-8
            out.append(FieldViolation(f"{prefix}token_file", str(exc)))
    for field_name in TLS_FILE_FIELDS:
        path = getattr(entry, field_name)
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                out.append(FieldViolation(f"{prefix}{field_name}", f"cannot read it on the trainer: {exc.strerror or exc}"))
    return out or _tls_file_problems(entry, prefix)


def _tls_file_problems(entry: Any, prefix: str) -> list[FieldViolation]:
    """Readable TLS files that gRPC cannot use: a CA file holding no PEM certificate, a client key that is
    not a PEM key of its certificate (or is encrypted). gRPC failed each handshake ("Failed to create
    security handshaker"), an outage that never ended and named no file."""
    out = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # check the files, not OpenSSL's policy on key sizes
    if entry.ca_file:
        try:
            ctx.load_verify_locations(cafile=entry.ca_file)
        except (ssl.SSLError, ValueError, OSError) as exc:
            out.append(FieldViolation(f"{prefix}ca_file", f"{entry.ca_file}: not PEM CA certificates ({exc})"))
    if entry.cert_file and entry.key_file:
        def no_password() -> str:
            raise ValueError("the key is encrypted; gRPC needs an unencrypted PEM key")

        try:
            ctx.load_cert_chain(entry.cert_file, entry.key_file, password=no_password)
        except (ssl.SSLError, ValueError, OSError) as exc:
            out.append(FieldViolation(f"{prefix}key_file", f"{entry.key_file}: not a PEM private key of the "
                                                           f"certificate {entry.cert_file} ({exc})"))
    return out


def call_metadata(entry: BackendEntry) -> tuple[tuple[str, str], ...]:
    """gRPC metadata for a call to `entry`: `authorization: Bearer <token>` when it has a token file."""
    token = read_token(entry.token_file)
    return (("authorization", f"Bearer {token}"),) if token else ()


def tls_files_state(entry: BackendEntry) -> tuple[tuple[str, str, int, int], ...]:
    """(field, path, mtime_ns, size) of each of `entry`'s TLS files that is set: a file replaced on disk (a
    renewed certificate, a Secret's symlink swap) changes it, so the next call opens a channel with the
    new files. Raises OSError naming the field when one cannot be read."""
    state = []
    for field_name in TLS_FILE_FIELDS:
        path = getattr(entry, field_name)
        if path:
            with _naming(field_name, path):
                st = os.stat(path)
            state.append((field_name, str(path), st.st_mtime_ns, st.st_size))
    return tuple(state)


def _tls_credentials(state: tuple[tuple[str, str, int, int], ...]) -> grpc.ChannelCredentials:
    """Channel credentials from the PEM files of a tls_files_state (read now; gRPC's default roots when
    there is no ca_file). Raises OSError naming the field when one cannot be read."""
    pem: dict[str, bytes] = {}
    for field_name, path, _, _ in state:
        with _naming(field_name, path):
            pem[field_name] = Path(path).read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=pem.get("ca_file"), private_key=pem.get("key_file"),
                                        certificate_chain=pem.get("cert_file"))


@contextmanager
def _naming(field_name: str, path: str) -> Iterator[None]:
    """Re-raise an OSError of the block as one naming the entry's field and path."""
    try:
        yield
    except OSError as exc:
        raise OSError(f"cannot read the backend's {field_name} {path}: {exc.strerror or exc}") from None


class ChannelPool:
    """One grpc.Channel per (address, tls, token_file, TLS files), created on first use, closed by `close()`.

    A backend whose entry changes (a new address, TLS or token file) gets a new channel, and the old one is
    closed as soon as no call is in flight on it and no other backend name uses it: an idle channel holds
    a socket, and one per swap would pile up on a trainer whose backends are swapped for weeks. A call in
    flight on the old channel finishes on it first (a step keeps the entries of its snapshot); a stub
    handed out before the swap still works afterwards, on a channel opened again for it and closed after.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[_Key, _Slot] = {}
        self._current: dict[str, _Key] = {}  # backend name -> the key of its latest entry

    def stub(self, entry: BackendEntry) -> PooledStub:
        """A RewardService stub on the cached channel for `entry` (which becomes `entry.name`'s channel).
        Raises OSError, naming the field, when a TLS file of the entry cannot be read."""
        key = (entry.address, entry.tls, entry.token_file, tls_files_state(entry) if entry.tls else ())
        to_close: grpc.Channel | None = None
        with self._lock:
            slot = self._slot(key)
            previous = self._current.get(entry.name)
            if previous != key:
                self._current[entry.name] = key
                slot.names.add(entry.name)
                if previous is not None:
                    to_close = self._unname(entry.name, previous)
        if to_close is not None:
            to_close.close()
        return PooledStub(self, key)

    def forget_except(self, names: Iterable[str]) -> None:
        """Let go of the channels of backend names not in `names` (deleted from the registry): each closes
        now, or when its last call in flight ends, unless another name still uses it. Without this, a
        deleted name's channel stayed open until the trainer stopped, as nothing asked for that name
        again. A name asked for later gets a channel again."""
        keep = set(names)
        to_close: list[grpc.Channel] = []
        with self._lock:
            for name in [n for n in self._current if n not in keep]:
                channel = self._unname(name, self._current.pop(name))
                if channel is not None:
                    to_close.append(channel)
        for channel in to_close:
            channel.close()

    def _unname(self, name: str, key: _Key) -> grpc.Channel | None:
        """`name` no longer uses the channel of `key`: that channel to close when nothing else holds it,
        else None. Call with the lock held."""
        slot = self._channels.get(key)
        if slot is None:
            return None
        slot.names.discard(name)
        return self._drop_if_unused(key, slot)

    def _slot(self, key: _Key) -> _Slot:
        """The live slot of `key`, opening its channel when it has none. Call with the lock held."""
        slot = self._channels.get(key)
        if slot is None:
            address, tls, _, tls_files = key
            if tls:
                channel = grpc.secure_channel(address, _tls_credentials(tls_files), _CHANNEL_OPTIONS)
            else:
                channel = grpc.insecure_channel(address, _CHANNEL_OPTIONS)
            slot = self._channels[key] = _Slot(channel)
        return slot

    def _drop_if_unused(self, key: _Key, slot: _Slot) -> grpc.Channel | None:
        """Forget `slot` when no name uses it and no call is in flight; its channel to close, or None."""
        if slot.names or slot.in_flight or self._channels.get(key) is not slot:
            return None
        del self._channels[key]
        return slot.channel

    def _acquire(self, key: _Key) -> _Slot:
        with self._lock:
            slot = self._slot(key)
            slot.in_flight += 1
            return slot

    def _release(self, key: _Key, slot: _Slot) -> None:
        with self._lock:
            slot.in_flight -= 1
            to_close = self._drop_if_unused(key, slot)
        if to_close is not None:
            to_close.close()

    @property
    def open_channels(self) -> int:
        """How many channels are open now."""
        with self._lock:
            return len(self._channels)

    def close(self) -> None:
        """Close every channel."""
        with self._lock:
            channels, self._channels, self._current = [s.channel for s in self._channels.values()], {}, {}
        for c in channels:
            c.close()


_Key = tuple[str, bool, str | None, tuple[tuple[str, str, int, int], ...]]  # (address, tls, token_file, TLS files)


@dataclass
class _Slot:
    channel: grpc.Channel
    in_flight: int = 0
    names: set[str] = field(default_factory=set)


class PooledStub:
    """RewardService's Score and Describe on a ChannelPool's channel, counted as in flight while they run
    so that the pool does not close the channel under them."""

    def __init__(self, pool: ChannelPool, key: _Key):
        self._pool = pool
        self._key = key

    def _call(self, method: str, request: Any, **kwargs: Any) -> Any:
        slot = self._pool._acquire(self._key)
        try:
            return getattr(reward_pb2_grpc.RewardServiceStub(slot.channel), method)(request, **kwargs)
        finally:
            self._pool._release(self._key, slot)

    def Score(self, request: reward_pb2.ScoreRequest, **kwargs: Any) -> reward_pb2.ScoreResponse:  # noqa: N802
        return self._call("Score", request, **kwargs)  # type: ignore[no-any-return]

    def Describe(self, request: reward_pb2.DescribeRequest, **kwargs: Any) -> reward_pb2.DescribeResponse:  # noqa: N802
        return self._call("Describe", request, **kwargs)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Description:
    """A cached Describe answer. `response` is None when the backend could not be reached."""

    response: reward_pb2.DescribeResponse | None
    fetched_at: float  # monotonic seconds
    error: str = ""


class DescribeCache:
    """Describe answers per registry entry, fetched on first use.

    A reachable backend's answer is kept until its entry changes (a new address means a new entry and a
    new Describe) or a caller asks for a refresh (the router, when the backend refuses a batch as
    INVALID_ARGUMENT). An unreachable backend is asked again after `retry_seconds`.
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

    def get(self, entry: BackendEntry, *, refresh: bool = False) -> Description:
        """The Describe answer for `entry`, from the cache or from the backend (blocks at most the
        Describe timeout). `refresh`: asked again now, whatever the cache holds (a backend that refused a
        batch: it may have been redeployed at the same address with a smaller limit, or its Describe
        failed when the batch was cut)."""
        with self._lock:
            cached = self._cache.get(entry)
        if cached is not None and not refresh and (cached.response is not None
                                                   or self._clock() - cached.fetched_at < self._retry):
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
