"""Memory runs out in a step of the real `grpo-server`: its address space is capped (RLIMIT_AS, set from
outside once it serves) so that a real allocation fails, the way a GPU runs out in production. The model
is the tiny one with a vocabulary of 2M rows, so that its logits are large. Measured, in MB more than the
process holds when it serves: a rollout of 1 or 2 prompts x 4 completions fits in 150 and not in 80 (since
2026-12-07 the HF rollout keeps one log-prob per sampled token: it needed over 700 and 250 while it kept
every step's scores); with LoRA a training pass in micro-batches of 8 over 1300, of 4 over 1000, of 1 under
450.

An HF rollout call that runs out is generated again with half as many prompts, and a training pass that
runs out before its optimizer step runs again in micro-batches of half the size; both keep the smaller
size. With LoRA (the embedding's gradient and AdamW state gone) the logits dominate and shrink with the
micro-batch: under a 650 MB cap the step completes at smaller sizes, which the next step keeps. Fully
fine-tuned, the embedding's 512 MB gradient does not fit at any size, nor under 80 MB does one prompt's
rollout: the run fails with the allocator's error and what to change for the phase it ran out in, with the
settings' values; the failed step's report says the same; the step's prompts are back in the queue.
(CUDA's out-of-memory error, torch.OutOfMemoryError, cannot be raised here: tests/unit/test_store_full.py
checks that it is recognised.)
"""

from __future__ import annotations

import resource
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "trainer"))

from live_trainer import (  # noqa: E402
    ConstantScorer,
    TrainerProcess,
    config_data,
    prompts,
    serve,
    wait_for,
    write_yaml,
)

from grpo.trainer.v1 import trainer_pb2  # noqa: E402
from grpo_client import TrainerClient, TrainerError  # noqa: E402

pytestmark = pytest.mark.slow

VOCAB = 1 << 21


@pytest.fixture(scope="module")
def big_vocab_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama (hidden 64, 2 layers) with VOCAB embedding rows (512 MB); the tokenizer's 512 tokens
    are the first rows."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from grpo_server.models.tiny import build_tokenizer, tiny_llama_config

    path = tmp_path_factory.mktemp("big-vocab")
    tokenizer = build_tokenizer()
    config = tiny_llama_config(VOCAB, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def address_space(pid: int) -> int:
    """The process's virtual memory size in bytes (what RLIMIT_AS bounds)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[0]) * resource.getpagesize()


@pytest.mark.parametrize(("headroom_mb", "checkpointing", "advice", "retried"), [
    (1300, False, "out of memory during the training pass with micro-batches of 1 sequence "
                  "(training.micro_batch_size 16, halved on running out): set training.gradient_checkpointing: "
                  "true, shorten the completions (rollout.max_new_tokens 8), or give the trainer more memory",
     {"oom_retries/training": 3.0, "micro_batch_size": 1.0}),  # the step's 8 sequences at once -> 4 -> 2 -> 1
    (80, True, "out of memory during the rollout generating one prompt's 4 completions at once (halved on "
                "running out from algorithm.prompts_per_step 2 prompts): lower algorithm.group_size (4) or "
                "rollout.max_new_tokens (8), or give the trainer more memory",
     {"oom_retries/rollout": 1.0}),  # 2 prompts a call -> 1
])
def test_a_step_out_of_memory_says_what_to_change(big_vocab_model: Path, tmp_path: Path, headroom_mb: int,
                                                  checkpointing: bool, advice: str, retried: dict) -> None:
    backend = serve(ConstantScorer("toy", 1.0))
    config = write_yaml(tmp_path / "trainer.yaml", config_data(
        model={"source": "path", "path": str(big_vocab_model)}, training={"gradient_checkpointing": checkpointing}))
    trainer = TrainerProcess(config, tmp_path / "store", [("toy", backend.address)], log_path=tmp_path / "trainer.log")
    try:
        trainer.wait_ready()
        client = trainer.client
        client.pause()
        client.submit_prompts(prompts(2))
        for _ in range(8):  # the API's handler threads exist before the cap (each new one reserves memory)
            client.step_status()
        resource.prlimit(trainer.proc.pid, resource.RLIMIT_AS,
                         (address_space(trainer.proc.pid) + (headroom_mb << 20), resource.RLIM_INFINITY))
        client.resume()
        run = wait_for(lambda: (r := client.step_status().run).state == trainer_pb2.RUN_STATE_FAILED and r, 120,
                       lambda: f"the run did not fail; log:\n{trainer.log_tail()}")
        assert "can't allocate memory" in run.error, run.error
        assert f"({advice}; then restart the trainer; it resumes from the start and no submitted prompt is lost)" \
            in run.error, run.error
        step = client.step_status(1).step
        assert step.state == trainer_pb2.STEP_STATE_FAILED and step.error == run.error, step
        # The failed step's report says how often it halved before giving up, and how long it ran.
        assert {k: step.metrics.extra[k] for k in retried} == retried, step.metrics
        assert step.metrics.step_seconds > 0, step.metrics
        assert [(p.id, p.state) for p in client.list_prompts().prompts] == [
            ("p0", trainer_pb2.PROMPT_STATE_QUEUED), ("p1", trainer_pb2.PROMPT_STATE_QUEUED)]
        # No optimizer step began: the weights in memory are the start's, and they can still be exported
        # (with the cap lifted, for the copy).
        resource.prlimit(trainer.proc.pid, resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        export = client.export_checkpoint(str(tmp_path / "export"), wait=True, timeout=120)
        assert export.state == trainer_pb2.EXPORT_STATE_DONE and export.step == 0, export
        assert (tmp_path / "export" / "model.safetensors").is_file()
    finally:
        trainer.kill()
        backend.stop(1)


def finished(client: TrainerClient, step: int) -> trainer_pb2.StepReport | None:
    """Step `step`'s report once it has completed or failed; None before (or before it has started)."""
    try:
        report = client.step_status(step).step
    except TrainerError:  # NOT_FOUND: not started yet
        return None
    return report if report.state in (trainer_pb2.STEP_STATE_COMPLETED, trainer_pb2.STEP_STATE_FAILED) else None


def scraped(port: int | None, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} is not on /metrics")


def test_a_step_out_of_memory_completes_in_smaller_batches(big_vocab_model: Path, tmp_path: Path) -> None:
    backend = serve(ConstantScorer("toy", 1.0))
    config = write_yaml(tmp_path / "trainer.yaml", config_data(
        model={"source": "path", "path": str(big_vocab_model)}, algorithm={"lora_rank": 8},
        training={"gradient_checkpointing": False, "micro_batch_size": 8}))
    trainer = TrainerProcess(config, tmp_path / "store", [("toy", backend.address)],
                             log_path=tmp_path / "trainer.log", metrics=True)
    try:
        trainer.wait_ready()
        client = trainer.client
        client.pause()
        client.submit_prompts(prompts(2))
        for _ in range(8):
            client.step_status()
        # The training pass in micro-batches of 8 or 4 does not fit (1 does), the rollout does: see the
        # measures above. (The rollout's halving: the 80 MB case of the test above.)
        resource.prlimit(trainer.proc.pid, resource.RLIMIT_AS,
                         (address_space(trainer.proc.pid) + (650 << 20), resource.RLIM_INFINITY))
        client.resume()
        first = wait_for(lambda: finished(client, 1), 150, lambda: f"step 1 did not finish; log:\n{trainer.log_tail()}")
        assert first.state == trainer_pb2.STEP_STATE_COMPLETED, first.error
        assert first.metrics.extra["oom_retries/rollout"] == 0, first.metrics
        retries = first.metrics.extra["oom_retries/training"]
        assert retries >= 2 and first.metrics.extra["micro_batch_size"] == 8 / 2 ** retries, first.metrics
        log = trainer.log_path.read_text()
        assert "step 1: out of memory in the training pass with micro-batches of 8 sequences (RuntimeError: " \
               in log and "can't allocate memory" in log, trainer.log_tail()
        assert client.step_status().run.state != trainer_pb2.RUN_STATE_FAILED

        # The next step starts at the smaller size. (The cap is lifted: what step 1 left allocated, AdamW's
        # state among it, would make a step under it run out at sizes that had fitted.)
        resource.prlimit(trainer.proc.pid, resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        client.submit_prompts(prompts(2, start=2))
        second = wait_for(lambda: finished(client, 2), 150, lambda: f"step 2 did not finish; log:\n{trainer.log_tail()}")
        assert second.state == trainer_pb2.STEP_STATE_COMPLETED, second.error
        assert second.metrics.extra["oom_retries/training"] == second.metrics.extra["oom_retries/rollout"] == 0, \
            (second.metrics, trainer.log_tail())
        assert second.metrics.extra["micro_batch_size"] == first.metrics.extra["micro_batch_size"]
        assert scraped(trainer.metrics_port, 'grpo_oom_retries_total{phase="training"}') == retries
        assert scraped(trainer.metrics_port, 'grpo_oom_retries_total{phase="rollout"}') == 0
        assert scraped(trainer.metrics_port, "grpo_training_micro_batch_size") == second.metrics.extra["micro_batch_size"]
    finally:
        trainer.kill()
        backend.stop(1)
