"""Fixtures: a real trainer API (servicer, store, registry, exporter) on loopback per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from trainer_api import TinyModel, TrainerApi, load_tiny


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return load_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def make_api(tmp_path: Path, tiny_model: TinyModel) -> Iterator[Callable[..., TrainerApi]]:
    made: list[TrainerApi] = []

    def make(**kwargs) -> TrainerApi:
        api = TrainerApi(tmp_path / f"api{len(made)}", tiny_model, **kwargs)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def api(make_api: Callable[..., TrainerApi]) -> TrainerApi:
    return make_api()
