"""The trainer's stdout carries one line for scripts, `grpo-server listening on port P metrics M pid N`
(docs/operations.md); everything else goes to stderr. vLLM logs to stdout by default and DeepSpeed
(imported by transformers through accelerate) gives its logger a stdout handler and warns at import on a
machine without CUDA: about 45 lines reached stdout in a start with the vLLM engine. A script that reads
only the listening line would leave the pipe to fill, and the trainer to block on a later log line."""

from __future__ import annotations

from pathlib import Path

import yaml
from live_trainer import TrainerProcess

TINY_VLLM = {
    "model": {"source": "tiny"},
    "rollout": {"engine": "vllm", "max_new_tokens": 8, "vllm_kv_cache_gib": 0.05},
    "algorithm": {"prompts_per_step": 2, "group_size": 2},
}


def test_stdout_holds_only_the_listening_line_with_vllm_and_deepspeed_installed(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(TINY_VLLM))
    trainer = TrainerProcess(config, tmp_path / "store", log_path=tmp_path / "trainer.log")
    try:
        trainer.wait_ready(300)  # the model and vLLM have loaded: their logs are written
    finally:
        trainer.terminate()
        assert trainer.proc.wait(120) == 0, trainer.log_tail()
    assert trainer.proc.stdout is not None
    rest = trainer.proc.stdout.read()  # what came after the listening line, which TrainerProcess read
    trainer.wait(10)
    log = trainer.log_tail(200_000)
    assert rest == "", rest[:3000]
    assert "vllm" in log.lower() and "Setting accelerator to CPU" in log, log[-3000:]  # logged, to stderr
