"""Checkpoints: the training state the trainer resumes from, and Hugging Face exports people load.

Training checkpoints live in `<store-dir>/checkpoints/step-<N>/` (the engine's model, optimizer,
scheduler and RNG state; the SDPO teacher, `sdpo_teacher.safetensors`, when the run keeps one). They are
written to a temporary directory with `manifest.json` (every file's size and sha256, and the step),
flushed to disk and renamed into place, and only then is the checkpoint recorded in the store: a prompt counts as trained once all of it is durable. Before a
restart loads one, `check_checkpoint_fits` checks it against its manifest (CheckpointCorrupt names the
damaged file).

Exports are plain Hugging Face directories (safetensors, config.json, tokenizer files,
generation_config.json) plus `manifest.json` listing every file with its size and sha256 and the step.
`transformers` and vLLM load them as is. An export copies the weights (the only moment it holds up
training) and writes the files in a background thread; its progress is pollable.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import itertools
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from grpo_server.store.space import unreserved_bytes

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


# ------------------------------------------------------------------------------------------- helpers


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Lowercase hex SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entries(root: Path, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every file under `root` (but those named in `exclude`, relative paths) as manifest entries
    {path, size_bytes, sha256}, sorted by path. The files are hashed in parallel (hashlib lets go of the
    GIL), since a training state can be many gigabytes."""
    skip = set(exclude)
    paths = [p for p in sorted(Path(root).rglob("*")) if p.is_file() and str(p.relative_to(root)) not in skip]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(paths)))) as pool:
        digests = list(pool.map(sha256_file, paths))
    return [{"path": str(p.relative_to(root)), "size_bytes": p.stat().st_size, "sha256": d}
            for p, d in zip(paths, digests, strict=True)]


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under root to disk (so a rename after it is durable)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_weights(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of named tensors (the state copy an export holds training up for)."""
    return {name: t.detach().to("cpu", copy=True) for name, t in named}


# -------------------------------------------------------------------------------------- HF exports


def write_hf_directory(
    weights: Mapping[str, torch.Tensor],
    config: Any,
    tokenizer: Any,
    destination: Path,
    *,
    step: int,
    generation_config: Any = None,
    extra_manifest: Mapping[str, Any] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """Write a Hugging Face model directory atomically and return its manifest's file list.

    The directory is built beside `destination` and renamed into place at the end; `destination` must
    not exist or be empty. Tied weights (lm_head sharing the embedding) are stored once, as
    `save_pretrained` does. Files: model.safetensors (sharded above 5 GB), config.json, tokenizer files,
    generation_config.json, manifest.json (every other file with size and sha256, and the step).
    """
    from huggingface_hub import save_torch_state_dict

    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"export destination {destination} exists and is not empty")
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Modes as a plain mkdir and open would give them (mkdtemp and the weights writer make 0700/0600):
    # a model server running as another user must be able to read the export. An empty destination the
    # user made keeps its own mode.
    umask = _umask()
    dir_mode = stat.S_IMODE(destination.stat().st_mode) if destination.exists() else 0o777 & ~umask
    file_mode = 0o666 & ~umask
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        state = dict(weights)
        if getattr(config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        if progress:
            progress(0.1)
        save_torch_state_dict(state, tmp, max_shard_size="5GB", safe_serialization=True)
        if progress:
            progress(0.7)
        if getattr(config, "use_cache", None) is False:
            # The trainer turns the KV cache off for training; a served model wants it (HF's default):
            # exported off, a plain forward returned no cache.
            config = copy.deepcopy(config)
            config.use_cache = True
        config.save_pretrained(tmp)
        if generation_config is not None:
            generation_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        files = file_entries(tmp)
        manifest = {"step": step, "created_at": time.time(), "files": files, **(extra_manifest or {})}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for p in tmp.rglob("*"):
            p.chmod(dir_mode if p.is_dir() else file_mode)
        tmp.chmod(dir_mode)
        fsync_tree(tmp)
        if destination.exists():
            destination.rmdir()
        os.rename(tmp, destination)
        _fsync_dir(destination.parent)
        if progress:
            progress(1.0)
        return files
    except BaseException as exc:
        full = disk_full_error(exc, destination.parent, f"the model directory for {destination.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        if full is not None:
            raise full from exc
        raise


FULL_BELOW_BYTES = 1 << 20  # a write that failed with less than this free on its volume ran out of space


def disk_full_error(exc: BaseException, directory: Path, what: str) -> OSError | None:
    """An OSError ENOSPC to raise (from `exc`) in place of `exc` when writing `what` under `directory`
    failed because its volume is full, which the writers do not all say: torch's reads "[enforce fail at
    inline_container.cc] unexpected pos 140672 vs 140560". A writer fills the volume before its write
    fails, so one left with under FULL_BELOW_BYTES free (counted before the partial files are removed)
    was full. Free means beyond every reserve (unreserved_bytes): a volume root filled still shows ext4's
    own reserve (up to 16 MiB) to root, which no write can take. None when `exc` says so itself, or is
    something else."""
    if not isinstance(exc, Exception) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return None
    try:
        free = unreserved_bytes(directory)
    except OSError:
        return None
    if free >= FULL_BELOW_BYTES:
        return None
    return OSError(errno.ENOSPC, f"No space left on device: {what} did not fit in {directory} ({free} bytes were "
                                 f"free when writing it failed with {type(exc).__name__}: {exc})")


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, racing other threads' files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


class DestinationUnwritable(OSError):
    """An export destination the trainer cannot write. `destination` is the path asked for; the message
    says which directory or file failed and why."""

    def __init__(self, destination: Path, problem: str) -> None:
        super().__init__(f"cannot write the export to {destination}: {problem}")
        self.destination = str(destination)


def os_reason(exc: OSError) -> str:
    """An OSError's cause in words, without Python's `[Errno N]` and repeated path."""
    return exc.strerror or str(exc)


def _taken(path: Path) -> bool:
    """Whether something is at `path` other than an empty directory (an unreadable one: no, and
    check_destination then says why)."""
    try:
        return os.path.lexists(path) and (path.is_symlink() or not path.is_dir() or any(path.iterdir()))
    except OSError:
        return False


def check_destination(destination: Path) -> None:
    """Refuse, before anything is copied, an export `destination` that is not an empty directory or
    cannot be written.

    Creates the missing parent directories (the export needs them), then creates and removes a
    temporary file in the parent, where write_hf_directory builds the export. Raises FileExistsError
    when `destination` exists and is not an empty directory, DestinationUnwritable (an OSError, never a
    FileExistsError) when a directory cannot be made or the file cannot be written; the parent
    directories made here are removed again then, so a refusal leaves nothing behind.
    """
    destination = Path(destination)
    try:
        occupied = destination.exists() and (not destination.is_dir() or any(destination.iterdir()))
    except OSError as exc:  # a directory on the way that cannot be read
        raise DestinationUnwritable(destination, f"cannot look at it: {os_reason(exc)}") from exc
    if occupied:
        raise FileExistsError(f"destination {destination} exists and is not an empty directory")
    # The export is built beside the destination and renamed into place, which neither a symbolic link
    # (even to an empty directory, or to nothing) nor a mount point can take: they were accepted and the
    # export failed in the background after writing everything.
    if destination.is_symlink():
        raise DestinationUnwritable(destination, "it is a symbolic link: give the directory it points to, or a new one")
    if destination.exists() and os.path.ismount(destination):
        raise DestinationUnwritable(destination, "it is a mount point, which the finished export cannot be renamed "
                                                 "onto: give a directory inside it")
    parent = destination.parent
    missing: list[Path] = []  # the parent directories this check makes, deepest first
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        missing.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DestinationUnwritable(destination, f"{ancestor} is not a directory")
    try:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationUnwritable(destination, f"cannot make the directory {parent}: {os_reason(exc)}") from exc
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".probe", dir=parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise DestinationUnwritable(destination, f"cannot create a file in {parent}: {os_reason(exc)}") from exc
    except DestinationUnwritable:
        for made in missing:
            with contextlib.suppress(OSError):  # not made here after all, or not empty: leave it
                made.rmdir()
        raise


def verify_manifest(directory: Path) -> dict[str, Any]:
    """Check every file of an export against its manifest; returns the manifest, raises ValueError on a
    mismatch or a missing file."""
    manifest = json.loads((Path(directory) / MANIFEST).read_text())
    for entry in manifest["files"]:
        path = Path(directory) / entry["path"]
        if not path.is_file():
            raise ValueError(f"{entry['path']}: listed in the manifest but missing")
        if sha256_file(path) != entry["sha256"]:
            raise ValueError(f"{entry['path']}: sha256 does not match the manifest")
    return manifest


def with_manifest(files: list[dict[str, Any]], directory: Path) -> list[dict[str, Any]]:
    """An export's file list: its manifest's, then the manifest itself (what Export.files lists)."""
    manifest = Path(directory) / MANIFEST
    return [*files, {"path": MANIFEST, "size_bytes": manifest.stat().st_size, "sha256": sha256_file(manifest)}]


@dataclass
class ExportJob:
    """One export's progress (mirrors grpo.trainer.v1.Export)."""

    export_id: str
    destination: str
    step: int
    state: str = "pending"  # pending | writing | done | failed
    progress: float = 0.0
    files: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    started_at: float = 0.0  # time.time(); 0 in a record kept before these fields
    finished_at: float = 0.0  # time.time() once done or failed
    done: threading.Event = field(default_factory=threading.Event, repr=False)


INTERRUPTED = ("interrupted: the trainer stopped while writing this export, so its destination was not made; "
               "export again")

_RECORD_FIELDS = ("export_id", "destination", "step", "state", "progress", "files", "error", "started_at",
                  "finished_at")


class ExportRecords:
    """Exports' progress kept in the store (its `put_export`, `get_export`, `unfinished_exports`), so that
    GetExport answers for an export after the trainer that made it restarted, and an export a stopped
    trainer did not finish is reported FAILED, not unknown."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def put(self, job: ExportJob) -> None:
        self._store.put_export(job.export_id, job.state, {k: getattr(job, k) for k in _RECORD_FIELDS})

    def get(self, export_id: str) -> ExportJob | None:
        data = self._store.get_export(export_id)
        return None if data is None else self._job(data)

    def stored(self, state: str | None, before: int, limit: int) -> list[tuple[int, ExportJob]]:
        """Up to `limit` stored exports, the newest first, from before place `before` (0: the newest), only
        those stored in `state` (when given): (place, job) each."""
        return [(seq, self._job(data)) for seq, data in self._store.list_exports(state=state, before_seq=before,
                                                                                   limit=limit)]

    @staticmethod
    def _job(data: dict[str, Any]) -> ExportJob:
        """An ExportJob from what put stored (a record kept before the times were has none: 0)."""
        return ExportJob(**{k: data[k] for k in _RECORD_FIELDS if k in data})

    def close_unfinished(self) -> list[ExportJob]:
        """Settle the exports a stopped trainer left pending or writing; call before any export starts.
        One whose destination is complete (it was renamed into place, then the trainer stopped before
        saying so) and matches its manifest is done; the rest are failed with INTERRUPTED. Returns them."""
        settled = []
        for data in self._store.unfinished_exports():
            job = self._job(data)
            try:
                files = with_manifest(verify_manifest(Path(job.destination))["files"], Path(job.destination))
                job = replace(job, state="done", progress=1.0, files=files, finished_at=time.time())
            except (OSError, ValueError, KeyError):  # no destination, or not a whole export
                job = replace(job, state="failed", error=INTERRUPTED, finished_at=time.time())
            self.put(job)
            settled.append(job)
        return settled


def page_of(rows: list[tuple[int, ExportJob]], limit: int) -> tuple[list[ExportJob], int]:
    """A page of `limit` jobs from up to `limit` + 1 (place, job) rows read for it, and the place to read
    on from (0: the rows held no more)."""
    return [job for _, job in rows[:limit]], rows[limit - 1][0] if len(rows) > limit else 0


class ExportManager:
    """Runs exports in background threads. `snapshot` is called on the caller's thread and must return
    (step, weights copy); the caller arranges that it does not race an optimizer step.

    One export at a time per destination: a second one while the first is written is refused at once
    (FileExistsError), rather than writing a whole copy and then failing. An export is built in a hidden
    temporary directory beside its destination (write_hf_directory), which a killed process leaves
    behind: the ones in `default_dir` (`.step-*`) are removed here, since only this trainer (it holds
    the store's lock) writes there and none of its exports has started yet."""

    def __init__(
        self,
        snapshot: Callable[[], tuple[int, dict[str, torch.Tensor]]],
        config: Any,
        tokenizer: Any,
        default_dir: Path,
        *,
        generation_config: Any = None,
        on_done: Callable[[ExportJob, float], None] | None = None,
        records: ExportRecords | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._records = records
        self._config = config
        self._tokenizer = tokenizer
        self._generation_config = generation_config
        self._default_dir = Path(default_dir)
        self._on_done = on_done
        self._jobs: dict[str, ExportJob] = {}
        self._writing: dict[str, str] = {}  # absolute destination -> id of the export writing it
        self._lock = threading.Lock()
        for stale in self._default_dir.glob(".step-*"):
            log.info("removing %s, left by an export that did not finish", stale)
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)

    def start(self, destination: str | None, wait: bool) -> ExportJob:
        """Copy the weights now, write them in the background; with `wait`, return when written.

        The destination is checked first, synchronously (check_destination): FileExistsError when it
        is a non-empty directory or a file, or another export is writing it; DestinationUnwritable (an
        OSError) when it cannot be written; either way nothing is written or left behind. A named
        destination is checked before the weights are copied; the default one depends on the step, so it
        is checked just after."""
        if destination:
            self._check_free(Path(destination))
        step, weights = self._snapshot()
        dest = Path(destination) if destination else self._default_destination(step)
        if not destination:
            self._check_free(dest)
        job = ExportJob(export_id=uuid.uuid4().hex[:16], destination=str(dest), step=step, started_at=time.time())
        with self._lock:
            self._refuse_if_writing(dest)  # another start may have taken it since the check
            if self._records is not None:
                self._records.put(job)  # before anything is written: a store that is full refuses the export
            self._writing[os.path.abspath(dest)] = job.export_id
            self._jobs[job.export_id] = job
        threading.Thread(target=self._run, args=(job, weights), name=f"export-{job.export_id}", daemon=True).start()
        if wait:
            job.done.wait()
        return self.get(job.export_id) or job

    def finish(self, timeout: float) -> list[ExportJob]:
        """Wait up to `timeout` seconds for the exports being written (a drain); those still unfinished."""
        deadline = time.monotonic() + timeout
        with self._lock:
            jobs = [job for job in self._jobs.values() if not job.done.is_set()]
        for job in jobs:
            job.done.wait(max(deadline - time.monotonic(), 0.0))
        return [job for job in jobs if not job.done.is_set()]

    def _default_destination(self, step: int) -> Path:
        """The first of ``step-N``, ``step-N.2``, ``step-N.3``... in the default directory that is missing
        or an empty directory and that no export is writing: a step may be exported twice, and after a
        restart the steps after the checkpoint run again under their numbers, so an export of the run
        before (other weights) keeps its directory and the new one gets the next name."""
        base = f"step-{step:06d}"
        with self._lock:
            for k in itertools.count(1):
                dest = self._default_dir / (base if k == 1 else f"{base}.{k}")
                if os.path.abspath(dest) not in self._writing and not _taken(dest):
                    return dest
        raise AssertionError("unreachable")

    def _check_free(self, destination: Path) -> None:
        with self._lock:
            self._refuse_if_writing(destination)
        check_destination(destination)

    def _refuse_if_writing(self, destination: Path) -> None:
        """FileExistsError when an export is writing `destination` now (call with the lock held)."""
        other = self._writing.get(os.path.abspath(destination))
        if other is not None:
            raise FileExistsError(
                f"destination {destination} is being written by export {other}: wait until it is done "
                "(GetExport) or choose another destination"
            )

    def get(self, export_id: str) -> ExportJob | None:
        """A copy of the job's current progress (from the store for an export of an earlier process), or
        None for an unknown id, or for a finished export whose record retention has pruned (as ListExports
        no longer lists it)."""
        with self._lock:
            job = self._jobs.get(export_id)
            if job is not None and (self._records is None or job.state in ("pending", "writing")):
                return replace(job, files=list(job.files))
        if self._records is None:
            return None
        stored = self._records.get(export_id)
        if job is None:
            return stored
        if stored is None:  # pruned under retention.export_records_seconds: forget it here too
            with self._lock:
                self._jobs.pop(export_id, None)
            return None
        with self._lock:  # this process's copy: newer than the store's when keeping the last state failed
            return replace(job, files=list(job.files))

    def page(self, state: str | None, before: int, limit: int) -> tuple[list[ExportJob], int]:
        """A page of ListExports: up to `limit` exports, the newest first, from before place `before`
        (0: the newest), only those in `state` (when given), each as `get` answers now; and the place to
        read on from (0: no more). The store is read with the filter, then this process's own copy replaces
        each of its exports (its progress is newer than the store's), so an export whose state moved on
        since it was stored is left out: a page may be short and still have a next one."""
        stored, more_before = page_of(self._stored(state, before, limit + 1), limit)
        with self._lock:
            page = [replace(j, files=list(j.files)) if (j := self._jobs.get(job.export_id)) is not None else job
                    for job in stored]
        return [j for j in page if state is None or j.state == state], more_before

    def _stored(self, state: str | None, before: int, limit: int) -> list[tuple[int, ExportJob]]:
        """ExportRecords.stored; without records (a manager kept in memory only), this process's exports,
        placed in the order they started."""
        if self._records is not None:
            return self._records.stored(state, before, limit)
        with self._lock:
            jobs = list(enumerate(self._jobs.values(), 1))
        return [(n, j) for n, j in reversed(jobs)
                if (not before or n < before) and (state is None or j.state == state)][:limit]

    def _keep(self, job: ExportJob) -> None:
        """Store a copy of the job's progress; where that fails (a full store disk, say), log it: this
        process still answers from memory, and the next start settles what the store says."""
        if self._records is None:
            return
        with self._lock:
            copy = replace(job, files=list(job.files))
        try:
            self._records.put(copy)
        except Exception:  # noqa: BLE001 - the export itself goes on or is settled
            log.exception("export %s: could not keep its state (%s) in the store", job.export_id, copy.state)

    def _set(self, job: ExportJob, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(job, k, v)

    def _finish(self, job: ExportJob, **kw: Any) -> None:
        """Set the job's final state and free its destination, at once for a poller; then keep it in the
        store (where that fails, this process still answers for it, and the next start settles it)."""
        with self._lock:
            self._writing.pop(os.path.abspath(job.destination), None)
            for k, v in {**kw, "finished_at": time.time()}.items():
                setattr(job, k, v)
        self._keep(job)

    def _run(self, job: ExportJob, weights: dict[str, torch.Tensor]) -> None:
        started = time.monotonic()
        self._set(job, state="writing")
        self._keep(job)  # so that ListExports filtered by state finds it among the writing ones
        try:
            files = write_hf_directory(
                weights,
                self._config,
                self._tokenizer,
                Path(job.destination),
                step=job.step,
                generation_config=self._generation_config,
                progress=lambda f: self._set(job, progress=f),
            )
            self._finish(job, state="done", progress=1.0, files=with_manifest(files, Path(job.destination)))
            log.info("exported step %d to %s", job.step, job.destination)
        except Exception as exc:  # noqa: BLE001 - reported through the job, not raised into a thread
            log.exception("export %s failed", job.export_id)
            self._finish(job, state="failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            job.done.set()
            if self._on_done:
                self._on_done(job, time.monotonic() - started)


# ---------------------------------------------------------------------------------- training state


def checkpoint_dir(store_dir: Path, step: int) -> Path:
    """Where the training checkpoint of `step` lives."""
    return Path(store_dir) / "checkpoints" / f"step-{step:06d}"


def save_training_checkpoint(
    save_state: Callable[[Path], None], store_dir: Path, step: int, meta: Mapping[str, Any], keep: int = 2
) -> Path:
    """Write a training checkpoint durably: `save_state(tmpdir)` fills a temporary directory, `meta.json`
    (the step and `meta`) and `manifest.json` (every file's size and sha256, and the step) join it, and
    it is fsynced and renamed to checkpoints/step-<N>. Returns the final path. The caller records it in
    the store only after this returns, and removes old ones with prune_checkpoints then (`keep` is not
    used here: only the caller knows which checkpoint the store resumes from)."""
    final = checkpoint_dir(store_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:06d}.", dir=final.parent))
    try:
        save_state(tmp)
        (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=2) + "\n")
        manifest = {"step": step, "created_at": time.time(), "files": file_entries(tmp, exclude=[MANIFEST])}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(final.parent)
    except BaseException as exc:
        full = disk_full_error(exc, final.parent, f"the checkpoint of step {step}")
        shutil.rmtree(tmp, ignore_errors=True)
        if full is not None:
            raise full from exc
        raise
    return final


def parameter_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    """name -> shape of each parameter of `model`: what a training checkpoint must fit. Take it before a
    DeepSpeed engine partitions the parameters (ZeRO-3 leaves them empty)."""
    return {name: list(p.shape) for name, p in model.named_parameters()}


class CheckpointMismatch(ValueError):
    """A store's training checkpoint does not fit the configured model (another run's store)."""


class CheckpointCorrupt(ValueError):
    """A store's training checkpoint is missing, or one of its files is not what its manifest says."""


def verify_training_checkpoint(directory: Path) -> None:
    """Raise CheckpointCorrupt, naming the file and what is wrong with it, when the checkpoint
    `directory` is missing or a file its manifest lists is missing, of another size or another sha256.
    Files not in the manifest are not checked. A checkpoint from
    before manifests passes."""
    directory = Path(directory)
    restore = (
        f". A restart does not fall back to an older checkpoint: the store counts the prompts of this one "
        f"trained, and they would be lost. Restore {directory} from a backup, or start a new run with "
        "another --store-dir"
    )
    if not directory.is_dir():
        raise CheckpointCorrupt(f"the store's latest training checkpoint {directory} is missing{restore}")
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        return
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = [(str(e["path"]), int(e["size_bytes"]), str(e["sha256"])) for e in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointCorrupt(f"{manifest_path}: cannot read the checkpoint's manifest ({exc}){restore}") from None
    problems: dict[str, str] = {}
    present = []
    for name, size, _ in entries:
        path = directory / name
        if not path.is_file():
            problems[name] = "missing"
        elif path.stat().st_size != size:
            problems[name] = f"{path.stat().st_size} bytes, the manifest says {size}"
        else:
            present.append(name)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(present)))) as pool:
        digests = dict(zip(present, pool.map(lambda n: sha256_file(directory / n), present), strict=True))
    for name, _, sha in entries:
        if name in digests and digests[name] != sha:
            problems[name] = "its sha256 is not the one in the manifest (the file changed after it was written)"
    if problems:
        name = next(n for n, _, _ in entries if n in problems)  # the first in the manifest's order
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointCorrupt(
            f"the training checkpoint of step {manifest.get('step', '?')} is damaged: {directory / name}: "
            f"{problems[name]}{more}{restore}"
        )


def checkpoint_settings(cfg: Any) -> dict[str, Any]:
    """The settings a training checkpoint can only be resumed with, by config field, for its meta.json:
    the engine that wrote its state, and the LoRA scale and placement that make its adapters the policy
    (the shapes alone do not: another lora_alpha loads and silently scales the trained adapters)."""
    a = cfg.algorithm
    settings: dict[str, Any] = {"training.engine": cfg.training.engine, "algorithm.lora_rank": a.lora_rank}
    if a.lora_rank > 0:
        settings |= {"algorithm.lora_alpha": a.lora_alpha, "algorithm.lora_target_modules": list(a.lora_target_modules)}
    return settings


def check_checkpoint_fits(directory: Path, shapes: Mapping[str, list[int]], model: str,
                          settings: Mapping[str, Any] | None = None) -> None:
    """Check a store's training checkpoint before it is loaded: CheckpointCorrupt when it is missing or
    damaged (verify_training_checkpoint), CheckpointMismatch, naming the first differences, when the
    settings recorded in its meta.json (`checkpoint_settings` at save time) are not `settings`, or the
    parameters recorded there (`parameter_shapes` at save time) are not `shapes`; `model` names the
    configured model in the message. A checkpoint from before these records passes."""
    verify_training_checkpoint(directory)
    meta_path = Path(directory) / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    recorded = meta.get("settings") or {}
    changed = [f"{k}: {recorded[k]!r} there, {v!r} here" for k, v in (settings or {}).items()
               if k in recorded and recorded[k] != v]
    if changed:
        raise CheckpointMismatch(
            f"the store's checkpoint of step {meta.get('step', '?')} ({directory}) was written with other settings "
            f"than the configured ones: {'; '.join(changed)}. Its state can only be resumed with the settings that "
            "wrote it: configure those again, or start a new run with another --store-dir"
        )
    saved = meta.get("parameters")
    if saved is None or saved == dict(shapes):
        return
    differences = [f"{n}: missing here" for n in saved if n not in shapes]
    differences += [f"{n}: not in the checkpoint" for n in shapes if n not in saved]
    differences += [f"{n}: {saved[n]} there, {shapes[n]} here" for n in saved if n in shapes and saved[n] != shapes[n]]
    raise CheckpointMismatch(
        f"the store's checkpoint of step {meta.get('step', '?')} ({directory}) was written for another model "
        f"({meta.get('model_path', 'unknown')}) than the configured one ({model}): {len(differences)} parameters "
        f"differ ({'; '.join(differences[:3])}{'; ...' if len(differences) > 3 else ''}). A store directory "
        "holds one run: start a new one with another --store-dir, or configure the model this store trained"
    )


def prune_checkpoints(store_dir: Path, keep_steps: Iterable[int], keep: int) -> None:
    """Remove training checkpoints other than the newest `keep` (never one in `keep_steps`) and any
    temporary directory left by a crash."""
    root = Path(store_dir) / "checkpoints"
    if not root.exists():
        return
    protected = set(keep_steps)
    for tmp in root.glob(".step-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    # By step number, not by name: past step 999999 the names no longer sort as the numbers do.
    done = sorted((int(p.name[5:]), p) for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit())
    for step, old in done[: max(len(done) - keep, 0)]:
        if step not in protected:
            shutil.rmtree(old, ignore_errors=True)


def remove_unrecorded_checkpoints(store_dir: Path, recorded_step: int | None) -> list[Path]:
    """At start: remove the training checkpoints the store never recorded (a crash after the rename and
    before the store's commit left them: steps after `recorded_step`, every one when it is None) and any
    temporary directory of a checkpoint being written. The store resumes from `recorded_step` and runs
    the steps after it again, so such a checkpoint is never resumed from; left in place it would count
    toward `checkpoint.keep` and push out one that can be. Returns what was removed."""
    root = Path(store_dir) / "checkpoints"
    if not root.exists():
        return []
    removed = []
    for p in sorted(root.iterdir()):
        unrecorded = (p.name.startswith("step-") and p.name[5:].isdigit()
                      and (recorded_step is None or int(p.name[5:]) > recorded_step))
        if p.is_dir() and (p.name.startswith(".step-") or unrecorded):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


SDPO_TEACHER_FILE = "sdpo_teacher.safetensors"


def save_module_weights(module: torch.nn.Module, directory: Path, name: str) -> Path:
    """Write `module`'s parameters and persistent buffers as `directory/name` (safetensors, in their own
    dtypes; tied tensors stored once) durably: a temporary file, fsynced, renamed, directory fsynced.
    Returns the file's path."""
    from safetensors.torch import save_model

    directory = Path(directory)
    final = directory / name
    tmp = directory / f".{name}.tmp"
    save_model(module, str(tmp))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    _fsync_dir(directory)
    return final


def load_module_weights(module: torch.nn.Module, directory: Path, name: str) -> bool:
    """Load `directory/name` (written by save_module_weights) into `module` in place, strictly (every
    tensor must match by name and shape). Returns False when the file does not exist."""
    from safetensors.torch import load_model

    path = Path(directory) / name
    if not path.is_file():
        return False
    load_model(module, str(path), strict=True, device=str(next(module.parameters()).device))
    return True
