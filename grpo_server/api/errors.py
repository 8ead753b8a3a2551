"""gRPC errors with google.rpc details (grpcio-status), raised by the servicer's handlers as ApiError
and turned into a status with a `grpc-status-details-bin` trailer by the `unary`/`stream` wrappers.

Handlers raise ApiError rather than calling context.abort themselves: abort raises a bare Exception,
which a catch-all for unexpected errors would swallow.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from grpo_server.api.validation import ValidationFailed, Violation
from grpo_server.store.records import StoreFull

log = logging.getLogger(__name__)

T = TypeVar("T")


# The status travels in trailers, and gRPC clients refuse metadata over 16 KiB by default, and refuse it
# at random (more often the larger it is) over the 8 KiB soft limit: such an answer reaches the client as
# RESOURCE_EXHAUSTED "received metadata size exceeds ...", with no code, message or detail of ours. So
# every text that may echo the request (a field path naming a map key, an export id, a path) is cut to a
# bound, and the whole stays under 8 KiB: the message is sent twice (percent-encoded in grpc-message, where
# a byte outside printable ASCII takes 3, and inside the details trailer), at most MAX_MESSAGE_BYTES each,
# and the BadRequest is cut to MAX_DETAILS_BYTES serialized bytes (the message says how many violations
# were left out). 1024 + 1024 + 5000, with the headers' own names and overhead, is about 7.2 KB.
MAX_DETAILS_BYTES = 5000
MAX_DESCRIPTION_CHARS = 300
MAX_MESSAGE_BYTES = 1024  # the status message, as sent in grpc-message (percent-encoded)
MAX_FIELD_BYTES = 1100  # a field path: room for a metadata key at the default limit (1 KiB) and its path
MAX_NAME_BYTES = 300  # ResourceInfo.resource_name, PreconditionFailure.subject
STORE_FULL_RETRY_SECONDS = 60.0  # RetryInfo on a call refused for a full store disk: a person must act


def clip(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes (at a character boundary), "..." marking a cut."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "..."


def _encoded_size(data: bytes) -> int:
    """Bytes of `data` in a grpc-message header: printable ASCII but "%" as is, any other byte as %XX."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in data)


def clip_message(text: str, max_bytes: int) -> str:
    """`text` cut (at a character boundary, "..." marking a cut) so that it takes at most `max_bytes`
    percent-encoded, as gRPC sends a status message."""
    data = text.encode("utf-8", "surrogatepass")
    if _encoded_size(data) <= max_bytes:
        return text
    kept, size = [], 3
    for ch in text:
        n = _encoded_size(ch.encode("utf-8", "surrogatepass"))
        if size + n > max_bytes:
            break
        kept.append(ch)
        size += n
    return "".join(kept) + "..."


class ApiError(Exception):
    """A failed call: status code, message (cut to MAX_MESSAGE_BYTES as sent), and google.rpc details."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[Message] = ()) -> None:
        message = clip_message(message, MAX_MESSAGE_BYTES)
        super().__init__(message)
        self.code, self.message, self.details = code, message, list(details)

    def status(self) -> grpc.Status:
        """The grpc.Status to abort with (code, message, details trailer)."""
        packed = []
        for d in self.details:
            a = any_pb2.Any()
            a.Pack(d)
            packed.append(a)
        return rpc_status.to_status(status_pb2.Status(code=self.code.value[0], message=self.message, details=packed))


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=d)


def invalid_argument(violations: Sequence[Violation], message: str | None = None) -> ApiError:
    """INVALID_ARGUMENT with a BadRequest listing every violation (as many as fit MAX_DETAILS_BYTES, in
    request order; the message says when some were left out)."""
    bad = error_details_pb2.BadRequest()
    size = 0
    for v in violations:
        desc = v.description if len(v.description) <= MAX_DESCRIPTION_CHARS else v.description[:MAX_DESCRIPTION_CHARS] + "..."
        fv = error_details_pb2.BadRequest.FieldViolation(field=clip(v.field, MAX_FIELD_BYTES), description=desc)
        size += fv.ByteSize() + 4
        if size > MAX_DETAILS_BYTES and bad.field_violations:
            break
        bad.field_violations.append(fv)
    n, shown = len(violations), len(bad.field_violations)
    if message is None:
        first = violations[0]
        desc = first.description[:MAX_DESCRIPTION_CHARS]
        field = clip(first.field, MAX_NAME_BYTES)  # the whole path is in the BadRequest
        if n == 1:
            message = f"invalid request: {field}: {desc}"
        elif shown == n:
            message = f"invalid request: {n} bad fields, each in the BadRequest detail; first: {field}: {desc}"
        else:
            message = (f"invalid request: {n} bad fields; the BadRequest detail lists the first {shown} "
                       f"(fix those and resubmit to see the rest); first: {field}: {desc}")
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message, [bad])


def resource_exhausted(message: str, retry_after: float, subject: str = "queue") -> ApiError:
    """RESOURCE_EXHAUSTED with RetryInfo (and a QuotaFailure naming what is full)."""
    quota = error_details_pb2.QuotaFailure(
        violations=[error_details_pb2.QuotaFailure.Violation(subject=subject, description=message)]
    )
    return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, [_retry_info(retry_after), quota])


def unavailable(message: str, retry_after: float) -> ApiError:
    """UNAVAILABLE with RetryInfo: try again later."""
    return ApiError(grpc.StatusCode.UNAVAILABLE, message, [_retry_info(retry_after)])


def not_found(resource_type: str, name: str, message: str) -> ApiError:
    """NOT_FOUND with ResourceInfo."""
    info = error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=clip(name, MAX_NAME_BYTES),
                                          description=clip(message, MAX_MESSAGE_BYTES))
    return ApiError(grpc.StatusCode.NOT_FOUND, message, [info])


def failed_precondition(kind: str, subject: str, message: str) -> ApiError:
    """FAILED_PRECONDITION with PreconditionFailure."""
    pf = error_details_pb2.PreconditionFailure(
        violations=[error_details_pb2.PreconditionFailure.Violation(
            type=kind, subject=clip(subject, MAX_NAME_BYTES), description=clip(message, MAX_MESSAGE_BYTES))]
    )
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message, [pf])


def _to_api_error(exc: BaseException, method: str) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationFailed):
        return invalid_argument(exc.violations)
    if isinstance(exc, sqlite3.ProgrammingError):  # the store was closed: the server is shutting down
        return unavailable("the trainer is shutting down", 5.0)
    if isinstance(exc, StoreFull):  # gRPC's code for "the entire file system is out of space"
        log.error("%s refused: %s", method, exc)
        return resource_exhausted(f"the trainer could not store this request: {exc}; retry once its operator has "
                                  "made room", STORE_FULL_RETRY_SECONDS, subject="store")
    log.exception("%s failed", method)
    return ApiError(grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(exc).__name__}: {exc}")


def _check_parsed(request: Any) -> None:
    """A request the server could not parse (see server.UnparsableRequest) is INVALID_ARGUMENT."""
    error = getattr(request, "error", None)
    type_name = getattr(request, "type_name", None)
    if isinstance(error, str) and isinstance(type_name, str):
        raise invalid_argument(
            [Violation("", f"the request is not a valid {type_name}: {error} (strings must be valid UTF-8)")]
        )


def unary(fn: Callable[[Any, Any, grpc.ServicerContext], T]) -> Callable[[Any, Any, grpc.ServicerContext], T]:
    """Wrap a unary handler: ApiError and ValidationFailed become their status; anything else INTERNAL."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        try:
            _check_parsed(request)
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure leaves as a status with details
            err = _to_api_error(exc, fn.__name__)
        context.abort_with_status(err.status())
        raise AssertionError("unreachable")  # abort_with_status raises

    return wrapper


def stream(
    fn: Callable[[Any, Any, grpc.ServicerContext], Iterator[T]],
) -> Callable[[Any, Any, grpc.ServicerContext], Iterator[T]]:
    """Like `unary`, for server-streaming handlers (generators)."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[T]:
        try:
            _check_parsed(request)
            yield from fn(self, request, context)
            return
        except Exception as exc:  # noqa: BLE001 - every failure leaves as a status with details
            err = _to_api_error(exc, fn.__name__)
        context.abort_with_status(err.status())

    return wrapper
