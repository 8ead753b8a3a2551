"""The trainer end to end on the tiny model, driven over gRPC, scored by the real math verifier:
submit, train, watch, status, export, reload; learning on a toy task; resume after a stop."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import prompts, tiny_config

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.checkpoint import verify_manifest


def test_submit_train_watch_export_reload(
    math_verifier: str, digit_backend: str, start_trainer, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    # Backends with weights: the random tiny model never gets a sum right, so the toy digit reward is what
    # gives its groups variance (and its weights a gradient). The digit backend is registered a second
    # time under another name and weight, so that the total's check sees every term (math's is 0).
    cfg = tiny_config(
        training={"max_steps": 3},
        rewards={"default": [{"backend": "math", "weight": 1.0}, {"backend": "digits", "weight": 0.5},
                             {"backend": "digits-again", "weight": 0.25}]},
    )
    app = start_trainer(cfg, tmp_path / "store", [("math", math_verifier), ("digits", digit_backend),
                                                  ("digits-again", digit_backend)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    answer = client.submit_prompts(prompts(8), request_id="first")
    assert list(answer.accepted_ids) == [f"p{i}" for i in range(8)]
    assert client.submit_prompts(prompts(8), request_id="first").duplicate  # idempotent retry

    seen = []
    for report in client.iter_steps(after_step=0):
        seen.append(report)
        if report.step >= 3:
            break
    assert [r.step for r in seen] == [1, 2, 3]
    assert all(r.state == trainer_pb2.STEP_STATE_COMPLETED for r in seen)
    assert all(r.rollout_engine == "hf" for r in seen)
    last = seen[-1].metrics
    assert last.completions == 8 and last.prompts == 2
    for r in seen:  # the weighted total over the backends, each term counted once
        means = r.metrics.backend_reward_means
        assert set(means) == {"math", "digits", "digits-again"}
        assert means["digits-again"] == means["digits"]  # one scorer under two names
        expected = means["math"] + 0.5 * means["digits"] + 0.25 * means["digits-again"]
        assert abs(r.metrics.reward_mean - expected) < 1e-6, (r.step, r.metrics.reward_mean, dict(means))
    assert any(r.metrics.backend_reward_means["digits"] > 0 for r in seen)  # else the check above shows nothing
    assert last.step_seconds > 0 and last.rollout_seconds > 0 and last.grad_norm > 0
    assert len(seen[0].prompt_ids) == 2

    status = client.step_status()
    assert status.step.step == 3 and status.run.latest_step == 3
    assert status.run.checkpoint_step == 3  # checkpoint every step: its prompts are trained
    assert status.run.prompts_trained == 6 and status.run.queue_depth == 2
    assert client.step_status(step=2).step.step == 2

    export = client.export_checkpoint(str(tmp_path / "export"), wait=True)
    assert export.state == trainer_pb2.EXPORT_STATE_DONE and export.step == 3
    manifest = verify_manifest(Path(export.destination))
    assert manifest["step"] == 3
    exported = AutoModelForCausalLM.from_pretrained(export.destination)
    initial = AutoModelForCausalLM.from_pretrained(tmp_path / "store" / "model-tiny-seed0")
    trained = dict(app.engine.named_weights())
    for name, p in exported.named_parameters():
        assert torch.equal(p, trained[name].to(p.dtype)), name
    changed = [n for n, p in exported.named_parameters() if not torch.equal(p, dict(initial.named_parameters())[n])]
    assert changed, "three optimizer steps changed no weight"


def test_tiny_model_learns_what_the_reward_asks(digit_backend: str, start_trainer, tmp_path: Path) -> None:
    steps = 26
    cfg = tiny_config(
        rollout={"max_new_tokens": 6},
        algorithm={"prompts_per_step": 4, "group_size": 8, "beta": 0.0},
        training={"learning_rate": 1e-2, "max_steps": steps},
        checkpoint={"every_steps": 100},
        rewards={"default": [{"backend": "digits"}]},
    )
    app = start_trainer(cfg, tmp_path / "store", [("digits", digit_backend)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(prompts(4 * steps))
    rewards = []
    for report in client.iter_steps(after_step=0):
        rewards.append(report.metrics.reward_mean)
        if report.step >= steps:
            break
    assert rewards[0] < 0.2, rewards
    assert sum(rewards[-3:]) / 3 > 0.8, rewards


def test_resume_after_a_stop_gives_the_same_next_step(math_verifier: str, start_trainer, tmp_path: Path) -> None:
    def run(store: Path, max_steps: int):
        cfg = tiny_config(training={"max_steps": max_steps, "seed": 3}, algorithm={"beta": 0.04})
        return start_trainer(cfg, store, [("math", math_verifier)])

    def wait_step(app, step: int):
        client = TrainerClient(f"127.0.0.1:{app.api_port}")
        for report in client.iter_steps(after_step=step - 1):
            if report.step == step and report.state == trainer_pb2.STEP_STATE_COMPLETED:
                return report
        raise AssertionError("stream ended")

    # Through: three steps in one process.
    through = run(tmp_path / "through", 3)
    TrainerClient(f"127.0.0.1:{through.api_port}").submit_prompts(prompts(8))
    step3 = wait_step(through, 3)
    weights3 = {n: t.clone() for n, t in through.engine.named_weights()}
    through.shutdown()

    # Stopped after two steps (SIGTERM-like drain writes the checkpoint), then restarted.
    first = run(tmp_path / "resumed", 2)
    TrainerClient(f"127.0.0.1:{first.api_port}").submit_prompts(prompts(8))
    wait_step(first, 2)
    first.shutdown()
    second = run(tmp_path / "resumed", 3)
    resumed3 = wait_step(second, 3)

    assert list(resumed3.prompt_ids) == list(step3.prompt_ids)
    for field in ("reward_mean", "loss", "kl", "grad_norm", "completion_length_mean"):
        assert abs(getattr(resumed3.metrics, field) - getattr(step3.metrics, field)) < 1e-5, field
    for name, tensor in second.engine.named_weights():
        torch.testing.assert_close(tensor, weights3[name], rtol=0, atol=1e-6, msg=name)
