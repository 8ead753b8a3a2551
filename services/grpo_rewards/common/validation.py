"""Request validation for `RewardService.Score`, done once by the harness before any backend runs.

A request that breaks a rule is rejected as a whole with INVALID_ARGUMENT and a `google.rpc.BadRequest`
whose field violations name `items[i].field`, so a caller can fix its input without reading our code.
Per-item problems a backend can still report on (an unparseable answer, a completion too long for the
math verifier) are NOT checked here; they come back as item statuses.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from google.protobuf import descriptor as _descriptor
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2

from grpo.reward.v1 import reward_pb2

# A request with thousands of broken items needs only enough violations to show the pattern.
MAX_REPORTED_VIOLATIONS = 50

_KIND_NAMES: dict[int, str] = {
    reward_pb2.REFERENCE_KIND_NONE: "none",
    reward_pb2.REFERENCE_KIND_ANSWER: "answer",
    reward_pb2.REFERENCE_KIND_CODE: "code",
}


@dataclass(frozen=True)
class Limits:
    """Size limits of one Score request. Byte counts are of the UTF-8 encoding."""

    max_batch: int = 64
    max_id_bytes: int = 256
    # Generous on purpose: a backend has its own, tighter per-item cap reported as an item status
    # (the math verifier's 64 Ki characters); this one only protects the server's memory.
    max_completion_bytes: int = 4 * 1024 * 1024
    max_prompt_bytes: int = 4 * 1024 * 1024
    max_metadata_entries: int = 64
    max_metadata_key_bytes: int = 256
    max_metadata_value_bytes: int = 4096


def reference_kind(item: reward_pb2.ScoreItem) -> int:
    """The `ReferenceKind` an item carries: ANSWER, CODE or NONE."""
    which = item.WhichOneof("reference")
    if which == "answer":
        return reward_pb2.REFERENCE_KIND_ANSWER
    if which == "code":
        return reward_pb2.REFERENCE_KIND_CODE
    return reward_pb2.REFERENCE_KIND_NONE


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def validate_request(
    request: reward_pb2.ScoreRequest, limits: Limits, reference_kinds: Collection[int]
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """Every rule `request` breaks, as field violations (empty when it is valid).

    `reference_kinds` are the `ReferenceKind` values the backend accepts (its capabilities).
    """
    out: list[error_details_pb2.BadRequest.FieldViolation] = []

    def bad(field: str, description: str) -> None:
        out.append(error_details_pb2.BadRequest.FieldViolation(field=field, description=description))

    n = len(request.items)
    if n == 0:
        bad("items", "at least one item is required")
        return out
    if n > limits.max_batch:
        bad("items", f"{n} items is more than this backend's limit of {limits.max_batch} per request; "
                     "split the batch")
        return out

    accepted = sorted(_KIND_NAMES.get(k, str(k)) for k in reference_kinds)
    first_index: dict[str, int] = {}
    for i, item in enumerate(request.items):
        if len(out) >= MAX_REPORTED_VIOLATIONS:
            break
        at = f"items[{i}]"
        if not item.id:
            bad(f"{at}.id", "required: a non-empty id unique within the request")
        elif _nbytes(item.id) > limits.max_id_bytes:
            bad(f"{at}.id", f"{_nbytes(item.id)} bytes; at most {limits.max_id_bytes} allowed")
        elif item.id in first_index:
            bad(f"{at}.id", f"duplicate of items[{first_index[item.id]}].id {item.id!r}; ids must be unique")
        else:
            first_index[item.id] = i

        size = _nbytes(item.completion)
        if size > limits.max_completion_bytes:
            bad(f"{at}.completion", f"{size} bytes; at most {limits.max_completion_bytes} allowed")

        prompt_size = sum(_nbytes(m.content) + _nbytes(m.role) for m in item.prompt)
        if prompt_size > limits.max_prompt_bytes:
            bad(f"{at}.prompt", f"{prompt_size} bytes in all messages; at most {limits.max_prompt_bytes} allowed")

        if len(item.metadata) > limits.max_metadata_entries:
            bad(f"{at}.metadata", f"{len(item.metadata)} entries; at most {limits.max_metadata_entries} allowed")
        for key, value in sorted(item.metadata.items()):
            if _nbytes(key) > limits.max_metadata_key_bytes:
                bad(f"{at}.metadata", f"key of {_nbytes(key)} bytes; keys are at most "
                                      f"{limits.max_metadata_key_bytes} bytes")
            if _nbytes(value) > limits.max_metadata_value_bytes:
                bad(f"{at}.metadata[{key}]", f"{_nbytes(value)} bytes; values are at most "
                                             f"{limits.max_metadata_value_bytes} bytes")

        kind = reference_kind(item)
        if kind not in reference_kinds:
            if kind == reward_pb2.REFERENCE_KIND_NONE:
                bad(f"{at}.reference", f"a reference is required; this backend accepts: {', '.join(accepted)}"
                    if accepted else "a reference is required, and this backend accepts no reference kind (its "
                    "Describe lists none in capabilities.reference_kinds): it cannot score any item")
            else:
                name = _KIND_NAMES[kind]
                bad(f"{at}.{name}", f"reference kind {name!r} is not accepted by this backend; "
                                    f"accepted: {', '.join(accepted)}")
    return out[:MAX_REPORTED_VIOLATIONS]


@dataclass(frozen=True)
class UndecodableRequest:
    """A Score request body protobuf refused to parse: `field` is the path of the first string field that
    is not valid UTF-8 (`items[2].completion`), or `items` when the bytes are broken some other way."""

    field: str
    description: str


def parse_score_request(data: bytes) -> reward_pb2.ScoreRequest | UndecodableRequest:
    """The request deserializer the harness registers for Score. gRPC's own turns a parse failure into
    INTERNAL ("Exception deserializing request!") before any handler runs; this hands the servicer an
    `UndecodableRequest` to refuse as INVALID_ARGUMENT naming the field. Python clients cannot send
    invalid UTF-8, but other languages' protobuf libraries can (a JavaScript string holding a lone
    surrogate, bytes copied into a Go string)."""
    try:
        return reward_pb2.ScoreRequest.FromString(data)
    except DecodeError:
        bad = _first_invalid_utf8(data, reward_pb2.ScoreRequest.DESCRIPTOR, "")
        if bad is not None:
            return UndecodableRequest(bad, "not valid UTF-8; protobuf string fields must be UTF-8")
        return UndecodableRequest("items", "the request body is not a valid grpo.reward.v1.ScoreRequest")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise IndexError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _first_invalid_utf8(data: bytes, message: _descriptor.Descriptor, path: str) -> str | None:
    """The path of the first string field in the encoded `message` that is not valid UTF-8 (None if none
    is found or the bytes are not well-formed). Map fields are named as a whole (`items[0].metadata`)."""
    seen: dict[int, int] = {}
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _varint(data, pos)
                chunk, pos = data[pos:pos + size], pos + size
                field = message.fields_by_number.get(number)
                if field is None:
                    continue
                name = f"{path}{field.name}"
                if field.is_repeated:
                    index = seen.get(number, 0)
                    seen[number] = index + 1
                    if not (field.message_type and field.message_type.GetOptions().map_entry):
                        name = f"{name}[{index}]"
                if field.type == field.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return name
                elif field.type == field.TYPE_MESSAGE and field.message_type is not None:
                    found = _first_invalid_utf8(chunk, field.message_type, f"{name}.")
                    if found is not None:
                        return name if field.message_type.GetOptions().map_entry else found
            else:
                return None
    except IndexError:
        return None
    return None
