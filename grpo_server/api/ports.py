"""What the API needs from the rest of the trainer, as small protocols (ports).

The servicer holds no business logic: it calls a store, a RunControl, a reward-backend registry and an
exporter. The registry (grpo_server.rewards.registry) and the exporter (grpo_server.checkpoint) implement
the protocols below; tests implement them with small in-memory classes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# The reward-backend rules the API's checks, the registry and the config share (use fullmatch).
BACKEND_NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,63}$")
# ASCII digits only: \d would take a fullwidth or Arabic-Indic port, which int() reads and gRPC does not.
HOST_PORT_PATTERN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")  # group 2: the port
# The longest Score deadline a backend may have. gRPC in Python turns a deadline of 1e10 s or more into an
# immediate DEADLINE_EXCEEDED, so an unbounded value masked every item of the backend.
MAX_TIMEOUT_SECONDS = 86400.0



def host_port(address: str) -> int | None:
    """The port of a HOST:PORT address gRPC can dial or listen on (a name, an IPv4 address or a bracketed
    IPv6 address), None when it is not one. The port is not range-checked here."""
    m = HOST_PORT_PATTERN.fullmatch(address)
    if m is None:
        return None
    host = m.group(1)
    if host.startswith("["):  # "[127.0.0.1]" or "[.]" pass the pattern but are no IPv6 address
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    return int(m.group(2))


KindSet = set[str]  # named here: inside BackendRegistry, `set` is its method

# Reference kinds as the registry names them (grpo.reward.v1.ReferenceKind without the prefix).
REFERENCE_KINDS = frozenset({"none", "answer", "code"})

# Export states (grpo.trainer.v1.ExportState without the prefix).
EXPORT_STATES = ("pending", "writing", "done", "failed")

# Where a backend entry came from (grpo.trainer.v1.BackendSource without the prefix).
BACKEND_SOURCES = ("config", "registry_file", "flag", "api")

# The circuit breaker's state (grpo.trainer.v1.CircuitState without the prefix).
CIRCUIT_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class ExportedFileInfo:
    """One file of an export: path relative to the export directory, size in bytes, lowercase hex sha256."""

    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ExportInfo:
    """One export's progress (grpo.trainer.v1.Export).

    state: one of EXPORT_STATES; progress: fraction done in [0, 1]; step: the training step whose weights
    are exported. `files` may hold ExportedFileInfo, (path, size, sha256) tuples or mappings with the keys
    path/size_bytes/sha256: convert.py accepts all three.
    """

    export_id: str
    state: str
    destination: str
    step: int
    progress: float = 0.0
    files: Sequence[Any] = ()
    error: str = ""
    started_at: float = 0.0  # time.time(); 0: not known
    finished_at: float = 0.0  # time.time() once done or failed; 0 before


class WeightsUnsafe(RuntimeError):
    """The weights in memory cannot be exported: a step failed part-way through its update."""


class Exporter(Protocol):
    """Writes Hugging Face checkpoint directories of the current weights."""

    def start(self, destination: str | None, wait: bool) -> Any:
        """Copy the weights and start writing them to `destination` (None = the default place).

        Returns an ExportInfo-shaped object (attributes as ExportInfo). With `wait`, returns once the
        export is done or failed. Raises FileExistsError when the destination exists and is not an empty
        directory, another OSError (with a `destination` attribute naming the path, when it has one)
        when the destination cannot be written, checked before it returns, WeightsUnsafe when a step
        failed during its update, RuntimeError when the run cannot export yet (the model is still
        loading).
        """
        ...

    def get(self, export_id: str) -> Any | None:
        """The export's progress (ExportInfo-shaped), or None for an unknown id."""
        ...

    def page(self, state: str | None, before: int, limit: int) -> tuple[list[Any], int]:
        """Up to `limit` exports (ExportInfo-shaped, as `get` answers), the newest first, older than place
        `before` (0: from the newest), only those in `state` ("pending", "writing", "done", "failed"; None:
        any); and the place to read on from (0: there are no more). A page may hold fewer than `limit`
        exports and still have a next one."""
        ...


@dataclass(frozen=True)
class BackendInfo:
    """One reward backend as the API shows it (grpo.trainer.v1.RewardBackend).

    The input fields carry the same names as grpo_server.rewards.registry.BackendEntry, so a registry can
    read either. timeout_seconds: deadline of one Score call (0 = the default); max_batch_size: items per
    call (0 = the backend's Describe value); max_concurrency: calls in flight (0 = the default).
    Output only: source (BACKEND_SOURCES), circuit (CIRCUIT_STATES or ""), description (the backend's
    grpo.reward.v1.DescribeResponse when it could be reached, else None), reference_kinds (a subset of
    REFERENCE_KINDS; empty when unknown).
    """

    name: str
    address: str
    timeout_seconds: float = 0.0
    max_batch_size: int = 0
    max_concurrency: int = 0
    tls: bool = False
    token_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    source: str = "api"
    circuit: str = ""
    description: Any = None
    reference_kinds: tuple[str, ...] = ()


@runtime_checkable
class BackendRegistry(Protocol):
    """The reward-backend registry as the API uses it."""

    def list(self) -> tuple[int, Sequence[BackendInfo]]:
        """(registry version, entries). The version increases by one on every change."""
        ...

    def set(self, entry: BackendInfo) -> tuple[int, BackendInfo]:
        """Add or replace `entry` (source "api"); returns (new version, the entry as stored).
        Raises ValueError with a message naming the bad field for an entry it cannot use."""
        ...

    def delete(self, name: str) -> int:
        """Remove the backend; returns the new version. Raises KeyError when `name` is unknown."""
        ...

    def reference_kinds(self, name: str) -> KindSet | None:
        """The reference kinds backend `name` accepts (a subset of REFERENCE_KINDS), or None when no
        backend of that name is registered."""
        ...


class SubmitObserver(Protocol):
    """The parts of the trainer's metrics the API updates (prometheus-client objects)."""

    prompts_submitted: Any  # Counter: .inc(n)
    queue_depth: Any  # Gauge: .set(n)


def default_reward_pairs(defaults: Sequence[Any]) -> list[tuple[str, float]]:
    """Normalise default rewards given as (backend, weight) pairs, RewardSpec-like objects or mappings."""
    out: list[tuple[str, float]] = []
    for d in defaults:
        if isinstance(d, tuple):
            out.append((str(d[0]), float(d[1])))
        elif isinstance(d, Mapping):
            out.append((str(d["backend"]), float(d.get("weight", 1.0))))
        else:
            out.append((str(d.backend), float(d.weight)))
    return out


__all__ = [
    "BACKEND_SOURCES",
    "CIRCUIT_STATES",
    "EXPORT_STATES",
    "REFERENCE_KINDS",
    "BackendInfo",
    "BackendRegistry",
    "ExportInfo",
    "ExportedFileInfo",
    "Exporter",
    "SubmitObserver",
    "default_reward_pairs",
]
