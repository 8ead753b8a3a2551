"""The SDPO blend as the config sets it: the real trainer (TrainerApp, tiny model) turns
`algorithm.name` / `algorithm.sdpo_weight` into the loss config its step runner trains with.

TrainerApp._load builds the LossConfig inline (no function to call without the app), so this starts the
real app with no prompts and no reward backends, reads the runner's settings, and shuts it down."""

from __future__ import annotations

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
