"""Fixtures shared by the reward-service tests (harness, math verifier, code sandbox, reward model).

Servers are real gRPC servers on 127.0.0.1 port 0; everything started here is stopped after the test.
Helpers that are plain functions live in `reward_service_kit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from reward_service_kit import TLSFiles, make_tls_files

from grpo_rewards.common import RunningServer, Scorer, start_server


@pytest.fixture(autouse=True)
def _root_logging_put_back() -> Iterator[None]:
    """A service's main() run in this process configures the root logger (configure_logging:
    basicConfig(force=True)) with a handler on the stderr pytest captures for that one test. Left in
    place, it writes to a closed stream in every later test of the session, which then finds `--- Logging
    error ---` tracebacks in its own captured stderr. Remove the plain stream handlers a test added (not
    pytest's own, which are subclasses) and put the level back."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if type(h) is logging.StreamHandler and h not in before]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """`serve(scorer, **start_server_kwargs)` starts an in-process server on 127.0.0.1:0; all are drained
    (grace 5 s) after the test."""
    started: list[RunningServer] = []

    def _serve(scorer: Scorer, **kwargs: Any) -> RunningServer:
        kwargs.setdefault("listen", "127.0.0.1:0")
        running = start_server(scorer, **kwargs)
        started.append(running)
        return running

    yield _serve
    for running in started:
        running.stop(5.0)


@pytest.fixture
def channel_to() -> Iterator[Callable[..., grpc.Channel]]:
    """`channel_to(address, credentials=None, **options)` opens a channel (secure when credentials are
    given, with `grpc.ssl_target_name_override` set to localhost); all close after the test."""
    channels: list[grpc.Channel] = []

    def _open(address: str, credentials: grpc.ChannelCredentials | None = None,
              options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
        opts = list(options or [])
        ch = grpc.secure_channel(address, credentials, options=opts) if credentials else grpc.insecure_channel(
            address, options=opts)
        channels.append(ch)
        return ch

    yield _open
    for ch in channels:
        ch.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate (PEM files)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """A bearer-token file accepting "token-one" and "token-two" (with a comment and a blank line)."""
    path = tmp_path / "tokens"
    path.write_text("# accepted tokens\ntoken-one\n\n  token-two  \n")
    return path
