"""The bootstrap every reward service shares: flags, gRPC server, health, reflection, auth, TLS,
metrics and graceful drain.

A service is a `Scorer` plus a `main`:

    def main(argv=None) -> int:
        parser = base_arg_parser("grpo-reward-x", "Scores X.", default_listen="127.0.0.1:50064")
        parser.add_argument("--my-flag", ...)
        args = parser.parse_args(argv)
        configure_logging(args.log_level)
        return serve_forever(MyScorer(args), args)

Drain sequence (SIGTERM/SIGINT, or `RunningServer.stop`): health goes NOT_SERVING for every service
name; new Score calls get UNAVAILABLE while health and reflection keep answering; in-flight Score calls
finish (up to the drain time); then the listener closes, `scorer.close()` runs and the metrics endpoint
stops.

With `--metrics-listen`, GET /healthz on that port answers what the gRPC health says in plain HTTP: 200
`SERVING` once serving, 503 `NOT_SERVING` before and from the start of the drain (the chart's probes
with TLS on, which kubelet's `grpc:` probes cannot speak).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from grpo.reward.v1 import reward_pb2

from .auth import OPEN_METHOD_PREFIXES, BearerTokenInterceptor, TokenFile
from .flags import INT32_MAX, finite_float, int_in_range
from .metrics import RegistersMetrics, ServiceMetrics, serve_health
from .scorer import Scorer
from .servicer import RewardServicer
from .tls import FILE_FLAGS, ServerCertificates, TLSFilesError
from .validation import Limits, parse_score_request

log = logging.getLogger("grpo_rewards.server")

REWARD_SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name
SCORE_METHOD = f"/{REWARD_SERVICE_NAME}/Score"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# gRPC takes the message limits as a C int: larger values fail when the server is created.
MAX_MESSAGE_BYTES_LIMIT = 2**31 - 1
DEFAULT_DRAIN_SECONDS = 30.0
# A day: beyond ~9.2e9 s Python's waits overflow, and no orchestrator waits that long anyway.
MAX_DRAIN_SECONDS = 86400.0
# Each client connection is closed (GOAWAY) after about this long, so that clients resolve the
# service's name again and spread their calls over replicas added since they connected (the
# trainer balances calls round-robin over every address the name resolves to). In-flight calls on a
# closing connection may finish for MAX_CONNECTION_AGE_GRACE_SECONDS more; new ones go to a new one.
DEFAULT_MAX_CONNECTION_AGE_SECONDS = 300.0
MAX_CONNECTION_AGE_GRACE_SECONDS = 600.0
# Threads beyond the Score limit, so health checks, reflection, Describe and the fast refusals of
# over-limit Score calls are answered even when every Score slot is busy.
SPARE_THREADS = 16
# Health and reflection answer without a token, so they run on threads of their own: however many of
# them a peer holds (a request message withheld, a reflection stream left open), the Score and Describe
# threads stay free. Reflection streams hold a thread while open: at most OPEN_STREAMS, which leaves
# OPEN_THREADS - OPEN_STREAMS threads for health checks. Health Watch streams hold none.
OPEN_THREADS = 8
OPEN_STREAMS = 4


class BoundedHealthServicer(health.HealthServicer):
    """grpc_health's servicer, with two faults of it mended.

    It sent a Watch's responses while holding its lock, and took that lock in the callback of every Watch
    that ended, which gRPC runs on its one polling thread, the thread a send waits for: one client
    starting and cancelling Watch streams (no token needed) deadlocked the server, every RPC and the
    drain. Here nothing is sent under the servicer's lock: each stream sends on its own (_HealthWatch),
    always the status as it is when sent.

    And it kept every service name a client had watched (4 MiB names included: 40 watches of new names
    held 160 MB), and the stream of a call that had ended before it registered. Here a stream is dropped
    when it ends, or at once when it ended first, and a name over MAX_HEALTH_NAME_BYTES, which no service
    here has, is answered SERVICE_UNKNOWN and not registered (the stream stays open, as for any unknown
    name, and sees no update). The trainer has a twin in grpo_server/api/server.py."""

    MAX_HEALTH_NAME_BYTES = 1024

    def _status(self, service: str) -> Any:
        with self._lock:
            return self._server_status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)

    def Watch(self, request: Any, context: Any, send_response_callback: Any = None) -> Any:  # noqa: N802 - gRPC's name
        if send_response_callback is None:  # a server without non-blocking handlers: grpc_health's own way
            return super().Watch(request, context, send_response_callback)
        service = request.service
        watch = _HealthWatch(send_response_callback)
        if len(service.encode()) <= self.MAX_HEALTH_NAME_BYTES:
            with self._lock:
                self._send_response_callbacks.setdefault(service, set()).add(watch)
            if not context.add_callback(lambda: self._forget(service, watch)):
                self._forget(service, watch)  # the call ended before the callback could be added
                return None
        watch.send(lambda: self._status(service))
        return None

    def _forget(self, service: str, watch: _HealthWatch) -> None:
        """A stream that ended (gRPC's polling thread, or Watch): out of the registry, nothing more sent."""
        watch.closed = True
        with self._lock:
            watches = self._send_response_callbacks.get(service)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._send_response_callbacks[service]

    def set(self, service: str, status: Any) -> None:
        with self._lock:
            if self._gracefully_shutting_down:  # type: ignore[has-type]  # grpc_health has no annotations
                return
            self._server_status[service] = status
            watches = list(self._send_response_callbacks.get(service, ()))
        for watch in watches:
            watch.send(lambda: self._status(service))

    def enter_graceful_shutdown(self) -> None:
        with self._lock:
            if self._gracefully_shutting_down:  # type: ignore[has-type]  # grpc_health has no annotations
                return
            for service in self._server_status:
                self._server_status[service] = health_pb2.HealthCheckResponse.NOT_SERVING
            self._gracefully_shutting_down = True
            watches = [(service, w) for service, ws in self._send_response_callbacks.items() for w in ws]
        for service, watch in watches:
            watch.send(lambda service=service: self._status(service))


class _HealthWatch:
    """One health Watch stream's sends: one at a time, each of the status as it is then (a newer status is
    never followed by an older one), only when it changed, and none once the stream has ended. `closed`
    is set without a lock: the polling thread that sets it is the one a send in progress waits for."""

    def __init__(self, send: Callable[[Any], Any]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._last: Any = None
        self.closed = False

    def send(self, status_now: Callable[[], Any]) -> None:
        with self._lock:
            if self.closed:
                return
            status = status_now()
            if status != self._last:
                self._last = status
                self._send(health_pb2.HealthCheckResponse(status=status))


class OpenCalls(grpc.ServerInterceptor):
    """Runs health and reflection (auth.OPEN_METHOD_PREFIXES) on a pool of their own, and refuses a
    reflection stream past `max_streams` open at once with RESOURCE_EXHAUSTED. The trainer has a twin in
    grpo_server/api/server.py (the two packages deploy on their own): keep them in step."""

    def __init__(self, threads: int = OPEN_THREADS, max_streams: int = OPEN_STREAMS) -> None:
        self.pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc-open")
        self.max_streams = max_streams
        self._slots = threading.BoundedSemaphore(max_streams)

    def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        slots = self._slots if handler.request_streaming else None  # Watch streams hold no thread
        behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream

        def run(argument: Any, context: grpc.ServicerContext, *args: Any, **kwargs: Any) -> Any:
            if slots is not None:
                if not slots.acquire(blocking=False):
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"{self.max_streams} open reflection streams already (the most this server "
                                  "keeps open); close one or try again later")
                if not context.add_callback(slots.release):  # released when the call ends
                    slots.release()  # it has ended already
            return behavior(argument, context, *args, **kwargs)

        run.experimental_thread_pool = self.pool  # type: ignore[attr-defined]  # grpc._server reads these two
        run.experimental_non_blocking = getattr(behavior, "experimental_non_blocking", False)  # type: ignore[attr-defined]
        kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
        if handler.request_streaming:
            return (grpc.stream_stream_rpc_method_handler(run, **kw) if handler.response_streaming
                    else grpc.stream_unary_rpc_method_handler(run, **kw))
        return (grpc.unary_stream_rpc_method_handler(run, **kw) if handler.response_streaming
                else grpc.unary_unary_rpc_method_handler(run, **kw))


@dataclass(frozen=True)
class TLSConfig:
    """Server TLS from PEM files; with `client_ca_file` the server requires client certificates (mTLS).
    The files are re-read when they change (a renewed certificate needs no restart; see `tls`)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials from the files, checked now and reloaded on change. Raises ValueError
        naming the flag and the file when one cannot be read or served."""
        try:
            return ServerCertificates(self.cert_file, self.key_file, self.client_ca_file).credentials()
        except TLSFilesError as err:
            raise ValueError(f"{FILE_FLAGS[err.which]} {err}") from None


def split_host_port(address: str) -> tuple[str, int]:
    """`"127.0.0.1:50061"` -> `("127.0.0.1", 50061)`; `"[::]:0"` -> `("::", 0)`. Raises ValueError. An IPv6
    host must be in brackets: gRPC reads `::0` or `::1:50071` as a host without a port and binds 443."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            host = ""
    elif any(c in host for c in ":[]"):
        host = ""
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"{address!r}: expected HOST:PORT, e.g. 127.0.0.1:50061 or [::]:50061 (an IPv6 address "
                         "in brackets)")
    return host, int(port)


def _host_port_arg(value: str) -> str:
    try:
        split_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


class RewardArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that also checks the harness's flag combinations (the TLS files go together)
    while parsing, so that a bad combination is a usage error (exit status 2) like a bad value."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        parsed, extras = super().parse_known_args(args, namespace)
        cert, key, ca = (getattr(parsed, name, None) for name in ("tls_cert", "tls_key", "tls_client_ca"))
        if (cert is None) != (key is None):
            self.error("--tls-cert and --tls-key go together")
        if ca is not None and cert is None:
            self.error("--tls-client-ca needs --tls-cert and --tls-key")
        return parsed, extras


def base_arg_parser(prog: str, description: str, *, default_listen: str = "127.0.0.1:50051") -> argparse.ArgumentParser:
    """The flags every reward service takes; a service adds its own to the returned parser.

    Bad values (and a half-given TLS pair) are usage errors: `PROG: error: argument --flag: ...` and
    exit status 2 from `parse_args`, before anything starts. Services type their own numeric flags with
    `grpo_rewards.common.flags` for the same behaviour.
    """
    p = RewardArgumentParser(prog=prog, description=description)
    g = p.add_argument_group("serving (common to every reward service)")
    g.add_argument("--listen", type=_host_port_arg, default=default_listen,
                   help=f"gRPC listen address HOST:PORT; port 0 picks a free port (default {default_listen})")
    g.add_argument("--metrics-listen", type=_host_port_arg, default=None,
                   help="HTTP listen address HOST:PORT of Prometheus /metrics and of /healthz (200 while "
                        "health is SERVING, else 503; default: off)")
    g.add_argument("--max-batch", type=int_in_range(1, INT32_MAX), default=64,
                   help="most items one Score call may carry; more -> INVALID_ARGUMENT (default 64)")
    g.add_argument("--max-concurrency", type=int_in_range(1, INT32_MAX), default=8,
                   help="Score calls served at once; more -> RESOURCE_EXHAUSTED (default 8)")
    g.add_argument("--token-file", type=Path, default=None,
                   help="file of accepted bearer tokens, one a line; auth is off without it")
    g.add_argument("--tls-cert", type=Path, default=None,
                   help="server certificate chain, PEM; the TLS files are re-read when they change (new "
                        "connections get a renewed certificate, no restart)")
    g.add_argument("--tls-key", type=Path, default=None, help="server private key, PEM")
    g.add_argument("--tls-client-ca", type=Path, default=None,
                   help="CA bundle, PEM; when given, clients must present a certificate it signed (mTLS)")
    g.add_argument("--drain-seconds", type=finite_float(minimum=0.0, maximum=MAX_DRAIN_SECONDS),
                   default=DEFAULT_DRAIN_SECONDS,
                   help=f"on SIGTERM, how long in-flight calls may take to finish, 0 to {MAX_DRAIN_SECONDS:g} "
                        f"(default {DEFAULT_DRAIN_SECONDS:g})")
    g.add_argument("--max-message-bytes", type=int_in_range(1, MAX_MESSAGE_BYTES_LIMIT),
                   default=DEFAULT_MAX_MESSAGE_BYTES,
                   help=f"largest request/response message in bytes, at most {MAX_MESSAGE_BYTES_LIMIT} "
                        f"(default {DEFAULT_MAX_MESSAGE_BYTES})")
    g.add_argument("--max-connection-age", type=finite_float(minimum=0.0, maximum=MAX_DRAIN_SECONDS),
                   default=DEFAULT_MAX_CONNECTION_AGE_SECONDS, metavar="SECONDS",
                   help="close each client connection after about this long (in-flight calls finish first), "
                        "so that clients re-resolve the address and spread calls over new replicas; 0: never "
                        f"(default {DEFAULT_MAX_CONNECTION_AGE_SECONDS:g})")
    g.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log level (default INFO)")
    return p


def configure_logging(level: str = "INFO") -> None:
    """One line per record on stderr with a timestamp; tracebacks follow error records."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def tls_from_args(args: argparse.Namespace) -> TLSConfig | None:
    """The TLS config the flags describe, or None; a half-given pair is an error."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise SystemExit("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise SystemExit("--tls-cert and --tls-key go together")
    return TLSConfig(args.tls_cert, args.tls_key, args.tls_client_ca)


class RunningServer:
    """A started reward server. `address` is "HOST:PORT" with the bound port; `metrics_port` is None
    when metrics are off."""

    def __init__(self, *, grpc_server: grpc.Server, servicer: RewardServicer, health_servicer: Any,
                 scorer: Scorer, host: str, port: int, metrics_http: Any, metrics_port: int | None,
                 drain_seconds: float, serving: threading.Event | None = None) -> None:
        self.grpc_server = grpc_server
        self.servicer = servicer
        self.health = health_servicer
        self.scorer = scorer
        self.host = host
        self.port = port
        self.metrics_port = metrics_port
        self.drain_seconds = drain_seconds
        self._metrics_http = metrics_http
        self._serving = serving if serving is not None else threading.Event()  # what /healthz reports
        self._stop_lock = threading.Lock()
        self._stopping: threading.Thread | None = None
        self.stopped = threading.Event()

    @property
    def address(self) -> str:
        """The gRPC address clients dial, e.g. "127.0.0.1:41234"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def metrics(self) -> ServiceMetrics:
        """The server's metric objects (their registry is what /metrics serves)."""
        return self.servicer.metrics

    def stop(self, grace: float | None = None, *, wait: bool = True) -> threading.Event:
        """Drain and stop, as on SIGTERM: NOT_SERVING, refuse new Score calls, let in-flight ones finish
        within `grace` seconds (default `drain_seconds`), close the listener, `scorer.close()`.

        Returns the event set once fully stopped; with `wait=False` the drain runs in the background, but
        health is NOT_SERVING and new Score calls are refused before it returns. Calling it again joins the
        drain already under way.
        """
        grace = self.drain_seconds if grace is None else grace
        with self._stop_lock:
            if self._stopping is None:
                log.info("%s draining: health NOT_SERVING, %d call(s) in flight, up to %.1f s",
                         self.servicer.description.name, self.servicer.active, grace)
                self._serving.clear()
                self.health.enter_graceful_shutdown()
                self.servicer.start_draining()
                self._stopping = threading.Thread(target=self._drain, args=(grace,), name="reward-drain",
                                                  daemon=True)
                self._stopping.start()
        if wait:
            self.stopped.wait()
        return self.stopped

    def _drain(self, grace: float) -> None:
        started = time.monotonic()
        name = self.servicer.description.name
        try:
            if not self.servicer.wait_idle(grace):
                log.warning("%s: %d call(s) still running after %.1f s; cancelling them",
                            name, self.servicer.active, grace)
            left = max(0.0, grace - (time.monotonic() - started))
            self.grpc_server.stop(min(left, 1.0)).wait()
            try:
                self.scorer.close()
            except Exception:
                log.exception("%s: scorer.close() failed", name)
            if self._metrics_http is not None:
                self._metrics_http.shutdown()
                self._metrics_http.server_close()
            log.info("%s stopped after %.1f s of draining", name, time.monotonic() - started)
        finally:
            self.stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped; True when it has."""
        return self.stopped.wait(timeout)


def start_server(
    scorer: Scorer,
    *,
    listen: str = "127.0.0.1:0",
    metrics_listen: str | None = None,
    token_file: Path | str | None = None,
    max_batch: int = 64,
    max_concurrency: int = 8,
    tls: TLSConfig | None = None,
    drain_seconds: float = DEFAULT_DRAIN_SECONDS,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    limits: Limits | None = None,
    max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE_SECONDS,
) -> RunningServer:
    """Start serving `scorer` in this process and return at once (for tests and `serve_forever`).

    `limits` overrides the per-field size limits; its `max_batch` is replaced by `max_batch`.
    `max_connection_age`: seconds after which each client connection is closed (0: never).
    Raises RuntimeError when the address cannot be bound.
    """
    limits = Limits(**{**(limits.__dict__ if limits else {}), "max_batch": max_batch})
    try:
        tokens = TokenFile(token_file) if token_file else None
    except OSError as err:  # named as the flag gives it, as the TLS files are
        raise ValueError(f"--token-file {token_file}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"--token-file {token_file}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except ValueError as err:
        raise ValueError(f"--token-file: {err}") from None

    # Metrics first: the servicer counts into them from its first call.
    probe = scorer.describe()
    metrics = ServiceMetrics.create(probe.name or type(scorer).__name__, probe.version or "unknown")
    if isinstance(scorer, RegistersMetrics):  # a backend's own metrics, on the same endpoint
        scorer.register_metrics(metrics.registry)
    servicer = RewardServicer(scorer, limits, max_concurrency, metrics, max_response_bytes=max_message_bytes)

    def count_refusal(method: str, code: grpc.StatusCode) -> None:
        # Score calls the interceptor refuses never reach the servicer, which counts all the others.
        if method == SCORE_METHOD:
            metrics.requests.labels(code=code.name).inc()

    interceptors: list[grpc.ServerInterceptor] = [OpenCalls()]
    if tokens:
        interceptors.append(BearerTokenInterceptor(tokens, on_refused=count_refusal))

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_concurrency + SPARE_THREADS, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Two servers must never share a port silently.
            ("grpc.so_reuseport", 0),
            *_connection_age_options(max_connection_age),
        ],
    )
    _add_reward_service(servicer, server)
    health_servicer = BoundedHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (REWARD_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )

    host, _ = split_host_port(listen)
    port = server.add_secure_port(listen, tls.credentials()) if tls else server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")

    metrics_http = None
    metrics_port = None
    serving = threading.Event()  # /healthz: set with the gRPC health's SERVING, cleared when the drain starts
    if metrics_listen:
        m_host, m_port = split_host_port(metrics_listen)
        metrics_http, _ = start_http_server(m_port, addr=m_host, registry=metrics.registry)
        serve_health(metrics_http, serving.is_set)
        metrics_port = int(metrics_http.server_address[1])

    server.start()
    for service in ("", REWARD_SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    serving.set()

    running = RunningServer(grpc_server=server, servicer=servicer, health_servicer=health_servicer,
                            scorer=scorer, host=host, port=port, metrics_http=metrics_http,
                            metrics_port=metrics_port, drain_seconds=drain_seconds, serving=serving)
    d = servicer.description
    extras = [f"metrics on {m_host}:{metrics_port}" if metrics_port is not None else "metrics off",
              "auth on" if token_file else "auth off",
              ("mTLS" if tls.client_ca_file else "TLS") if tls else "plaintext",
              f"max batch {max_batch}", f"max concurrency {max_concurrency}"]
    log.info("%s %s listening on %s (%s)", d.name, d.version, running.address, ", ".join(extras))
    return running


def _add_reward_service(servicer: RewardServicer, server: grpc.Server) -> None:
    """`add_RewardServiceServicer_to_server`, except that Score's request deserializer never raises: a
    body protobuf refuses (a string field that is not UTF-8) reaches the servicer, which answers
    INVALID_ARGUMENT naming the field, instead of gRPC's bare INTERNAL."""
    handlers = {
        "Score": grpc.unary_unary_rpc_method_handler(
            servicer.Score, request_deserializer=parse_score_request,
            response_serializer=reward_pb2.ScoreResponse.SerializeToString),
        "Describe": grpc.unary_unary_rpc_method_handler(
            servicer.Describe, request_deserializer=reward_pb2.DescribeRequest.FromString,
            response_serializer=reward_pb2.DescribeResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REWARD_SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(REWARD_SERVICE_NAME, handlers)


def _connection_age_options(seconds: float) -> list[tuple[str, int]]:
    """gRPC server options closing each connection after `seconds` (none for 0)."""
    if seconds <= 0:
        return []
    return [("grpc.max_connection_age_ms", max(1, round(seconds * 1000))),
            ("grpc.max_connection_age_grace_ms", round(MAX_CONNECTION_AGE_GRACE_SECONDS * 1000))]


def serve_forever(scorer: Scorer, args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, then drain (up to `--drain-seconds`) and return 0.

    Returns 1 when the server cannot start (address in use, unreadable TLS or token file); the scorer is
    closed either way.
    """
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        if received:  # a second signal during the drain: the operator wants out now, as with Ctrl-C twice
            log.warning("received %s again: exiting without finishing the drain", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(128 + signum)
        received.append(signal.Signals(signum).name)
        stop.set()

    # Before the server starts: a signal sent as soon as the "listening" line appears must drain, not kill.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            running = start_server(
                scorer,
                listen=args.listen,
                metrics_listen=args.metrics_listen,
                token_file=args.token_file,
                max_batch=args.max_batch,
                max_concurrency=args.max_concurrency,
                tls=tls_from_args(args),
                drain_seconds=args.drain_seconds,
                max_message_bytes=args.max_message_bytes,
                max_connection_age=args.max_connection_age,
            )
        except (OSError, RuntimeError, ValueError) as exc:
            log.error("cannot start: %s", exc)
            scorer.close()
            return 1
        # Waiting in slices keeps the main thread responsive to signals.
        while not stop.wait(0.5):
            pass
        log.info("received %s", received[0] if received else "stop")
        running.stop(args.drain_seconds)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
