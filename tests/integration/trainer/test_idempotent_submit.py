"""Idempotent resubmission through the real trainer: a retried SubmitPrompts with the same request_id
gets the first answer back, marked duplicate, and its prompts are stored and trained once."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from live_trainer import prompts, wait_for

from grpo_client import TrainerClient
from grpo_client.client import TrainerError
from grpo_server.store import Store
from grpo_server.types import PromptState


def test_same_request_id_twice_is_answered_once_and_trained_once(toy_backend, start_trainer, tmp_path: Path) -> None:
    scorer, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", backend.address)], training={"max_steps": 2})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")

    first = client.submit_prompts(prompts(4), request_id="req-1")
    again = client.submit_prompts(prompts(4), request_id="req-1")
    assert not first.duplicate and again.duplicate
    assert list(again.accepted_ids) == list(first.accepted_ids) == ["p0", "p1", "p2", "p3"]
    assert again.queue_depth == first.queue_depth  # the first answer, not a fresh one

    # The same ids under a new request_id while they wait are refused, not queued twice.
    with pytest.raises(TrainerError) as refused:
        client.submit_prompts(prompts(1), request_id="req-2")
    assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in refused.value.field_violations] == ["prompts[0].id"]

    wait_for(lambda: client.step_status().run.prompts_trained == 4 or None, 120, "4 prompts were not trained")
    run = client.step_status().run
    assert run.queue_depth == 0 and run.checkpoint_step == 2
    app.shutdown()

    store = Store(store_dir)
    try:
        assert sum(store.counts().values()) == 4  # one row per prompt: the retry stored nothing
        assert {s for s, _ in store.prompt_states().values()} == {PromptState.TRAINED}
        trained_in = [pid for s in store.steps_after(0) for pid in s.prompt_ids]
    finally:
        store.close()
    assert sorted(trained_in) == ["p0", "p1", "p2", "p3"]
