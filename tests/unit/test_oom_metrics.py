"""The out-of-memory metrics follow the step reports: grpo_oom_retries_total{phase} counts the halvings of
every step that reports them (a skipped step's rollout may have halved too), and
grpo_training_micro_batch_size is the size of the latest completed step."""

from __future__ import annotations

from grpo_server.metrics import TrainerMetrics
from grpo_server.types import StepReport, StepState


def report(step: int, state: StepState, **metrics: float) -> StepReport:
    return StepReport(step, state, 0.0, 1.0, {k.replace("__", "/"): v for k, v in metrics.items()}, "hf", ("p",))


def test_retries_count_by_phase_and_the_size_follows_completed_steps() -> None:
    m = TrainerMetrics()

    def sample(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    m.observe_step(report(1, StepState.COMPLETED, oom_retries__training=2.0, oom_retries__rollout=1.0,
                          micro_batch_size=4.0))
    assert sample("grpo_oom_retries_total", phase="training") == 2.0
    assert sample("grpo_oom_retries_total", phase="rollout") == 1.0
    assert sample("grpo_training_micro_batch_size") == 4.0
    # Every reward failed after the rollout halved again: the step is skipped, the halving still counted.
    m.observe_step(report(2, StepState.SKIPPED, oom_retries__rollout=1.0, micro_batch_size=2.0))
    assert sample("grpo_oom_retries_total", phase="rollout") == 2.0
    assert sample("grpo_training_micro_batch_size") == 4.0  # a skipped step trained nothing
    m.observe_step(report(3, StepState.FAILED))
    assert sample("grpo_oom_retries_total", phase="training") == 2.0
    m.observe_step(report(4, StepState.COMPLETED, oom_retries__training=0.0, oom_retries__rollout=0.0,
                          micro_batch_size=2.0))
    assert sample("grpo_training_micro_batch_size") == 2.0
    assert (sample("grpo_oom_retries_total", phase="training"), sample("grpo_oom_retries_total", phase="rollout")) \
        == (2.0, 2.0)


def test_the_counters_by_label_are_exposed_at_zero_before_any_step() -> None:
    """A series that first appears at 1 (a first step that ran out of memory) is no increase() to an alert:
    the retries and the steps by state are there at 0 from the first scrape, with the start time."""
    import time

    before = time.time()
    m = TrainerMetrics()
    for phase in ("training", "rollout"):
        assert m.registry.get_sample_value("grpo_oom_retries_total", {"phase": phase}) == 0.0
    for state in ("completed", "skipped", "failed"):
        assert m.registry.get_sample_value("grpo_steps_total", {"state": state}) == 0.0
    started = m.registry.get_sample_value("grpo_start_time_seconds")
    assert started is not None and before <= started <= time.time()
