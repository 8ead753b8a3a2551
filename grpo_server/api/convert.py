"""Conversions between the trainer's protobuf messages and its own types (grpo_server.types, ports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_server.api.ports import BackendInfo, ExportedFileInfo
from grpo_server.control import RunControl, RunState
from grpo_server.store.records import PromptEntry
from grpo_server.types import (
    ChatMessage,
    CodeReference,
    IOCase,
    PromptRecord,
    PromptState,
    RewardSpec,
    StepReport,
    StepState,
)

_RUN_STATES = {s: getattr(trainer_pb2, f"RUN_STATE_{s.name}") for s in RunState}
_STEP_STATES = {s: getattr(trainer_pb2, f"STEP_STATE_{s.name}") for s in StepState}
PROMPT_STATES = {s: getattr(trainer_pb2, f"PROMPT_STATE_{s.name}") for s in PromptState}
EXPORT_STATES = {
    "pending": trainer_pb2.EXPORT_STATE_PENDING,
    "writing": trainer_pb2.EXPORT_STATE_WRITING,
    "done": trainer_pb2.EXPORT_STATE_DONE,
    "failed": trainer_pb2.EXPORT_STATE_FAILED,
}
_SOURCES = {
    "config": trainer_pb2.BACKEND_SOURCE_CONFIG,
    "registry_file": trainer_pb2.BACKEND_SOURCE_REGISTRY_FILE,
    "flag": trainer_pb2.BACKEND_SOURCE_FLAG,
    "api": trainer_pb2.BACKEND_SOURCE_API,
}
_CIRCUITS = {
    "closed": trainer_pb2.CIRCUIT_STATE_CLOSED,
    "open": trainer_pb2.CIRCUIT_STATE_OPEN,
    "half_open": trainer_pb2.CIRCUIT_STATE_HALF_OPEN,
}
_KINDS = {
    "none": reward_pb2.REFERENCE_KIND_NONE,
    "answer": reward_pb2.REFERENCE_KIND_ANSWER,
    "code": reward_pb2.REFERENCE_KIND_CODE,
}

# StepMetrics' scalar fields by name; the two maps are filled from "reward/<backend>" keys and the rest.
_METRIC_FIELDS = {
    f.name: f
    for f in trainer_pb2.StepMetrics.DESCRIPTOR.fields
    if f.name not in ("backend_reward_means", "extra")
}
_INT_METRICS = {n for n, f in _METRIC_FIELDS.items() if f.cpp_type == f.CPPTYPE_INT64}


# --------------------------------------------------------------------------------------- prompts


def reference_kind(p: trainer_pb2.Prompt) -> str:
    """The prompt's reference kind: "answer", "code" or "none"."""
    which = p.WhichOneof("reference")
    return which if which in ("answer", "code") else "none"


def prompt_from_proto(p: trainer_pb2.Prompt, rewards: Sequence[tuple[str, float]]) -> PromptRecord:
    """A validated proto Prompt as a PromptRecord. `rewards` are the resolved (backend, weight) pairs
    (the prompt's own, weight 0 read as 1, or the configured default when it named none)."""
    kind = reference_kind(p)
    code = None
    if kind == "code":
        c = p.code
        code = CodeReference(
            test_code=c.test_code,
            entry_point=c.entry_point,
            io_cases=tuple(IOCase(io.stdin, io.expected_stdout) for io in c.io_cases),
            language=c.language or "python",
            timeout_seconds=c.timeout_seconds,
        )
    return PromptRecord(
        id=p.id,
        messages=tuple(ChatMessage(m.role, m.content) for m in p.messages),
        rewards=tuple(RewardSpec(b, w) for b, w in rewards),
        answer=p.answer if kind == "answer" else None,
        code=code,
        metadata=dict(p.metadata),
    )


def resolved_rewards(p: trainer_pb2.Prompt, defaults: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """The prompt's (backend, weight) pairs: its own (weight 0 = 1), or `defaults` when it has none."""
    if not p.rewards:
        return list(defaults)
    return [(r.backend, r.weight if r.weight != 0 else 1.0) for r in p.rewards]


def prompt_to_proto(r: PromptRecord) -> trainer_pb2.Prompt:
    """A PromptRecord as a proto Prompt (for clients and tests)."""
    p = trainer_pb2.Prompt(
        id=r.id,
        messages=[reward_pb2.Message(role=m.role, content=m.content) for m in r.messages],
        rewards=[trainer_pb2.RewardSpec(backend=s.backend, weight=s.weight) for s in r.rewards],
        metadata=dict(r.metadata),
    )
    if r.answer is not None:
        p.answer = r.answer
    elif r.code is not None:
        c = r.code
        p.code.CopyFrom(
            reward_pb2.CodeTests(
                language=c.language,
                test_code=c.test_code,
                entry_point=c.entry_point,
                io_cases=[reward_pb2.IOCase(stdin=i.stdin, expected_stdout=i.expected_stdout) for i in c.io_cases],
                timeout_seconds=c.timeout_seconds,
            )
        )
    return p


# ----------------------------------------------------------------------------------------- steps


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """Unix seconds as a protobuf Timestamp."""
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(round(seconds * 1e9)))
    return ts


def metrics_to_proto(metrics: Mapping[str, float]) -> trainer_pb2.StepMetrics:
    """A step's metrics dict as StepMetrics: keys named like a StepMetrics field fill it, keys
    "reward/<backend>" fill backend_reward_means, every other key goes to `extra`."""
    m = trainer_pb2.StepMetrics()
    for key, value in metrics.items():
        if key in _METRIC_FIELDS:
            setattr(m, key, int(value) if key in _INT_METRICS else float(value))
        elif key.startswith("reward/"):
            m.backend_reward_means[key.removeprefix("reward/")] = float(value)
        else:
            m.extra[key] = float(value)
    return m


def prompt_entry_to_proto(e: PromptEntry) -> trainer_pb2.PromptStatus:
    """A submission's place in the store as ListPrompts answers it."""
    return trainer_pb2.PromptStatus(
        id=e.id,
        state=PROMPT_STATES[e.state],
        step=e.step or 0,
        checkpoint_step=(e.checkpoint_step or 0) if e.state is PromptState.TRAINED else 0,
        attempts=e.attempts,
        reason=e.reason if e.state is PromptState.FAILED else "",
        submitted_at=timestamp(e.submitted_at),
        updated_at=timestamp(e.updated_at),
    )


def step_to_proto(r: StepReport) -> trainer_pb2.StepReport:
    """A StepReport as its proto message."""
    out = trainer_pb2.StepReport(
        step=r.step,
        state=_STEP_STATES[r.state],
        started_at=timestamp(r.started_at),
        metrics=metrics_to_proto(r.metrics),
        rollout_engine=r.rollout_engine,
        prompt_ids=list(r.prompt_ids),
        error=r.error,
        dropped_prompt_ids=list(r.dropped_prompt_ids),
    )
    if r.finished_at is not None:
        out.finished_at.CopyFrom(timestamp(r.finished_at))
    return out


def sample_to_proto(sample: Mapping[str, Any]) -> trainer_pb2.CompletionSample:
    """A kept completion (training.samples: a CompletionSample as a dict) as the proto. Fields a later
    trainer added are ignored, so an older one reads a store a newer one wrote."""
    return json_format.ParseDict(dict(sample), trainer_pb2.CompletionSample(), ignore_unknown_fields=True)


def server_limits(limits: Any) -> trainer_pb2.ServerLimits:
    """The API's limits (api.settings.ApiLimits) as the proto reports them."""
    fields = [f.name for f in trainer_pb2.ServerLimits.DESCRIPTOR.fields]
    return trainer_pb2.ServerLimits(**{name: int(getattr(limits, name)) for name in fields})


def run_status(control: RunControl, store: Any, limits: trainer_pb2.ServerLimits) -> trainer_pb2.RunStatus:
    """The run's status from the run control and the store, with the API's limits (`server_limits`)."""
    latest = store.latest_step()
    ckpt = store.latest_checkpoint()
    counts = store.counts()
    return trainer_pb2.RunStatus(
        state=_RUN_STATES[control.state],
        queue_depth=counts[PromptState.QUEUED],
        latest_step=latest.step if latest else 0,
        checkpoint_step=ckpt.step if ckpt else 0,
        pause_requested=control.pause_requested,
        error=control.error,
        prompts_trained=counts[PromptState.TRAINED],
        prompts_failed=counts[PromptState.FAILED],
        prompts_cancelled=counts[PromptState.CANCELLED],
        limits=limits,
        waiting_for=control.waiting_for,
    )


# --------------------------------------------------------------------------------------- exports


def _file(f: Any) -> ExportedFileInfo:
    if isinstance(f, ExportedFileInfo):
        return f
    if isinstance(f, Mapping):
        return ExportedFileInfo(str(f["path"]), int(f.get("size_bytes", f.get("size", 0))), str(f["sha256"]))
    path, size, sha = f
    return ExportedFileInfo(str(path), int(size), str(sha))


def export_to_proto(info: Any) -> trainer_pb2.Export:
    """An ExportInfo-shaped object (ports.ExportInfo, or the checkpoint module's ExportJob) as Export."""
    return trainer_pb2.Export(
        export_id=info.export_id,
        state=EXPORT_STATES.get(str(info.state), trainer_pb2.EXPORT_STATE_UNSPECIFIED),
        destination=str(info.destination),
        step=int(info.step),
        progress=float(info.progress),
        files=[
            trainer_pb2.ExportedFile(path=f.path, size_bytes=f.size_bytes, sha256=f.sha256)
            for f in map(_file, info.files)
        ],
        error=info.error or "",
        started_at=timestamp(info.started_at) if getattr(info, "started_at", 0) else None,
        finished_at=timestamp(info.finished_at) if getattr(info, "finished_at", 0) else None,
    )


# -------------------------------------------------------------------------------------- backends


def backend_to_proto(b: BackendInfo) -> trainer_pb2.RewardBackend:
    """A registry entry as RewardBackend (token_file is a path, never a token)."""
    out = trainer_pb2.RewardBackend(
        name=b.name,
        address=b.address,
        timeout_seconds=b.timeout_seconds,
        max_batch_size=b.max_batch_size,
        max_concurrency=b.max_concurrency,
        tls=b.tls,
        token_file=b.token_file or "",
        ca_file=b.ca_file or "",
        cert_file=b.cert_file or "",
        key_file=b.key_file or "",
        source=_SOURCES.get(b.source, trainer_pb2.BACKEND_SOURCE_UNSPECIFIED),
        circuit=_CIRCUITS.get(b.circuit, trainer_pb2.CIRCUIT_STATE_UNSPECIFIED),
        reference_kinds=[_KINDS[k] for k in sorted(b.reference_kinds) if k in _KINDS],
    )
    if b.description is not None:
        out.description.CopyFrom(b.description)
    return out


def backend_from_proto(b: trainer_pb2.RewardBackend) -> BackendInfo:
    """The input fields of a RewardBackend as a BackendInfo (source "api"; output-only fields dropped)."""
    return BackendInfo(
        name=b.name,
        address=b.address,
        timeout_seconds=b.timeout_seconds,
        max_batch_size=b.max_batch_size,
        max_concurrency=b.max_concurrency,
        tls=b.tls,
        token_file=b.token_file or None,
        ca_file=b.ca_file or None,
        cert_file=b.cert_file or None,
        key_file=b.key_file or None,
        source="api",
    )
