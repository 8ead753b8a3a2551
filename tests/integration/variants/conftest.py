"""Fixtures for the variant tests: the real tiny model (Llama + byte-level BPE + ChatML template), real
torch training engines, real HF rollouts, real reward services on loopback served by the real harness,
and the real trainer (TrainerApp) for end-to-end runs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from grpo_rewards.common.server import start_server  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model directory built once per session."""
    from grpo_server.models.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(path, seed=0)
    return path


@pytest.fixture
def tiny(tiny_dir: Path) -> tuple[Any, Any]:
    """(fresh tiny model in fp32 train mode, its tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.config.use_cache = False
    return model, tok


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """serve(scorer) -> address of the real harness serving it on 127.0.0.1:0; stopped after the test."""
    servers: list[Any] = []

    def _serve(scorer: Any) -> str:
        server = start_server(scorer, listen="127.0.0.1:0")
        servers.append(server)
        return str(server.address)

    yield _serve
    for server in servers:
        server.stop(5)


@pytest.fixture
def start_trainer() -> Iterator[Callable[..., Any]]:
    """start_trainer(cfg, store_dir, backends) -> a started, ready TrainerApp; all shut down at the end."""
    from grpo_server.app import TrainerApp

    apps: list[Any] = []

    def start(cfg: Any, store_dir: Path, backends: list[tuple[str, str]]) -> Any:
        app = TrainerApp(cfg, store_dir, backend_overrides=backends)
        app.start()
        assert app.ready.wait(300), f"trainer did not become ready: {app.failed}"
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.shutdown(grace=60)
