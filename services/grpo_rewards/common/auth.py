"""Bearer-token authentication for reward services, as a gRPC server interceptor.

Tokens live in a file, one a line (blank lines and `#` comments ignored), typically a mounted Kubernetes
Secret. The file is re-read when its modification time changes, so a rotated Secret takes effect
without a restart. Health and reflection stay open: probes and `grpcurl list` carry no token.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)

# Methods anyone may call: Kubernetes probes and service discovery must work without a token.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def read_tokens(path: Path) -> frozenset[str]:
    """The tokens in `path`: one a line, surrounding whitespace stripped, blanks and `#` lines skipped."""
    tokens = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():  # -sig: a BOM (Windows editors) is no part of a token
        line = line.strip()
        if line and not line.startswith("#"):
            tokens.add(line)
    return frozenset(tokens)


class TokenFile:
    """The accepted tokens from a file, reloaded when the file changes (checked at most once a second)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime_ns = -1
        self._checked = 0.0
        self._tokens: frozenset[str] = frozenset()
        self._last_error = ""
        self._reload()  # raises: a file unusable at start stops the service

    def _reload(self) -> None:
        """Read the file if it changed. Raises OSError, or ValueError for a file that is not UTF-8 or holds
        no tokens (every call would be refused); the tokens and the change stamp stay as they were, so
        the file is read again at the next check (an in-place rewrite may be caught half-way)."""
        st = os.stat(self.path)
        if st.st_mtime_ns == self._mtime_ns:
            return
        tokens = read_tokens(self.path)  # UnicodeDecodeError is a ValueError
        if not tokens:
            raise ValueError(f"token file {self.path} holds no tokens; every call would be refused")
        self._tokens, self._mtime_ns = tokens, st.st_mtime_ns
        log.info("loaded %d bearer token(s) from %s", len(self._tokens), self.path)

    def tokens(self) -> frozenset[str]:
        """The current tokens; a file that became unreadable, undecodable or empty keeps the last good
        set (logged once per distinct error)."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= 1.0:
                self._checked = now
                try:
                    self._reload()
                    self._last_error = ""
                except (OSError, ValueError) as exc:
                    if str(exc) != self._last_error:
                        log.error("cannot use token file %s, keeping the previous tokens: %s", self.path, exc)
                    self._last_error = str(exc)
            return self._tokens

    def accepts(self, token: str) -> bool:
        """True when `token` is one of the current tokens (constant-time comparison per token)."""
        encoded = token.encode()
        # Compare against every token so the time taken does not reveal which one nearly matched.
        found = False
        for t in self.tokens():
            found |= hmac.compare_digest(encoded, t.encode())
        return found


# Called once per refused call, as the refusal is sent: (full method name, status code).
RefusalHook = Callable[[str, grpc.StatusCode], None]


def _abort_handler(code: grpc.StatusCode, message: str, method: str,
                   on_refused: RefusalHook | None) -> grpc.RpcMethodHandler:
    def deny(requests: Any, context: grpc.ServicerContext) -> Any:
        if on_refused is not None:
            try:
                on_refused(method, code)
            except Exception:  # counting must never turn a refusal into INTERNAL
                log.exception("refusal hook failed for %s", method)
        context.abort(code, message)

    # Requests are read as a stream, and none is read: a unary handler would hold a handler thread until
    # the request message came, and a caller without a token could withhold it and hold them all (on the
    # wire a unary call and a one-message stream are the same).
    return grpc.stream_unary_rpc_method_handler(deny)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call but health and reflection unless it carries `authorization: Bearer <token>`
    with a token from `token_file`: UNAUTHENTICATED otherwise.

    `on_refused(method, code)` runs for each refused call (the harness counts refused Score calls in
    `grpo_reward_requests_total`; the servicer never sees them)."""

    def __init__(self, token_file: TokenFile, on_refused: RefusalHook | None = None) -> None:
        self.token_file = token_file
        self.on_refused = on_refused

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method.startswith(OPEN_METHOD_PREFIXES):
            return continuation(handler_call_details)
        header = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
                break
        scheme, _, token = header.partition(" ")
        if not header:
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata",
                                  method, self.on_refused)
        if scheme.lower() != "bearer" or not self.token_file.accepts(token.strip()):
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token", method, self.on_refused)
        return continuation(handler_call_details)
