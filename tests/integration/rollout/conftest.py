"""Fixtures for the rollout engine tests: tiny real models built once per session (see rollout_models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rollout_models import build_eos_model, build_rollout_tiny


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rollout_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def eos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_eos_model(tmp_path_factory.mktemp("eos") / "model")


@pytest.fixture(scope="session")
def tokenizer(tiny_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="session")
def prompts(tokenizer) -> list[list[int]]:
    """Three chat prompts of different lengths (so batching needs padding)."""
    questions = ["What is 2+3?", "What is the sum of 17 and 25? Answer with just the number.", "hi"]
    out = []
    for q in questions:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    assert len({len(p) for p in out}) == 3
    return out
