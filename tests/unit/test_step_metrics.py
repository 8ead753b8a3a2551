"""The per-step gauges follow the latest step: grpo_backend_reward_mean{backend} holds the backends the
latest scored step has a mean for, no series of a backend it did not score or that was deleted since."""

from __future__ import annotations

from grpo_server.metrics import TrainerMetrics
from grpo_server.types import StepReport, StepState


def report(step: int, state: StepState, **means: float) -> StepReport:
    metrics = {"reward_mean": sum(means.values()) / max(len(means), 1), **{f"reward/{k}": v for k, v in means.items()}}
    return StepReport(step, state, 0.0, 1.0, metrics, "hf", ("p",))


def test_the_backend_means_are_those_of_the_latest_scored_step() -> None:
    m = TrainerMetrics()

    def means() -> dict[str, float]:
        return {s.labels["backend"]: s.value for f in m.registry.collect() if f.name == "grpo_backend_reward_mean"
                for s in f.samples}

    m.observe_step(report(1, StepState.COMPLETED, a=0.25))
    assert means() == {"a": 0.25}
    m.observe_step(report(2, StepState.COMPLETED, b=0.75))
    assert means() == {"b": 0.75}  # a scored nothing in step 2 (or was deleted): no stale 0.25
    m.observe_step(report(3, StepState.SKIPPED))  # no update, no means: the latest scored step's stay
    assert means() == {"b": 0.75}
    m.observe_step(report(4, StepState.COMPLETED, a=0.5, b=1.0))
    assert means() == {"a": 0.5, "b": 1.0}


def test_the_run_state_gauge_follows_what_the_control_kept() -> None:
    # A draining (or failed) run ignores the loop's later idle/training/paused (RunControl.set_state);
    # the gauge took them anyway: StepStatus said draining, /metrics said idle.
    from types import SimpleNamespace

    from grpo_server.control import RunControl
    from grpo_server.training.loop import TrainingLoop

    m = TrainerMetrics()

    def state() -> str:
        return next(s.labels["state"] for f in m.registry.collect() if f.name == "grpo_run_state"
                    for s in f.samples if s.value == 1.0)

    loop = SimpleNamespace(control=RunControl(), metrics=m)
    TrainingLoop._set_state(loop, "training")  # type: ignore[arg-type]
    assert state() == "training"
    loop.control.set_state("draining")
    TrainingLoop._set_state(loop, "idle")  # type: ignore[arg-type]
    assert (loop.control.state.value, state()) == ("draining", "draining")
    loop.control.fail("boom")
    TrainingLoop._set_state(loop, "paused")  # type: ignore[arg-type]
    assert state() == "failed"
