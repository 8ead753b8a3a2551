"""TrainerClient: the grpo.trainer.v1.TrainerService RPCs as Python methods, plus conveniences
(submit a prompt file in idempotent batches, iterate over steps, wait for an export).

    from grpo_client import TrainerClient

    with TrainerClient("localhost:50051", token="...") as client:
        result = client.submit_file("prompts.jsonl")
        for report in client.iter_steps():
            print(report.step, report.metrics.reward_mean)

Every failed call raises TrainerError, which carries the status code and the server's details
(google.rpc.BadRequest field violations, RetryInfo).
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from grpo_client.prompts import PromptFile, batch_request_id, load_prompt_file
from grpo_client.tlscheck import client_certificate_refusal
from grpo_client.words import counted, span

DEFAULT_TIMEOUT_SECONDS = 30.0
# A batch of 1024 prompts with long code tests can pass grpcio's 4 MiB default: raise it deliberately.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FieldViolation:
    """One bad field named by the server: a path into the request and what is wrong."""

    field: str
    description: str


@dataclass
class TrainerError(Exception):
    """A failed RPC: `code` (grpc.StatusCode), `message`, the BadRequest `field_violations`, the
    RetryInfo delay in seconds and the PreconditionFailure violation types (`preconditions`, such as
    "DESTINATION_NOT_EMPTY") when the server sent them, and the type names of any other details.
    A NOT_FOUND's ResourceInfo is `resource` (its type and name, such as ("step", "99")), a
    RESOURCE_EXHAUSTED's QuotaFailure `quota_subjects` (what is full, such as "queue"); their
    descriptions repeat the message. `client_certificate_refused`: an UNAVAILABLE that is the trainer
    refusing the client certificate (or wanting one), which no retry mends; the message then says so
    (see grpo_client.tlscheck). `server_certificate_unverified`: an UNAVAILABLE that is the trainer's
    certificate failing verification (a CA that did not sign it, a name it does not hold), which no
    retry mends either. `tls_refused`: either."""

    code: grpc.StatusCode
    message: str
    field_violations: list[FieldViolation] = field(default_factory=list)
    retry_delay_seconds: float | None = None
    preconditions: list[str] = field(default_factory=list)
    other_details: list[str] = field(default_factory=list)
    resource: tuple[str, str] | None = None
    quota_subjects: list[str] = field(default_factory=list)
    client_certificate_refused: bool = False
    server_certificate_unverified: bool = False

    @property
    def tls_refused(self) -> bool:
        """A TLS handshake that failed in a way no retry mends (see the class docstring)."""
        return self.client_certificate_refused or self.server_certificate_unverified

    def __str__(self) -> str:
        lines = [f"{self.code.name}: {self.message}"]
        lines += [f"  {v.field}: {v.description}" for v in self.field_violations]
        if self.retry_delay_seconds is not None:
            lines.append(f"  retry after {self.retry_delay_seconds:g} s")
        lines += [f"  precondition: {p}" for p in self.preconditions]
        lines += [f"  {d}" for d in self.other_details]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, for `grpo --json`."""
        out: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.field_violations:
            out["field_violations"] = [{"field": v.field, "description": v.description} for v in self.field_violations]
        if self.retry_delay_seconds is not None:
            out["retry_delay_seconds"] = self.retry_delay_seconds
        if self.preconditions:
            out["preconditions"] = self.preconditions
        if self.other_details:
            out["details"] = self.other_details
        if self.resource is not None:
            out["resource"] = {"type": self.resource[0], "name": self.resource[1]}
        if self.quota_subjects:
            out["quota_subjects"] = self.quota_subjects
        return out

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> TrainerError:
        """Decode the google.rpc.Status details of a failed call."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        message = error.details() if hasattr(error, "details") else str(error)
        out = cls(code or grpc.StatusCode.UNKNOWN, message or "")
        try:
            status = rpc_status.from_call(error)  # type: ignore[arg-type]
        except ValueError:  # details that contradict the call's code: keep what the call says
            status = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                out.field_violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                out.retry_delay_seconds = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                failure = error_details_pb2.PreconditionFailure()
                detail.Unpack(failure)
                out.preconditions += [v.type for v in failure.violations]
            elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
                info = error_details_pb2.ResourceInfo()
                detail.Unpack(info)
                out.resource = (info.resource_type, info.resource_name)
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                quota = error_details_pb2.QuotaFailure()
                detail.Unpack(quota)
                out.quota_subjects += [v.subject for v in quota.violations]
            else:
                out.other_details.append(detail.type_url.rsplit("/", 1)[-1])
        return out


# Codes after which the refused batch is known not to be stored (the trainer answered, or never ran it);
# after any other (UNAVAILABLE, DEADLINE_EXCEEDED, ...) it may have been. SubmitPrompts is all or nothing.
_NOT_STORED = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED,
})
# gRPC core's words for a trainer certificate that fails verification: not named for the target or
# --server-name ("Hostname Verification Check failed"), not signed by a CA the client trusts, expired (a TLS
# handshake that failed: "Tls handshake failed (TSI_PROTOCOL_FAILURE): ... BAD_SIGNATURE", or
# CERTIFICATE_VERIFY_FAILED).
_SERVER_NOT_VERIFIED = re.compile(r"Hostname Verification Check failed|CERTIFICATE_VERIFY_FAILED|certificate verify "
                                  r"failed|[TtSs][Ll]s handshake failed")
_PROMPT_FIELD = re.compile(r"prompts\[(\d+)\](.*)", re.DOTALL)  # "prompts[23].messages[0].content"


@dataclass(frozen=True)
class LocatedViolation:
    """A field violation of a refused batch traced back to its prompt: `index` in the whole submission
    (0-based), `prompt_id`, `prompt_field` (the path inside that prompt, "" for the prompt as a whole)
    and `line`, the prompt's line in the file (None when the prompts did not come from a file)."""

    violation: FieldViolation
    index: int
    prompt_id: str
    prompt_field: str
    line: int | None = None

    def format(self, source: str | None) -> str:
        """`FILE:LINE: id ID: field: message`, or `prompts[INDEX] (id ID): field: message` without a file."""
        where = f"{source}:{self.line}: id {self.prompt_id}" if source and self.line is not None \
            else f"prompts[{self.index}] (id {self.prompt_id})"
        what = f"{self.prompt_field}: " if self.prompt_field else ""
        return f"{where}: {what}{self.violation.description}"


@dataclass
class SubmitError(TrainerError):
    """A submission that stopped at a batch the trainer refused: the batch's TrainerError, plus where it
    stopped. `batch_index` (0-based) of `batches` was refused: `batch_prompts` prompts from prompt
    `batch_first` (0-based) on; `batch_size` is the batch size asked for (a batch over the trainer's
    message or count limit is sent again in smaller ones before anything is refused). `accepted_ids` are the
    prompts of the batches before it, which the trainer accepted and keeps; `refused_batch_queued` is
    False when the status code says the refused batch was not stored, None when it cannot tell
    (UNAVAILABLE, DEADLINE_EXCEEDED: the answer was lost). `located` traces each `prompts[i]...` field
    violation to the prompt (and, from a file, the line) it names. `source` and `lines` (the line of each
    prompt of the submission) are set when the prompts came from a file.

    Submitting the same prompts again with the same batch size and request id is safe: the accepted
    batches are sent with the same request ids, and the trainer answers them as duplicates."""

    batch_index: int = 0
    batches: int = 0
    batch_size: int = 0
    batch_first: int = 0
    batch_prompts: int = 0
    alone_too_large: list[tuple[int, str]] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    accepted_ids: list[str] = field(default_factory=list)
    refused_batch_queued: bool | None = False
    located: list[LocatedViolation] = field(default_factory=list)
    source: str | None = None
    lines: Sequence[int] | None = field(default=None, repr=False)
    total_prompts: int = 0

    @property
    def too_large(self) -> bool:
        """The refused batch, a single prompt, was bigger than the trainer's limits.max_message_bytes."""
        return _too_large(self)

    def _span(self, first: int, last: int) -> str:
        """Prompts first..last (0-based, inclusive) as "prompts 3-4, lines 3-4" ("prompt 3, line 3")."""
        text = span("prompt", first + 1, last + 1)
        if self.lines is not None:
            text += ", " + span("line", self.lines[first], self.lines[last])
        return text

    def _accepted_through_line(self) -> int | None:
        n = len(self.accepted_ids)
        return self.lines[n - 1] if self.lines is not None and n else None

    def progress(self) -> str:
        """What was queued before the refused batch and how to carry on, in words."""
        n = len(self.accepted_ids)
        k = self.batch_index + 1
        refused = f"Batch {k} was not queued" if self.refused_batch_queued is False else \
            f"Batch {k} may or may not have been queued (its answer was lost)"
        if self.batches > k + 1:
            refused += f"; batches {k + 1}-{self.batches} were not sent."
        elif self.batches == k + 1:
            refused += f"; batch {k + 1} was not sent."
        else:
            refused += "."
        if n == 0:
            before = "Nothing was accepted before it."
        else:
            batches = "batch 1" if k == 2 else f"batches 1-{k - 1}"
            where = (span("line", self.lines[0], self.lines[n - 1]) if self.lines is not None
                     else span("prompt", 1, n))
            were, them = ("was", "it") if n == 1 else ("were", "them")
            before = (f"The {counted(n, 'prompt')} of {batches} ({where}) {were} accepted before it; the trainer "
                      f"keeps {them}.")
        rerun = ("run the same command again (same batch size and request id): the trainer answers the batches it "
                 "already accepted as duplicates, by their request ids, and queues nothing twice.")
        if self.too_large:
            limit = _message_limit(self)
            over = self.alone_too_large or ([(self.batch_first, "")] if self.batch_prompts == 1 else [])
            if over:
                named = "; ".join(self._span(i, i) + (f" (id {pid})" if pid else "") for i, pid in over[:5])
                named += f"; and {len(over) - 5} more" if len(over) > 5 else ""
                fix = (f"{named[0].upper()}{named[1:]} alone {'is' if len(over) == 1 else 'are each'} more than "
                       "the trainer takes in one message" + (f" ({limit} bytes)" if limit else "")
                       + f": shorten {'it' if len(over) == 1 else 'them'}, or have the trainer's "
                       "limits.max_message_bytes raised")
            else:
                fix = "The batch is more than the trainer takes in one message: use a smaller --batch-size"
            if n == 0:
                return f"{refused} {before} {fix}; then run the command again."
            return f"{refused} {before} {fix}; then {rerun}"
        if self.code is grpc.StatusCode.RESOURCE_EXHAUSTED and self.retry_delay_seconds is not None:
            if "store" in self.quota_subjects:
                return (f"{refused} {before} The trainer's store disk stayed full through the retries: once its "
                        f"operator has made room, {rerun}")
            return f"{refused} {before} The trainer's queue stayed full through the retries: once it has room, {rerun}"
        if self.client_certificate_refused:
            return (f"{refused} {before} The trainer refused the client certificate: with one it accepts "
                    f"(--cert, --key), {rerun}")
        if self.server_certificate_unverified:
            return (f"{refused} {before} The trainer's certificate could not be verified: with the CA that signed "
                    f"it (--ca) and a name it holds (--server-name), {rerun}")
        if self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return f"{refused} {before} Once the trainer answers again, {rerun}"
        if self.field_violations and all("already queued" in v.description for v in self.field_violations):
            return (f"{refused} {before} The ids named are queued already: wait until they are trained, or cancel "
                    "them (grpo cancel), to submit them again. (Running a file again with another --batch-size "
                    "or --request-id sends its batches under new keys, so the prompts queued the first time "
                    "are refused like this rather than answered as duplicates.)")
        if n == 0 and self.refused_batch_queued is False:
            return f"{refused} {before} Fix what is named above and run the command again."
        after = f" (editing only lines after line {self._accepted_through_line()})" if n and self.lines else ""
        return f"{refused} {before} Fix what is named above{after} and {rerun}"

    def __str__(self) -> str:
        first, last = self.batch_first, self.batch_first + self.batch_prompts - 1
        lines = [f"{self.code.name}: batch {self.batch_index + 1} of {self.batches} ({self._span(first, last)}) "
                 f"was refused: {self.message}"]
        where = {id(loc.violation): loc for loc in self.located}
        for v in self.field_violations:  # in the trainer's order
            loc = where.get(id(v))
            lines.append(f"  {loc.format(self.source)}" if loc is not None else f"  {v.field}: {v.description}")
        # The retry delay, preconditions and other details, as TrainerError prints them.
        rest = TrainerError(self.code, "", [], self.retry_delay_seconds, self.preconditions, self.other_details)
        notes = [f"(Before it, {note}.)" for note in self.resized]
        return "\n".join(lines + str(rest).splitlines()[1:] + notes + [self.progress()])

    def to_dict(self) -> dict[str, Any]:
        """TrainerError.to_dict, each located field violation with its `file`, `line`, `id` and
        `prompt_field`, and a `submission` object saying where the submission stopped."""
        out = super().to_dict()
        where = {id(loc.violation): loc for loc in self.located}
        if self.field_violations:
            out["field_violations"] = []
            for v in self.field_violations:
                item: dict[str, Any] = {"field": v.field, "description": v.description}
                loc = where.get(id(v))
                if loc is not None:
                    if self.source is not None and loc.line is not None:
                        item.update(file=self.source, line=loc.line)
                    item.update(index=loc.index, id=loc.prompt_id, prompt_field=loc.prompt_field)
                out["field_violations"].append(item)
        out["submission"] = {
            "file": self.source, "batch_index": self.batch_index, "batches": self.batches,
            "batch_size": self.batch_size, "batch_first": self.batch_first, "batch_prompts": self.batch_prompts,
            "refused_batch_queued": self.refused_batch_queued,
            "alone_too_large": [
                {"index": i, "id": pid, "line": self.lines[i] if self.lines is not None else None}
                for i, pid in self.alone_too_large
            ],
            "accepted_prompts": len(self.accepted_ids), "accepted_through_line": self._accepted_through_line(),
            "accepted_ids": self.accepted_ids, "resized": self.resized, "progress": self.progress(),
        }
        return out


@dataclass(frozen=True)
class SubmitResult:
    """What `submit_file` did: the accepted ids (new and replayed), the batches sent and how many of them
    the trainer had already seen (a re-run: their request ids were answered with the first answer and
    nothing was queued again; `replayed_ids` are their prompts), the queue depth after the last batch
    queued now (a replayed answer's depth is from its first time), and `resized`: a sentence for each batch
    the trainer refused as over its message size or prompt count limit, which was then sent in smaller
    batches."""

    accepted_ids: list[str]
    batches: int
    duplicate_batches: int
    queue_depth: int
    request_ids: list[str]
    resized: list[str] = field(default_factory=list)
    replayed_ids: list[str] = field(default_factory=list)

    @property
    def queued_ids(self) -> list[str]:
        """The ids this submission queued (accepted, not replayed)."""
        replayed = set(self.replayed_ids)
        return [i for i in self.accepted_ids if i not in replayed]


def _too_large(exc: TrainerError) -> bool:
    """A request refused for its size: gRPC's RESOURCE_EXHAUSTED "Received message larger than max" (a full
    queue is RESOURCE_EXHAUSTED too, with a RetryInfo delay; sending the same bytes again cannot help)."""
    return (exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED and exc.retry_delay_seconds is None
            and "larger than max" in exc.message)


_MESSAGE_LIMIT = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")  # gRPC core's wording
# The trainer's "prompts" violations that cap a request's prompts: limits.max_prompts_per_request, and
# limits.max_queue_depth (more prompts than the queue holds can never be queued at once).
_COUNT_LIMIT = re.compile(r"at most (\d+) are allowed per request|can never fit a queue of at most (\d+)")
_REQUEST_ID_SLACK_BYTES = 64  # a SubmitPromptsRequest's request_id field beyond the user's prefix


def _message_limit(exc: TrainerError) -> int | None:
    """The message size limit (bytes) a too-large refusal names, or None."""
    m = _MESSAGE_LIMIT.search(exc.message) if _too_large(exc) else None
    return int(m.group(2)) if m else None


def _count_limit(exc: TrainerError) -> int | None:
    """The prompts-per-request limit an INVALID_ARGUMENT on the field `prompts` names, or None."""
    if exc.code is not grpc.StatusCode.INVALID_ARGUMENT:
        return None
    for v in exc.field_violations:
        m = _COUNT_LIMIT.search(v.description) if v.field == "prompts" else None
        if m:
            return int(m.group(1) or m.group(2))
    return None


def _where(index: int, lines: Sequence[int] | None) -> str:
    return f"prompt {index + 1}" + (f" (line {lines[index]})" if lines is not None else "")


class _BatchPlan:
    """How a submission is cut into requests: at most `max_prompts` prompts each, and once the trainer
    has named its message size limit, no more serialized bytes than that. `shrink` lowers the limits after
    a refusal; the grouping depends only on the prompts and the limits, so a re-run groups alike."""

    def __init__(self, prompts: Sequence[trainer_pb2.Prompt], max_prompts: int, request_id: str | None) -> None:
        self.prompts = prompts
        self.max_prompts = max_prompts
        self.max_bytes: int | None = None
        self._overhead = _REQUEST_ID_SLACK_BYTES + len((request_id or "").encode())
        self._sizes: list[int] | None = None

    def _size(self, i: int) -> int:
        """Prompt i's bytes inside the request (the field's tag and length prefix included)."""
        if self._sizes is None:
            self._sizes = [p.ByteSize() for p in self.prompts]
        n = self._sizes[i]
        return n + 1 + max(1, (n.bit_length() + 6) // 7)

    def batch(self, start: int) -> list[trainer_pb2.Prompt]:
        """The batch that begins at prompt `start` (at least one prompt)."""
        end = min(start + self.max_prompts, len(self.prompts))
        if self.max_bytes is not None:
            total, stop = self._overhead, start
            while stop < end and (stop == start or total + self._size(stop) <= self.max_bytes):
                total += self._size(stop)
                stop += 1
            end = stop
        return list(self.prompts[start:end])

    def count(self, start: int) -> int:
        """How many batches the prompts from `start` on make."""
        n = 0
        while start < len(self.prompts):
            start += len(self.batch(start))
            n += 1
        return n

    def alone_too_large(self, start: int) -> list[int]:
        """The prompts from `start` on that are more than the message size limit by themselves."""
        if self.max_bytes is None:
            return []
        return [i for i in range(start, len(self.prompts)) if self._overhead + self._size(i) > self.max_bytes]

    def shrink(self, exc: TrainerError, start: int, sent: int, where: str) -> str | None:
        """After the batch of `sent` prompts at `start` was refused with `exc`: when `exc` is the
        trainer's message size or prompt count limit and the batch can get smaller, lower the limits so
        that the next batch from `start` is smaller and return a sentence saying so; else None."""
        if sent <= 1:
            return None
        if _too_large(exc):
            limit = _message_limit(exc)
            if limit is not None:
                self.max_bytes = limit
            if limit is None or len(self.batch(start)) >= sent:
                self.max_prompts = max(1, sent // 2)
            bound = f" ({limit} bytes)" if limit is not None else ""
            return (f"the batch of {sent} prompts from {where} on was more than the trainer takes in one "
                    f"message{bound}; sent in smaller batches from there")
        count = _count_limit(exc)
        if count is None:
            return None
        self.max_prompts = max(1, min(count, sent - 1))
        return (f"the trainer takes at most {counted(count, 'prompt')} per request; batches of {self.max_prompts} from "
                f"{where} on")


def _stopped(exc: TrainerError, prompts: Sequence[trainer_pb2.Prompt], source: str | None,
             lines: Sequence[int] | None, first: int, in_batch: int, index: int, batches: int, batch_size: int,
             accepted: list[str], alone_too_large: Sequence[int] = (), resized: Sequence[str] = ()) -> SubmitError:
    """The SubmitError of batch `index` (prompts `first`.. `first + in_batch - 1`, of `batches` in all)
    refused with `exc`, its `prompts[i]...` violations traced back."""
    located = []
    for v in exc.field_violations:
        m = _PROMPT_FIELD.fullmatch(v.field)
        if m is None or int(m.group(1)) >= in_batch:
            continue
        at = first + int(m.group(1))
        located.append(LocatedViolation(v, at, prompts[at].id, m.group(2).removeprefix("."),
                                        lines[at] if lines is not None else None))
    return SubmitError(
        **{f.name: getattr(exc, f.name) for f in fields(TrainerError)},
        batch_index=index, batches=batches, batch_size=batch_size, batch_first=first, batch_prompts=in_batch,
        # a refused client certificate: the connection closed before any request was sent
        accepted_ids=list(accepted),
        refused_batch_queued=False if exc.code in _NOT_STORED or exc.tls_refused else None,
        located=located, source=source, lines=lines, total_prompts=len(prompts),
        alone_too_large=[(i, prompts[i].id) for i in alone_too_large], resized=list(resized),
    )


MAX_RECONNECT_BACKOFF_SECONDS = 5.0
"""The longest wait between two attempts to connect to a trainer that is down (gRPC's default: 120 s)."""


def check_key_pair(cert: str | Path, key: str | Path) -> None:
    """ValueError when `key` is not the private key of the certificate in `cert` (PEM files): the pair a
    client presents to a trainer that requires one. gRPC itself would only fail every handshake later,
    as UNAVAILABLE."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(f"not a certificate and its private key: {exc.reason or exc}") from None


class FollowState:
    """follow_steps' bookkeeping, apart from the network: where the next stream starts, and which reports
    a new stream may send again that were yielded already (the Go client's followState and the
    TypeScript client's FollowState do the same)."""

    def __init__(self, after_step: int) -> None:
        self.after = after_step  # the caller's: it has the reports up to this step
        self.first_started: int | None = None  # started_at (ns) of the first report of the follow
        self.last = after_step  # the last finished step yielded (at first: the caller's after_step)
        self.checkpoint: int | None = None  # the run's checkpoint step in the latest response
        # For each step a new stream may send again (above resume_after()), (started_at ns, state) of
        # its report yielded last.
        self.yielded: dict[int, tuple[int, int]] = {}
        self.gap = 0  # the highest forgotten_through a stream sent past `last`, not yielded yet

    def resume_after(self) -> int:
        """The after_step of the next stream: min(last finished step yielded, checkpoint step), because a
        restart runs every step after the checkpoint again."""
        return self.last if self.checkpoint is None else min(self.last, self.checkpoint)

    def admit(self, response: trainer_pb2.WatchStepsResponse) -> bool:
        """Record a response; True when it is to be yielded, False when its report was yielded already.
        It sets the response's forgotten_through against what was yielded: a new stream starts at the
        checkpoint, maybe below the last step yielded, so a gap it reports may hold only steps yielded
        already."""
        report = response.step
        self.checkpoint = int(response.run.checkpoint_step)
        self.gap = max(self.gap, int(response.forgotten_through))
        key = (report.started_at.ToNanoseconds(), int(report.state))
        if self.yielded.get(report.step) == key:
            return False
        if self.first_started is None:
            self.first_started = key[0]
        if self._had_before(report, key[0]):
            return False
        self.yielded[report.step] = key
        response.forgotten_through = self.gap if self.gap > self.last else 0
        self.gap = 0
        if report.state != trainer_pb2.STEP_STATE_RUNNING:
            self.last = int(report.step)
        floor = self.resume_after()
        for old in [n for n in self.yielded if n <= floor]:
            del self.yielded[old]  # no stream sends it again: the next one starts after it
        return True


    def _had_before(self, report: trainer_pb2.StepReport, started_ns: int) -> bool:
        """True for a report the caller had when it began following: of a step up to its after_step,
        never yielded here, started before the follow's first report, and not a restart's notice that
        the step is lost. A stream resumed below after_step (at the checkpoint) sends such reports."""
        if report.step > self.after or report.step in self.yielded or started_ns > (self.first_started or 0):
            return False
        return not (report.state == trainer_pb2.STEP_STATE_FAILED and report.error.startswith(_RESTART_NOTICES))


_RESTART_NOTICES = ("lost:", "abandoned:")
"""How the error of a step report a restart turned FAILED begins (the store's LOST and ABANDONED)."""


def _every_page(read_page: Callable[[str], Any], items: str) -> Iterator[Any]:
    """The `items` of every page `read_page(page_token)` answers, from the first page (token "") until
    one has no `next_page_token`; each page is read when the one before it has been consumed."""
    token = ""
    while True:
        page = read_page(token)
        yield from getattr(page, items)
        token = page.next_page_token
        if not token:
            return


class TrainerClient:
    """A blocking client of one trainer.

    Args:
        target: "HOST:PORT" of the trainer's gRPC API.
        token: bearer token sent as `authorization: Bearer <token>` (roles: submit, read, admin).
        tls: connect with TLS; `ca` is a PEM file of the CA to trust (default: the system roots).
        cert, key: PEM files of a client certificate and its private key, presented to a trainer that
            requires one (mTLS); both or neither.
        server_name: the name the trainer's certificate must carry, when it is not the target's host (a
            port-forward to localhost, an IP address).
        ca, cert, key and server_name each imply tls.
        timeout: deadline of each unary call, seconds.

    Raises ValueError when only one of cert and key is given or when key is not the private key of
    cert's certificate, and OSError when a file cannot be read.
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        *,
        tls: bool = False,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ):
        if (cert is None) != (key is None):
            raise ValueError("cert and key go together: the client certificate and its private key (PEM files)")
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # No cap of its own on what it sends: the trainer's limits.max_message_bytes alone splits a batch
            # (a cap here split batches the Go and TypeScript clients send whole: other request ids).
            ("grpc.max_send_message_length", -1),
            # gRPC's own backoff between connection attempts grows to 120 s, and a call made meanwhile
            # fails at once without trying: a trainer back after a long outage would be found up to 2
            # minutes late (and follow_steps could give up on it).
            ("grpc.max_reconnect_backoff_ms", int(MAX_RECONNECT_BACKOFF_SECONDS * 1000)),
            # This client's own connections: gRPC otherwise shares them by address within the process,
            # and a new client took over an older one's failed connection to a trainer that has since
            # come up, failing its first calls at once with UNAVAILABLE.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls or ca is not None or cert is not None or server_name:
            pem = {name: Path(path).read_bytes() for name, path in (("ca", ca), ("cert", cert), ("key", key))
                   if path is not None}
            if cert is not None and key is not None:
                try:
                    check_key_pair(cert, key)
                except ValueError as exc:
                    raise ValueError(f"cert {cert}, key {key}: {exc}") from None
            credentials = grpc.ssl_channel_credentials(pem.get("ca"), pem.get("key"), pem.get("cert"))
            self._channel = grpc.secure_channel(target, credentials, options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._stub = trainer_pb2_grpc.TrainerServiceStub(self._channel)
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self._closed = False
        self._target = target
        self._tls_files = (ca, cert, key, server_name) if tls or ca is not None or cert is not None or server_name \
            else None

    def __enter__(self) -> TrainerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel (cancels any open stream; a `follow_steps` loop then ends)."""
        self._closed = True
        self._channel.close()

    def _call(self, method: Callable[..., Any], request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> TrainerError:
        """The TrainerError of a failed call. Over TLS, a connection the trainer closed ("Socket closed")
        is looked into (grpo_client.tlscheck): when it is the trainer refusing the client certificate,
        the message says so and the error is marked as no retry mends."""
        error = TrainerError.from_rpc_error(exc)
        if error.code is grpc.StatusCode.UNAVAILABLE and _SERVER_NOT_VERIFIED.search(error.message):
            error.server_certificate_unverified = True
        if error.code is grpc.StatusCode.UNAVAILABLE and self._tls_files is not None \
                and "Socket closed" in error.message:
            ca, cert, key, server_name = self._tls_files
            refusal = client_certificate_refusal(self._target, ca=ca, cert=cert, key=key, server_name=server_name)
            if refusal is not None:
                error.message = f"{error.message} ({refusal})"
                error.client_certificate_refused = True
        return error

    # ------------------------------------------------------------------------------------ the RPCs

    def submit_prompts(self, prompts: Sequence[trainer_pb2.Prompt], request_id: str | None = None
                       ) -> trainer_pb2.SubmitPromptsResponse:
        """SubmitPrompts: queue `prompts`; with `request_id`, a repeat returns the first answer."""
        request = trainer_pb2.SubmitPromptsRequest(prompts=prompts, request_id=request_id or "")
        return self._call(self._stub.SubmitPrompts, request)  # type: ignore[no-any-return]

    def step_status(self, step: int = 0, *, include_samples: bool = False) -> trainer_pb2.StepStatusResponse:
        """StepStatus: one step (0 = the latest) and the run; with `include_samples`, the completions
        the trainer kept of that step (`samples`: text, and each backend's score and feedback)."""
        request = trainer_pb2.StepStatusRequest(step=step, include_samples=include_samples)
        return self._call(self._stub.StepStatus, request)  # type: ignore[no-any-return]

    def limits(self) -> trainer_pb2.ServerLimits:
        """What the trainer accepts (RunStatus.limits, from its `limits` config): prompts per request,
        message bytes, queue depth, ... All zeros from a trainer older than the field."""
        return self.step_status().run.limits  # type: ignore[no-any-return]

    def watch_steps(self, after_step: int = 0, include_running: bool = False, timeout: float | None = None
                    ) -> Iterator[trainer_pb2.WatchStepsResponse]:
        """WatchSteps: finished steps after `after_step`, then live ones, until the server ends the stream,
        `timeout` seconds pass (None: no limit), or the caller stops iterating."""
        yield from self._watch(after_step, include_running, timeout)

    def _watch(self, after_step: int, include_running: bool, timeout: float | None,
               on_answer: Callable[[], None] | None = None) -> Iterator[trainer_pb2.WatchStepsResponse]:
        """watch_steps, calling `on_answer` once the trainer has answered the stream (its response
        headers arrived: a trainer sends them at once, before any report) and it is still open."""
        request = trainer_pb2.WatchStepsRequest(after_step=after_step, include_running=include_running)
        stream = self._stub.WatchSteps(request, timeout=timeout, metadata=self._metadata)
        try:
            if on_answer is not None:
                stream.initial_metadata()  # blocks until the headers come or the call ends
                if not stream.done():
                    on_answer()
            yield from stream
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.CANCELLED:
                return
            raise self._error(exc) from None
        finally:
            stream.cancel()

    def export_checkpoint(self, destination: str = "", wait: bool = False, timeout: float | None = None
                          ) -> trainer_pb2.Export:
        """ExportCheckpoint: start writing a Hugging Face directory at `destination` on the trainer."""
        request = trainer_pb2.ExportCheckpointRequest(destination=destination, wait=wait)
        return self._call(self._stub.ExportCheckpoint, request, timeout).export  # type: ignore[no-any-return]

    def get_export(self, export_id: str) -> trainer_pb2.Export:
        """GetExport: the progress of an export."""
        return self._call(self._stub.GetExport, trainer_pb2.GetExportRequest(export_id=export_id)).export  # type: ignore[no-any-return]

    def list_exports(self, state: trainer_pb2.ExportState.ValueType = trainer_pb2.EXPORT_STATE_UNSPECIFIED, *,
                     page_size: int = 0, page_token: str = "") -> trainer_pb2.ListExportsResponse:
        """One page of ListExports: the exports the trainer's store knows of (only in `state` when given),
        the newest first, with the token of the next page ("" at the end)."""
        request = trainer_pb2.ListExportsRequest(state=state, page_size=page_size, page_token=page_token)
        return self._call(self._stub.ListExports, request)  # type: ignore[no-any-return]

    def iter_exports(self, state: trainer_pb2.ExportState.ValueType = trainer_pb2.EXPORT_STATE_UNSPECIFIED, *,
                     page_size: int = 0) -> Iterator[trainer_pb2.Export]:
        """Every export `list_exports` matches, page after page, the newest first."""
        return _every_page(lambda token: self.list_exports(state, page_size=page_size, page_token=token), "exports")

    def pause(self) -> trainer_pb2.RunStatus:
        """PauseTraining: the current step finishes, no new one starts."""
        return self._call(self._stub.PauseTraining, trainer_pb2.PauseTrainingRequest()).run  # type: ignore[no-any-return]

    def resume(self) -> trainer_pb2.RunStatus:
        """ResumeTraining."""
        return self._call(self._stub.ResumeTraining, trainer_pb2.ResumeTrainingRequest()).run  # type: ignore[no-any-return]

    def list_backends(self) -> trainer_pb2.ListRewardBackendsResponse:
        """ListRewardBackends: the registry and its version."""
        return self._call(self._stub.ListRewardBackends, trainer_pb2.ListRewardBackendsRequest())  # type: ignore[no-any-return]

    def set_backend(
        self,
        name: str,
        address: str,
        *,
        timeout_seconds: float = 0.0,
        max_batch_size: int = 0,
        max_concurrency: int = 0,
        tls: bool = False,
        token_file: str = "",
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
    ) -> trainer_pb2.SetRewardBackendResponse:
        """SetRewardBackend: add or replace `name` (0 values mean the trainer's defaults; the files are
        paths on the trainer: docs/rewards-router.md)."""
        backend = trainer_pb2.RewardBackend(
            name=name, address=address, timeout_seconds=timeout_seconds, max_batch_size=max_batch_size,
            max_concurrency=max_concurrency, tls=tls, token_file=token_file, ca_file=ca_file,
            cert_file=cert_file, key_file=key_file,
        )
        return self._call(self._stub.SetRewardBackend, trainer_pb2.SetRewardBackendRequest(backend=backend))  # type: ignore[no-any-return]

    def list_prompts(self, ids: Sequence[str] = (),
                     state: trainer_pb2.PromptState.ValueType = trainer_pb2.PROMPT_STATE_UNSPECIFIED, *,
                     page_size: int = 0, page_token: str = "") -> trainer_pb2.ListPromptsResponse:
        """One page of ListPrompts: submitted prompts (only `ids`, only in `state` when given) and where
        each is, in submission order, with the token of the next page ("" at the end)."""
        request = trainer_pb2.ListPromptsRequest(ids=list(ids), state=state, page_size=page_size,
                                                 page_token=page_token)
        return self._call(self._stub.ListPrompts, request)  # type: ignore[no-any-return]

    def iter_prompts(self, ids: Sequence[str] = (),
                     state: trainer_pb2.PromptState.ValueType = trainer_pb2.PROMPT_STATE_UNSPECIFIED, *,
                     page_size: int = 0, chunk: int = 1000) -> Iterator[trainer_pb2.PromptStatus]:
        """Every prompt `list_prompts` matches, page after page; more than `chunk` ids (the trainer's
        limit for one request) are asked `chunk` at a time, each chunk's prompts in submission order."""
        ids = list(ids)
        for start in range(0, max(len(ids), 1), chunk):
            part = ids[start:start + chunk]

            def page(token: str, part: list[str] = part) -> trainer_pb2.ListPromptsResponse:
                return self.list_prompts(part, state, page_size=page_size, page_token=token)

            yield from _every_page(page, "prompts")

    def cancel_prompts(self, ids: Sequence[str]) -> trainer_pb2.CancelPromptsResponse:
        """CancelPrompts: take the queued prompts among `ids` (at most 1000) out of the queue; the answer
        lists them, where each other id is, and the ids the trainer does not know (never submitted, or
        deleted under retention.prompt_rows_seconds)."""
        request = trainer_pb2.CancelPromptsRequest(ids=list(ids))
        return self._call(self._stub.CancelPrompts, request)  # type: ignore[no-any-return]

    def cancel_all(self, ids: Sequence[str], chunk: int = 1000) -> trainer_pb2.CancelPromptsResponse:
        """`cancel_prompts` for any number of ids, `chunk` at a time, the answers merged into one (its
        queue_depth from the last call)."""
        out = trainer_pb2.CancelPromptsResponse()
        for start in range(0, len(ids), chunk):
            part = self.cancel_prompts(ids[start:start + chunk])
            out.cancelled_ids.extend(part.cancelled_ids)
            out.not_cancelled.extend(part.not_cancelled)
            out.unknown_ids.extend(part.unknown_ids)
            out.queue_depth = part.queue_depth
        return out

    def delete_backend(self, name: str) -> int:
        """DeleteRewardBackend; returns the registry version after the change."""
        request = trainer_pb2.DeleteRewardBackendRequest(name=name)
        return int(self._call(self._stub.DeleteRewardBackend, request).registry_version)

    # ----------------------------------------------------------------------------- conveniences

    def submit_file(
        self,
        path: str | Path | PromptFile,
        *,
        batch_size: int = 256,
        request_id: str | None = None,
        on_batch: Callable[[int, trainer_pb2.SubmitPromptsResponse], None] | None = None,
        max_attempts: int = 5,
        on_retry: Callable[[TrainerError, float, int], None] | None = None,
    ) -> SubmitResult:
        """Submit a prompt file (a path, or one `load_prompt_file` read) in batches of `batch_size`, each
        with a request id derived from its content (or `<request_id>-<batch index>`), so running it again
        queues nothing twice.

        The whole file is parsed first: PromptFileError for a bad file, and nothing is sent. The trainer
        checks each batch against its own limits; a batch it refuses raises SubmitError, which names the
        file's line of each bad field and the prompts already accepted (the batches before it stay
        queued; submitting the file again the same way, once fixed, queues nothing twice).

        A batch refused with RESOURCE_EXHAUSTED (queue full) or UNAVAILABLE is sent again after the
        server's RetryInfo delay (or 1 s, doubling), up to `max_attempts` times; safe because of its
        request id. `on_retry(error, wait_seconds, attempt)` is called before each such wait. A batch the trainer refuses as more than it takes in one message (its
        limits.max_message_bytes) or more prompts than it takes per request (limits.max_prompts_per_request)
        stored nothing, and is sent again in smaller batches within the limit the refusal names (each such
        change is a sentence in SubmitResult.resized); only a single prompt over the message limit is an
        error (SubmitError.too_large). `on_batch(prompts_in_batch, response)` is called after each batch."""
        loaded = path if isinstance(path, PromptFile) else load_prompt_file(path)
        return self._submit(loaded.prompts, loaded.source, loaded.lines, batch_size, request_id, on_batch,
                            max_attempts, on_retry)

    def submit_all(
        self,
        prompts: Sequence[trainer_pb2.Prompt],
        *,
        batch_size: int = 256,
        request_id: str | None = None,
        on_batch: Callable[[int, trainer_pb2.SubmitPromptsResponse], None] | None = None,
        max_attempts: int = 5,
        on_retry: Callable[[TrainerError, float, int], None] | None = None,
    ) -> SubmitResult:
        """`submit_file` for prompts already in memory (a SubmitError then names prompts by index)."""
        return self._submit(prompts, None, None, batch_size, request_id, on_batch, max_attempts, on_retry)

    def _submit(
        self,
        prompts: Sequence[trainer_pb2.Prompt],
        source: str | None,
        lines: Sequence[int] | None,
        batch_size: int,
        request_id: str | None,
        on_batch: Callable[[int, trainer_pb2.SubmitPromptsResponse], None] | None,
        max_attempts: int,
        on_retry: Callable[[TrainerError, float, int], None] | None = None,
    ) -> SubmitResult:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_attempts < 1:  # 1: send each batch once, no retry
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        accepted: list[str] = []
        replayed: list[str] = []
        request_ids: list[str] = []
        resized: list[str] = []
        duplicates = 0
        depth: int | None = None
        plan = _BatchPlan(prompts, batch_size, request_id)
        start = index = 0
        while start < len(prompts):
            batch = plan.batch(start)
            rid = batch_request_id(batch, index, request_id)
            try:
                response, maybe_stored = self._submit_with_retry(batch, rid, max_attempts, on_retry)
            except TrainerError as exc:
                # A batch over the trainer's size or count limit was not stored: send the same prompts again
                # in batches within the limit the error names. The new grouping depends only on the prompts
                # and the limit, so running the same command again sends the same keys.
                note = plan.shrink(exc, start, len(batch), _where(start, lines))
                # A prompt over the size limit by itself cannot be sent: stop before sending any smaller batch,
                # so that once it is shortened the same command sends this batch as it did the first time.
                over = plan.alone_too_large(start) if note is not None else []
                if note is not None and not over:
                    resized.append(note)
                    continue
                raise _stopped(exc, prompts, source, lines, start, len(batch), index,
                               index + 1 + plan.count(start + len(batch)), batch_size, accepted, over,
                               resized) from None
            request_ids.append(rid)
            accepted += list(response.accepted_ids)
            # A duplicate after an attempt of this run that may have been stored (its answer lost) is this
            # run's own batch: queued now. Counted as a replay, the command said it had been submitted
            # before and advised a new request id, which would have queued the prompts twice.
            if response.duplicate and not maybe_stored:
                duplicates += 1
                replayed += list(response.accepted_ids)
            if not response.duplicate or depth is None:
                depth = int(response.queue_depth)
            start += len(batch)
            index += 1
            if on_batch is not None:
                on_batch(len(batch), response)
        return SubmitResult(accepted, len(request_ids), duplicates, depth or 0, request_ids, resized, replayed)

    def _submit_with_retry(self, batch: Sequence[trainer_pb2.Prompt], rid: str, max_attempts: int,
                           on_retry: Callable[[TrainerError, float, int], None] | None = None
                           ) -> tuple[trainer_pb2.SubmitPromptsResponse, bool]:
        """(the answer, whether an earlier attempt may have been stored: it failed with a code after which
        the trainer may have stored the batch and its answer was lost)."""
        delay = 1.0
        maybe_stored = False
        for attempt in range(1, max_attempts + 1):
            try:
                return self.submit_prompts(batch, rid), maybe_stored
            except TrainerError as exc:
                maybe_stored = maybe_stored or exc.code not in _NOT_STORED
                retryable = exc.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE) \
                    and not _too_large(exc) and not exc.tls_refused
                if not retryable or attempt == max_attempts:
                    raise
                wait = exc.retry_delay_seconds if exc.retry_delay_seconds is not None else delay
                if on_retry is not None:
                    on_retry(exc, wait, attempt)
                time.sleep(wait)
                delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def iter_steps(self, after_step: int = 0, *, include_running: bool = False,
                   timeout: float | None = None) -> Iterator[trainer_pb2.StepReport]:
        """The step reports of WatchSteps (see `watch_steps`), without the run status."""
        for response in self.watch_steps(after_step, include_running, timeout):
            yield response.step

    def follow_steps(
        self,
        after_step: int = 0,
        *,
        include_running: bool = False,
        retry_seconds: float = 2.0,
        give_up_seconds: float | None = 600.0,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> Iterator[trainer_pb2.WatchStepsResponse]:
        """`watch_steps` that outlives trainer restarts: when the stream ends (the trainer drained) or
        the trainer is UNAVAILABLE, it reconnects every `retry_seconds` until the trainer answers again
        (TrainerError UNAVAILABLE once `give_up_seconds` pass without an answer; None: never). Any
        answer counts, not only a report: an idle trainer that accepted the stream resets the count.
        It ends when the caller stops iterating or closes the client.

        A restarted trainer resumes from its latest checkpoint and runs the steps after it again under
        the same numbers (their earlier reports turn FAILED, "lost: ..." or "abandoned: ..."). So it
        reconnects with `after_step = min(last finished step seen, the run's checkpoint step)` and skips
        a report it has already yielded (the same step, start time and state): each report that changed
        is yielded once, the replaced ones included. A trainer serving as many streams as it takes
        (RESOURCE_EXHAUSTED with a retry delay) is asked again after that delay, without giving up.
        `on_reconnect(reason)` is called before each retry.

        A report's `forgotten_through` is set against what the caller already has: it is nonzero only
        when retention deleted reports of steps after the last finished step yielded (or `after_step`)."""
        state = FollowState(after_step)
        down_since: float | None = None  # when the trainer was last found down, since it last answered

        def answered() -> None:
            nonlocal down_since
            down_since = None

        while not self._closed:
            try:
                for response in self._watch(state.resume_after(), include_running, None, answered):
                    if state.admit(response):
                        yield response
                if self._closed:
                    return
                down_since = None  # it answered, and ended the stream itself
                reason = "the trainer ended the stream (it is shutting down)"
            except ValueError:  # grpc: "Cannot invoke RPC: Channel closed!" (closed between two checks)
                if self._closed:
                    return
                raise
            except TrainerError as exc:
                wait = retry_seconds
                if exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED and exc.retry_delay_seconds is not None:
                    # Up, but serving as many streams as it takes (limits.max_watch_streams): an answer.
                    down_since = None
                    wait = max(retry_seconds, exc.retry_delay_seconds)
                    reason = f"the trainer has no room for another stream now ({exc.message})"
                elif exc.code is not grpc.StatusCode.UNAVAILABLE or exc.tls_refused:
                    raise
                else:
                    now = time.monotonic()
                    down_since = down_since if down_since is not None else now
                    if give_up_seconds is not None and now - down_since >= give_up_seconds:
                        raise
                    reason = f"the trainer is unavailable ({exc.message})"
                if on_reconnect is not None:
                    on_reconnect(reason)
                time.sleep(wait)
                continue
            if on_reconnect is not None:
                on_reconnect(reason)
            time.sleep(retry_seconds)

    def finished_steps(self) -> list[trainer_pb2.StepReport]:
        """Every finished step of the run so far, oldest first (WatchSteps' backlog, read up to the
        latest finished step and then closed)."""
        status = self.step_status()
        last = int(status.run.latest_step)
        if status.HasField("step") and status.step.state == trainer_pb2.STEP_STATE_RUNNING:
            last -= 1
        out: list[trainer_pb2.StepReport] = []
        if last <= 0:
            return out
        for report in self.iter_steps(0, timeout=max(self.timeout, 60.0)):
            if report.state != trainer_pb2.STEP_STATE_RUNNING:
                out.append(report)
            if report.step >= last:
                break
        return out

    def wait_export(self, export_id: str, *, poll_seconds: float = 0.5, timeout: float | None = None,
                    on_progress: Callable[[trainer_pb2.Export], None] | None = None) -> trainer_pb2.Export:
        """Poll GetExport until the export is done or failed (or `timeout` seconds pass: TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            export = self.get_export(export_id)
            if on_progress is not None:
                on_progress(export)
            if export.state in (trainer_pb2.EXPORT_STATE_DONE, trainer_pb2.EXPORT_STATE_FAILED):
                return export
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"export {export_id} not finished after {timeout} s")
            time.sleep(poll_seconds)
