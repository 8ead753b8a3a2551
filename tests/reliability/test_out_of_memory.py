"""Memory runs out in a step of the real `grpo-server`: its address space is capped (RLIMIT_AS, set from
outside once it serves) so that a real allocation fails, the way a GPU runs out in production. The model
is the tiny one with a vocabulary of 2M rows, so that its logits are large: a rollout of 2 prompts x 4
completions needs about 700 MB more than the process holds when it serves, the training pass over 1 GB
in one allocation.

The run fails with the allocator's error and what to change for the phase it ran out in, with the
settings' values; the failed step's report says the same; the step's prompts are back in the queue.
(CUDA's out-of-memory error, torch.OutOfMemoryError, cannot be raised here: tests/unit/test_store_full.py
checks that it is recognised.)
"""

from __future__ import annotations

import resource
import sys
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


@pytest.mark.parametrize(("headroom_mb", "checkpointing", "advice"), [
    (1300, False, "out of memory during the training pass: lower training.micro_batch_size (16 sequences a "
                            "forward and backward pass), set training.gradient_checkpointing: true, or shorten the "
                            "completions (rollout.max_new_tokens 8)"),
    (250, True, "out of memory during the rollout: generate fewer sequences at once (algorithm.prompts_per_step "
                     "2 x algorithm.group_size 4 = 8) or shorter ones (rollout.max_new_tokens 8)"),
])
def test_a_step_out_of_memory_says_what_to_change(big_vocab_model: Path, tmp_path: Path, headroom_mb: int,
                                                  checkpointing: bool, advice: str) -> None:
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
        assert [(p.id, p.state) for p in client.list_prompts().prompts] == [
            ("p0", trainer_pb2.PROMPT_STATE_QUEUED), ("p1", trainer_pb2.PROMPT_STATE_QUEUED)]
    finally:
        trainer.kill()
        backend.stop(1)
