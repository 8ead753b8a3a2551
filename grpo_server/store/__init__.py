"""The durable store (SQLite, WAL): prompt queue, idempotency keys, step history, checkpoints."""

from grpo_server.store.lock import StoreInUse, lock_store
from grpo_server.store.records import (
    CancelResult,
    CheckpointRecord,
    DuplicatePromptError,
    PromptEntry,
    PruneResult,
    QueueFullError,
    RequestIdReusedError,
    StoreError,
    StoreFull,
    SubmitResult,
)
from grpo_server.store.sqlite_store import Store

__all__ = [
    "CancelResult",
    "CheckpointRecord",
    "DuplicatePromptError",
    "PromptEntry",
    "PruneResult",
    "QueueFullError",
    "RequestIdReusedError",
    "Store",
    "StoreError",
    "StoreFull",
    "StoreInUse",
    "SubmitResult",
    "lock_store",
]
