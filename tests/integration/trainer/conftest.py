"""Fixtures: the real trainer (TrainerApp in this process: real gRPC and metrics on loopback, a real
SQLite store, the tiny model) and toy reward backends served by the real harness."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from live_trainer import ConstantScorer, parsed_config, serve  # noqa: E402

from grpo_rewards.common.server import RunningServer  # noqa: E402


@pytest.fixture
def toy_backend() -> Iterator[Callable[..., tuple[ConstantScorer, RunningServer]]]:
    """toy_backend(name, value, listen="127.0.0.1:0") -> (scorer, server); all stopped at the end."""
    servers: list[RunningServer] = []

    def make(name: str, value: float, listen: str = "127.0.0.1:0") -> tuple[ConstantScorer, RunningServer]:
        scorer = ConstantScorer(name, value)
        server = serve(scorer, listen)
        servers.append(server)
        return scorer, server

    yield make
    for server in servers:
        if server.stopped.is_set():
            continue
        for scorer_gate in (getattr(server.scorer, "gate", None),):
            if scorer_gate is not None:
                scorer_gate.set()  # release held calls so the drain is quick
        server.stop(1)


@pytest.fixture
def start_trainer() -> Iterator[Callable[..., Any]]:
    """start_trainer(store_dir, backends=[(name, address)], **config_sections) -> a started, ready
    TrainerApp; every one is drained at the end."""
    from grpo_server.app import TrainerApp

    apps: list[TrainerApp] = []

    def start(store_dir: Path, backends: list[tuple[str, str]] | None = None, **sections: Any) -> TrainerApp:
        app = TrainerApp(parsed_config(**sections), store_dir, backend_overrides=list(backends or []))
        apps.append(app)
        app.start()
        assert app.ready.wait(300), f"trainer did not become ready: {app.failed}"
        return app

    yield start
    for app in apps:
        app.shutdown(grace=60)
