"""The SDPO blend as the config sets it: the real trainer (TrainerApp, tiny model) turns
`algorithm.name` / `algorithm.sdpo_weight` into the loss config its step runner trains with.

TrainerApp._load builds the LossConfig inline (no function to call without the app), so this starts the
real app with no prompts and no reward backends, reads the runner's settings, and shuts it down."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from variant_support import tiny_config


@pytest.mark.parametrize(
    ("algorithm", "grpo_weight", "sdpo_weight"),
    [
        ({"name": "grpo"}, 1.0, None),  # plain GRPO: no SDPO settings at all
        ({"name": "grpo", "sdpo_weight": 0.3}, 1.0, 0.3),  # the blend: GRPO + 0.3 x distillation
        ({"name": "sdpo"}, 0.0, 1.0),  # distillation alone, default weight 1
    ],
    ids=["grpo", "grpo-blend-0.3", "sdpo"],
)
def test_config_sets_the_loss_weights(start_trainer: Any, tmp_path: Path, algorithm: dict[str, Any],
                                      grpo_weight: float, sdpo_weight: float | None) -> None:
    cfg = tiny_config(algorithm={**algorithm, "sdpo_loss": "jsd", "sdpo_jsd_alpha": 0.25, "sdpo_teacher": "live"})
    app = start_trainer(cfg, tmp_path / "store", [])
    loss = app.loop.runner.s.loss
    assert loss.grpo_weight == grpo_weight
    if sdpo_weight is None:
        assert loss.sdpo is None
        return
    assert loss.sdpo is not None and loss.sdpo.weight == sdpo_weight
    # The other SDPO knobs travel with it.
    assert (loss.sdpo.loss, loss.sdpo.jsd_alpha, loss.sdpo.teacher) == ("jsd", 0.25, "live")


def test_sdpo_top_k_over_the_vocabulary_fails_the_start_not_the_first_step(tmp_path: Path) -> None:
    """The config cannot know the vocabulary; the trainer checks once the model is loaded, before any
    prompt is leased (it failed the first step's loss: 'top_k must be in [1, 512]')."""
    from grpo_server.app import TrainerApp

    cfg = tiny_config(algorithm={"name": "sdpo", "sdpo_loss": "logit_kl", "sdpo_top_k": 1_000_000})
    app = TrainerApp(cfg, tmp_path / "store", backend_overrides=[])
    app.start()
    try:
        deadline = time.monotonic() + 300
        while app.failed is None and not app.ready.is_set() and time.monotonic() < deadline:
            app.ready.wait(0.2)
        assert not app.ready.is_set()
        assert app.failed is not None and "algorithm.sdpo_top_k" in app.failed
        assert "1000000" in app.failed and "vocabulary of 512" in app.failed
        assert app.store.get_step(1) is None
    finally:
        app.shutdown(grace=30)


def test_sdpo_top_k_within_the_vocabulary_starts(start_trainer: Any, tmp_path: Path) -> None:
    cfg = tiny_config(algorithm={"name": "sdpo", "sdpo_loss": "logit_kl", "sdpo_top_k": 512})
    app = start_trainer(cfg, tmp_path / "store", [])
    assert app.failed is None and app.loop.runner.s.loss.sdpo.top_k == 512
