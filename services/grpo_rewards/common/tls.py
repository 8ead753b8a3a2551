"""Server TLS whose certificate, key and client CA are re-read when their files change, so a renewed
certificate (cert-manager rewriting a Kubernetes Secret: kubelet swaps the mount's `..data` symlink) is
served without a restart.

gRPC asks `ServerCertificates.fetch` for a new configuration on every new TLS handshake. It stats the
files at most every `check_interval` seconds and re-reads them only when one's (mtime_ns, size, inode)
changed; a pair that cannot be served (unreadable, not PEM, a key that is not the certificate's, or
files caught half-written) is logged and skipped: the previous certificate stays in use and the files
are tried again at a later handshake. New connections get the new certificate; open connections keep
the session they negotiated (the reward services close each one after --max-connection-age anyway).

The trainer has a twin of this module in grpo_server/api/auth.py: the two packages deploy on their
own and neither imports the other. Keep them in step.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from cryptography import x509

log = logging.getLogger("grpo_rewards.tls")

# What each file is, for messages: the flag that names it.
FILE_FLAGS = {"cert": "--tls-cert", "key": "--tls-key", "client_ca": "--tls-client-ca"}

_Stamp = tuple[tuple[int, int, int], ...]


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


class ServerCertificates:
    """The certificate, key and client CA (mTLS when given) a TLS server serves, reloaded from their files.

    Construction reads and checks the files (TLSFilesError on a bad one). `credentials()` gives gRPC
    server credentials that call `fetch` on each new handshake.
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
                log.warning("TLS file changed but cannot be served (%s); still serving the previous certificate "
                            "and trying again on later connections: %s", FILE_FLAGS[err.which], err)
            return None
        if new_stamp is None:  # replaced while being read: the next check reads them again
            return None
        self._stamp, self._warned = new_stamp, None
        log.info("TLS files reloaded (%s); new connections get them, open ones keep theirs",
                 ", ".join(str(p) for p in self.paths))
        return config
