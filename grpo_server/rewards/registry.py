"""The reward backend registry: which name points at which RewardService, with what limits.

Four layers make up the registry, later ones winning for the same name:

1. the trainer's config file (`rewards.backends`), source "config";
2. the registry file (YAML, reloaded when its content changes), source "registry_file";
3. `--reward-backend NAME=HOST:PORT` flags, source "flag";
4. SetRewardBackend / DeleteRewardBackend calls, source "api". An API change to a name holds until the
   registry file changes that same name again (adds, edits or removes it): then the file's version
   (or, without one, the config's) is back in force. A name a flag gives is not overruled so: the flag
   beats the file, and the edit would only have undone the API change.

Once given the trainer's store (`attach_store`), the API layer is durable (`API_LAYER_KEY`): each
change is written before it takes effect, and the registry of a restart on the same store applies it
again. With each API change the store keeps what the three layers beneath said about that name when it
was made; when one of them says something else at the restart (the file was edited, the config or a
flag changed that name while the trainer was down), that newer word wins and the API change is
dropped, as a file edit drops it while the trainer runs. A plain restart changes none of them, so every
API change stands.

A step takes one immutable `RegistrySnapshot` when it begins and uses it throughout, so a change made
mid-step takes effect at the next step. The version increases by one on every change of the effective
registry, and (once attached to the store) goes on increasing across restarts: a restart starts one
above the previous run's last version.

Registry file format::

    backends:
      math:
        address: "math-verifier:50051"   # host:port, required
        timeout_seconds: 30               # deadline of one Score call
        max_batch_size: 64                # 0 = the backend's Describe value, or 64
        max_concurrency: 4                # Score calls in flight at once
        tls: false
        token_file: /var/run/secrets/math-token
      rm:
        address: "reward-model:50051"
        tls: true                         # verified against ca_file (default: gRPC's roots)
        ca_file: /etc/grpo/tls/ca.crt
        cert_file: /etc/grpo/tls/tls.crt  # a client certificate, for a backend that requires one (mTLS)
        key_file: /etc/grpo/tls/tls.key
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from grpo.reward.v1 import reward_pb2
from grpo_server.api.ports import BACKEND_NAME_PATTERN, MAX_TIMEOUT_SECONDS, host_port

if TYPE_CHECKING:
    from grpo_server.store import Store

log = logging.getLogger(__name__)

SOURCES = ("config", "registry_file", "flag", "api")
_BENEATH = ("config", "registry_file", "flag")  # the layers an API change sits on
API_LAYER_KEY = "reward_registry.api_layer"
"""The store's run_values key of the API layer: name -> {"entry": the entry's fields, or null for a
deletion, "beneath": {layer: the fields that layer had for the name when the change was made, or null}}."""
VERSION_KEY = "reward_registry.version"
"""The store's run_values key of the registry version last published, so that versions keep increasing
across restarts (an int)."""
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_CONCURRENCY = 4
TLS_FILE_FIELDS = ("ca_file", "cert_file", "key_file")  # a BackendEntry's TLS file paths
_FILE_FIELDS = {"address", "timeout_seconds", "max_batch_size", "max_concurrency", "tls", "token_file", *TLS_FILE_FIELDS}


def _registry_text(raw: bytes, origin: str) -> str:
    """The registry file's bytes as text; RegistryError when they are not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RegistryError(
            [FieldViolation("", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}")], origin
        ) from None


@dataclass(frozen=True)
class BackendEntry:
    """One reward backend: a registry `name` prompts refer to and where and how to call it.

    timeout_seconds: deadline of one Score call, seconds (> 0, at most one day).
    max_batch_size: items per Score call; 0 means the backend's Describe `max_batch_size`, or 64.
    max_concurrency: Score calls in flight to this backend at once (>= 1).
    token_file: a file holding the bearer token sent as `authorization: Bearer ...`.
    source: which layer it came from: "config", "registry_file", "flag" or "api".
    ca_file: with tls, a PEM file of the roots that verify the backend's certificate (None: gRPC's
        default roots).
    cert_file, key_file: with tls, the trainer's client certificate chain and private key (PEM), for a
        backend that requires client certificates (mTLS); both or neither.
    """

    name: str
    address: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_batch_size: int = 0
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    tls: bool = False
    token_file: str | None = None
    source: str = "config"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class RegistrySnapshot:
    """The registry at one moment: `version` and a read-only name -> entry mapping."""

    version: int
    entries: Mapping[str, BackendEntry]


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: `field` is a path (`backends.math.address`, `address`), `description` says why."""

    field: str
    description: str


_MTIME_SLACK_NS = 50_000_000  # 50 ms


class RegistryError(ValueError):
    """Invalid registry input; `violations` lists every bad field."""

    def __init__(self, violations: Sequence[FieldViolation], context: str = ""):
        self.violations = tuple(violations)
        detail = "; ".join(f"{v.field}: {v.description}" if v.field else v.description for v in self.violations)
        super().__init__(f"{context}: {detail}" if context else detail)


def validate_entry(entry: BackendEntry, prefix: str = "") -> list[FieldViolation]:
    """The violations of `entry` (empty when valid); field paths start with `prefix`."""
    out: list[FieldViolation] = []
    if not isinstance(entry.name, str) or not BACKEND_NAME_PATTERN.fullmatch(entry.name):
        out.append(FieldViolation(f"{prefix}name", f"{entry.name!r} is not 1-63 characters of [a-z0-9_-]"))
    port = host_port(entry.address) if isinstance(entry.address, str) else None
    if port is None or not 1 <= port <= 65535:
        out.append(FieldViolation(f"{prefix}address", f"{entry.address!r} is not HOST:PORT with a port in 1-65535"))
    t = entry.timeout_seconds
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        out.append(FieldViolation(f"{prefix}timeout_seconds", f"{t!r} is not a finite number of seconds > 0"))
    elif t > MAX_TIMEOUT_SECONDS:
        out.append(FieldViolation(f"{prefix}timeout_seconds",
                                  f"{t!r} is more than {MAX_TIMEOUT_SECONDS:.0f} seconds (one day), the longest allowed"))
    b = entry.max_batch_size
    if isinstance(b, bool) or not isinstance(b, int) or b < 0:
        out.append(FieldViolation(f"{prefix}max_batch_size", f"{b!r} is not an integer >= 0 (0: the backend's own)"))
    c = entry.max_concurrency
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        out.append(FieldViolation(f"{prefix}max_concurrency", f"{c!r} is not an integer >= 1"))
    if not isinstance(entry.tls, bool):
        out.append(FieldViolation(f"{prefix}tls", f"{entry.tls!r} is not true or false"))
    if entry.token_file is not None and (not isinstance(entry.token_file, str) or not entry.token_file):
        out.append(FieldViolation(f"{prefix}token_file", f"{entry.token_file!r} is not a file path"))
    for f in TLS_FILE_FIELDS:
        value = getattr(entry, f)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            out.append(FieldViolation(f"{prefix}{f}", f"{value!r} is not a file path"))
        elif entry.tls is not True:
            out.append(FieldViolation(f"{prefix}{f}", "is a TLS setting: set tls: true as well"))
    if (entry.cert_file is None) != (entry.key_file is None):
        missing = "key_file" if entry.key_file is None else "cert_file"
        out.append(FieldViolation(f"{prefix}{missing}", "cert_file and key_file go together (the client "
                                                        "certificate and its private key)"))
    if entry.source not in SOURCES:
        out.append(FieldViolation(f"{prefix}source", f"{entry.source!r} is not one of {', '.join(SOURCES)}"))
    return out


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers in exponent form without a dot (`1e3`, `5E-2`) as floats, as
    YAML 1.2 does: YAML 1.1 reads them as strings, which a config's lax number fields took and the
    registry's strict ones refused ("1e3 is not a number")."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """`text` parsed with YamlLoader (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - YamlLoader is a SafeLoader


def parse_registry(text: str, origin: str = "registry file") -> dict[str, BackendEntry]:
    """Parse registry YAML (see the module docstring) into name -> entry with source "registry_file".

    An empty document is an empty registry. Raises RegistryError listing every bad field."""
    try:
        duplicates = duplicate_yaml_keys(yaml.compose(text, Loader=YamlLoader), "")
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        raise RegistryError([FieldViolation("", f"not valid YAML: {exc}")], origin) from exc
    if duplicates:  # YAML would keep the last one silently: the operator meant one of them, say which lines
        raise RegistryError(duplicates, origin)
    if doc is None:
        return {}
    if not isinstance(doc, dict) or set(doc) - {"backends"}:
        raise RegistryError([FieldViolation("", "the document must be a mapping with one key, `backends`")], origin)
    backends = doc.get("backends")
    if backends is None:  # `backends:` with nothing under it
        backends = {}
    if not isinstance(backends, dict):  # also `[]`, `false`, `0`, `''`: not an empty registry
        raise RegistryError([FieldViolation("backends", "must map backend names to settings")], origin)
    entries: dict[str, BackendEntry] = {}
    violations: list[FieldViolation] = []
    for name, spec in backends.items():
        path = f"backends.{name}"
        if not isinstance(name, str):  # YAML 1.1 typed it: 010 is 8, 0x1f is 31, on is true (renamed silently)
            violations.append(FieldViolation(path, f"a backend name must be text, but YAML reads this key as "
                                                   f"{type(name).__name__} {name!r}: put it in quotes"))
            continue
        if not isinstance(spec, dict):
            violations.append(FieldViolation(path, "must be a mapping with at least `address`"))
            continue
        unknown = sorted(set(spec) - _FILE_FIELDS)
        violations += [FieldViolation(f"{path}.{k}", f"unknown field (allowed: {', '.join(sorted(_FILE_FIELDS))})")
                       for k in unknown]
        if "address" not in spec:
            violations.append(FieldViolation(f"{path}.address", "required"))
            continue
        entry = _entry_from_mapping(str(name), spec)
        violations += validate_entry(entry, prefix=f"{path}.")
        entries[entry.name] = entry
    if violations:
        raise RegistryError(violations, origin)
    return entries


def duplicate_yaml_keys(node: yaml.Node | None, path: str, seen_nodes: set[int] | None = None) -> list[FieldViolation]:
    """A violation per key given twice in one mapping of the composed document `node` (yaml.compose), named
    by its dotted path under `path`. YAML loaders keep the last value silently; the registry file and the
    trainer config refuse it."""
    out: list[FieldViolation] = []
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if node is None or id(node) in seen_nodes:  # an alias points back at a node already walked
        return out
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            where = f"{path}.{name}" if path else str(name)
            if name is not None and name in seen:
                out.append(FieldViolation(where, f"given twice (lines {seen[name]} and {key.start_mark.line + 1}); "
                                                 "each name and field may appear once"))
            elif name is not None:
                seen[name] = key.start_mark.line + 1
            out += duplicate_yaml_keys(value, where, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += duplicate_yaml_keys(item, f"{path}[{i}]", seen_nodes)
    return out


def _entry_from_mapping(name: str, spec: Mapping[str, Any]) -> BackendEntry:
    timeout = spec.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    return BackendEntry(
        name=name,
        address=spec["address"],
        timeout_seconds=float(timeout) if isinstance(timeout, int) and not isinstance(timeout, bool) else timeout,
        max_batch_size=spec.get("max_batch_size", 0),
        max_concurrency=spec.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
        tls=spec.get("tls", False),
        token_file=spec.get("token_file"),
        ca_file=spec.get("ca_file"),
        cert_file=spec.get("cert_file"),
        key_file=spec.get("key_file"),
        source="registry_file",
    )


class RewardRegistry:
    """The live registry: layered entries, a watched file, immutable snapshots, API changes.

    It implements grpo_server.api.ports.BackendRegistry (list, set, delete, reference_kinds) for the
    trainer's API, and `snapshot()` for the step loop.

    Args:
        entries: the config's backends (source "config").
        registry_file: a YAML registry file; read now (a bad or missing file raises RegistryError) and
            re-read by `reload_if_changed` / the watcher thread.
        overrides: `--reward-backend` flags (source "flag"); they replace file and config entries of the
            same name.

    API changes live in memory until `attach_store` gives the registry the trainer's store.
    """

    def __init__(
        self,
        entries: Sequence[BackendEntry] = (),
        registry_file: Path | None = None,
        overrides: Sequence[BackendEntry] = (),
    ):
        self._lock = threading.RLock()
        self._config = self._validated(entries, "config", "config")
        self._flags = self._validated(overrides, "flag", "--reward-backend")
        self._file: dict[str, BackendEntry] = {}
        self._api: dict[str, BackendEntry | None] = {}  # None: deleted through the API
        # name -> what config, file and flag said about it when the API change was made (None: nothing)
        self._api_beneath: dict[str, dict[str, BackendEntry | None]] = {}
        # name -> when (time.time_ns()) this process made its API change: a file edit written before it
        # does not overrule it, even when the watcher reads the edit after (changes restored from the
        # store have none: any later edit of the name overrules them)
        self._api_at: dict[str, int] = {}
        self._store: Store | None = None  # see attach_store
        self._file_path = Path(registry_file) if registry_file is not None else None
        self._file_hash: str | None = None
        self._bad_hash: str | None = None  # the last bad content, so it is logged once
        self._pending_hash: str | None = None  # content read once by the watcher, applied if read again
        self._pending_seen = 0  # when the watcher first read it (time.time_ns()): it was written by then
        if self._file_path is not None:
            try:
                text = self._file_path.read_bytes()
            except OSError as exc:
                raise RegistryError([FieldViolation("", f"cannot read: {exc}")], str(self._file_path)) from exc
            self._file = parse_registry(_registry_text(text, str(self._file_path)), str(self._file_path))
            self._file_hash = hashlib.sha256(text).hexdigest()
        # Files an entry names must be readable at start: each call to the backend would fail otherwise.
        # (A reload only logs it: the file may be edited before a Secret that brings the certificate.)
        from grpo_server.rewards.client import unreadable_files

        unreadable = [v for e in self._config.values() for v in unreadable_files(e, f"rewards.backends.{e.name}.")]
        if unreadable:
            raise RegistryError(unreadable)
        unreadable = [v for e in self._file.values() for v in unreadable_files(e, f"backends.{e.name}.")]
        if unreadable:
            raise RegistryError(unreadable, str(self._file_path))
        self._version = 1
        self._snapshot = RegistrySnapshot(1, MappingProxyType(self._effective()))
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._circuit_states: Callable[[], Mapping[str, str]] | None = None
        self._describer: Any = None  # a DescribeCache, created on first use

    @staticmethod
    def _validated(entries: Sequence[BackendEntry], source: str, origin: str) -> dict[str, BackendEntry]:
        out: dict[str, BackendEntry] = {}
        violations: list[FieldViolation] = []
        for i, e in enumerate(entries):
            e = replace(e, source=source)
            violations += validate_entry(e, prefix=f"{origin}[{i}].")
            out[e.name] = e
        if violations:
            raise RegistryError(violations)
        return out

    # ------------------------------------------------------------------------------------- reading

    def snapshot(self) -> RegistrySnapshot:
        """The registry now: immutable, safe to use for a whole step while the registry changes."""
        with self._lock:
            return self._snapshot

    @property
    def version(self) -> int:
        """The current version (1 at start, +1 per change)."""
        return self.snapshot().version

    def _effective(self) -> dict[str, BackendEntry]:
        merged = {**self._config, **self._file, **self._flags}
        for name, entry in self._api.items():
            if entry is None:
                merged.pop(name, None)
            else:
                merged[name] = entry
        return dict(sorted(merged.items()))

    def _publish(self) -> bool:
        """Recompute the effective registry; bump the version when it changed. Call with the lock held."""
        effective = self._effective()
        if effective == dict(self._snapshot.entries):
            return False
        self._version += 1
        self._snapshot = RegistrySnapshot(self._version, MappingProxyType(effective))
        self._announce_version()
        if self._describer is not None:  # answers of replaced entries are asked again if ever needed
            self._describer.forget_except(set(effective.values()))
            self._describer_pool.forget_except(effective)  # and the channels of deleted names
        return True

    def _announce_version(self) -> None:
        """Log the new version's entries and record the version. Call with the lock held."""
        log.info("reward registry version %d: %s", self._version, ", ".join(
            f"{n}={e.address} ({e.source})" for n, e in self._snapshot.entries.items()) or "(empty)")
        self._save_version()

    def _save_version(self) -> None:
        """Record the version in the store (when attached), so the next run's versions go on from it."""
        if self._store is None:
            return
        try:
            self._store.set_value(VERSION_KEY, self._version)
        except Exception:  # noqa: BLE001 - the change applies; only the numbering after a restart suffers
            log.exception("could not record reward registry version %d in the store", self._version)

    # ------------------------------------------------------------------------------------- changes

    def set(self, entry: Any) -> tuple[int, Any]:
        """Add or replace a backend (source becomes "api"). `entry` is a BackendEntry or anything with
        its fields (the API's BackendInfo); 0 for timeout_seconds or max_concurrency means the default,
        an empty token_file, ca_file, cert_file or key_file none. Returns (registry version, the entry as
        stored, as a BackendInfo).
        Raises RegistryError (a ValueError) naming each bad field as `backend.<field>`."""
        stored = BackendEntry(
            name=entry.name,
            address=entry.address,
            timeout_seconds=entry.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
            max_batch_size=entry.max_batch_size,
            max_concurrency=entry.max_concurrency or DEFAULT_MAX_CONCURRENCY,
            tls=entry.tls,
            token_file=entry.token_file or None,
            ca_file=entry.ca_file or None,
            cert_file=entry.cert_file or None,
            key_file=entry.key_file or None,
            source="api",
        )
        violations = validate_entry(stored, prefix="backend.")
        if violations:
            raise RegistryError(violations)
        with self._lock:
            self._change_api(stored.name, stored)
            version = self._version
        return version, self._info(stored, self.circuit_states())

    def delete(self, name: str) -> int:
        """Remove `name` until the registry file changes it again. Returns the registry version.
        Raises KeyError when no backend has that name."""
        with self._lock:
            if name not in self._snapshot.entries:
                raise KeyError(name)
            self._change_api(name, None)
            return self._version

    def _change_api(self, name: str, entry: BackendEntry | None) -> None:
        """Set (an entry) or delete (None) `name` in the API layer: the store first, then memory, then
        publish. Call with the lock held. A failed store write raises and changes nothing."""
        beneath = self._beneath(name)
        api, api_beneath = dict(self._api), dict(self._api_beneath)
        if entry is None and not any(beneath.values()):
            api.pop(name, None)  # only the API had it: nothing beneath to hide
            api_beneath.pop(name, None)
        else:
            api[name] = entry
            api_beneath[name] = beneath
        api_at = {**self._api_at, name: time.time_ns()}
        self._save_api_layer(api, api_beneath, api_at)
        self._api, self._api_beneath, self._api_at = api, api_beneath, api_at
        self._publish()

    def _beneath(self, name: str) -> dict[str, BackendEntry | None]:
        """What the config, the registry file and the flags say about `name` now."""
        return {"config": self._config.get(name), "registry_file": self._file.get(name), "flag": self._flags.get(name)}

    # ------------------------------------------------------------------------------- durability

    def attach_store(self, store: Store) -> int:
        """Keep the API layer in `store` (Store.get_value / set_value under `API_LAYER_KEY`) from now on,
        after applying the API changes recorded there by an earlier run on it: the registry is as that
        run's API left it, except for a name the config, the registry file or a flag now describes
        otherwise than when its API change was made (the newer word wins; see the module docstring).
        From then on set and delete write the store before they take effect. Call it once the store is
        open and before the API serves. Returns the registry version."""
        with self._lock:
            self._store = store
            self._restore_api_layer(store)
            last = store.get_value(VERSION_KEY)
            if isinstance(last, int) and not isinstance(last, bool) and last >= self._version:
                # Versions go on from the previous run's: the restart's registry is one past its last,
                # never a number that named another state.
                self._version = last + 1
                self._snapshot = RegistrySnapshot(self._version, MappingProxyType(self._effective()))
                self._announce_version()
            elif not self._publish():
                self._save_version()
            return self._version

    def _save_api_layer(self, api: Mapping[str, BackendEntry | None],
                        beneath: Mapping[str, Mapping[str, BackendEntry | None]], at: Mapping[str, int]) -> None:
        """Record the API layer: each name's entry, what the layers beneath said of it when the API changed
        it, and when (time.time_ns(); absent in records of older trainers)."""
        if self._store is None:
            return
        self._store.set_value(API_LAYER_KEY, {
            name: {"entry": _entry_fields(entry), "beneath": {k: _entry_fields(e) for k, e in beneath[name].items()},
                   **({"at": at[name]} if name in at else {})}
            for name, entry in sorted(api.items())
        } or None)

    def _restore_api_layer(self, store: Store) -> None:
        """Put the API changes recorded in `store` into the API layer (the caller publishes). A change
        whose name the config, file or flags now describe otherwise than when it was made is dropped, and
        so is one the store cannot read back (both logged); the store is rewritten when anything was
        dropped or the layer already held changes of its own. Call with the lock held (or unshared)."""
        recorded = store.get_value(API_LAYER_KEY) or {}
        kept: builtins.list[str] = []
        rewrite = not isinstance(recorded, dict) or bool(self._api)  # changes made before: record them too
        if not isinstance(recorded, dict):
            log.error("the API layer of the reward registry recorded in the store is unreadable, dropped: %r", recorded)
            recorded = {}
        for name, record in recorded.items():
            if name in self._api:  # changed through this registry already: that change is newer
                continue
            try:
                entry = _entry_from_fields(name, record["entry"], "api")
                then = {layer: _entry_from_fields(name, record["beneath"].get(layer), layer) for layer in _BENEATH}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.error("reward backend %s: the API change recorded in the store is unreadable, dropped: %r",
                          name, exc)
                rewrite = True
                continue
            problems = validate_entry(entry, prefix="backend.") if entry is not None else []
            if problems:
                log.error("reward backend %s: the API change recorded in the store is invalid, dropped: %s",
                          name, "; ".join(f"{v.field}: {v.description}" for v in problems))
                rewrite = True
                continue
            now = self._beneath(name)
            changed = [layer for layer in _BENEATH if now[layer] != then[layer]]
            at = record.get("at")
            if changed == ["registry_file"] and isinstance(at, int) and self._file_written_before(at):
                # The file as it is now was written before the API change: an edit the watcher had not
                # applied yet when the API answered (it waits for a second read). It does not overrule
                # the change (as it would not have without the restart).
                then = {**then, "registry_file": now["registry_file"]}
                changed = []
                rewrite = True
            if changed:
                log.warning("reward backend %s: the %s changed it since the API %s it before the restart; "
                            "the newer word wins, the API change is dropped", name,
                            " and ".join(_LAYER_NAMES[c] for c in changed), "deleted" if entry is None else "set")
                rewrite = True
                continue
            self._api[name] = entry
            self._api_beneath[name] = then
            if isinstance(at, int):
                self._api_at[name] = at
            kept.append(f"{name} {'deleted' if entry is None else 'set to ' + entry.address}")
        if kept:
            log.info("reward registry: API changes restored from the store: %s", ", ".join(kept))
        if rewrite:
            self._save_api_layer(self._api, self._api_beneath, self._api_at)

    def _file_written_before(self, at: int) -> bool:
        """Whether the registry file was last written before `at` (time.time_ns()), by its modification
        time with the 50 ms given to the file elsewhere (a later edit of any name counts)."""
        if self._file_path is None:
            return False
        try:
            return os.stat(self._file_path).st_mtime_ns + _MTIME_SLACK_NS <= at
        except OSError:
            return False

    def reload_if_changed(self, *, settled: bool = False) -> bool:
        """Re-read the registry file; apply it when its content changed and is valid. Returns True when
        the effective registry changed. A bad or unreadable file is logged and the previous one kept.

        With `settled` (the watcher's way), new content, and a missing or unreadable file, count only once
        two calls in a row read the same: a file being written in place (truncated, then written in one
        or more writes) or deleted and created again is read half-way at times, and applying what was
        read then would empty the registry for a step or drop API changes whose names it lacked."""
        if self._file_path is None:
            return False
        try:
            with open(self._file_path, "rb") as f:
                raw = f.read()
                written = os.fstat(f.fileno()).st_mtime_ns
        except OSError as exc:
            if settled and self._pending_hash != "missing":
                self._pending_hash = "missing"
                return False
            if self._bad_hash != "missing":
                log.error("reward registry file %s unreadable, keeping the previous registry: %s", self._file_path, exc)
                self._bad_hash = "missing"
            return False
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._file_hash:
            self._pending_hash = None
            if self._bad_hash == "missing":
                log.info("reward registry file %s readable again, unchanged", self._file_path)
            self._bad_hash = None  # back to the content in force: the next bad edit is logged, even a repeat
            return False
        if settled and digest != self._pending_hash:
            self._pending_hash = digest  # maybe half-written: apply it when the next read finds the same
            self._pending_seen = time.time_ns()
            return False
        # When the edit was made: its modification time (read from the kernel's coarse clock, which may lag
        # time.time_ns() by a tick: give the file the benefit), and at the latest when the watcher first
        # read it.
        edited = written + _MTIME_SLACK_NS
        if settled:
            edited = min(edited, self._pending_seen)
        self._pending_hash = None
        try:
            new_file = parse_registry(_registry_text(raw, str(self._file_path)), str(self._file_path))
        except RegistryError as exc:
            if digest != self._bad_hash:
                log.error("reward registry file rejected, keeping the previous registry: %s", exc)
                self._bad_hash = digest
            return False
        from grpo_server.rewards.client import unreadable_files

        for name, entry in sorted(new_file.items()):
            if entry != self._file.get(name):
                for v in unreadable_files(entry, f"backends.{name}."):
                    log.error("reward registry file %s: %s: %s; calls to %s fail until it is readable",
                              self._file_path, v.field, v.description, name)
        with self._lock:
            self._bad_hash = None
            changed = {n for n in set(self._file) | set(new_file) if self._file.get(n) != new_file.get(n)}
            # The file spoke about these names again since their API change: its word replaces the API's. Not
            # for a name a flag gives: the flag beats the file, so the edit would only undo the API change.
            overruled = {n for n in changed & set(self._api) if self._api_at.get(n, 0) <= edited and n not in self._flags}
            for name in overruled:
                self._api.pop(name, None)
                self._api_beneath.pop(name, None)
                self._api_at.pop(name, None)
            # The API changes that stand over an edit of their name (made before it, or under a flag) now sit
            # on the file's new entry: a restart compares against that, not the entry before (it dropped them).
            kept = changed & set(self._api_beneath)
            for name in kept:
                self._api_beneath[name] = {**self._api_beneath[name], "registry_file": new_file.get(name)}
            self._file = new_file
            self._file_hash = digest
            if overruled or kept:
                try:
                    self._save_api_layer(self._api, self._api_beneath, self._api_at)
                except Exception:  # noqa: BLE001 - the file's word applies now, whatever the store says
                    log.exception("could not record in the store the registry file's edit of %s",
                                  ", ".join(sorted(overruled | kept)))
            return self._publish()

    def start_watching(self, interval_s: float = 1.0) -> None:
        """Re-read the registry file every `interval_s` seconds on a daemon thread (no-op without one)."""
        if self._file_path is None or self._watcher is not None:
            return
        self._stop.clear()

        def watch() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reload_if_changed(settled=True)
                except Exception:  # noqa: BLE001 - the watcher must survive anything
                    log.exception("reward registry reload failed")

        self._watcher = threading.Thread(target=watch, name="reward-registry-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop the watcher thread and close Describe channels."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
        if self._describer is not None:
            self._describer_pool.close()
            self._describer = None

    # ------------------------------------------------------------------------ backend descriptions

    def attach_circuit_states(self, provider: Callable[[], Mapping[str, str]]) -> None:
        """Let listings show the router's breaker states (name -> "closed" | "open" | "half_open")."""
        self._circuit_states = provider

    def _describe(self, entry: BackendEntry, *, refresh: bool = False) -> Any:
        from grpo_server.rewards.client import ChannelPool, DescribeCache

        with self._lock:
            if self._describer is None:
                self._describer_pool = ChannelPool()
                self._describer = DescribeCache(self._describer_pool)
            describer = self._describer
        return describer.get(entry, refresh=refresh)

    def describe(self, entry: BackendEntry, *, refresh: bool = False) -> reward_pb2.DescribeResponse | None:
        """The Describe answer of `entry`'s backend (cached until the entry changes; an unreachable
        backend is asked again after a few seconds; every time with `refresh`), None when it could not
        be reached."""
        return self._describe(entry, refresh=refresh).response  # type: ignore[no-any-return]

    def reference_kinds(self, name: str) -> builtins.set[str] | None:
        """The reference kinds ("none", "answer", "code") backend `name` accepts, from its Describe
        answer. None for an unknown name. When the backend cannot be reached (or does not say), all
        kinds are assumed and a warning logged, so that submissions are not refused for an outage."""
        entry = self.snapshot().entries.get(name)
        if entry is None:
            return None
        return set(_kind_names(self.describe(entry)))

    def list(self) -> tuple[int, builtins.list[Any]]:
        """(registry version, every backend sorted by name as grpo_server.api.ports.BackendInfo, with
        its source, circuit state, Describe answer and reference kinds)."""
        snap = self.snapshot()
        circuits = self.circuit_states()
        return snap.version, [self._info(e, circuits) for e in snap.entries.values()]

    def circuit_states(self) -> dict[str, str]:
        """Breaker state of every backend in the registry: "closed" (also for one never called),
        "open" or "half_open", as the router attached with attach_circuit_states sees it."""
        circuits = dict(self._circuit_states()) if self._circuit_states is not None else {}
        return {name: circuits.get(name, "closed") for name in self.snapshot().entries}

    def _info(self, entry: BackendEntry, circuits: Mapping[str, str]) -> Any:
        """`entry` as a BackendInfo; `circuits` is circuit_states() (a name it lacks: "closed")."""
        from grpo_server.api.ports import BackendInfo

        desc = self.describe(entry)
        return BackendInfo(
            name=entry.name, address=entry.address, timeout_seconds=entry.timeout_seconds,
            max_batch_size=entry.max_batch_size, max_concurrency=entry.max_concurrency, tls=entry.tls,
            token_file=entry.token_file, ca_file=entry.ca_file, cert_file=entry.cert_file, key_file=entry.key_file,
            source=entry.source, circuit=circuits.get(entry.name, "closed"),
            description=desc, reference_kinds=tuple(sorted(_kind_names(desc))),
        )


_LAYER_NAMES = {"config": "config", "registry_file": "registry file", "flag": "--reward-backend flag"}


def _entry_fields(entry: BackendEntry | None) -> dict[str, Any] | None:
    """An entry as the JSON the store keeps (its settings, without name and source); None stays None."""
    if entry is None:
        return None
    fields = {"address": entry.address, "timeout_seconds": entry.timeout_seconds,
              "max_batch_size": entry.max_batch_size, "max_concurrency": entry.max_concurrency,
              "tls": entry.tls, "token_file": entry.token_file}
    # The TLS files only when set: records written before they existed compare equal to today's entries.
    return fields | {f: getattr(entry, f) for f in TLS_FILE_FIELDS if getattr(entry, f) is not None}


def _entry_from_fields(name: str, fields: Mapping[str, Any] | None, source: str) -> BackendEntry | None:
    """The inverse of _entry_fields for layer `source`. Raises KeyError/TypeError on a malformed record."""
    if fields is None:
        return None
    if set(fields) - _FILE_FIELDS:
        raise ValueError(f"unknown fields {sorted(set(fields) - _FILE_FIELDS)}")
    return BackendEntry(name=name, address=fields["address"],
                        timeout_seconds=fields.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
                        max_batch_size=fields.get("max_batch_size", 0),
                        max_concurrency=fields.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
                        tls=fields.get("tls", False), token_file=fields.get("token_file"),
                        ca_file=fields.get("ca_file"), cert_file=fields.get("cert_file"), key_file=fields.get("key_file"),
                        source=source)


_KIND_NAMES = {
    reward_pb2.REFERENCE_KIND_NONE: "none",
    reward_pb2.REFERENCE_KIND_ANSWER: "answer",
    reward_pb2.REFERENCE_KIND_CODE: "code",
}


def _kind_names(response: reward_pb2.DescribeResponse | None) -> frozenset[str]:
    """Reference kind names a Describe answer declares; all of them when unknown."""
    kinds = frozenset(_KIND_NAMES[k] for k in response.capabilities.reference_kinds if k in _KIND_NAMES) \
        if response is not None else frozenset()
    return kinds or frozenset(_KIND_NAMES.values())
