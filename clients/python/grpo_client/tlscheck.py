"""Why a TLS connection to the trainer fails when gRPC says only "Socket closed".

With TLS 1.3 a server checks the client certificate after the client's side of the handshake is done, and
a trainer (gRPC core) refuses a certificate, or the lack of one, by closing the connection without an
alert. The client's gRPC then sees a socket closed and says no more. `client_certificate_refusal`
repeats the handshake with the standard library's `ssl` and waits for the server's first bytes (a gRPC
server sends its HTTP/2 settings at once): a server that closes the connection instead refused the
client certificate.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

FIRST_BYTES_WAIT_SECONDS = 1.0
"""How long to wait for the server's first bytes after the handshake: a server silent that long is let be."""


def _host_port(target: str) -> tuple[str, int] | None:
    """(host, port) of a gRPC target "HOST:PORT", "[V6]:PORT", "dns:///HOST:PORT", "ipv4:A.B.C.D:PORT"
    or "ipv6:[V6]:PORT"; None for any other form (unix sockets, several addresses, no port)."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme):]
            break
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host or "," in host or "/" in host:
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


def _refusal(cert: str | Path | None) -> str:
    if cert is None:
        return "it requires a client certificate and none was given"
    return f"it did not accept the client certificate {cert} (is it signed by a CA the trainer trusts for clients?)"


def client_certificate_refusal(target: str, *, ca: str | Path | None, cert: str | Path | None,
                               key: str | Path | None, server_name: str | None,
                               timeout: float = 5.0) -> str | None:
    """Why the trainer at `target` (TLS; `ca`, `cert`, `key`, `server_name` as TrainerClient takes them)
    closes connections, when that is a refused client certificate: "the trainer closed the connection
    right after the TLS 1.3 handshake: it requires a client certificate and none was given", or "... it
    did not accept the client certificate CERT ..."; a server that ends the handshake with a TLS alert
    about the certificate is named the same way. None when it is anything else (no connection, a
    handshake that fails for another reason, a server that answers): gRPC's own message says that."""
    where = _host_port(target)
    if where is None:
        return None
    host, port = where
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        context.set_alpn_protocols(["h2"])
        if cert is not None and key is not None:
            context.load_cert_chain(cert, key)
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:  # ssl.SSLError is one too
        return None
    with raw:
        try:
            tls = context.wrap_socket(raw, server_hostname=server_name or host)  # the handshake
        except ssl.SSLError as exc:  # a TLS 1.2 server refuses the certificate with an alert here
            return _alert(exc, cert)
        except OSError:
            return None
        with tls:
            if tls.version() != "TLSv1.3":
                return None
            tls.settimeout(FIRST_BYTES_WAIT_SECONDS)
            try:
                if tls.recv(1):
                    return None  # it answered: the certificate was accepted
            except TimeoutError:  # silent: nothing to say
                return None
            except ssl.SSLError as exc:
                if not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                    return _alert(exc, cert)
            except (ConnectionResetError, BrokenPipeError):
                pass
            except OSError:
                return None
    return f"the trainer closed the connection right after the TLS 1.3 handshake: {_refusal(cert)}"


def _alert(exc: ssl.SSLError, cert: str | Path | None) -> str | None:
    """The refusal an alert from the server about the client certificate says (its reason is such as
    TLSV13_ALERT_CERTIFICATE_REQUIRED or SSLV3_ALERT_BAD_CERTIFICATE), or None for any other error."""
    reason = exc.reason or ""
    if "ALERT" in reason and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
        return f"the trainer refused the TLS handshake ({reason}): {_refusal(cert)}"
    return None
