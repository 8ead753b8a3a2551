"""Request validation: every rule of the API's contract (trainer.proto comments, issue 5), applied to a
whole request so that EVERY bad field is reported, each as a FieldViolation whose `field` is a path into
the request (`prompts[2].rewards[0].weight`) and whose description says what is allowed.

Pure functions of the request, the limits, the registry's view of the backends and a token counter: no
store access, no gRPC status handling (the servicer turns ValidationFailed into INVALID_ARGUMENT).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from grpo.trainer.v1 import trainer_pb2
from grpo_server.api.convert import (
    EXPORT_STATES,
    PROMPT_STATES,
    prompt_from_proto,
    reference_kind,
    resolved_rewards,
)
from grpo_server.api.ports import (
    BACKEND_NAME_PATTERN,
    MAX_TIMEOUT_SECONDS,
    BackendRegistry,
    host_port,
)
from grpo_server.api.settings import ApiLimits
from grpo_server.types import PromptRecord, PromptState

ROLES = ("system", "user", "assistant")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")

# Counts the tokens of a chat (the model's chat template applied, generation prompt included).
TokenCounter = Callable[[Sequence[dict[str, str]]], int]


@dataclass(frozen=True)
class PromptRoom:
    """The rollouts' context in tokens and the completion length they ask for (rollout.max_new_tokens): a
    prompt longer than the difference leaves no room for its completions, and one longer than the context
    cannot be rolled out at all (vLLM refuses it)."""

    context: int
    completion: int

    @property
    def prompt_tokens(self) -> int:
        """The most prompt tokens that leave room for a whole completion."""
        return self.context - self.completion


@dataclass(frozen=True)
class Violation:
    """One bad field: its path in the request and what is wrong / allowed."""

    field: str
    description: str


class ValidationFailed(Exception):
    """A request with bad fields; `violations` lists every one."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


@dataclass(frozen=True)
class ValidSubmission:
    """A SubmitPrompts request that passed validation, as records ready for the store."""

    prompts: list[PromptRecord]
    request_id: str | None


# ------------------------------------------------------------------------------------- strings


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def text_problem(s: str) -> str | None:
    """Why `s` is not acceptable text (a NUL character, an unpaired surrogate), or None."""
    if "\x00" in s:
        return "contains a NUL character (U+0000), which is not allowed"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (it contains an unpaired surrogate)"
    return None


class _Collector:
    """Accumulates violations."""

    def __init__(self) -> None:
        self.items: list[Violation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(Violation(field, description))

    def text(self, field: str, s: str, max_bytes: int, what: str) -> None:
        """Checks a free-text field: valid text and at most max_bytes."""
        problem = text_problem(s)
        if problem:
            self.add(field, f"{what} {problem}")
        elif _nbytes(s) > max_bytes:
            self.add(field, f"{what} is {_nbytes(s)} bytes; at most {max_bytes} bytes are allowed")

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationFailed(self.items)


# ---------------------------------------------------------------------------------- SubmitPrompts


# The longest request_id looked up for a replay whatever limits.max_request_id_bytes is now (the default
# is 128): ids a higher limit took before are still found. Past it, the id is not looked up (validation
# names it), so no request makes the store compare megabytes.
REPLAY_LOOKUP_MAX_BYTES = 4096


def sent_digest(prompts: Sequence[trainer_pb2.Prompt]) -> str:
    """A digest of a request's prompts as the client sent them (each one's deterministic wire form, in
    order), to tell a retry of a request from a reuse of its request_id before it is validated."""
    h = hashlib.sha256()
    for p in prompts:
        data = p.SerializeToString(deterministic=True)
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def replayable_request_id(req: trainer_pb2.SubmitPromptsRequest, limits: ApiLimits) -> str | None:
    """The request_id to look up before validating the request, or None when there is none, or when it
    is not one the store could hold (validation then names it). The bound is the hard cap on the limit,
    not only the configured limit: an id accepted under a higher limit is still answered after the limit
    was lowered (a retry is answered before it is validated)."""
    rid = req.request_id
    if rid and len(rid.encode()) <= max(limits.max_request_id_bytes, REPLAY_LOOKUP_MAX_BYTES):
        return rid
    return None


def validate_submit(
    req: trainer_pb2.SubmitPromptsRequest,
    *,
    limits: ApiLimits,
    registry: BackendRegistry,
    default_rewards: Sequence[tuple[str, float]],
    count_tokens: TokenCounter | None,
    room: PromptRoom | None = None,
) -> ValidSubmission:
    """Check a SubmitPrompts request against every rule; return its prompts as records (empty `rewards`
    replaced by `default_rewards`, weight 0 read as 1). Raises ValidationFailed listing every bad field.
    `count_tokens` None skips the prompt-token checks (while the model loads); they are
    limits.max_prompt_tokens (0: none) and, once the model is known, `room` (the model's context less
    the completion length)."""
    v = _Collector()
    if req.request_id:
        v.text("request_id", req.request_id, limits.max_request_id_bytes, "request_id")
    n = len(req.prompts)
    if n == 0:
        v.add("prompts", "at least one prompt is required")
    elif n > limits.max_prompts_per_request:
        # Checking each of a huge request would be wasted work: the count alone decides.
        v.add("prompts", f"{n} prompts; at most {limits.max_prompts_per_request} are allowed per request")
        v.raise_if_any()
    elif n > limits.max_queue_depth:
        v.add("prompts", f"{n} prompts can never fit a queue of at most {limits.max_queue_depth}; send fewer")
    kinds_cache: dict[str, set[str] | None] = {}

    def kinds(name: str) -> set[str] | None:
        if name not in kinds_cache:
            kinds_cache[name] = registry.reference_kinds(name)
        return kinds_cache[name]

    seen_ids: dict[str, int] = {}
    records: list[PromptRecord] = []
    for i, p in enumerate(req.prompts):
        before = len(v.items)
        _check_id(v, i, p.id, limits, seen_ids)
        before_messages = len(v.items)
        _check_messages(v, i, p, limits)
        messages_ok = len(v.items) == before_messages  # their tokens can be counted, whatever else is bad
        _check_reference(v, i, p, limits)
        rewards = _check_rewards(v, i, p, limits, default_rewards, kinds)
        _check_metadata(v, i, p, limits)
        if messages_ok and count_tokens is not None and (limits.max_prompt_tokens > 0 or room):
            _check_tokens(v, i, p, limits, count_tokens, room)
        if len(v.items) == before:
            records.append(prompt_from_proto(p, rewards))
    v.raise_if_any()
    return ValidSubmission(records, req.request_id or None)


def _check_id(v: _Collector, i: int, pid: str, limits: ApiLimits, seen: dict[str, int]) -> None:
    f = f"prompts[{i}].id"
    if not pid:
        v.add(f, f"an id is required (printable ASCII, at most {limits.max_id_bytes} bytes)")
        return
    if not _PRINTABLE_ASCII.fullmatch(pid):
        v.add(f, "ids are printable ASCII (U+0020 to U+007E) only")
    elif len(pid) > limits.max_id_bytes:
        v.add(f, f"the id is {len(pid)} bytes; at most {limits.max_id_bytes} are allowed")
    if pid in seen:
        v.add(f, f"duplicates prompts[{seen[pid]}].id; ids must be unique within a request")
    else:
        seen[pid] = i


def _check_messages(v: _Collector, i: int, p: trainer_pb2.Prompt, limits: ApiLimits) -> None:
    f = f"prompts[{i}].messages"
    if not p.messages:
        v.add(f, "at least one message is required")
        return
    if len(p.messages) > limits.max_messages:
        v.add(f, f"{len(p.messages)} messages; at most {limits.max_messages} are allowed")
    for k, m in enumerate(p.messages):
        if m.role not in ROLES:
            v.add(f"{f}[{k}].role", f"role {m.role!r} is not allowed; use one of: {', '.join(ROLES)}")
        v.text(f"{f}[{k}].content", m.content, limits.max_chat_message_bytes, "the content")
    last = len(p.messages) - 1
    if p.messages[last].role == "assistant":
        v.add(f"{f}[{last}].role", "the last message must not be from the assistant: the model answers it")


def _check_reference(v: _Collector, i: int, p: trainer_pb2.Prompt, limits: ApiLimits) -> None:
    kind = reference_kind(p)
    if kind == "answer":
        v.text(f"prompts[{i}].answer", p.answer, limits.max_answer_bytes, "the answer")
    elif kind == "code":
        f = f"prompts[{i}].code"
        c = p.code
        if c.language not in ("", "python"):
            v.add(f"{f}.language", f"language {c.language!r} is not supported; use 'python' (or leave it empty)")
        if not c.test_code and not c.io_cases:
            v.add(f, "code tests need test_code, io_cases, or both")
        if c.test_code and not c.entry_point:
            v.add(f"{f}.entry_point", "required with test_code: the name of the function check() is called with")
        if c.entry_point and not c.entry_point.isidentifier():
            v.add(f"{f}.entry_point", f"{c.entry_point!r} is not a Python identifier")
        if not math.isfinite(c.timeout_seconds) or c.timeout_seconds < 0:
            v.add(f"{f}.timeout_seconds", "must be finite and >= 0 (0 = the backend's default)")
        for name, s in (("test_code", c.test_code), ("entry_point", c.entry_point)):
            problem = text_problem(s)
            if problem:
                v.add(f"{f}.{name}", f"{name} {problem}")
        for k, io in enumerate(c.io_cases):
            for name, s in (("stdin", io.stdin), ("expected_stdout", io.expected_stdout)):
                problem = text_problem(s)
                if problem:
                    v.add(f"{f}.io_cases[{k}].{name}", f"{name} {problem}")
        total = _nbytes(c.test_code) + sum(_nbytes(io.stdin) + _nbytes(io.expected_stdout) for io in c.io_cases)
        if total > limits.max_code_bytes:
            v.add(f, f"the code tests are {total} bytes; at most {limits.max_code_bytes} are allowed")


def _check_rewards(
    v: _Collector,
    i: int,
    p: trainer_pb2.Prompt,
    limits: ApiLimits,
    defaults: Sequence[tuple[str, float]],
    kinds: Callable[[str], set[str] | None],
) -> list[tuple[str, float]]:
    f = f"prompts[{i}].rewards"
    ref = reference_kind(p)
    ref_field = f"prompts[{i}].{ref}"
    if not p.rewards:
        if not defaults:
            v.add(f, "no reward backend named, and the trainer has no default; name at least one backend")
        for backend, _ in defaults:
            accepted = kinds(backend)
            if accepted is None:
                v.add(f, f"empty, so the default backend {backend!r} applies, but it is not in the registry; "
                      "name a registered backend")
            elif ref not in accepted:
                v.add(f, f"empty, so the default backend {backend!r} applies, which {_kinds_text(accepted)}; "
                      f"this prompt's reference is {_ref_text(ref)}")
        return resolved_rewards(p, defaults)
    if len(p.rewards) > limits.max_rewards_per_prompt:
        v.add(f, f"{len(p.rewards)} reward specs; at most {limits.max_rewards_per_prompt} are allowed")
    seen: dict[str, int] = {}
    for r, spec in enumerate(p.rewards):
        bf = f"{f}[{r}].backend"
        if not spec.backend:
            v.add(bf, "a backend name is required")
        elif spec.backend in seen:
            v.add(bf, f"duplicates {f}[{seen[spec.backend]}].backend; name each backend once")
        else:
            seen[spec.backend] = r
            accepted = kinds(spec.backend)
            if accepted is None:
                v.add(bf, f"unknown backend {spec.backend!r}; list them with ListRewardBackends")
            elif ref not in accepted:
                field = bf if ref == "none" else ref_field
                v.add(field, f"backend {spec.backend!r} {_kinds_text(accepted)}; this prompt's reference is "
                      f"{_ref_text(ref)}")
        w = spec.weight
        if not math.isfinite(w) or w < 0:
            v.add(f"{f}[{r}].weight", f"weight {w} is not allowed; it must be finite and > 0 (0 or unset = 1)")
    return resolved_rewards(p, defaults)


def _kinds_text(accepted: set[str]) -> str:
    if not accepted:
        return "accepts no reference kind"
    names = {"none": "no reference", "answer": "an answer", "code": "code tests"}
    return "accepts " + " or ".join(names[k] for k in sorted(accepted) if k in names)


def _ref_text(ref: str) -> str:
    return {"none": "missing", "answer": "an answer", "code": "code tests"}[ref]


def _check_metadata(v: _Collector, i: int, p: trainer_pb2.Prompt, limits: ApiLimits) -> None:
    f = f"prompts[{i}].metadata"
    if len(p.metadata) > limits.max_metadata_pairs:
        v.add(f, f"{len(p.metadata)} pairs; at most {limits.max_metadata_pairs} are allowed")
    for key in sorted(p.metadata):
        kf = f"{f}[{json.dumps(key)}]"
        v.text(kf, key, limits.max_metadata_bytes, "the key")
        v.text(kf, p.metadata[key], limits.max_metadata_bytes, "the value")


def _check_tokens(v: _Collector, i: int, p: trainer_pb2.Prompt, limits: ApiLimits, count: TokenCounter,
                  room: PromptRoom | None) -> None:
    f = f"prompts[{i}].messages"
    try:
        n = count([{"role": m.role, "content": m.content} for m in p.messages])
    except Exception as exc:  # noqa: BLE001 - a template that rejects the chat is the caller's problem to see
        v.add(f, f"the model's chat template rejects these messages: {exc}")
        return
    if 0 < limits.max_prompt_tokens < n:
        v.add(f, f"the prompt is {n} tokens with the chat template applied; at most {limits.max_prompt_tokens} "
              "are allowed")
    elif room is not None and n > room.prompt_tokens:
        v.add(f, f"the prompt is {n} tokens with the chat template applied, and its completions take up to "
              f"{room.completion} (rollout.max_new_tokens): more than the model's context of {room.context} "
              f"tokens; at most {room.prompt_tokens} prompt tokens fit")


# ------------------------------------------------------------------------------------ other RPCs


def validate_backend(b: trainer_pb2.RewardBackend, prefix: str = "backend") -> None:
    """SetRewardBackend's entry: name pattern, host:port address, non-negative finite numbers."""
    v = _Collector()
    if not BACKEND_NAME_PATTERN.fullmatch(b.name):
        v.add(f"{prefix}.name", f"{b.name!r} is not a backend name: 1-63 characters of [a-z0-9_-]")
    port = host_port(b.address)
    if port is None or not 0 < port < 65536:
        v.add(f"{prefix}.address", f"{b.address!r} is not HOST:PORT (port 1-65535)")
    if not math.isfinite(b.timeout_seconds) or not 0 <= b.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        v.add(f"{prefix}.timeout_seconds",
              f"must be finite, >= 0 and at most {MAX_TIMEOUT_SECONDS:.0f} (one day); 0 = the default, 30 s")
    if b.max_batch_size < 0:
        v.add(f"{prefix}.max_batch_size", "must be >= 0 (0 = the backend's own limit)")
    if b.max_concurrency < 0:
        v.add(f"{prefix}.max_concurrency", "must be >= 0 (0 = the default, 4)")
    for name in ("token_file", "ca_file", "cert_file", "key_file"):
        path = getattr(b, name)
        problem = text_problem(path) if path else ""
        if problem:
            v.add(f"{prefix}.{name}", f"the path {problem}")
    v.raise_if_any()


def validate_backend_name(name: str, field: str = "name") -> None:
    """A registry name as DeleteRewardBackend takes it."""
    if not BACKEND_NAME_PATTERN.fullmatch(name):
        raise ValidationFailed([Violation(field, f"{name!r} is not a backend name: 1-63 characters of [a-z0-9_-]")])


def validate_step_number(step: int, field: str) -> None:
    """A step number in a request: >= 0."""
    if step < 0:
        raise ValidationFailed([Violation(field, f"{step} is negative; steps count from 1 (0 = the default)")])


def validate_destination(dest: str) -> None:
    """ExportCheckpoint's destination: empty (the default place) or an absolute path."""
    if not dest:
        return
    problem = text_problem(dest)
    if problem:
        raise ValidationFailed([Violation("destination", f"the path {problem}")])
    if not dest.startswith("/"):
        raise ValidationFailed([Violation("destination", "must be an absolute path on the trainer (or empty)")])
    if any(part in (".", "..") for part in dest.split("/")):
        # `/data/missing/..` passed the check (it leaves nothing behind there) and then failed in the
        # background, leaving `missing` made: name the directory itself.
        raise ValidationFailed([Violation("destination", "must not hold `.` or `..`: name the directory itself")])


def validate_export_id(export_id: str) -> None:
    """GetExport's id: required."""
    if not export_id:
        raise ValidationFailed([Violation("export_id", "required: the id ExportCheckpoint returned")])


MAX_LIST_IDS = 1000  # ListPrompts, CancelPrompts: ids in one request
MAX_PAGE_SIZE = 1000  # ListPrompts: prompts in one answer
DEFAULT_PAGE_SIZE = 100
_PAGE_TOKEN_PREFIX = "after:"
_PROMPT_STATES = {number: state for state, number in PROMPT_STATES.items()}
_EXPORT_STATES = {number: state for state, number in EXPORT_STATES.items()}


@dataclass(frozen=True)
class PromptQuery:
    """A valid ListPrompts request: the store's filters and where the page starts."""

    ids: tuple[str, ...]
    state: PromptState | None
    after_seq: int
    limit: int


def _filter_digest(ids: Sequence[str], state: int) -> str:
    """A short digest of a ListPrompts filter (the set of ids, the state): what a page token was issued
    for. Not a secret: it only catches a token passed back with another filter, which would read on from
    a position in a different listing."""
    return _digest([sorted(set(ids)), int(state)])


def _exports_digest(state: int) -> str:
    """_filter_digest of a ListExports filter (the state); never that of a ListPrompts filter, so a token
    of one listing is refused by the other."""
    return _digest(["exports", int(state)])


def _digest(canonical: object) -> str:
    text = json.dumps(canonical, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def page_token(seq: int, ids: Sequence[str] = (), state: int = trainer_pb2.PROMPT_STATE_UNSPECIFIED) -> str:
    """The opaque token of the page after queue position `seq` of the listing filtered by `ids` and
    `state` (as the request gives them: the token is only good with the same filter)."""
    return _token(seq, _filter_digest(ids, state))


def exports_page_token(place: int, state: int = trainer_pb2.EXPORT_STATE_UNSPECIFIED) -> str:
    """The opaque token of the ListExports page after (older than) export place `place`, filtered by
    `state`."""
    return _token(place, _exports_digest(state))


def _token(position: int, digest: str) -> str:
    text = f"{_PAGE_TOKEN_PREFIX}{position}:{digest}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def _page_token_problem(token: str, digest: str, other_filter: str) -> tuple[int, str | None]:
    """(the position `token` stands for, None) when it is one of ours and was issued for the filter whose
    digest is `digest`; (0, why not) otherwise (`other_filter` when it was issued for another one)."""
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        text = ""
    digits, _, issued_for = text.removeprefix(_PAGE_TOKEN_PREFIX).partition(":")
    if not text.startswith(_PAGE_TOKEN_PREFIX) or not digits.isdigit() or len(digits) > 18:
        return 0, "not a page token: pass the next_page_token of an earlier answer, or nothing"
    if not issued_for:  # the format before tokens named their filter; a client may hold one across an upgrade
        return 0, ("a page token from an older trainer, which does not say what filter it belongs to: "
                   "list again from the start, without a page_token")
    if issued_for != digest:
        return 0, other_filter
    return int(digits), None


def _check_page(page_size: int, token: str, digest: str, v: _Collector, other_filter: str) -> int:
    """A listing's `page_size` (0 to MAX_PAGE_SIZE) and `page_token` (empty, or one of ours issued for the
    filter whose digest is `digest`): the position the token stands for (0 without one); what is wrong
    goes to `v`."""
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        v.add("page_size", f"{page_size} is out of range: 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}")
    if not token:
        return 0
    position, problem = _page_token_problem(token, digest, other_filter)
    if problem:
        v.add("page_token", problem)
    return position


# The longest prompt id looked up (ListPrompts, CancelPrompts) whatever limits.max_id_bytes is now: ids a
# higher limit took before stay addressable after it was lowered (as REPLAY_LOOKUP_MAX_BYTES for requests).
ID_LOOKUP_MAX_BYTES = 4096


def _validate_ids(req_ids: Sequence[str], limits: ApiLimits, v: _Collector) -> None:
    """Prompt ids to look up: at most MAX_LIST_IDS, each a possible prompt id (of up to the configured
    limit, or ID_LOOKUP_MAX_BYTES: one stored under a higher limit)."""
    if len(req_ids) > MAX_LIST_IDS:
        v.add("ids", f"{len(req_ids)} ids; at most {MAX_LIST_IDS} in one request")
        return
    longest = max(limits.max_id_bytes, ID_LOOKUP_MAX_BYTES)
    for i, pid in enumerate(req_ids):
        if not pid or not _PRINTABLE_ASCII.fullmatch(pid) or len(pid) > longest:
            v.add(f"ids[{i}]", f"not a prompt id: ids are 1 to {limits.max_id_bytes} printable ASCII characters")


def validate_cancel_prompts(req: trainer_pb2.CancelPromptsRequest, limits: ApiLimits) -> tuple[str, ...]:
    """CancelPrompts: 1 to MAX_LIST_IDS ids, each a possible prompt id, none twice. Returns the ids."""
    v = _Collector()
    if not req.ids:
        v.add("ids", "required: the ids of the prompts to cancel")
    _validate_ids(req.ids, limits, v)
    first: dict[str, int] = {}
    for i, pid in enumerate(req.ids if len(req.ids) <= MAX_LIST_IDS else ()):
        if pid in first:
            v.add(f"ids[{i}]", f"{pid!r} is also ids[{first[pid]}]: name each prompt once")
        first.setdefault(pid, i)
    v.raise_if_any()
    return tuple(req.ids)


def validate_list_prompts(req: trainer_pb2.ListPromptsRequest, limits: ApiLimits) -> PromptQuery:
    """ListPrompts: at most MAX_LIST_IDS ids, each a possible prompt id; a known state; a page size of
    0 (the default) to MAX_PAGE_SIZE; a page token from an earlier answer with the same filter (ids as a
    set, state). The page size is not part of the filter: a client may change it from page to page."""
    v = _Collector()
    _validate_ids(req.ids, limits, v)
    if req.state != trainer_pb2.PROMPT_STATE_UNSPECIFIED and req.state not in _PROMPT_STATES:
        v.add("state", f"{req.state} is not a PromptState (0 = any, 1-5 = QUEUED, LEASED, TRAINED, FAILED, CANCELLED)")
    after = _check_page(
        req.page_size, req.page_token, _filter_digest(req.ids, req.state), v,
        "this page token was issued for a different filter (ids or state): pass it with the same ids and "
        "state as the request that returned it, or start again without a page_token",
    )
    v.raise_if_any()
    return PromptQuery(
        ids=tuple(req.ids),
        state=_PROMPT_STATES.get(req.state),
        after_seq=after,
        limit=req.page_size or DEFAULT_PAGE_SIZE,
    )


@dataclass(frozen=True)
class ExportQuery:
    """A valid ListExports request: the state to list (None: any), where the page starts (0: the newest)
    and its size."""

    state: str | None
    before: int
    limit: int


def validate_list_exports(req: trainer_pb2.ListExportsRequest) -> ExportQuery:
    """ListExports: a known state; a page size of 0 (the default) to MAX_PAGE_SIZE; a page token from an
    earlier ListExports answer with the same state."""
    v = _Collector()
    if req.state != trainer_pb2.EXPORT_STATE_UNSPECIFIED and req.state not in _EXPORT_STATES:
        v.add("state", f"{req.state} is not an ExportState (0 = any, 1-4 = PENDING, WRITING, DONE, FAILED)")
    before = _check_page(
        req.page_size, req.page_token, _exports_digest(req.state), v,
        "this page token was issued for a different listing (another state, or ListPrompts): pass it with "
        "the same state as the ListExports request that returned it, or start again without a page_token",
    )
    v.raise_if_any()
    return ExportQuery(state=_EXPORT_STATES.get(req.state), before=before, limit=req.page_size or DEFAULT_PAGE_SIZE)
