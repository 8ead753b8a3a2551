"""A PNG of a run: reward mean ± std, KL and step seconds over the steps (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grpo.trainer.v1 import trainer_pb2
from grpo_client.words import counted


def plot_steps(reports: Sequence[trainer_pb2.StepReport], out: str | Path, title: str = "GRPO run") -> int:
    """Write a three-panel PNG of the completed steps in `reports` to `out`; returns how many steps it
    shows. Steps that were skipped or failed have no metrics and are left out (they leave a gap)."""
    import matplotlib.pyplot as plt

    fig, shown = steps_figure(reports, title)
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return shown


def steps_figure(reports: Sequence[trainer_pb2.StepReport], title: str = "GRPO run") -> tuple[Any, int]:
    """The figure `plot_steps` writes: reward mean (± std), KL and step seconds of the completed steps,
    one panel each over the step number; returns (matplotlib Figure, steps shown). Close it when done."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    done = sorted((r for r in reports if r.state == trainer_pb2.STEP_STATE_COMPLETED), key=lambda r: r.step)
    steps = [r.step for r in done]
    mean = [r.metrics.reward_mean for r in done]
    std = [r.metrics.reward_std for r in done]
    fig, (ax_r, ax_kl, ax_t) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    ax_r.plot(steps, mean, marker="o", label="reward mean")
    ax_r.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)],
                      [m + s for m, s in zip(mean, std, strict=True)], alpha=0.25, label="± std")
    ax_r.set_ylabel("reward")
    ax_r.legend(loc="best")
    ax_kl.plot(steps, [r.metrics.kl for r in done], marker="o", color="tab:orange")
    ax_kl.set_ylabel("KL (nats/token)")
    ax_t.plot(steps, [r.metrics.step_seconds for r in done], marker="o", color="tab:green")
    ax_t.set_ylabel("step seconds")
    ax_t.set_xlabel("step")
    for ax in (ax_r, ax_kl, ax_t):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} ({counted(len(done), 'step')})")
    fig.tight_layout()
    return fig, len(done)
