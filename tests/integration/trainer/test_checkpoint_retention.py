"""Checkpoint retention never removes the checkpoint a restart would resume from: with `keep: 1`, the
moment after a new checkpoint's files are written and before the store records it (where a kill -9 can
land), the store's latest recorded checkpoint is still on disk."""

from __future__ import annotations

from pathlib import Path

from live_trainer import prompts, wait_for

from grpo_client import TrainerClient
from grpo_server.checkpoint import checkpoint_dir


def checkpointed_to_step_2(start_trainer, backend_address: str, store_dir: Path, keep: int):
    """A trainer (checkpoint every step, `keep` kept, 2 steps) that has recorded its step-2 checkpoint."""
    app = start_trainer(store_dir, [("toy", backend_address)], checkpoint={"every_steps": 1, "keep": keep},
                        training={"max_steps": 2})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(4))
    wait_for(lambda: client.step_status().run.checkpoint_step == 2 or None, 120, "no checkpoint at step 2")
    return app


def test_keep_1_leaves_the_recorded_checkpoint_until_the_next_is_recorded(toy_backend, start_trainer, tmp_path: Path) -> None:
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = checkpointed_to_step_2(start_trainer, backend.address, store_dir, keep=1)

    # The files of the next checkpoint are written (what the loop does before recording it)...
    written = app.loop.save_checkpoint(3)
    assert written.is_dir()
    # ...and the one the store would resume from after a crash right now is still there.
    latest = app.store.latest_checkpoint()
    assert latest is not None and latest.step == 2 and Path(latest.path).is_dir()
    assert not checkpoint_dir(store_dir, 1).exists()  # older ones still go: keep: 1 plus the recorded one


def test_a_checkpoint_the_store_never_recorded_is_removed_at_the_next_start(
        toy_backend, start_trainer, tmp_path: Path) -> None:
    """A kill between a checkpoint's rename and the store's commit leaves a complete step-N directory the
    store does not know. The restart resumes from the recorded one and runs step N again, so the stray
    one must not stay to count toward `keep` and push out a checkpoint the store can resume from."""
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = checkpointed_to_step_2(start_trainer, backend.address, store_dir, keep=2)
    app.loop.save_checkpoint(3)  # written, never recorded: where a kill -9 can land (keep 2 pruned step 1)
    (store_dir / "checkpoints" / ".step-000004.half").mkdir()  # and one killed while being written
    app.shutdown(grace=60)
    assert checkpoint_dir(store_dir, 3).is_dir()

    again = start_trainer(store_dir, [("toy", backend.address)], checkpoint={"every_steps": 1, "keep": 2},
                          training={"max_steps": 2})
    assert sorted(p.name for p in (store_dir / "checkpoints").iterdir()) == ["step-000002"]
    assert TrainerClient(f"127.0.0.1:{again.api_port}").step_status().run.checkpoint_step == 2


def test_keep_1_leaves_one_checkpoint_once_the_new_one_is_recorded(toy_backend, start_trainer, tmp_path: Path) -> None:
    """The previous checkpoint stays only for the moment between the new one's files and its record: once
    recorded, it goes (it used to stay until the next checkpoint, so keep: 1 held two for good)."""
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    checkpointed_to_step_2(start_trainer, backend.address, store_dir, keep=1)
    wait_for(lambda: sorted(p.name for p in (store_dir / "checkpoints").iterdir()) == ["step-000002"] or None,
             30, lambda: f"on disk: {sorted(p.name for p in (store_dir / 'checkpoints').iterdir())}")
