"""What the store returns besides the step's own types, and the errors it raises."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from grpo_server.types import PromptState


@dataclass(frozen=True)
class SubmitResult:
    """The answer to one submission: the ids now queued (request order), the queue depth after it, and
    whether it is a replay of an earlier request with the same request_id."""

    accepted_ids: tuple[str, ...]
    queue_depth: int
    duplicate: bool = False


@dataclass(frozen=True)
class PromptEntry:
    """One submission of a prompt and where it is (ListPrompts). `seq`: its queue position (submission
    order); `step`: its latest lease (None if never leased); `checkpoint_step`: set when TRAINED;
    times in unix seconds."""

    seq: int
    id: str
    state: PromptState
    step: int | None
    checkpoint_step: int | None
    attempts: int
    reason: str
    submitted_at: float
    updated_at: float


@dataclass(frozen=True)
class CancelResult:
    """The answer to one cancellation: the ids taken out of the queue (request order), the latest
    submission of each other known id (request order), the ids never submitted, and the queue depth after."""

    cancelled_ids: tuple[str, ...]
    not_cancelled: tuple[PromptEntry, ...]
    unknown_ids: tuple[str, ...]
    queue_depth: int


@dataclass(frozen=True)
class CheckpointRecord:
    """A durable training checkpoint: the step it contains, where it is, when it was recorded (unix s)."""

    step: int
    path: str
    created_at: float


class StoreError(Exception):
    """Base of the store's errors."""


class StoreFull(sqlite3.OperationalError):
    """A write found the store's disk full (SQLITE_FULL). Nothing of that write was stored: SQLite rolled
    it back. An sqlite3.OperationalError, so what handles the store's errors handles this one too."""

    def __init__(self, store_dir: Path, cause: BaseException) -> None:
        self.store_dir = store_dir
        super().__init__(
            f"the store's disk is full: a write to {store_dir} failed ({cause}) and nothing of it was stored; "
            "free space on that volume or grow it")
        self.sqlite_errorcode = getattr(cause, "sqlite_errorcode", sqlite3.SQLITE_FULL)
        self.sqlite_errorname = getattr(cause, "sqlite_errorname", "SQLITE_FULL")


class DuplicatePromptError(StoreError):
    """Some prompt ids of a submission are already queued or leased. `ids` lists them."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = tuple(ids)
        super().__init__(f"prompt ids already queued or leased: {', '.join(self.ids)}")


class RequestIdReusedError(StoreError):
    """A request_id that was first used for other prompts: `first_ids` are the ids that request queued."""

    def __init__(self, request_id: str, first_ids: Sequence[str]) -> None:
        self.request_id = request_id
        self.first_ids = tuple(first_ids)
        super().__init__(f"request_id {request_id!r} was first used for other prompts")


class QueueFullError(StoreError):
    """Queuing the submission would exceed max_queue_depth."""

    def __init__(self, depth: int, requested: int, max_depth: int) -> None:
        self.depth, self.requested, self.max_depth = depth, requested, max_depth
        super().__init__(
            f"the queue holds {depth} of at most {max_depth} prompts; {requested} more "
            f"{'does' if requested == 1 else 'do'} not fit"
        )


@dataclass(frozen=True)
class PruneResult:
    """What one Store.prune dropped: the content of that many finished prompts, that many request ids,
    that many finished prompts' rows (content and all) and that many step reports."""

    prompt_contents: int
    request_ids: int
    prompt_rows: int = 0
    step_reports: int = 0
    export_records: int = 0
