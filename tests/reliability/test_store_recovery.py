"""What a restart after kill -9 tells watchers about the steps after the last checkpoint: the run resumes
from the checkpoint, so a step that was running is reported abandoned and a step that had completed but
was in no checkpoint is reported lost (its update is gone and its number is taken again), never
COMPLETED. The state is the one the crash test leaves (checkpoint at 2, step 3 completed, step 4
running), written into a real SQLite file and reopened as a new process would."""

from __future__ import annotations

from pathlib import Path

from grpo_server.store import Store
from grpo_server.store.sqlite_store import ABANDONED, LOST
from grpo_server.types import ChatMessage, PromptRecord, PromptState, RewardSpec, StepReport, StepState


def record(pid: str) -> PromptRecord:
    return PromptRecord(id=pid, messages=(ChatMessage(role="user", content=pid),), rewards=(RewardSpec("toy"),))


def test_steps_after_the_checkpoint_are_reported_lost_or_abandoned_after_a_crash(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.submit([record(f"p{i}") for i in range(8)], None, 100)
    for step in (1, 2, 3):
        ids = tuple(p.id for p in store.lease(2, step))
        store.record_step(StepReport(step, StepState.COMPLETED, float(step), step + 0.5, {"loss": 0.1}, "hf", ids))
        if step == 2:
            store.commit_checkpoint(2, str(tmp_path / "step-2"))
    ids = tuple(p.id for p in store.lease(2, 4))
    store.record_step(StepReport(4, StepState.RUNNING, 4.0, None, {}, "hf", ids))
    store.close()  # what kill -9 leaves: every transaction above committed

    store = Store(tmp_path)
    try:
        assert store.recover() == 4
        reports = {s.step: s for s in store.steps_after(0)}
        states = store.prompt_states()
    finally:
        store.close()
    assert reports[1].state is StepState.COMPLETED and reports[2].state is StepState.COMPLETED
    assert reports[3].state is StepState.FAILED and reports[3].error == LOST
    assert reports[4].state is StepState.FAILED and reports[4].error == ABANDONED
    assert [pid for pid, (s, _) in states.items() if s is PromptState.TRAINED] == ["p0", "p1", "p2", "p3"]
    assert [pid for pid, (s, _) in states.items() if s is PromptState.QUEUED] == [f"p{i}" for i in range(4, 8)]
