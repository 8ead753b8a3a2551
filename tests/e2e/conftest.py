"""Fixtures for end-to-end tests: the real trainer (TrainerApp, in process, real gRPC on loopback) with
real reward services served by the real harness."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from grpo_rewards.common.server import start_server  # noqa: E402


@pytest.fixture(scope="module")
def math_verifier() -> Iterator[str]:
    """The real math verifier (one worker process) on a loopback port."""
    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    server = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0")
    yield server.address
    server.stop(5)


@pytest.fixture(scope="module")
def digit_backend() -> Iterator[str]:
    """The toy digit-fraction reward served by the real harness."""
    from toy_rewards import DigitFractionScorer

    server = start_server(DigitFractionScorer(), listen="127.0.0.1:0")
    yield server.address
    server.stop(5)


def tiny_config(**sections: dict[str, Any]) -> Any:
    """The tiny model's config for tests: HF rollouts, small batches, API on a free port."""
    from grpo_server.config import parse_config

    base: dict[str, dict[str, Any]] = {
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": 8},
        "algorithm": {"prompts_per_step": 2, "group_size": 4, "beta": 0.04},
        "training": {"learning_rate": 1e-3},
        "checkpoint": {"every_steps": 1},
        "server": {"listen": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return parse_config(base)


@pytest.fixture
def start_trainer() -> Iterator[Callable[..., Any]]:
    """start_trainer(cfg, store_dir, backends) -> a started, ready TrainerApp; all shut down at the end."""
    from grpo_server.app import TrainerApp

    apps: list[TrainerApp] = []

    def start(cfg: Any, store_dir: Path, backends: list[tuple[str, str]]) -> TrainerApp:
        app = TrainerApp(cfg, store_dir, backend_overrides=backends)
        app.start()
        assert app.ready.wait(300), f"trainer did not become ready: {app.failed}"
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.shutdown(grace=60)


def prompts(n: int, start: int = 0) -> list[Any]:
    """n arithmetic prompts with answers, ids p<start>..."""
    from grpo.reward.v1 import reward_pb2
    from grpo.trainer.v1 import trainer_pb2

    return [
        trainer_pb2.Prompt(
            id=f"p{i}",
            messages=[reward_pb2.Message(role="user", content=f"What is {i}+{i}? Answer with just the number.")],
            answer=str(2 * i),
        )
        for i in range(start, start + n)
    ]
