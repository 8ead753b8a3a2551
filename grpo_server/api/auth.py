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

TLS: `ServerCertificates` serves a certificate, key and client CA re-read when their files change.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from cryptography import x509

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
    _TRAINER + "ListExports": "read",
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


_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # RFC 6750's token68 and more, no space


def _sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def yaml_error_without_text(err: yaml.YAMLError) -> str:
    """What is wrong in a YAML document and where (line and column), on one line and without the
    document's text: PyYAML's own message quotes the offending line, which in a tokens file is a
    plain `token:` (a secret then printed at start and logged on each reload)."""
    if isinstance(err, yaml.MarkedYAMLError):
        parts = [p for p in (err.context, err.problem) if p]
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return (", ".join(parts) or "a syntax error") + where
    return type(err).__name__


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
                raise TokensFileError(f"{where}.token: only visible ASCII characters (U+0021 to U+007E, no space) "
                                      "are allowed: a token travels in an HTTP/2 header after `Bearer `, and the "
                                      "clients refuse to send one with a space")
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
        twin = next((j for j, (d, _) in enumerate(out) if d == digest), None)
        if twin is not None:
            # One token is one principal: the last entry's roles won in silence, under its name in the logs.
            raise TokensFileError(f"{where}: the same token as tokens[{twin}] ({out[twin][1].name!r}); give each "
                                  "principal its own token")
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
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise TokensFileError(f"{self.path}: cannot read: {err}") from None
        except yaml.YAMLError as err:
            raise TokensFileError(f"{self.path}: not valid YAML: {yaml_error_without_text(err)}") from None
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


def handler_like(handler: grpc.RpcMethodHandler, behavior: Callable[..., Any], *,
                 request_streaming: bool | None = None) -> grpc.RpcMethodHandler:
    """A handler of `handler`'s shape (its (de)serializers, whether requests and responses stream) that
    runs `behavior`; `request_streaming` overrides whether requests are read as a stream."""
    streaming = handler.request_streaming if request_streaming is None else request_streaming
    kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if streaming:
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(behavior, **kw)
        return grpc.stream_unary_rpc_method_handler(behavior, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behavior, **kw)
    return grpc.unary_unary_rpc_method_handler(behavior, **kw)


def _deny(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler for `handler`'s method that fails at once with `code`. It reads requests as a stream and
    reads none: a unary handler would hold a handler thread until the request message came, and a caller
    without a token could withhold it and hold them all (on the wire a unary call and a one-message
    stream are the same)."""

    def abort(requests: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    return handler_like(handler, abort, request_streaming=True)


# The check of the token of the response stream being served on this thread (see AuthInterceptor).
_stream_auth = threading.local()


def stream_refused() -> tuple[grpc.StatusCode, str] | None:
    """For a handler of a response stream, polled while it waits: why its caller may no longer have it
    (its token was removed from the tokens file, or lost the role), else None (and None without auth)."""
    check = getattr(_stream_auth, "check", None)
    return check() if check is not None else None


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks the bearer token and the role of every call but health and reflection. A response stream
    is checked again before each message it sends, and its handler can ask between messages
    (`stream_refused`): a token removed from the tokens file, or that lost the role, ends the streams it
    opened (UNAUTHENTICATED, PERMISSION_DENIED) instead of reading on for as long as they stay open."""

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
        if handler.response_streaming and not handler.request_streaming:
            return self._checked_stream(handler, token, role)
        return handler

    def _refusal(self, token: str, role: str) -> tuple[grpc.StatusCode, str] | None:
        principal = self.tokens.lookup(token)
        if principal is None:
            return grpc.StatusCode.UNAUTHENTICATED, "the bearer token of this stream was revoked (not in the tokens file)"
        if not principal.allows(role):
            return (grpc.StatusCode.PERMISSION_DENIED,
                    f"token {principal.name!r} no longer has the {role!r} role this stream needs")
        return None

    def _checked_stream(self, handler: grpc.RpcMethodHandler, token: str, role: str) -> grpc.RpcMethodHandler:
        behavior = handler.unary_stream

        def stream(request: Any, context: grpc.ServicerContext) -> Any:
            def check() -> tuple[grpc.StatusCode, str] | None:
                return self._refusal(token, role)

            # gRPC iterates a response stream on its handler thread, message after message.
            _stream_auth.check = check
            try:
                for message in behavior(request, context):
                    refused = check()
                    if refused is not None:
                        context.abort(*refused)
                    yield message
            finally:
                _stream_auth.check = None

        return handler_like(handler, stream)


class TLSFilesError(ValueError):
    """TLS files that cannot be served. `which` is "cert", "key" or "client_ca"; the message starts with
    the file's path and says what is wrong with it."""

    def __init__(self, which: str, message: str) -> None:
        super().__init__(message)
        self.which = which


# How far ahead of this machine's clock a certificate's notBefore may be and it still be served: a
# certificate issued a moment ago on a machine whose clock runs a little ahead.
CLOCK_SKEW = 300.0


def _check_validity(cert_pem: bytes, cert_file: str | Path, *, now: float | None = None) -> None:
    """Refuse a certificate (the chain's first, the server's own) outside its validity period."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    now_dt = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.UTC)
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    if after < now_dt:
        raise TLSFilesError("cert", f"{cert_file}: the certificate expired at {after:%Y-%m-%d %H:%M:%S} UTC "
                                    "(clients refuse it); renew it")
    if (before - now_dt).total_seconds() > CLOCK_SKEW:
        raise TLSFilesError("cert", f"{cert_file}: the certificate is valid only from {before:%Y-%m-%d %H:%M:%S} "
                                    "UTC (clients refuse it until then); is this machine's clock right?")


def read_tls_files(cert_file: str | Path, key_file: str | Path,
                   client_ca_file: str | Path | None = None) -> tuple[bytes, bytes, bytes | None]:
    """The PEM bytes of a certificate chain, its key and an optional client CA bundle, checked the way
    gRPC will use them (gRPC itself only says "Failed to bind", or logs and refuses handshakes): the
    certificate parses and is valid now (not expired, not valid only from more than `CLOCK_SKEW` seconds
    ahead: clients refuse it in every handshake), the key is unencrypted and belongs to the certificate,
    the CA bundle holds certificates. Raises TLSFilesError naming the first bad file."""
    files = {"cert": cert_file, "key": key_file, "client_ca": client_ca_file}
    data: dict[str, bytes] = {}
    for which, path in files.items():
        if path is None:
            continue
        try:
            data[which] = Path(path).read_bytes()
        except OSError as err:
            raise TLSFilesError(which, f"{path}: cannot read: {err.strerror or err}") from None

    def no_password() -> str:
        raise TLSFilesError("key", f"{key_file}: the key is encrypted; gRPC needs an unencrypted PEM key")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Check the files, not OpenSSL's policy: its default level refuses keys and signatures gRPC serves
    # (a 1024-bit RSA key is "ee key too small", which would read as a key not matching its certificate).
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        ctx.load_verify_locations(cadata=data["cert"].decode(errors="replace"))
    except (ssl.SSLError, ValueError) as err:
        raise TLSFilesError("cert", f"{cert_file}: not a PEM certificate ({err})") from None
    try:
        ctx.load_cert_chain(cert_file, key_file, password=no_password)
    except (ssl.SSLError, OSError) as err:
        raise TLSFilesError("key", f"{key_file}: not a PEM private key of the certificate {cert_file} ({err})") from None
    _check_validity(data["cert"], cert_file)
    if "client_ca" in data:
        try:
            ctx.load_verify_locations(cadata=data["client_ca"].decode(errors="replace"))
        except (ssl.SSLError, ValueError) as err:
            raise TLSFilesError("client_ca", f"{client_ca_file}: not PEM CA certificates ({err})") from None
    return data["cert"], data["key"], data.get("client_ca")


_Stamp = tuple[tuple[int, int, int], ...]


class ServerCertificates:
    """The certificate, key and client CA (mTLS when given) the API serves, re-read when their files
    change, so a renewed certificate (cert-manager rewriting a Secret: kubelet swaps the mount's `..data`
    symlink) is served without a restart.

    Construction reads and checks the files (TLSFilesError on a bad one). `credentials()` gives gRPC
    server credentials that call `fetch` on each new TLS handshake: it stats the files at most every
    `check_interval` seconds and re-reads them only when one's (mtime_ns, size, inode) changed. A pair
    that cannot be served (unreadable, not PEM, a key that is not the certificate's, files caught
    half-written) is logged once and skipped: the previous certificate stays in use and the files are
    tried again on later handshakes. New connections get the new certificate; open ones keep the session
    they negotiated.

    The reward services have a twin in services/grpo_rewards/common/tls.py (the two packages deploy on
    their own and neither imports the other): keep them in step.
    """

    def __init__(self, cert_file: str | Path, key_file: str | Path, client_ca_file: str | Path | None = None, *,
                 check_interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)
        self.client_ca_file = Path(client_ca_file) if client_ca_file else None
        self.paths = (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())
        self.check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        for _ in range(3):  # files being replaced right now: read them again once they hold still
            stamp, self._initial = self._load()
            if stamp is not None:
                break
        self._stamp: _Stamp | None = stamp  # None: the next check reads them again
        self._warned: _Stamp | None = None
        self._checked = clock()

    def _file_stamp(self) -> _Stamp:
        """(mtime_ns, size, inode) of each file, symlinks followed (a swapped `..data` changes the inode)."""
        stamps = []
        for which, path in zip(("cert", "key", "client_ca")[:len(self.paths)], self.paths, strict=True):
            try:
                st = os.stat(path)
            except OSError as err:
                raise TLSFilesError(which, f"{path}: cannot read: {err.strerror or err}") from None
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def _load(self) -> tuple[_Stamp | None, grpc.ServerCertificateConfiguration]:
        """The files' configuration and their stamp; the stamp is None when a file changed while it was
        read (the bytes may then mix two versions)."""
        before = self._file_stamp()
        cert, key, ca = read_tls_files(self.cert_file, self.key_file, self.client_ca_file)
        config = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        return (before if self._file_stamp() == before else None), config

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials that start with the files read at construction and pick up changes."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self.fetch, require_client_authentication=self.client_ca_file is not None)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate fetcher: a new configuration when the files changed and are good, else None
        (keep serving the current one). Never raises: gRPC would only log it, on every handshake."""
        if not self._lock.acquire(blocking=False):
            return None  # another handshake is checking right now
        try:
            now = self._clock()
            if now - self._checked < self.check_interval:
                return None
            self._checked = now
            return self._reload_if_changed()
        except Exception:
            log.exception("checking the TLS files failed; still serving the previous certificate")
            return None
        finally:
            self._lock.release()

    def _reload_if_changed(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return None
            new_stamp, config = self._load()
        except TLSFilesError as err:
            try:
                bad = self._file_stamp()
            except TLSFilesError:
                bad = ()  # a file missing: warn once until it is back
            if bad != self._warned:  # once per bad state of the files, not on every check
                self._warned = bad
                log.warning("TLS file changed but cannot be served; still serving the previous certificate "
                            "and trying again on later connections: %s", err)
            return None
        if new_stamp is None:  # replaced while being read: the next check reads them again
            return None
        self._stamp, self._warned = new_stamp, None
        log.info("TLS files reloaded (%s); new connections get them, open ones keep theirs",
                 ", ".join(str(p) for p in self.paths))
        return config


def server_credentials(cert_file: str, key_file: str, client_ca_file: str | None = None) -> grpc.ServerCredentials:
    """TLS server credentials from PEM files, reloaded when they change (ServerCertificates); with
    `client_ca_file`, clients must present a certificate signed by that CA (mTLS). Raises TLSFilesError
    naming a file that cannot be read or served."""
    return ServerCertificates(cert_file, key_file, client_ca_file).credentials()
