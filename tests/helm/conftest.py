"""Fixtures: the chart rendered once per session with each values file the tests use."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def default_render():
    """The chart with its default values."""
    from helm_support import render

    return render()


@pytest.fixture(scope="session")
def gpu_render():
    """The chart with helm/grpo/ci/gpu-values.yaml (GPU nodes, all backends, ServiceMonitor)."""
    from helm_support import GPU_VALUES, load_values, render

    return render(load_values(GPU_VALUES))


@pytest.fixture(scope="session")
def multinode_render():
    """The chart with helm/grpo/ci/multinode-values.yaml (the trainer as a LeaderWorkerSet)."""
    from helm_support import MULTINODE_VALUES, load_values, render

    return render(load_values(MULTINODE_VALUES))
