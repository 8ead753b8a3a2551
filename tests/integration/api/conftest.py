"""Fixtures: a real trainer API on loopback port 0 (see api_support.py for its parts)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from api_support import Api, FileExporter, InMemoryRegistry

from grpo.trainer.v1 import trainer_pb2_grpc
from grpo_server.api.server import build_server
from grpo_server.api.servicer import TrainerServicer
from grpo_server.api.settings import ApiLimits, AuthSettings
from grpo_server.api.validation import PromptRoom
from grpo_server.control import RunControl
from grpo_server.store import Store


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny model's real tokenizer (byte-level BPE + ChatML template)."""
    from transformers import AutoTokenizer

    from grpo_server.models.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(path)
    return AutoTokenizer.from_pretrained(path)


@pytest.fixture
def make_api(tmp_path: Path, tiny_tokenizer: Any) -> Iterator[Callable[..., Api]]:
    """make_api(limits=..., auth=..., tls=..., default_rewards=..., kinds=..., tokenizer_loaded=True,
    tokenizer=None (the tiny model's), chat_template_kwargs=None, secure_channel=None, room=None: the
    model's context and completion length as a PromptRoom) starts an API on
    127.0.0.1:0; everything is stopped after the test."""
    started: list[Api] = []

    def make(
        *,
        limits: ApiLimits | None = None,
        auth: AuthSettings | None = None,
        tls: tuple[str, str, str | None] | None = None,
        default_rewards: Sequence[tuple[str, float]] = (("math", 1.0),),
        kinds: dict[str, set[str]] | None = None,
        tokenizer_loaded: bool = True,
        channel_credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        event_history: int = 1024,
        tokenizer: Any = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        room: PromptRoom | None = None,
    ) -> Api:
        n = len(started)
        store = Store(tmp_path / f"store{n}")
        control = RunControl(history=event_history)
        registry = InMemoryRegistry(kinds if kinds is not None else {
            "math": {"answer"}, "code": {"code"}, "rm": {"none", "answer", "code"}})
        exporter = FileExporter(tmp_path / f"store{n}" / "exports")
        tok: dict[str, Any] = {"tokenizer": (tokenizer or tiny_tokenizer) if tokenizer_loaded else None}
        servicer = TrainerServicer(
            store=store, control=control, registry=registry, exporter=exporter, limits=limits or ApiLimits(),
            default_rewards=default_rewards, tokenizer_getter=lambda: tok["tokenizer"],
            chat_template_kwargs=chat_template_kwargs, room_getter=lambda: room if tok["tokenizer"] else None,
        )
        server, port, health = build_server(servicer, listen="127.0.0.1:0", auth=auth, tls=tls,
                                            max_message_bytes=(limits or ApiLimits()).max_message_bytes, max_workers=8)
        target = f"localhost:{port}"
        channel = (grpc.secure_channel(target, channel_credentials, options=list(channel_options))
                   if channel_credentials else grpc.insecure_channel(target))
        api = Api(store, control, registry, exporter, server, port, health, channel,
                  trainer_pb2_grpc.TrainerServiceStub(channel), tok)
        started.append(api)
        return api

    yield make
    for api in started:
        api.control.close()
        api.channel.close()
        api.server.stop(0).wait()
        api.store.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """An API with default limits, auth off, the model loaded."""
    return make_api()


