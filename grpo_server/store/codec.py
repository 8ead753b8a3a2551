"""JSON encoding of PromptRecord and StepReport for the store's rows (plain, readable with sqlite3)."""

from __future__ import annotations

import json
from typing import Any

from grpo_server.types import (
    ChatMessage,
    CodeReference,
    IOCase,
    PromptRecord,
    RewardSpec,
    StepReport,
    StepState,
)


def prompt_to_json(p: PromptRecord) -> str:
    """Everything of a PromptRecord but its id (a column of its own)."""
    data: dict[str, Any] = {
        "messages": [[m.role, m.content] for m in p.messages],
        "rewards": [[r.backend, r.weight] for r in p.rewards],
        "metadata": dict(sorted(p.metadata.items())),  # sorted: equal prompts give equal text (fingerprints)
    }
    if p.answer is not None:
        data["answer"] = p.answer
    if p.code is not None:
        c = p.code
        data["code"] = {
            "test_code": c.test_code,
            "entry_point": c.entry_point,
            "io_cases": [[io.stdin, io.expected_stdout] for io in c.io_cases],
            "language": c.language,
            "timeout_seconds": c.timeout_seconds,
        }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def prompt_from_json(prompt_id: str, text: str) -> PromptRecord:
    """Inverse of prompt_to_json."""
    d = json.loads(text)
    code = None
    if "code" in d:
        c = d["code"]
        code = CodeReference(
            test_code=c["test_code"],
            entry_point=c["entry_point"],
            io_cases=tuple(IOCase(i, o) for i, o in c["io_cases"]),
            language=c["language"],
            timeout_seconds=float(c["timeout_seconds"]),
        )
    return PromptRecord(
        id=prompt_id,
        messages=tuple(ChatMessage(r, c) for r, c in d["messages"]),
        rewards=tuple(RewardSpec(b, float(w)) for b, w in d["rewards"]),
        answer=d.get("answer"),
        code=code,
        metadata=dict(d.get("metadata", {})),
    )


def step_row(r: StepReport) -> tuple[Any, ...]:
    """(step, state, started_at, finished_at, metrics, rollout_engine, prompt_ids, error, dropped_prompt_ids)."""
    return (
        r.step,
        r.state.value,
        r.started_at,
        r.finished_at,
        json.dumps({k: float(v) for k, v in r.metrics.items()}),
        r.rollout_engine,
        json.dumps(list(r.prompt_ids)),
        r.error,
        json.dumps(list(r.dropped_prompt_ids)),
    )


def step_from_row(row: Any) -> StepReport:
    """Inverse of step_row."""
    step, state, started, finished, metrics, engine, ids, error, dropped = row
    return StepReport(
        step=int(step),
        state=StepState(state),
        started_at=float(started),
        finished_at=None if finished is None else float(finished),
        metrics=json.loads(metrics),
        rollout_engine=engine,
        prompt_ids=tuple(json.loads(ids)),
        error=error or "",
        dropped_prompt_ids=tuple(json.loads(dropped)),
    )
