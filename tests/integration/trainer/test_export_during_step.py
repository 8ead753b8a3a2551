"""An export asked for while a step runs waits for the step's update and then copies weights that match
the step number it is labelled with; when the step fails part-way through its update, the waiting export
is refused rather than writing the half-updated weights."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from live_trainer import ConstantScorer, prompts, serve, wait_for
from safetensors.torch import load_file

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.api.ports import WeightsUnsafe


class SpreadScorer(ConstantScorer):
    """Scores alternate 0 and 1 (a real update); an item whose answer is "bad" gets INVALID_INPUT, so its
    prompt goes back to the queue unscored (a store write after the update)."""

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        results = super().score(items)
        for n, (item, result) in enumerate(zip(items, results, strict=True)):
            result.score = float(n % 2)
            if item.answer == "bad":
                result.status = reward_pb2.SCORE_STATUS_INVALID_INPUT
                result.ClearField("score")
        return results


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Equal on the names both hold (an export and a checkpoint name the tied embedding differently)."""
    common = a.keys() & b.keys()
    assert len(common) > 1
    return all(torch.equal(a[k], b[k]) for k in common)


def export_while_held(app: Any, scorer: SpreadScorer, destination: Path) -> tuple[threading.Thread, dict[str, Any]]:
    """Start an export (wait) once the step is in its reward phase, holding the step lock."""
    assert scorer.calls_started.wait(120), "the step never asked for rewards"
    assert app.loop.step_lock.locked()
    result: dict[str, Any] = {}

    def export() -> None:
        try:
            result["job"] = app.exporter.start(str(destination), True)
        except WeightsUnsafe as exc:
            result["refused"] = str(exc)

    thread = threading.Thread(target=export)
    thread.start()
    time.sleep(1.0)  # the export is now waiting for the step lock
    return thread, result


def test_an_export_waiting_for_a_step_is_labelled_with_the_step_whose_weights_it_holds(
        start_trainer, tmp_path: Path) -> None:
    scorer = SpreadScorer("toy", 0.5)
    backend = serve(scorer)
    try:
        app = start_trainer(tmp_path / "store", [("toy", backend.address)], checkpoint={"every_steps": 1})
        initial = app.exporter.start(str(tmp_path / "initial"), True)
        assert initial.state == "done" and initial.step == 0
        scorer.gate = threading.Event()
        good = prompts(1, prefix="g")[0]
        bad = trainer_pb2.Prompt(id="bad", messages=[reward_pb2.Message(role="user", content="What is 1+1?")],
                                 answer="bad")
        TrainerClient(f"127.0.0.1:{app.api_port}").submit_prompts([good, bad])
        thread, result = export_while_held(app, scorer, tmp_path / "during")
        scorer.gate.set()
        thread.join(120)
        job = result["job"]
        wait_for(lambda: app.loop.checkpoint_step >= 1 or None, 120, "no checkpoint of step 1")
        exported = weights(tmp_path / "during")
        assert (job.state, job.step) == ("done", 1)
        assert json.loads((tmp_path / "during" / "manifest.json").read_text())["step"] == 1
        assert same(exported, weights(tmp_path / "store" / "checkpoints" / "step-000001"))
        assert not same(exported, weights(tmp_path / "initial"))  # the step did move the weights
    finally:
        if scorer.gate is not None:
            scorer.gate.set()
        backend.stop(1)


def test_an_export_waiting_for_a_step_that_fails_mid_update_is_refused(start_trainer, tmp_path: Path) -> None:
    scorer = SpreadScorer("toy", 0.5)
    backend = serve(scorer)
    try:
        app = start_trainer(tmp_path / "store", [("toy", backend.address)])
        train_step = app.engine.train_step

        def fails_after_the_update(*args: Any, **kwargs: Any) -> Any:
            train_step(*args, **kwargs)
            raise RuntimeError("the weight sync failed")

        app.engine.train_step = fails_after_the_update
        scorer.gate = threading.Event()
        TrainerClient(f"127.0.0.1:{app.api_port}").submit_prompts(prompts(2, prefix="p"))
        thread, result = export_while_held(app, scorer, tmp_path / "during")
        scorer.gate.set()
        thread.join(120)
        assert "job" not in result, f"exported {result['job']}"
        assert "step 1 failed during its update" in result["refused"]
        assert not (tmp_path / "during").exists()
        with pytest.raises(WeightsUnsafe):
            app.exporter.start(str(tmp_path / "after"), True)
    finally:
        if scorer.gate is not None:
            scorer.gate.set()
        backend.stop(1)
