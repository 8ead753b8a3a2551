"""Support for the API tests: a real trainer API on loopback for the tests: the real servicer, server bootstrap, SQLite store in a
temp dir and the tiny model's real tokenizer. The two parts that belong to other modules are small real
implementations written here: an in-memory reward registry and an exporter that writes files."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from grpo_server.api.ports import BackendInfo, ExportedFileInfo, ExportInfo
from grpo_server.api.server import Health
from grpo_server.control import RunControl
from grpo_server.store import Store

KindSet = set[str]  # inside InMemoryRegistry, `set` names its method


class InMemoryRegistry:
    """A BackendRegistry over a dict: name -> (entry, accepted reference kinds)."""

    def __init__(self, kinds: dict[str, set[str]] | None = None) -> None:
        self._lock = threading.Lock()
        self.version = 1
        self.entries: dict[str, BackendInfo] = {}
        self.kinds: dict[str, set[str]] = {}
        for name, k in (kinds or {}).items():
            self.entries[name] = BackendInfo(name=name, address=f"127.0.0.1:{9000 + len(self.entries)}",
                                             source="config", circuit="closed", reference_kinds=tuple(sorted(k)))
            self.kinds[name] = set(k)

    def list(self) -> tuple[int, list[BackendInfo]]:
        with self._lock:
            return self.version, list(self.entries.values())

    def set(self, entry: BackendInfo) -> tuple[int, BackendInfo]:
        if entry.address.endswith(":1"):
            raise ValueError("port 1 is reserved in this test registry")
        with self._lock:
            stored = replace(entry, source="api", circuit="closed",
                             reference_kinds=tuple(sorted(self.kinds.get(entry.name, {"answer", "code", "none"}))))
            self.entries[entry.name] = stored
            self.kinds.setdefault(entry.name, {"answer", "code", "none"})
            self.version += 1
            return self.version, stored

    def delete(self, name: str) -> int:
        with self._lock:
            del self.entries[name]
            self.kinds.pop(name, None)
            self.version += 1
            return self.version

    def reference_kinds(self, name: str) -> KindSet | None:
        with self._lock:
            return set(self.kinds[name]) if name in self.entries else None


class FileExporter:
    """An Exporter that writes one weights file and a manifest. `ready` False: the model is 'loading'.
    `gate` (when set) holds the write until it is set, so a test can see WRITING."""

    def __init__(self, default_dir: Path) -> None:
        self.default_dir = default_dir
        self.ready = True
        self.step = 3
        self.gate: threading.Event | None = None
        self._jobs: dict[str, ExportInfo] = {}
        self._lock = threading.Lock()

    def start(self, destination: str | None, wait: bool) -> ExportInfo:
        if not self.ready:
            raise RuntimeError("the model is still loading; export once the run is ready")
        dest = Path(destination) if destination else self.default_dir / f"step-{self.step:06d}"
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise FileExistsError(f"destination {dest} exists and is not an empty directory")
        job = ExportInfo(export_id=uuid.uuid4().hex[:12], state="pending", destination=str(dest), step=self.step,
                         started_at=time.time())
        with self._lock:
            self._jobs[job.export_id] = job
        t = threading.Thread(target=self._write, args=(job,), daemon=True)
        t.start()
        if wait:
            t.join()
        return self.get(job.export_id)  # type: ignore[return-value]

    def _write(self, job: ExportInfo) -> None:
        self._update(job.export_id, state="writing", progress=0.5)
        if self.gate is not None:
            self.gate.wait(30)
        dest = Path(job.destination)
        dest.mkdir(parents=True, exist_ok=True)
        data = f"weights of step {job.step}".encode()
        (dest / "model.safetensors").write_bytes(data)
        f = ExportedFileInfo("model.safetensors", len(data), hashlib.sha256(data).hexdigest())
        self._update(job.export_id, state="done", progress=1.0, files=(f,), finished_at=time.time())

    def _update(self, export_id: str, **kw: Any) -> None:
        with self._lock:
            self._jobs[export_id] = replace(self._jobs[export_id], **kw)

    def get(self, export_id: str) -> ExportInfo | None:
        with self._lock:
            return self._jobs.get(export_id)

    def page(self, state: str | None, before: int, limit: int) -> tuple[list[ExportInfo], int]:
        """The exports of this process, the newest first; place n is the n-th export started."""
        with self._lock:
            placed = [(n, j) for n, j in enumerate(self._jobs.values(), 1)
                      if (not before or n < before) and (state is None or j.state == state)]
        page = placed[::-1][: limit + 1]
        return [j for _, j in page[:limit]], page[limit - 1][0] if len(page) > limit else 0


@dataclass
class Api:
    """A running API and its parts."""

    store: Store
    control: RunControl
    registry: InMemoryRegistry
    exporter: FileExporter
    server: grpc.Server
    port: int
    health: Health
    channel: grpc.Channel
    stub: trainer_pb2_grpc.TrainerServiceStub
    tokenizer: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def details(err: grpc.RpcError, kind: type[Message]) -> list[Any]:
    """The google.rpc detail messages of type `kind` in a failed call's status."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no google.rpc.Status on {err.code()}: {err.details()}"
    out = []
    for any_ in status.details:
        if any_.Is(kind.DESCRIPTOR):
            msg = kind()
            any_.Unpack(msg)
            out.append(msg)
    return out


def violations(err: grpc.RpcError) -> dict[str, str]:
    """field path -> description of an INVALID_ARGUMENT's BadRequest (several per field joined)."""
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{err.code()}: {err.details()}"
    [bad] = details(err, error_details_pb2.BadRequest)
    out: dict[str, str] = {}
    for v in bad.field_violations:
        out[v.field] = (out[v.field] + " | " if v.field in out else "") + v.description
    return out


def prompt(pid: str = "p0", text: str = "What is 2+3?", answer: str | None = "5", **kw: Any) -> trainer_pb2.Prompt:
    """A valid math prompt (override any field with keyword arguments)."""
    p = trainer_pb2.Prompt(id=pid, messages=[reward_pb2.Message(role="user", content=text)], **kw)
    if answer is not None and "code" not in kw:
        p.answer = answer
    return p


def submit(*prompts: trainer_pb2.Prompt, request_id: str = "") -> trainer_pb2.SubmitPromptsRequest:
    """A SubmitPrompts request."""
    return trainer_pb2.SubmitPromptsRequest(prompts=list(prompts), request_id=request_id)
