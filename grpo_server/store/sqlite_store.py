"""The durable store: the prompt queue, idempotency keys, step history and checkpoints in one SQLite file
(`<store_dir>/grpo.sqlite`, WAL mode, synchronous=FULL so a committed transaction survives a power cut).

Prompt states (DESIGN.md section 4): QUEUED -> LEASED(step) -> TRAINED(checkpoint) or FAILED. A prompt
counts as trained only when commit_checkpoint records a durable checkpoint containing its update, in the
same transaction. Every change is one transaction, so a kill -9 at any moment leaves each prompt in
exactly one state; recover() at startup puts every LEASED prompt back in the queue at its original
position (the `seq` column: submission order, never changed).

One connection guarded by a lock serves every thread (the API's handler pool and the training loop):
SQLite serialises writers anyway, and each operation here is short.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from grpo_server.store.codec import prompt_from_json, prompt_to_json, step_from_row, step_row
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
from grpo_server.types import PromptRecord, PromptState, StepReport, StepState

SCHEMA_VERSION = 4  # 2: prompt counts by state kept by triggers; 3: steps.dropped_prompt_ids, prompts_by_id,
# run_values; 4: the cancelled state
FILENAME = "grpo.sqlite"
ABANDONED = "abandoned: the trainer stopped during this step; its prompts went back to the queue"
# run_values key: {"through": the highest step whose report prune deleted, "completed": how many of the
# deleted ones were COMPLETED}
FORGOTTEN_STEPS = "forgotten_steps"
# run_values key: the highest place (exports.seq) an export record deleted by prune had, so that a new
# export never takes a place again that a page token may still point past
EXPORTS_PRUNED_THROUGH = "exports_pruned_through"
LOST = "lost: the trainer stopped before a checkpoint contained this step; its prompts went back to the queue"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue position: submission order, never changed
    id TEXT NOT NULL,
    state TEXT NOT NULL,                    -- queued | leased | trained | failed | cancelled
    step INTEGER,                           -- the step of the latest lease
    checkpoint_step INTEGER,                -- the checkpoint that contains it (trained)
    attempts INTEGER NOT NULL DEFAULT 0,    -- failed attempts (steps that took no update)
    reason TEXT NOT NULL DEFAULT '',        -- why it failed
    data TEXT NOT NULL,                     -- the PromptRecord as JSON (codec.py)
    request_id TEXT,
    submitted_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS prompts_by_state ON prompts (state, seq);
-- An id may be queued or leased only once at a time (a trained or failed id may be submitted again).
CREATE UNIQUE INDEX IF NOT EXISTS prompts_active_id ON prompts (id) WHERE state IN ('queued', 'leased');
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    response TEXT NOT NULL,                 -- the first answer, JSON {accepted_ids, queue_depth}
    created_at REAL NOT NULL
);
-- What Store.prune takes from (retention.*): finished prompts whose content is still kept, by when they
-- finished, and request ids by age. Added without a schema version: a trainer that does not know them
-- keeps them up to date all the same (SQLite maintains every index).
CREATE INDEX IF NOT EXISTS prompts_content_kept ON prompts (updated_at)
    WHERE state IN ('trained', 'failed', 'cancelled') AND data <> '';
CREATE INDEX IF NOT EXISTS requests_by_age ON requests (created_at);
-- Finished prompts by when they finished, content or not, for retention.prompt_rows_seconds (added the
-- same way).
CREATE INDEX IF NOT EXISTS prompts_finished ON prompts (updated_at)
    WHERE state IN ('trained', 'failed', 'cancelled');
CREATE TABLE IF NOT EXISTS steps (
    step INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    metrics TEXT NOT NULL,
    rollout_engine TEXT NOT NULL,
    prompt_ids TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT ''
);
-- The latest step is the one that started last (Store.latest_step).
CREATE INDEX IF NOT EXISTS steps_by_start ON steps (started_at);
CREATE TABLE IF NOT EXISTS checkpoints (
    step INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- Completions a step kept for reading (training.samples_per_step), as JSON CompletionSample dicts, by
-- the step's number and start: a number run again after a crash starts later, so the samples of an
-- earlier run of it never show beside the new report. (Added without a schema version: a trainer that
-- does not know the table ignores it.)
-- Each export's last known progress, as JSON (checkpoint.ExportRecords), so that GetExport answers for
-- an export after the trainer that made it restarted. (Added without a schema version, as above. `seq`,
-- the order exports started in, for ListExports, is added to an older table by _init_schema.)
CREATE TABLE IF NOT EXISTS exports (
    export_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,                    -- pending | writing | done | failed
    data TEXT NOT NULL,
    updated_at REAL NOT NULL,
    seq INTEGER
);
CREATE TABLE IF NOT EXISTS step_samples (
    step INTEGER NOT NULL,
    started_at REAL NOT NULL,
    n INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (step, n)
);
"""

# The number of prompts in each state, kept by triggers in the transaction of each change (version 2):
# counting rows costs time in proportion to the queue and the run's history, on every submission and
# every status answer.
_STATE_COUNTS = [
    "CREATE TABLE state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT INTO state_counts (state, n) VALUES ('queued', 0), ('leased', 0), ('trained', 0), ('failed', 0)",
    "UPDATE state_counts SET n = (SELECT count(*) FROM prompts WHERE prompts.state = state_counts.state)",
    "CREATE TRIGGER prompts_count_insert AFTER INSERT ON prompts "
    "BEGIN UPDATE state_counts SET n = n + 1 WHERE state = NEW.state; END",
    "CREATE TRIGGER prompts_count_delete AFTER DELETE ON prompts "
    "BEGIN UPDATE state_counts SET n = n - 1 WHERE state = OLD.state; END",
    "CREATE TRIGGER prompts_count_update AFTER UPDATE OF state ON prompts WHEN OLD.state <> NEW.state "
    "BEGIN UPDATE state_counts SET n = n - 1 WHERE state = OLD.state; "
    "UPDATE state_counts SET n = n + 1 WHERE state = NEW.state; END",
]

_STEP_COLUMNS = "step, state, started_at, finished_at, metrics, rollout_engine, prompt_ids, error, dropped_prompt_ids"
_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit
# How long one of Store.prune's transactions should hold the store (its batches adapt to it).
PRUNE_TRANSACTION_SECONDS = 0.05


def _advice(exc: sqlite3.DatabaseError, store_dir: Path) -> str:
    """What to do about an error opening the store: a file the trainer may not write is a matter of
    permissions or mounts, not damage (restoring a backup would not help)."""
    code = getattr(exc, "sqlite_errorname", "")
    if code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return (f"the trainer must be able to write {FILENAME} and create files beside it in {store_dir}: check "
                "their owner and permissions and that the volume is not mounted read-only")
    if code.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        return f"check the disk that holds {store_dir}: it may be full or failing"
    return "it is not a trainer store, or it is damaged; restore it from a backup or start on another store directory"


# Marks a request fingerprint taken of the prompts as sent (`Store.replay`); one without it is of the
# prompts as stored (`_fingerprint`), as trainers before it recorded.
_SENT = "sent:"


def _first_answer(request_id: str, row: tuple[str, str | None], matching: set[str | None]) -> SubmitResult:
    """The first answer stored in a `requests` row (response, fingerprint) when its fingerprint is one of
    `matching` (or was never recorded); RequestIdReusedError otherwise."""
    first = json.loads(row[0])
    if row[1] is not None and row[1] not in matching:
        raise RequestIdReusedError(request_id, first["accepted_ids"])
    return SubmitResult(tuple(first["accepted_ids"]), int(first["queue_depth"]), duplicate=True)


def _fingerprint(rows: Sequence[tuple[str, str]]) -> str:
    """A digest of a request's prompts as stored, (id, prompt_to_json) in order, to tell a retry from a
    reuse (ids are printable ASCII: no NUL in them)."""
    h = hashlib.sha256()
    for pid, data in rows:
        h.update(f"{pid}\0{data}\n".encode())
    return h.hexdigest()


class Store:
    """The trainer's durable state. Thread-safe. `max_attempts`: failed attempts after which a prompt is
    given up on (FAILED) by requeue_step(count_attempt=True)."""

    def __init__(self, store_dir: Path, *, max_attempts: int = 3) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.store_dir = Path(store_dir)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.store_dir / FILENAME
        self.max_attempts = max_attempts
        self._lock = threading.RLock()
        if self.path.is_dir():  # sqlite3 would say only "unable to open database file"
            raise StoreError(f"{self.path}: cannot open the store: it is a directory, where the store's database "
                             "file goes: move it out of the way")
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc} ({_advice(exc, self.store_dir)})") from None
        try:
            self._check_intact()
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._init_schema()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"{self.path}: cannot open the store: {exc} ({_advice(exc, self.store_dir)})") from None
            raise

    def _check_intact(self) -> None:
        """Raise sqlite3.DatabaseError when the file is damaged. A damaged page otherwise goes unnoticed
        until a query reads it, which fails the run in the middle of training instead of at start-up.
        (quick_check reads every page once: about 0.4 s a GB.)"""
        rows = self._conn.execute("PRAGMA quick_check(3)").fetchall()
        if rows != [("ok",)]:
            found = "; ".join(str(r[0]).replace("\n", "; ") for r in rows)
            raise sqlite3.DatabaseError(f"database disk image is malformed ({found[:300]})")

    def _init_schema(self) -> None:
        with self._write() as c:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            row = c.execute("SELECT version FROM schema_version").fetchone()
            version = 1 if row is None else int(row[0])  # a new store starts at 1 and migrates below
            if row is None:
                c.execute("INSERT INTO schema_version (version) VALUES (1)")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}; this trainer reads up to {SCHEMA_VERSION}"
                )
            # Migrations, one version at a time, inside this transaction.
            if version < 2:
                for stmt in _STATE_COUNTS:
                    c.execute(stmt)
            if version < 3:  # the prompts dynamic sampling dropped from each step's update (JSON list)
                c.execute("ALTER TABLE steps ADD COLUMN dropped_prompt_ids TEXT NOT NULL DEFAULT '[]'")
                # ListPrompts by id, whatever the state (prompts_active_id covers queued and leased only).
                c.execute("CREATE INDEX IF NOT EXISTS prompts_by_id ON prompts (id, seq)")
                # What the run was told over the API and must keep across a restart (pause, API-set
                # backends): JSON values by key (get_value / set_value).
                c.execute("CREATE TABLE IF NOT EXISTS run_values (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            if version < 4:  # prompts taken out of the queue by CancelPrompts
                c.execute("INSERT OR IGNORE INTO state_counts (state, n) VALUES ('cancelled', 0)")
                # What each request id was first used for, so that reusing one for other prompts is refused
                # rather than answered with the first answer (NULL for requests stored before: replayed).
                c.execute("ALTER TABLE requests ADD COLUMN fingerprint TEXT")
            c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            # exports.seq: not in the table as the trainer that added it made it, and left NULL by that
            # trainer's writes to a newer store; numbered here after the others, in the order they were
            # first stored (a row keeps its rowid while it is only updated in place).
            if "seq" not in {row[1] for row in c.execute("PRAGMA table_info(exports)")}:
                c.execute("ALTER TABLE exports ADD COLUMN seq INTEGER")
            c.execute("UPDATE exports SET seq = (SELECT COALESCE(MAX(seq), 0) FROM exports) + rowid "
                      "WHERE seq IS NULL")
            c.execute("CREATE UNIQUE INDEX IF NOT EXISTS exports_by_seq ON exports (seq)")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front, so no upgrade deadlock).
        A failure, the COMMIT's included, leaves nothing of it stored; a full disk raises StoreFull."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                # After some errors (a full disk, I/O) SQLite has rolled the transaction back itself, and a
                # ROLLBACK would fail with "no transaction is active", hiding the cause.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise StoreFull(self.store_dir, exc) from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    # ---------------------------------------------------------------------------------- queue

    def replay(self, request_id: str, sent: str) -> SubmitResult | None:
        """The first answer to `request_id` (duplicate=True) when that request was accepted with the prompts
        whose digest as sent is `sent`; None otherwise: the id is unknown, was first used for other prompts,
        or was stored by an older trainer that kept only the digest of the prompts as resolved (in each
        case the request is validated and `submit` decides, raising RequestIdReusedError for a reuse).

        Asked before the request is validated: a retry of an accepted request must get its first answer
        even when it would no longer pass (a backend it names deleted since, a limit lowered, another
        `rewards.default` after a restart), or the client is told its queued prompts were refused. Other
        prompts under a known id go through validation first, as before: a client that cuts a refused
        batch smaller and sends it again under the same id must hear what was wrong with the batch."""
        with self._read() as c:
            row = c.execute("SELECT response, fingerprint FROM requests WHERE request_id = ?",
                            (request_id,)).fetchone()
        if row is None or (row[1] is not None and row[1] != _SENT + sent):
            return None
        return _first_answer(request_id, row, {_SENT + sent})

    def submit(
        self, prompts: Sequence[PromptRecord], request_id: str | None, max_queue_depth: int,
        sent: str | None = None,
    ) -> SubmitResult:
        """Queue `prompts` (in order) in one transaction: all of them or none.

        A `request_id` seen before with the same prompts returns the first answer with duplicate=True and
        stores nothing; with other prompts it raises RequestIdReusedError. `sent` is the digest of the
        prompts as the client sent them (see `replay`), recorded with the request id; without it, the
        digest of the records is. Raises DuplicatePromptError (listing the ids) when an id is already
        queued or leased, and QueueFullError when the queue would hold more than `max_queue_depth` prompts.
        """
        now = time.time()
        rows = [(p.id, prompt_to_json(p)) for p in prompts]  # encoded once: the fingerprint and the rows
        resolved = _fingerprint(rows) if request_id else None
        fingerprint = _SENT + sent if request_id and sent else resolved
        with self._write() as c:
            if request_id:
                row = c.execute("SELECT response, fingerprint FROM requests WHERE request_id = ?",
                                (request_id,)).fetchone()
                if row is not None:
                    return _first_answer(request_id, row, {fingerprint, resolved})
            ids = [p.id for p in prompts]
            active: set[str] = set()
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                active.update(
                    r[0]
                    for r in c.execute(  # by id: the planner would otherwise walk every queued row
                        f"SELECT id FROM prompts INDEXED BY prompts_active_id "
                        f"WHERE state IN ('queued', 'leased') AND id IN ({marks})", chunk
                    )
                )
            if active:
                raise DuplicatePromptError([i for i in ids if i in active])
            depth = self._depth(c)
            if depth + len(prompts) > max_queue_depth:
                raise QueueFullError(depth, len(prompts), max_queue_depth)
            c.executemany(
                "INSERT INTO prompts (id, state, data, request_id, submitted_at, updated_at) "
                "VALUES (?, 'queued', ?, ?, ?, ?)",
                [(pid, data, request_id, now, now) for pid, data in rows],
            )
            result = SubmitResult(tuple(ids), depth + len(prompts))
            if request_id:
                c.execute(
                    "INSERT INTO requests (request_id, response, created_at, fingerprint) VALUES (?, ?, ?, ?)",
                    (request_id, json.dumps({"accepted_ids": ids, "queue_depth": result.queue_depth}), now,
                     fingerprint),
                )
            return result

    @staticmethod
    def _depth(c: sqlite3.Connection) -> int:
        return int(c.execute("SELECT n FROM state_counts WHERE state = 'queued'").fetchone()[0])

    def queue_depth(self) -> int:
        """Prompts waiting in the queue."""
        with self._read() as c:
            return self._depth(c)

    def lease(self, n: int, step: int, *, partial_after: float | None = None) -> list[PromptRecord]:
        """Take the `n` oldest queued prompts for `step` (FIFO by submission): exactly n, or [] when fewer
        are queued, unless `partial_after` is given and nothing has been submitted for that many seconds:
        then every queued prompt (a tail shorter than a batch)."""
        if n <= 0:
            return []
        with self._write() as c:
            rows = c.execute(
                "SELECT seq, id, data FROM prompts WHERE state = 'queued' ORDER BY seq LIMIT ?", (n,)
            ).fetchall()
            if len(rows) < n and not (rows and partial_after is not None and self._quiet_for(c, partial_after)):
                return []
            now = time.time()
            c.executemany(
                "UPDATE prompts SET state = 'leased', step = ?, updated_at = ? WHERE seq = ?",
                [(step, now, r[0]) for r in rows],
            )
            return [prompt_from_json(r[1], r[2]) for r in rows]

    @staticmethod
    def _quiet_for(c: sqlite3.Connection, seconds: float) -> bool:
        """True when the latest submission (the highest seq) is at least `seconds` old."""
        latest = Store._last_submitted_at(c)
        return latest is not None and time.time() - latest >= seconds

    @staticmethod
    def _last_submitted_at(c: sqlite3.Connection) -> float | None:
        row = c.execute("SELECT submitted_at FROM prompts ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def last_submitted_at(self) -> float | None:
        """When the latest prompt was submitted (time.time()), None before the first: `lease`'s
        `partial_after` counts from it."""
        with self._read() as c:
            return self._last_submitted_at(c)

    def completed_steps(self, up_to: int) -> int:
        """How many steps numbered <= `up_to` are COMPLETED (took an optimizer step), those whose reports
        prune deleted included. `up_to` is at least the latest checkpoint's step (prune deletes none
        after it), or the deleted ones cannot be told apart."""
        with self._read() as c:
            through, completed = self._forgotten(c)
            if up_to < through:
                raise ValueError(f"completed_steps({up_to}): the reports up to step {through} were deleted")
            row = c.execute("SELECT count(*) FROM steps WHERE state = ? AND step <= ?",
                            (StepState.COMPLETED.value, up_to)).fetchone()
        return completed + int(row[0])

    def latest_completed_step(self) -> int:
        """The number of the latest COMPLETED step (0 when none), also when retention deleted its report."""
        with self._read() as c:
            row = c.execute("SELECT max(step) FROM steps WHERE state = ?", (StepState.COMPLETED.value,)).fetchone()
            value = self._value(c, FORGOTTEN_STEPS) or {}
        return max(int(row[0] or 0), int(value.get("latest_completed", 0)))

    def requeue_step(
        self, step: int, *, count_attempt: bool, reason: str = "", ids: Sequence[str] | None = None
    ) -> int:
        """Put the prompts leased by `step` (only those in `ids`, when given) back in the queue at their
        original positions (so the next step leases the same prompts). With `count_attempt`, each
        prompt's failed attempts go up by one and a prompt that reaches max_attempts is FAILED instead,
        with the reason "gave up after N failed attempts", followed by `reason` (the last one's cause).

        Returns how many prompts this call moved to FAILED (0 without `count_attempt`): each prompt
        leaves LEASED once, so summing the returns counts every prompt given up on exactly once (the
        trainer's `grpo_prompts_failed_total`)."""
        now = time.time()
        failed = 0
        which = "state = 'leased' AND step = ?"
        args: list[object] = [step]
        if ids is not None:  # one JSON parameter, however many ids
            which += " AND id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(ids)))
        with self._write() as c:
            if count_attempt:
                c.execute(f"UPDATE prompts SET attempts = attempts + 1 WHERE {which}", args)
                # The count is the row's own: a restart with a lower max_attempts fails a prompt past it.
                failed = c.execute(
                    "UPDATE prompts SET state = 'failed', reason = 'gave up after ' || attempts || ' failed attempts' "
                    f"|| ?, updated_at = ? WHERE {which} AND attempts >= ?",
                    [f"; the last: {reason}" if reason else "", now, *args, self.max_attempts],
                ).rowcount
            c.execute(f"UPDATE prompts SET state = 'queued', updated_at = ? WHERE {which}", [now, *args])
        return int(failed)

    def cancel(self, ids: Sequence[str]) -> CancelResult:
        """Take the queued prompts among `ids` out of the queue (CANCELLED), in one transaction. Ids that
        are not queued are left as they are and answered with their latest submission; ids never
        submitted are listed apart."""
        now = time.time()
        wanted = json.dumps(list(ids))
        with self._write() as c:
            cancelled = {
                r[0] for r in c.execute(
                    # By id, not by state: SQLite's planner chose prompts_by_state, a walk of the whole queue.
                    "UPDATE prompts INDEXED BY prompts_by_id SET state = 'cancelled', updated_at = ? "
                    "WHERE state = 'queued' AND id IN (SELECT value FROM json_each(?)) RETURNING id", (now, wanted),
                ).fetchall()
            }
            latest = {
                e.id: e for e in (
                    PromptEntry(seq, pid, PromptState(st), *rest) for seq, pid, st, *rest in c.execute(
                        "SELECT seq, id, state, step, checkpoint_step, attempts, reason, submitted_at, updated_at "
                        "FROM prompts WHERE seq IN (SELECT max(seq) FROM prompts INDEXED BY prompts_by_id "
                        "WHERE id IN (SELECT value FROM json_each(?)) GROUP BY id)", (wanted,),
                    )
                )
            }
            return CancelResult(
                cancelled_ids=tuple(i for i in ids if i in cancelled),
                not_cancelled=tuple(latest[i] for i in ids if i in latest and i not in cancelled),
                unknown_ids=tuple(i for i in ids if i not in latest),
                queue_depth=self._depth(c),
            )

    # ------------------------------------------------------------------------------ retention

    def prune(self, *, content_before: float | None, requests_before: float | None,
              rows_before: float | None = None, steps_before: float | None = None,
              exports_before: float | None = None, batch: int = 5000) -> PruneResult:
        """Drop what a run no longer needs (config retention.*), `batch` rows per transaction so that
        submissions and status calls wait for none of them for long:

        - the whole row of prompts that finished (TRAINED, FAILED or CANCELLED: no state leads back to
          the queue) before `rows_before` (time.time()); `counts` still counts them;
        - the content (messages, answer, tests, metadata) of the other prompts that finished before
          `content_before`; each such submission's row stays, so ListPrompts, CancelPrompts and the
          counts still account for it;
        - the request ids SubmitPrompts stored before `requests_before`: a request sent again with one
          of them is a new submission;
        - the reports (and kept completions) of steps that finished before `steps_before`, except the
          latest step and those after the latest checkpoint (a restart runs those again); what
          `completed_steps` and `forgotten_steps` need of them is kept in run_values;
        - the records of exports that finished (done or failed) before `exports_before` (the exported
          directories are not touched).

        None keeps that kind for ever. The file does not shrink: SQLite reuses the freed pages."""
        rows = contents = requests = steps = 0
        if rows_before is not None:
            rows = self._in_batches(lambda c, n: self._drop_rows(c, rows_before, n), batch)
        if content_before is not None:
            contents = self._in_batches(lambda c, n: self._drop_contents(c, content_before, n), batch)
        if requests_before is not None:
            requests = self._in_batches(lambda c, n: c.execute(
                "DELETE FROM requests WHERE request_id IN (SELECT request_id FROM requests INDEXED BY "
                "requests_by_age WHERE created_at < ? LIMIT ?)", (requests_before, n),
            ).rowcount, batch)
        if steps_before is not None:
            steps = self._in_batches(lambda c, n: self._drop_steps(c, steps_before, n), batch)
        exports = 0
        if exports_before is not None:
            exports = self._in_batches(lambda c, n: self._drop_exports(c, exports_before, n), batch)
        return PruneResult(contents, requests, rows, steps, exports)

    def _drop_exports(self, c: sqlite3.Connection, before: float, batch: int) -> int:
        """Delete up to `batch` records of exports that finished before `before`; keep the highest place
        deleted in run_values (put_export numbers after it)."""
        gone = c.execute(
            "DELETE FROM exports WHERE export_id IN (SELECT export_id FROM exports WHERE state IN ('done', "
            "'failed') AND updated_at < ? LIMIT ?) RETURNING seq", (before, batch),
        ).fetchall()
        highest = max((seq for (seq,) in gone if seq is not None), default=0)
        if highest > (self._value(c, EXPORTS_PRUNED_THROUGH) or 0):
            self._put_value(c, EXPORTS_PRUNED_THROUGH, highest)
        return len(gone)

    def _in_batches(self, one: Callable[[sqlite3.Connection, int], int], batch: int) -> int:
        """Run `one(c, n)` (it changes at most n rows and says how many) in write transactions of their own
        until it changes fewer than n; the rows changed in all. n starts at 64 and doubles while a
        transaction takes under half of PRUNE_TRANSACTION_SECONDS, halves while one takes longer, and stays
        within 1..`batch`: a row of large content (a 64 KiB message, 1 MiB of tests) takes as long to
        delete as hundreds of small ones, and every API call waits for the transaction."""
        total, n = 0, min(batch, 64)
        while True:
            started = time.monotonic()
            with self._write() as c:
                done = one(c, n)
            total += done
            if done < n:
                return total
            took = time.monotonic() - started
            if took < PRUNE_TRANSACTION_SECONDS / 2:
                n = min(batch, n * 2)
            elif took > PRUNE_TRANSACTION_SECONDS:
                n = max(1, n // 2)

    @staticmethod
    def _drop_contents(c: sqlite3.Connection, before: float, batch: int) -> int:
        """Empty the content of up to `batch` prompts that finished before `before`; how many.

        Each row is deleted and inserted again without its content rather than updated: SQLite merges
        pages that a DELETE leaves underfull, but an UPDATE that shrinks a row leaves its page as it was,
        and new rows always go to the end of the table, so the space would never be used again (the file
        would grow as fast as without pruning). The state counts' triggers see one delete and one insert
        of the same state: they stay as they are. The content itself is never read (a batch of large
        prompts was read whole into memory only to be thrown away)."""
        columns = [row[1] for row in c.execute("PRAGMA table_info(prompts)") if row[1] != "data"]
        rows = c.execute(
            f"SELECT {', '.join(columns)} FROM prompts INDEXED BY prompts_content_kept WHERE state IN ('trained', "
            "'failed', 'cancelled') AND data <> '' AND updated_at < ? LIMIT ?", (before, batch),
        ).fetchall()
        if not rows:
            return 0
        seq = columns.index("seq")
        c.execute("DELETE FROM prompts WHERE seq IN (SELECT value FROM json_each(?))",
                  (json.dumps([r[seq] for r in rows]),))
        c.executemany(
            f"INSERT INTO prompts ({', '.join(columns)}, data) VALUES ({', '.join('?' * len(columns))}, '')", rows)
        return len(rows)

    @staticmethod
    def _drop_rows(c: sqlite3.Connection, before: float, batch: int) -> int:
        """Delete up to `batch` prompts that finished before `before`; how many. The state counts'
        delete trigger takes each one off its state: it is added back, so that the counts keep counting
        every submission (RunStatus's prompts_trained stays the run's total)."""
        rows = c.execute(
            "SELECT seq, state FROM prompts INDEXED BY prompts_finished WHERE state IN ('trained', 'failed', "
            "'cancelled') AND updated_at < ? LIMIT ?", (before, batch),
        ).fetchall()
        if not rows:
            return 0
        c.execute("DELETE FROM prompts WHERE seq IN (SELECT value FROM json_each(?))",
                  (json.dumps([seq for seq, _ in rows]),))
        for state, n in Counter(state for _, state in rows).items():
            c.execute("UPDATE state_counts SET n = n + ? WHERE state = ?", (n, state))
        return len(rows)

    @staticmethod
    def _drop_steps(c: sqlite3.Connection, before: float, batch: int) -> int:
        """Delete the reports and kept completions of up to `batch` steps that finished before `before`,
        at or before the latest checkpoint and before the latest step; how many. The highest step
        deleted, how many of them were COMPLETED and the highest COMPLETED one are added to run_values'
        FORGOTTEN_STEPS in the same transaction."""
        ckpt = c.execute("SELECT max(step) FROM checkpoints").fetchone()[0]
        highest = c.execute("SELECT max(step) FROM steps").fetchone()[0]
        if ckpt is None or highest is None:
            return 0
        # The latest step is the one that started last (latest_step): after a restart the highest number
        # may be a report of the run before, which the run has not reached again (deleting the real
        # latest then made that stale FAILED report the latest step for good).
        latest = c.execute("SELECT step FROM steps ORDER BY started_at DESC, step DESC LIMIT 1").fetchone()[0]
        rows = c.execute(
            "SELECT step, state FROM steps WHERE step <= ? AND step < ? AND step <> ? AND state <> ? AND finished_at < ? "
            "ORDER BY step LIMIT ?", (ckpt, highest, latest, StepState.RUNNING.value, before, batch),
        ).fetchall()
        if not rows:
            return 0
        numbers = json.dumps([step for step, _ in rows])
        c.execute("DELETE FROM steps WHERE step IN (SELECT value FROM json_each(?))", (numbers,))
        c.execute("DELETE FROM step_samples WHERE step IN (SELECT value FROM json_each(?))", (numbers,))
        prior = Store._value(c, FORGOTTEN_STEPS) or {}
        deleted_completed = [step for step, state in rows if state == StepState.COMPLETED.value]
        Store._put_value(c, FORGOTTEN_STEPS, {
            "through": max(int(prior.get("through", 0)), max(step for step, _ in rows)),
            "completed": int(prior.get("completed", 0)) + len(deleted_completed),
            # for latest_completed_step once no completed step's report is left (the later ones skipped)
            "latest_completed": max([int(prior.get("latest_completed", 0)), *deleted_completed]),
        })
        return len(rows)

    @staticmethod
    def _forgotten(c: sqlite3.Connection) -> tuple[int, int]:
        """(the highest step whose report was deleted, how many deleted reports were COMPLETED); (0, 0)
        while none was."""
        value = Store._value(c, FORGOTTEN_STEPS)
        if value is None:
            return 0, 0
        return int(value["through"]), int(value["completed"])

    def forgotten_steps(self) -> int:
        """The highest step whose report retention.step_reports_seconds deleted (0 while none was): a
        step at or below it without a report ran, and its report is gone."""
        with self._read() as c:
            return self._forgotten(c)[0]

    @property
    def files(self) -> dict[str, Path]:
        """The store's SQLite files: "db" the database, "wal" its write-ahead log (absent at times)."""
        return {"db": self.path, "wal": self.path.with_name(self.path.name + "-wal")}

    def file_bytes(self) -> int:
        """The database file and its WAL, in bytes."""
        return sum(p.stat().st_size for p in self.files.values() if p.exists())

    def compact(self) -> tuple[int, int]:
        """Rewrite the database to the size of what it holds (SQLite's VACUUM, then the WAL folded in and
        truncated); returns the files' bytes (file_bytes) before and after. Pruning frees pages that later
        rows reuse, but the file never shrinks by itself. VACUUM writes a copy of the live data first and
        replaces the file only when it is whole: a full disk or a crash leaves the store as it was."""
        before = self.file_bytes()
        with self._lock:
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return before, self.file_bytes()

    # ---------------------------------------------------------------------------- checkpoints

    def commit_checkpoint(self, step: int, path: str) -> None:
        """Record a durable checkpoint of the state after `step` and, in the same transaction, mark every
        prompt leased by a step <= `step` TRAINED in it. Call only after the checkpoint's files are
        durable on disk."""
        now = time.time()
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO checkpoints (step, path, created_at) VALUES (?, ?, ?)", (step, path, now)
            )
            c.execute(
                "UPDATE prompts SET state = 'trained', checkpoint_step = ?, updated_at = ? "
                "WHERE state = 'leased' AND step <= ?",
                (step, now, step),
            )

    def get_value(self, key: str) -> Any:
        """The JSON value stored under `key` by set_value, or None."""
        with self._read() as c:
            return self._value(c, key)

    def set_value(self, key: str, value: Any) -> None:
        """Store `value` (anything json.dumps takes; None deletes the key) under `key`, durably."""
        with self._write() as c:
            self._put_value(c, key, value)

    @staticmethod
    def _value(c: sqlite3.Connection, key: str) -> Any:
        """get_value inside a transaction the caller holds."""
        row = c.execute("SELECT value FROM run_values WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    @staticmethod
    def _put_value(c: sqlite3.Connection, key: str, value: Any) -> None:
        """set_value inside a transaction the caller holds."""
        if value is None:
            c.execute("DELETE FROM run_values WHERE key = ?", (key,))
        else:
            c.execute("INSERT OR REPLACE INTO run_values (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def put_export(self, export_id: str, state: str, data: dict[str, Any]) -> None:
        """Store an export's progress (`data`: JSON-able) under its id, durably, replacing what was there.
        A new id takes the next place in the order list_exports reads (after every place given before,
        also those of records pruned since); an update keeps its place."""
        with self._write() as c:
            pruned_through = int(self._value(c, EXPORTS_PRUNED_THROUGH) or 0)
            c.execute(
                "INSERT INTO exports (export_id, state, data, updated_at, seq) "
                "VALUES (?, ?, ?, ?, MAX(?, (SELECT COALESCE(MAX(seq), 0) FROM exports)) + 1) "
                "ON CONFLICT (export_id) DO UPDATE SET state = excluded.state, data = excluded.data, "
                "updated_at = excluded.updated_at",
                (export_id, state, json.dumps(data), time.time(), pruned_through),
            )

    def get_export(self, export_id: str) -> dict[str, Any] | None:
        """What put_export stored under `export_id`, or None."""
        with self._read() as c:
            row = c.execute("SELECT data FROM exports WHERE export_id = ?", (export_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_exports(
        self, *, state: str | None = None, before_seq: int = 0, limit: int = 100
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` stored exports, the newest first, from before place `before_seq` (0: from the
        newest), only those in `state` (when given): (place, what put_export stored) each."""
        where = ["seq IS NOT NULL"]  # NULL only between an older trainer's write and the next open
        params: list[object] = []
        if before_seq:
            where.append("seq < ?")
            params.append(before_seq)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        with self._read() as c:
            rows = c.execute(f"SELECT seq, data FROM exports WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                             (*params, limit)).fetchall()
        return [(seq, dict(json.loads(data))) for seq, data in rows]

    def unfinished_exports(self) -> list[dict[str, Any]]:
        """The stored exports still pending or writing, oldest first: after a restart, those the stopped
        trainer did not finish."""
        with self._read() as c:
            rows = c.execute("SELECT data FROM exports WHERE state IN ('pending', 'writing') "
                             "ORDER BY updated_at").fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def latest_checkpoint(self) -> CheckpointRecord | None:
        """The checkpoint of the highest step, or None.

        The trainer's own checkpoints (recorded as `.../checkpoints/step-N`) are located in this store
        directory, wherever it was when they were recorded: a store moved, copied or restored to another
        path (or opened from another working directory, when its path was relative) resumes from its own
        checkpoints, not from the old place's."""
        with self._read() as c:
            row = c.execute("SELECT step, path, created_at FROM checkpoints ORDER BY step DESC LIMIT 1").fetchone()
        if row is None:
            return None
        recorded = Path(row[1])
        path = str(self.store_dir / "checkpoints" / recorded.name) if recorded.parent.name == "checkpoints" else row[1]
        return CheckpointRecord(int(row[0]), path, float(row[2]))

    def recover(self) -> int:
        """At startup, before any lease: put every LEASED prompt back in the queue at its original
        position (no checkpoint contains its update: commit_checkpoint would have marked it TRAINED), and
        mark steps recorded RUNNING after the latest checkpoint FAILED ("abandoned") and those recorded
        COMPLETED after it FAILED too ("lost": the run resumes from the checkpoint, so their update is
        gone and their numbers are taken again). Returns how many prompts were re-queued."""
        now = time.time()
        with self._write() as c:
            row = c.execute("SELECT max(step) FROM checkpoints").fetchone()
            latest = int(row[0]) if row and row[0] is not None else 0
            requeued = c.execute(
                "UPDATE prompts SET state = 'queued', updated_at = ? WHERE state = 'leased'", (now,)
            ).rowcount
            c.execute(
                "UPDATE steps SET state = ?, error = ?, finished_at = coalesce(finished_at, ?) "
                "WHERE state = ? AND step > ?",
                (StepState.FAILED.value, ABANDONED, now, StepState.RUNNING.value, latest),
            )
            c.execute(
                "UPDATE steps SET state = ?, error = ? WHERE state = ? AND step > ?",
                (StepState.FAILED.value, LOST, StepState.COMPLETED.value, latest),
            )
            return int(requeued)

    # ---------------------------------------------------------------------------------- steps

    def record_step(self, report: StepReport, *, samples: Sequence[dict[str, Any]] = (),
                    keep_sample_steps: int = 0) -> None:
        """Insert or replace the report of `report.step` (RUNNING first, then its final state). With
        `samples` (CompletionSample dicts), keep them with the report in the same transaction, and with
        `keep_sample_steps` > 0 drop the samples of steps that many or more before this one."""
        with self._write() as c:
            c.execute(f"INSERT OR REPLACE INTO steps ({_STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", step_row(report))
            if samples:
                c.execute("DELETE FROM step_samples WHERE step = ?", (report.step,))
                c.executemany(
                    "INSERT INTO step_samples (step, started_at, n, data) VALUES (?, ?, ?, ?)",
                    [(report.step, report.started_at, n, json.dumps(sample)) for n, sample in enumerate(samples)],
                )
            if keep_sample_steps > 0:
                c.execute("DELETE FROM step_samples WHERE step <= ?", (report.step - keep_sample_steps,))

    def step_samples(self, report: StepReport) -> list[dict[str, Any]]:
        """The completions kept with this run of `report.step` (record_step's `samples`), in order;
        [] when none were or they were dropped."""
        with self._read() as c:
            rows = c.execute("SELECT data FROM step_samples WHERE step = ? AND started_at = ? ORDER BY n",
                             (report.step, report.started_at)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def get_step(self, step: int) -> StepReport | None:
        """The report of one step, or None."""
        with self._read() as c:
            row = c.execute(f"SELECT {_STEP_COLUMNS} FROM steps WHERE step = ?", (step,)).fetchone()
        return None if row is None else step_from_row(row)

    def latest_step(self) -> StepReport | None:
        """The report of the step that started last, or None before the first. After a restart the steps
        after the checkpoint run again under their numbers: until the run reaches them again, the higher
        numbered reports are those of the run before (FAILED, "lost"/"abandoned"), not the latest step."""
        with self._read() as c:
            row = c.execute(f"SELECT {_STEP_COLUMNS} FROM steps ORDER BY started_at DESC, step DESC LIMIT 1").fetchone()
        return None if row is None else step_from_row(row)

    def steps_after(self, step: int, limit: int = 1000) -> list[StepReport]:
        """Reports of steps numbered after `step`, in order, at most `limit`."""
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_STEP_COLUMNS} FROM steps WHERE step > ? ORDER BY step LIMIT ?", (step, limit)
            ).fetchall()
        return [step_from_row(r) for r in rows]

    # ------------------------------------------------------------------------------- accounting

    def counts(self) -> dict[PromptState, int]:
        """Number of prompt submissions in each state (every state present, 0 when none), those whose rows
        prune deleted included."""
        out = {s: 0 for s in PromptState}
        with self._read() as c:
            for state, n in c.execute("SELECT state, n FROM state_counts"):
                out[PromptState(state)] = int(n)
        return out

    def prompt_states(self) -> dict[str, tuple[PromptState, int | None]]:
        """id -> (state, step) of each id's latest submission. step: the leasing step when LEASED, the
        checkpoint step when TRAINED, the last leasing step (or None) when QUEUED or FAILED."""
        out: dict[str, tuple[PromptState, int | None]] = {}
        with self._read() as c:
            for pid, state, step, ckpt in c.execute(
                "SELECT id, state, step, checkpoint_step FROM prompts ORDER BY seq"
            ):
                st = PromptState(state)
                out[pid] = (st, ckpt if st is PromptState.TRAINED else step)
        return out

    def list_prompts(
        self, *, ids: Sequence[str] = (), state: PromptState | None = None, after_seq: int = 0, limit: int = 100
    ) -> list[PromptEntry]:
        """Up to `limit` submissions after queue position `after_seq`, in submission order, only those
        of `ids` (when given) and in `state` (when given)."""
        where: list[str] = ["seq > ?"]
        params: list[object] = [after_seq]
        if ids:
            where.append("id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(ids)))
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        # Given ids, look them up by id: with a state too, SQLite's planner chose prompts_by_state, a walk
        # of every prompt in that state (a trained history of 200k: 80 ms under the store's lock).
        index = "INDEXED BY prompts_by_id " if ids else ""
        with self._read() as c:
            rows = c.execute(
                "SELECT seq, id, state, step, checkpoint_step, attempts, reason, submitted_at, updated_at "
                f"FROM prompts {index}WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", (*params, limit),
            ).fetchall()
        return [PromptEntry(seq, pid, PromptState(st), *rest) for seq, pid, st, *rest in rows]

    def failure_reasons(self) -> dict[str, str]:
        """id -> reason, for prompts that FAILED."""
        with self._read() as c:
            return {pid: reason for pid, reason in c.execute("SELECT id, reason FROM prompts WHERE state = 'failed'")}

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed into the main file)."""
        with self._lock:
            self._conn.close()
