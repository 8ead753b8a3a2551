"""A step keeps some of its completions with its report (training.samples_per_step): StepStatus with
include_samples and `grpo status --samples` show what the policy wrote and how the real math verifier
scored it, feedback included; older steps' samples are dropped (training.samples_keep_steps)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_trainer import prompts, wait_for

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_client.cli import main
from grpo_rewards.common.server import start_server
from grpo_server.types import StepState


@pytest.fixture(scope="module")
def math_address() -> Iterator[str]:
    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    server = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0")
    yield server.address
    server.stop(5)


def test_a_step_keeps_its_completions_with_the_verifiers_scores(math_address, start_trainer, tmp_path: Path) -> None:
    app = start_trainer(tmp_path / "store", [("math", math_address)],
                        algorithm={"prompts_per_step": 2, "group_size": 2},
                        training={"samples_per_step": 3, "samples_keep_steps": 3},
                        rewards={"default": [{"backend": "math", "weight": 1.0}]})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    batch = prompts(6, start=20, prefix="s")  # answers 40 to 50: out of reach of the random tiny model
    client.submit_prompts(batch)
    wait_for(lambda: len([r for r in app.store.steps_after(0) if r.state is StepState.COMPLETED]) >= 3 or None, 300,
             lambda: f"three steps did not complete: {app.store.steps_after(0)}")

    status = client.step_status(1, include_samples=True)
    samples = list(status.samples)
    # One completion of each prompt, then the second of the first: 3 of the step's 2 x 2.
    assert [(c.prompt_id, c.index) for c in samples] == [(status.step.prompt_ids[0], 0),
                                                        (status.step.prompt_ids[1], 0),
                                                        (status.step.prompt_ids[0], 1)], samples
    for c in samples:
        assert c.completion_tokens > 0 and c.finish_reason in ("stop", "length")
        assert [(b.backend, b.weight, b.status) for b in c.scores] == [("math", 1.0, "ok")]
        assert c.reward_valid and c.reward == c.scores[0].score and c.scores[0].scored
        # The random tiny model writes no right answer: the verifier says what it expected.
        answer = next(p.answer for p in batch if p.id == c.prompt_id)
        assert c.reward == 0.0 and c.scores[0].feedback.startswith(f"expected {answer}, "), c.scores[0].feedback
    assert client.step_status(1).samples == []  # only when asked for

    out = io.StringIO()
    assert main(["--target", f"127.0.0.1:{app.api_port}", "status", "--step", "2", "--samples"], out=out) == 0
    text = out.getvalue()
    step2 = client.step_status(2, include_samples=True)
    assert f"--- prompt {step2.samples[0].prompt_id} #0: reward 0 (math 0)" in text, text
    assert step2.samples[0].text in text and "[math] " in text and "expected" in text, text

    # Keep 3: once step 4 is recorded, step 1's samples are gone (its report stays).
    assert len(client.step_status(1, include_samples=True).samples) == 3
    client.submit_prompts(prompts(2, start=40, prefix="s"))
    wait_for(lambda: client.step_status(1, include_samples=True).samples == [] or None, 60,
             "step 1's samples outlived samples_keep_steps")
    assert client.step_status(1).step.state == trainer_pb2.STEP_STATE_COMPLETED
    assert len(client.step_status(2, include_samples=True).samples) == 3
    out = io.StringIO()
    main(["--target", f"127.0.0.1:{app.api_port}", "status", "--step", "1", "--samples"], out=out)
    assert "no samples kept of this step" in out.getvalue()
