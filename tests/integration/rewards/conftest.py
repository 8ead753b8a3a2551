"""Fixtures for the reward router tests: scripted RewardService servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted_backends import Servers


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Start servers with `servers.start(backend)` (returns "127.0.0.1:PORT"); all stop after the test."""
    s = Servers()
    yield s
    s.stop_all()
