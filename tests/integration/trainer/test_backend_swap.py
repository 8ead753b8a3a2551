"""Reward backends swapped while training, without a restart: by editing the registry file (reloaded
when it changes) and by the SetRewardBackend RPC. A step uses the registry as it was when it began; the
next step uses the new one. The two toy backends give constant scores (0.25 and 0.75), so each step's
per-backend reward mean says which one scored it."""

from __future__ import annotations

import threading
from pathlib import Path

from live_trainer import prompts, wait_for, write_yaml

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient

OLD, NEW = 0.25, 0.75


def toy_address(client: TrainerClient) -> str:
    return next(b.address for b in client.list_backends().backends if b.name == "toy")


def completed(client: TrainerClient, after: int, count: int) -> list[trainer_pb2.StepReport]:
    out = []
    for report in client.iter_steps(after_step=after, timeout=120):
        if report.state == trainer_pb2.STEP_STATE_COMPLETED:
            out.append(report)
        if len(out) == count:
            return out
    raise AssertionError("the step stream ended")


def test_backend_swapped_by_registry_file_and_rpc_takes_effect_at_the_next_step(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    old_scorer, old = toy_backend("old", OLD)
    new_scorer, new = toy_backend("new", NEW)
    registry = write_yaml(tmp_path / "registry.yaml", {"backends": {"toy": {"address": old.address}}})
    old_scorer.gate = threading.Event()  # hold step 1 in its reward phase
    app = start_trainer(tmp_path / "store", rewards={"registry_file": str(registry), "default": [{"backend": "toy"}]})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    loop_thread = app.loop._thread
    client.submit_prompts(prompts(8))

    # The file changes while step 1 is being scored by the old backend.
    assert old_scorer.calls_started.wait(60)
    version = client.list_backends().registry_version
    write_yaml(registry, {"backends": {"toy": {"address": new.address}}})
    wait_for(lambda: toy_address(client) == new.address or None, 30, "the registry file was not reloaded")
    assert client.list_backends().registry_version > version
    old_scorer.gate.set()
    step1, step2 = completed(client, 0, 2)
    assert step1.metrics.backend_reward_means["toy"] == OLD  # began before the change
    assert step2.metrics.backend_reward_means["toy"] == NEW
    assert abs(step2.metrics.reward_mean - NEW) < 1e-6

    # The RPC changes it back while step 3 is being scored by the new backend.
    new_scorer.gate = threading.Event()
    new_scorer.calls_started.clear()
    assert new_scorer.calls_started.wait(60)
    answer = client.set_backend("toy", old.address)
    assert answer.backend.address == old.address and answer.backend.source == trainer_pb2.BACKEND_SOURCE_API
    new_scorer.gate.set()
    step3, step4 = completed(client, 2, 2)
    assert (step3.step, step4.step) == (3, 4)
    assert step3.metrics.backend_reward_means["toy"] == NEW
    assert step4.metrics.backend_reward_means["toy"] == OLD

    # Nothing restarted: the same loop thread ran every step, and the run is still up.
    assert app.loop._thread is loop_thread and app.loop.alive


def test_prompts_naming_a_backend_added_during_a_dynamic_sampling_step_wait_for_the_next_step(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    """The API accepts prompts naming a backend added by SetRewardBackend; the running step's resample
    round leases them, but its registry snapshot predates the backend: scored with it, they failed
    UNKNOWN_BACKEND, an attempt counted against each (three such and a valid prompt failed for good).
    They go back to the queue with no attempt and the next step scores them."""
    toy_scorer, toy = toy_backend("toy", OLD)  # one score for every completion: dynamic sampling leases more
    _, added = toy_backend("added", NEW)
    toy_scorer.gate = threading.Event()  # hold step 1 in its reward phase
    app = start_trainer(tmp_path / "store", [("toy", toy.address)],
                        algorithm={"prompts_per_step": 2, "group_size": 2, "beta": 0.0, "dynamic_sampling": True,
                                   "max_resample_rounds": 2})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(2, prefix="t"))
    assert toy_scorer.calls_started.wait(120)
    client.set_backend("added", added.address)
    late = prompts(2, prefix="late")
    for p in late:
        del p.rewards[:]
        p.rewards.add(backend="added", weight=1.0)
    assert list(client.submit_prompts(late).accepted_ids) == ["late0", "late1"]
    toy_scorer.gate.set()

    step1, step2 = completed(client, 0, 2)
    assert sorted(step1.prompt_ids) == ["t0", "t1"] and dict(step1.metrics.backend_reward_means) == {"toy": OLD}
    assert sorted(step2.prompt_ids) == ["late0", "late1"]
    assert dict(step2.metrics.backend_reward_means) == {"added": NEW}
    assert [p.attempts for p in client.list_prompts(ids=["late0", "late1"]).prompts] == [0, 0]
