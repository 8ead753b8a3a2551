"""What a step's means hide, said in the trainer's log once in a while (not every step): completions cut at
rollout.max_new_tokens (also exported as `grpo_truncated_fraction`), and groups whose completions all got
one reward (no learning signal: the policy loss is 0)."""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

import pytest
from live_trainer import prompts, wait_for
from prometheus_client.parser import text_string_to_metric_families

from grpo_client import TrainerClient
from grpo_server.training.loop import WARN_EVERY_STEPS


def gauge(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    (value,) = [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]
    return float(value)


def test_cut_completions_and_equal_rewards_are_warned_about_once_and_exported(
    toy_backend, start_trainer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, backend = toy_backend("toy", 0.5)  # one score for every completion: no group has a better one
    caplog.set_level(logging.WARNING, logger="grpo_server.training.loop")
    # The tiny model is random: it almost never writes its end token within 4 new tokens.
    app = start_trainer(tmp_path / "store", [("toy", backend.address)], training={"max_steps": 3},
                        rollout={"max_new_tokens": 4},
                        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(6))
    wait_for(lambda: client.step_status().run.prompts_trained == 6 or None, 120, "3 steps did not complete")
    fractions = [client.step_status(n).step.metrics.truncated_fraction for n in (1, 2, 3)]
    assert all(f >= 0.5 for f in fractions), fractions
    warned = [r.getMessage() for r in caplog.records if "stopped at rollout.max_new_tokens" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("step 1: "), warned  # not again at steps 2 and 3
    assert "(4 tokens)" in warned[0] and f"every {WARN_EVERY_STEPS} steps" in warned[0]
    assert gauge(app.metrics_port, "grpo_truncated_fraction") == fractions[-1]
    assert [client.step_status(n).step.metrics.zero_variance_groups for n in (1, 2, 3)] == [2, 2, 2]
    flat = [r.getMessage() for r in caplog.records if "got one reward for all its completions" in r.getMessage()]
    assert len(flat) == 1 and flat[0].startswith("step 1: every one of the 2 groups "), flat
    assert "the policy loss is 0 and only the KL term moved the weights" in flat[0]  # beta 0.04 here


@pytest.mark.parametrize("algorithm,warned", [
    ({"name": "grpo", "beta": 0.0}, "the policy loss is 0 and nothing moved the weights (algorithm.beta is 0"),
    ({"name": "sdpo", "beta": 0.0}, None),
], ids=["grpo-no-kl", "sdpo"])
def test_the_equal_rewards_warning_says_what_moved_the_weights(
    algorithm, warned, toy_backend, start_trainer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a KL term nothing moved the weights. With SDPO, groups of one reward whose completions got
    teachers (here each a success with successful siblings) are what it learns from: no warning."""
    _, backend = toy_backend("toy", 1.0)
    caplog.set_level(logging.WARNING, logger="grpo_server.training.loop")
    app = start_trainer(tmp_path / "store", [("toy", backend.address)], training={"max_steps": 2},
                        algorithm=algorithm)
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(4))
    wait_for(lambda: client.step_status().run.prompts_trained == 4 or None, 120, "2 steps did not complete")
    steps = [client.step_status(n).step.metrics for n in (1, 2)]
    assert [m.zero_variance_groups for m in steps] == [2, 2]
    flat = [r.getMessage() for r in caplog.records if "got one reward for all its completions" in r.getMessage()]
    if warned is None:
        assert all(m.extra["sdpo/distilled_fraction"] > 0 for m in steps), [dict(m.extra) for m in steps]
        assert flat == []
    else:
        assert len(flat) == 1 and warned in flat[0], flat


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # the slowed step below
def test_with_several_inner_iterations_the_optimizer_time_is_every_iterations(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    """algorithm.inner_iterations = 3 optimizer steps per step: optimizer_seconds was the last one's, the
    others' booked as backward_seconds. Each optimizer step made to take 0.2 s here."""
    import time

    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", backend.address)], training={"max_steps": 1},
                        algorithm={"inner_iterations": 3})
    real = app.engine.optimizer.step
    taken: list[float] = []

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        time.sleep(0.2)
        out = real(*args, **kwargs)
        taken.append(time.monotonic() - t0)
        return out

    app.engine.optimizer.step = slow
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(2))
    wait_for(lambda: client.step_status().run.prompts_trained == 2 or None, 120, "the step did not complete")
    m = client.step_status(1).step.metrics
    assert len(taken) == 3
    assert m.optimizer_seconds >= sum(taken) - 0.01, (m.optimizer_seconds, taken)
    assert m.backward_seconds < m.optimizer_seconds  # the tiny model's passes take far less than 0.6 s


def test_groups_with_no_reward_at_all_are_not_counted_as_groups_of_one_reward(
    toy_backend, start_trainer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One prompt's backend is down (no reward at all: it goes back to the queue), the other's gives one
    score: the warning said "every one of the 2 groups got one reward", one of them having got none."""
    from grpo.trainer.v1 import trainer_pb2

    _, backend = toy_backend("toy", 0.5)
    caplog.set_level(logging.WARNING, logger="grpo_server.training.loop")
    app = start_trainer(tmp_path / "store", [("toy", backend.address), ("down", "127.0.0.1:9")],
                        training={"max_steps": 1}, rewards={"default": [{"backend": "toy"}]})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    flat, orphan = prompts(2)
    orphan.rewards.append(trainer_pb2.RewardSpec(backend="down"))
    client.submit_prompts([flat, orphan])
    wait_for(lambda: client.step_status().run.latest_step >= 1 and client.step_status(1).step.state
             == trainer_pb2.STEP_STATE_COMPLETED or None, 120, "step 1 did not complete")
    assert list(client.step_status(1).step.prompt_ids) == ["p0"]
    flat_warning = [r.getMessage() for r in caplog.records if "got one reward for all its completions" in r.getMessage()]
    assert len(flat_warning) == 1, flat_warning
    assert flat_warning[0].startswith("step 1: the one group got one reward for all its completions (1 more got no "
                                      "reward at all)"), flat_warning[0]
