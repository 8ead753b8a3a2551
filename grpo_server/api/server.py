"""Server bootstrap: one place that wires the trainer's gRPC server — the servicer, grpc.health.v1
(NOT_SERVING until told ready), reflection, the auth interceptor, TLS, message limits, the handler
threads — and stops it gracefully (health NOT_SERVING first, so load balancers stop sending before
connections close)."""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from grpo_server.api.auth import OPEN_PREFIXES, AuthInterceptor, TokenStore, handler_like, server_credentials
from grpo_server.api.settings import AuthSettings

log = logging.getLogger(__name__)

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


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
    name, and sees no update). The reward services have a twin in services/grpo_rewards/common/server.py."""

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


class Health:
    """The server's health: "" and the TrainerService, NOT_SERVING until set_serving(True)."""

    def __init__(self) -> None:
        self.servicer = BoundedHealthServicer()
        self.serving = False
        self.set_serving(False)

    def set_serving(self, serving: bool) -> None:
        """SERVING once the model is loaded; NOT_SERVING while loading or draining."""
        self.serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self.servicer.set(name, status)

    def shutdown(self) -> None:
        """NOT_SERVING for good (later set_serving calls are ignored)."""
        self.serving = False
        self.servicer.enter_graceful_shutdown()


class UnparsableRequest:
    """Stands in for a request whose bytes did not parse (invalid UTF-8 in a string field, a truncated
    message): the handler answers INVALID_ARGUMENT instead of gRPC's INTERNAL for a failed deserializer."""

    def __init__(self, type_name: str, error: str) -> None:
        self.type_name, self.error = type_name, error


def _lenient(cls: Any) -> Any:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            return UnparsableRequest(cls.DESCRIPTOR.full_name, str(exc))

    return parse


def trainer_handlers(servicer: trainer_pb2_grpc.TrainerServiceServicer) -> grpc.GenericRpcHandler:
    """The TrainerService's method handlers (what the generated add_..._to_server registers), with
    deserializers that hand an unparsable request to the handler as UnparsableRequest."""
    handlers = {}
    for m in trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].methods:
        request_cls = getattr(trainer_pb2, m.input_type.name)
        response_cls = getattr(trainer_pb2, m.output_type.name)
        make = grpc.unary_stream_rpc_method_handler if m.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[m.name] = make(
            getattr(servicer, m.name),
            request_deserializer=_lenient(request_cls),
            response_serializer=response_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


class ListenError(RuntimeError):
    """The server cannot listen on its address; the message names the address and why."""


_BIND_REASONS = {
    errno.EADDRINUSE: "the port is in use (another process listens on it)",
    errno.EADDRNOTAVAIL: "no network interface of this host has that address",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def bind_problem(listen: str) -> str | None:
    """Why HOST:PORT cannot be bound, found by binding a plain socket to it as gRPC does (SO_REUSEADDR;
    one resolved address that binds is enough), or None when it can be or the cause is not one of the
    known ones (gRPC then has its say). gRPC's own bind error says only "Failed to bind", so this is
    asked first: the answer names a cause a person can act on."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return f"the host {host!r} does not resolve ({err.strerror})"
    reasons: list[str] = []
    for family, kind, proto, _name, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
            return None
        except OSError as err:
            if err.errno in _BIND_REASONS:
                reasons.append(_BIND_REASONS[err.errno])
    return reasons[0] if reasons else None


# Health and reflection answer without a token, so they run on threads of their own: however many of
# them a peer holds (a request message withheld, a reflection stream left open), the API's handler threads
# stay free for callers with a token. Reflection streams hold a thread while open: at most OPEN_STREAMS,
# which leaves OPEN_THREADS - OPEN_STREAMS threads for health checks. Health Watch streams hold none
# (grpc_health's non-blocking Watch).
OPEN_THREADS = 8
OPEN_STREAMS = 4


class OpenCalls(grpc.ServerInterceptor):
    """Runs the open methods (auth.OPEN_PREFIXES: health and reflection) on a pool of their own, and
    refuses a reflection stream past `max_streams` open at once with RESOURCE_EXHAUSTED. The reward
    services have a twin in services/grpo_rewards/common/server.py (the two packages deploy on their own):
    keep them in step."""

    def __init__(self, threads: int = OPEN_THREADS, max_streams: int = OPEN_STREAMS) -> None:
        self.pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc-open")
        self.max_streams = max_streams
        self._slots = threading.BoundedSemaphore(max_streams)

    def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        # Only a stream that reads requests holds its thread while open (reflection); Watch does not.
        slots = self._slots if handler.request_streaming else None
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
        return handler_like(handler, run)


def bind_server(
    listen: str,
    *,
    tokens: TokenStore | None = None,
    credentials: grpc.ServerCredentials | None = None,
    max_message_bytes: int = 64 * 1024 * 1024,
    max_workers: int = 16,
) -> tuple[grpc.Server, int]:
    """Build the trainer's gRPC server and bind its port, without services and not started yet (`serve`
    adds them and starts it), so a bad address stops a start before anything else is set up.

    listen: HOST:PORT (port 0 picks a free one). tokens: the bearer tokens (None = auth off).
    credentials: TLS server credentials (None = plaintext). Returns (server, bound port).
    Raises ListenError when the address cannot be bound.
    """
    problem = bind_problem(listen)
    if problem is not None:
        raise ListenError(f"cannot listen on {listen}: {problem}")
    interceptors: list[grpc.ServerInterceptor] = [OpenCalls()]
    if tokens is not None:
        interceptors.append(AuthInterceptor(tokens))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    try:
        port = server.add_secure_port(listen, credentials) if credentials is not None else server.add_insecure_port(listen)
    except RuntimeError:  # taken between the probe and here, or refused by gRPC for its own reasons
        port = 0
    if port == 0:
        raise ListenError(f"cannot listen on {listen}: gRPC could not bind it (GRPC_VERBOSITY=debug tells why)")
    log.debug("bound %s (port %d, tls=%s, auth=%s)", listen, port, credentials is not None, tokens is not None)
    return server, port


def serve(server: grpc.Server, servicer: trainer_pb2_grpc.TrainerServiceServicer) -> Health:
    """Add the TrainerService, health (NOT_SERVING) and reflection to a bound server and start it."""
    server.add_generic_rpc_handlers((trainer_handlers(servicer),))
    h = Health()
    health_pb2_grpc.add_HealthServicer_to_server(h.servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    server.start()
    return h


def build_server(
    servicer: trainer_pb2_grpc.TrainerServiceServicer,
    *,
    listen: str,
    auth: AuthSettings | None = None,
    tls: tuple[str, str, str | None] | None = None,
    max_message_bytes: int = 64 * 1024 * 1024,
    max_workers: int = 16,
) -> tuple[grpc.Server, int, Health]:
    """Build and start the trainer's gRPC server (bind_server, then serve).

    listen: HOST:PORT (port 0 picks a free one). auth: tokens settings (None or no tokens_file = open).
    tls: (cert_file, key_file, client_ca_file or None) PEM paths; a client CA turns on mTLS.
    max_message_bytes: receive and send limit of one message. Returns (server, bound port, health).
    Raises ListenError (a RuntimeError) when the address cannot be bound.
    """
    tokens = None
    if auth is not None and auth.tokens_file:
        tokens = TokenStore(Path(auth.tokens_file), auth.reload_interval_seconds)
    server, port = bind_server(
        listen, tokens=tokens, credentials=server_credentials(*tls) if tls is not None else None,
        max_message_bytes=max_message_bytes, max_workers=max_workers,
    )
    h = serve(server, servicer)
    log.info("gRPC API on %s (port %d, tls=%s, auth=%s)", listen, port, tls is not None, tokens is not None)
    return server, port, h


def graceful_stop(server: grpc.Server, health_: Health, grace: float = 5.0, control: Any = None) -> None:
    """Health NOT_SERVING, end streams (control.close()), then stop, letting calls finish for `grace` s."""
    health_.shutdown()
    if control is not None:
        control.close()
    server.stop(grace).wait()
