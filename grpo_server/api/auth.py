"""Bearer-token auth for the trainer's API, and TLS/mTLS server credentials.

Tokens live in a YAML file (mounted from a Kubernetes Secret in production), re-read when it changes:

    tokens:
      - name: ci
        token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        roles: [submit, read]
      - name: ops
        token: plain-text-token          # allowed, but prefer token_sha256
        roles: [admin]

A client sends `authorization: Bearer <token>`. Missing or unknown token -> UNAUTHENTICATED; a token
without the role the RPC needs -> PERMISSION_DENIED ("admin" implies every role). Health and reflection
are always open. With no tokens file, auth is off.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

log = logging.getLogger(__name__)

ROLES = frozenset({"submit", "read", "admin"})

_TRAINER = "/grpo.trainer.v1.TrainerService/"
# The role each RPC needs (trainer.proto). An RPC not listed needs admin: new methods are closed by default.
METHOD_ROLES: Mapping[str, str] = {
    _TRAINER + "SubmitPrompts": "submit",
    _TRAINER + "StepStatus": "read",
    _TRAINER + "WatchSteps": "read",
    _TRAINER + "ExportCheckpoint": "admin",
    _TRAINER + "GetExport": "read",
    _TRAINER + "PauseTraining": "admin",
    _TRAINER + "ResumeTraining": "admin",
    _TRAINER + "ListRewardBackends": "read",
    _TRAINER + "SetRewardBackend": "admin",
    _TRAINER + "DeleteRewardBackend": "admin",
    _TRAINER + "ListPrompts": "read",
    _TRAINER + "CancelPrompts": "submit",
}
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


class TokensFileError(ValueError):
    """A tokens file that cannot be used; the message names the entry and field."""


@dataclass(frozen=True)
class Principal:
    """A known caller: its name and roles."""

    name: str
    roles: frozenset[str]

    def allows(self, role: str) -> bool:
        """True when the caller has `role` (admin has every role)."""
        return role in self.roles or "admin" in self.roles


_HEADER_SAFE = re.compile(r"[\x20-\x7e]+")


def _sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_tokens(data: Any, source: str = "tokens file") -> list[tuple[bytes, Principal]]:
    """Validate a parsed tokens document; returns (sha256 digest, principal) pairs."""
    if not isinstance(data, Mapping) or not isinstance(data.get("tokens"), list):
        raise TokensFileError(f"{source}: expected a mapping with a list `tokens`")
    out: list[tuple[bytes, Principal]] = []
    names: set[str] = set()
    for i, entry in enumerate(data["tokens"]):
        where = f"{source}: tokens[{i}]"
        if not isinstance(entry, Mapping):
            raise TokensFileError(f"{where}: expected a mapping with name, token_sha256 (or token), roles")
        unknown = set(entry) - {"name", "token", "token_sha256", "roles"}
        if unknown:
            raise TokensFileError(f"{where}: unknown keys {sorted(unknown)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise TokensFileError(f"{where}.name: a non-empty name is required")
        if name in names:
            raise TokensFileError(f"{where}.name: {name!r} is used twice")
        names.add(name)
        has_plain, has_hash = "token" in entry, "token_sha256" in entry
        if has_plain == has_hash:
            raise TokensFileError(f"{where}: give exactly one of token_sha256 and token")
        if has_plain:
            token = entry["token"]
            if not isinstance(token, str) or len(token.strip()) < 8:
                raise TokensFileError(f"{where}.token: a string of at least 8 characters is required")
            # What a client can present: bearer_token strips the header's value, and a header value is
            # visible ASCII. A YAML block scalar (`token: |`) ends in a newline that no client can send.
            token = token.strip()
            if not _HEADER_SAFE.fullmatch(token):
                raise TokensFileError(f"{where}.token: only printable ASCII characters (U+0020 to U+007E) are "
                                      "allowed: a token travels in an HTTP/2 header")
            digest = _sha256(token)
        else:
            hexdigest = entry["token_sha256"]
            try:
                digest = bytes.fromhex(hexdigest) if isinstance(hexdigest, str) else b""
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise TokensFileError(f"{where}.token_sha256: 64 hex digits (sha256 of the token) are required")
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
            raise TokensFileError(f"{where}.roles: a non-empty list of {sorted(ROLES)} is required")
        bad = set(roles) - ROLES
        if bad:
            raise TokensFileError(f"{where}.roles: unknown roles {sorted(bad)}; allowed: {sorted(ROLES)}")
        out.append((digest, Principal(name, frozenset(roles))))
    return out


class TokenStore:
    """The tokens of a file, re-read when the file changes (checked at most every `reload_interval` s).
    A file that turns bad on reload is logged and the previous tokens are kept; a bad file at start
    raises TokensFileError."""

    def __init__(self, path: Path, reload_interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.reload_interval = reload_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._tokens = self._load()
        self._checked = clock()

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> list[tuple[bytes, Principal]]:
        try:
            data = yaml.safe_load(self.path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise TokensFileError(f"{self.path}: cannot read: {err}") from None
        return parse_tokens(data, str(self.path))

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked < self.reload_interval:
            return
        self._checked = now
        try:
            stamp = self._file_stamp()
        except OSError as err:
            log.warning("tokens file %s unreadable (%s); keeping the previous tokens", self.path, err)
            return
        if stamp == self._stamp:
            return
        try:
            tokens = self._load()
        except TokensFileError as err:
            log.error("tokens file changed but is invalid; keeping the previous tokens: %s", err)
            self._stamp = stamp
            return
        self._stamp, self._tokens = stamp, tokens
        log.info("tokens file %s reloaded (%d tokens)", self.path, len(tokens))

    def lookup(self, token: str) -> Principal | None:
        """The principal of a presented token, or None. Compares digests in constant time."""
        digest = _sha256(token)
        with self._lock:
            self._maybe_reload()
            tokens = self._tokens
        found = None
        for known, principal in tokens:
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def bearer_token(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer <token>` header, or None."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _deny(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that fails at once with `code`."""

    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort, **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **kw)
    return grpc.stream_stream_rpc_method_handler(abort, **kw)


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks the bearer token and the role of every call but health and reflection."""

    def __init__(self, tokens: TokenStore, method_roles: Mapping[str, str] = METHOD_ROLES) -> None:
        self.tokens = tokens
        self.method_roles = method_roles

    def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        if token is None:
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED, "missing bearer token: send `authorization: Bearer <token>`")
        principal = self.tokens.lookup(token)
        if principal is None:
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        role = self.method_roles.get(method, "admin")
        if not principal.allows(role):
            return _deny(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"token {principal.name!r} lacks the {role!r} role this call needs (it has: {', '.join(sorted(principal.roles))})",
            )
        return handler


def server_credentials(cert_file: str, key_file: str, client_ca_file: str | None = None) -> grpc.ServerCredentials:
    """TLS server credentials from PEM files; with `client_ca_file`, clients must present a certificate
    signed by that CA (mTLS)."""
    cert = Path(cert_file).read_bytes()
    key = Path(key_file).read_bytes()
    ca = Path(client_ca_file).read_bytes() if client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
