"""API fuzzing (issue 8): at least 1000 hypothesis-generated malformed requests per RPC against the real
trainer (TrainerApp in process with the tiny model, real gRPC on loopback, real SQLite store, the real
math verifier registered as `math`). For every request: no crash, the right status code
(INVALID_ARGUMENT with a google.rpc.BadRequest naming the bad field for bad input; NOT_FOUND for
well-formed names of things that do not exist), and nothing stored for a rejected request (the store's
prompt and idempotency tables and the reward registry are unchanged). At the end the trainer still
answers health checks and accepts a valid submission.

GRPO_FUZZ_EXAMPLES sets the examples per RPC (default 1000, the issue's minimum).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXAMPLES = int(os.environ.get("GRPO_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


# ------------------------------------------------------------------------------------ the trainer


class Trainer:
    """The running trainer, a stub on it and a reader of its store."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.channel = grpc.insecure_channel(f"127.0.0.1:{app.api_port}")
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)
        self.db = sqlite3.connect(f"file:{app.store.path}?mode=ro", uri=True, check_same_thread=False)
        self.calls: dict[str, int] = {}

    def stored(self) -> tuple[int, int, int, int, int]:
        """(prompt rows, queued prompts, idempotency rows, registry version, export records): what a
        rejected request must not change."""
        prompts = self.db.execute("SELECT count(*) FROM prompts").fetchone()[0]
        queued = self.db.execute("SELECT count(*) FROM prompts WHERE state = 'queued'").fetchone()[0]
        requests = self.db.execute("SELECT count(*) FROM requests").fetchone()[0]
        exports = self.db.execute("SELECT count(*) FROM exports").fetchone()[0]
        return int(prompts), int(queued), int(requests), int(self.app.registry.version), int(exports)

    def count(self, rpc: str) -> None:
        self.calls[rpc] = self.calls.get(rpc, 0) + 1


@pytest.fixture(scope="module")
def trainer() -> Iterator[Trainer]:
    from grpo_rewards.common.server import start_server
    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer
    from grpo_server.app import TrainerApp
    from grpo_server.config import parse_config

    verifier = start_server(MathVerifierScorer(MathConfig(workers=1)), listen="127.0.0.1:0")
    cfg = parse_config({
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": 4},
        "algorithm": {"prompts_per_step": 2, "group_size": 2},
        "server": {"listen": "127.0.0.1:0"},
        "limits": {"max_messages": 4, "max_chat_message_bytes": 512, "max_metadata_pairs": 2,
                   "max_rewards_per_prompt": 2, "max_prompts_per_request": 8},
    })
    with tempfile.TemporaryDirectory(prefix="grpo-fuzz-") as tmp:
        app = TrainerApp(cfg, Path(tmp), backend_overrides=[("math", verifier.address)])
        app.start()
        assert app.ready.wait(300), app.failed
        t = Trainer(app)
        t.stub.PauseTraining(trainer_pb2.PauseTrainingRequest(), timeout=10)  # nothing valid is trained
        yield t
        t.channel.close()
        t.db.close()
        app.shutdown(grace=60)
    verifier.stop(5)


def bad_request_fields(err: grpc.RpcError) -> list[str]:
    """The field paths of the BadRequest detail of an INVALID_ARGUMENT (fails the test if it has none)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no google.rpc.Status details on {err.code()}: {err.details()}"
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    assert fields, f"INVALID_ARGUMENT without a BadRequest: {err.details()}"
    return fields


def expect_rejected(t: Trainer, rpc: str, call: Callable[[], Any], field: str | None,
                    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
    """`call` fails with `code`; for INVALID_ARGUMENT the BadRequest names `field` (exactly: a
    violation reported on another field, even one under it, is the wrong field); and nothing was stored."""
    t.count(rpc)
    before = t.stored()
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    assert err.code() == code, f"{rpc}: expected {code}, got {err.code()}: {err.details()}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        fields = bad_request_fields(err)
        if field is not None:
            assert field in fields, (field, fields)
    assert t.stored() == before, f"{rpc}: a rejected request changed the store/registry"


# ------------------------------------------------------------------------------- strategies

ROLES = ("system", "user", "assistant")
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # protobuf cannot carry surrogates
printable_id = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


def valid_prompt(pid: str, content: str = "What is 1+1?") -> trainer_pb2.Prompt:
    return trainer_pb2.Prompt(id=pid, answer="2", messages=[reward_pb2.Message(role="user", content=content)])


@st.composite
def broken_prompt(draw: st.DrawFn, index: int) -> tuple[trainer_pb2.Prompt, str]:
    """A prompt with one thing wrong, and the field path the rejection must name."""
    p = valid_prompt(draw(printable_id) + f"-{index}", draw(text.filter(lambda s: "\x00" not in s)))
    f = f"prompts[{index}]"
    kind = draw(st.sampled_from([
        "empty_id", "nonprintable_id", "long_id", "no_messages", "bad_role", "last_assistant", "nul_content",
        "big_content", "too_many_messages", "unknown_backend", "bad_weight", "empty_backend", "dup_backend",
        "too_many_rewards", "too_many_metadata", "nul_metadata", "code_language", "code_entry_point",
        "code_timeout", "code_empty", "nul_answer",
    ]))
    if kind == "empty_id":
        p.id = ""
        return p, f"{f}.id"
    if kind == "nonprintable_id":
        p.id = draw(st.text(min_size=1, max_size=10).filter(lambda s: any(not 0x20 <= ord(c) <= 0x7E for c in s)
                                                            and all(not 0xD800 <= ord(c) <= 0xDFFF for c in s)))
        return p, f"{f}.id"
    if kind == "long_id":
        p.id = "x" * draw(st.integers(257, 2000))
        return p, f"{f}.id"
    if kind == "no_messages":
        del p.messages[:]
        return p, f"{f}.messages"
    if kind == "bad_role":
        p.messages[0].role = draw(text.filter(lambda r: r not in ROLES))
        return p, f"{f}.messages[0].role"
    if kind == "last_assistant":
        p.messages.append(reward_pb2.Message(role="assistant", content=draw(text)))
        return p, f"{f}.messages[1].role"
    if kind == "nul_content":
        p.messages[0].content = draw(text) + "\x00" + draw(text)
        return p, f"{f}.messages[0].content"
    if kind == "big_content":
        p.messages[0].content = "a" * draw(st.integers(513, 5000))
        return p, f"{f}.messages[0].content"
    if kind == "too_many_messages":
        for _ in range(draw(st.integers(4, 10))):
            p.messages.insert(0, reward_pb2.Message(role="user", content="x"))
        return p, f"{f}.messages"
    if kind == "unknown_backend":
        p.rewards.append(trainer_pb2.RewardSpec(backend=draw(text.filter(lambda s: s not in ("", "math"))), weight=1))
        return p, f"{f}.rewards[0].backend"
    if kind == "bad_weight":
        w = draw(st.one_of(st.floats(max_value=-1e-9), st.sampled_from([math.nan, math.inf, -math.inf])))
        p.rewards.append(trainer_pb2.RewardSpec(backend="math", weight=w))
        return p, f"{f}.rewards[0].weight"
    if kind == "empty_backend":
        p.rewards.append(trainer_pb2.RewardSpec(backend="", weight=1))
        return p, f"{f}.rewards[0].backend"
    if kind == "dup_backend":
        p.rewards.extend([trainer_pb2.RewardSpec(backend="math"), trainer_pb2.RewardSpec(backend="math")])
        return p, f"{f}.rewards[1].backend"
    if kind == "too_many_rewards":
        p.rewards.extend(trainer_pb2.RewardSpec(backend=f"b{k}") for k in range(draw(st.integers(3, 9))))
        return p, f"{f}.rewards"
    if kind == "too_many_metadata":
        for k in range(draw(st.integers(3, 8))):
            p.metadata[f"k{k}"] = "v"
        return p, f"{f}.metadata"
    if kind == "nul_metadata":
        key = draw(text) + "\x00"
        p.metadata[key] = draw(text)
        return p, f"{f}.metadata[{json.dumps(key)}]"  # the pair is named, by its key
    if kind == "nul_answer":
        p.answer = draw(text) + "\x00"
        return p, f"{f}.answer"
    p.ClearField("answer")
    p.code.test_code = "def check(f):\n    assert f(1) == 1\n"
    p.code.entry_point = "f"
    if kind == "code_language":
        p.code.language = draw(text.filter(lambda s: s not in ("", "python")))
        return p, f"{f}.code.language"
    if kind == "code_entry_point":
        p.code.entry_point = draw(text.filter(lambda s: s != "" and not s.isidentifier()))
        return p, f"{f}.code.entry_point"
    if kind == "code_timeout":
        p.code.timeout_seconds = draw(st.one_of(st.floats(max_value=-1e-9), st.sampled_from([math.nan, math.inf])))
        return p, f"{f}.code.timeout_seconds"
    p.code.test_code, p.code.entry_point = "", ""  # code_empty
    return p, f"{f}.code"


@st.composite
def broken_submit(draw: st.DrawFn) -> tuple[trainer_pb2.SubmitPromptsRequest, str]:
    """A SubmitPrompts request with valid prompts around one broken one (or a broken request as a
    whole), and the field the rejection must name."""
    whole = draw(st.sampled_from(["prompt", "prompt", "prompt", "prompt", "empty", "too_many", "request_id",
                                  "duplicate_ids"]))
    if whole == "empty":
        return trainer_pb2.SubmitPromptsRequest(request_id=draw(st.sampled_from(["", "r"]))), "prompts"
    if whole == "too_many":
        n = draw(st.integers(9, 40))
        return trainer_pb2.SubmitPromptsRequest(prompts=[valid_prompt(f"m{k}") for k in range(n)]), "prompts"
    if whole == "request_id":
        rid = draw(st.one_of(text.map(lambda s: s + "\x00"), st.just("r" * 129)))
        return trainer_pb2.SubmitPromptsRequest(prompts=[valid_prompt("x")], request_id=rid), "request_id"
    if whole == "duplicate_ids":
        pid = draw(printable_id)
        return trainer_pb2.SubmitPromptsRequest(prompts=[valid_prompt(pid), valid_prompt(pid)]), "prompts[1].id"
    before = draw(st.integers(0, 3))
    broken, field = draw(broken_prompt(before))
    prompts = [valid_prompt(f"ok{k}-{draw(printable_id)}") for k in range(before)] + [broken]
    prompts += [valid_prompt(f"ok{before + 1 + k}-{draw(printable_id)}") for k in range(draw(st.integers(0, 3)))]
    req = trainer_pb2.SubmitPromptsRequest(prompts=prompts, request_id=draw(st.sampled_from(["", "fuzz-rid"])))
    return req, field


bad_backend_name = st.text(max_size=80).filter(
    lambda s: all(not 0xD800 <= ord(c) <= 0xDFFF for c in s)
    and not (1 <= len(s) <= 63 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in s)))
good_backend_name = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=63)


@st.composite
def broken_backend(draw: st.DrawFn) -> tuple[trainer_pb2.SetRewardBackendRequest, str]:
    """A SetRewardBackend request with at least one bad field, and one field the rejection names."""
    b = trainer_pb2.RewardBackend(name="fuzzed", address="127.0.0.1:9", timeout_seconds=1.0)
    kind = draw(st.sampled_from(["missing", "name", "address", "port", "timeout", "batch", "concurrency"]))
    if kind == "missing":
        return trainer_pb2.SetRewardBackendRequest(), "backend"
    if kind == "name":
        b.name = draw(bad_backend_name)
    elif kind == "address":
        b.address = draw(text.filter(lambda s: ":" not in s or not s.rpartition(":")[2].isdigit()))
    elif kind == "port":
        b.address = f"127.0.0.1:{draw(st.one_of(st.just(0), st.integers(65536, 99999)))}"
    elif kind == "timeout":
        b.timeout_seconds = draw(st.one_of(st.floats(max_value=-1e-9), st.sampled_from([math.nan, math.inf])))
    elif kind == "batch":
        b.max_batch_size = draw(st.integers(-(2**31), -1))
    else:
        b.max_concurrency = draw(st.integers(-(2**31), -1))
    field = {"name": "name", "address": "address", "port": "address", "timeout": "timeout_seconds",
             "batch": "max_batch_size", "concurrency": "max_concurrency"}[kind]
    return trainer_pb2.SetRewardBackendRequest(backend=b), f"backend.{field}"


# ------------------------------------------------------------------------------------ the tests


def test_submit_prompts_rejects_every_malformed_request_and_stores_nothing(trainer: Trainer) -> None:
    @FUZZ
    @given(broken_submit())
    def run(case: tuple[trainer_pb2.SubmitPromptsRequest, str]) -> None:
        req, field = case
        expect_rejected(trainer, "SubmitPrompts", lambda: trainer.stub.SubmitPrompts(req, timeout=30), field)

    run()
    assert trainer.calls["SubmitPrompts"] >= EXAMPLES


def test_step_status_rejects_negative_steps_and_reports_missing_ones_as_not_found(trainer: Trainer) -> None:
    @FUZZ
    @given(st.integers(-(2**63), 2**63 - 1).filter(lambda n: n != 0))
    def run(step: int) -> None:
        req = trainer_pb2.StepStatusRequest(step=step)
        code = grpc.StatusCode.INVALID_ARGUMENT if step < 0 else grpc.StatusCode.NOT_FOUND
        expect_rejected(trainer, "StepStatus", lambda: trainer.stub.StepStatus(req, timeout=30), "step", code)

    run()
    assert trainer.calls["StepStatus"] >= EXAMPLES


def test_watch_steps_rejects_negative_after_step(trainer: Trainer) -> None:
    @FUZZ
    @given(st.integers(-(2**63), -1), st.booleans())
    def run(after: int, running: bool) -> None:
        req = trainer_pb2.WatchStepsRequest(after_step=after, include_running=running)
        expect_rejected(trainer, "WatchSteps", lambda: next(iter(trainer.stub.WatchSteps(req, timeout=30))),
                        "after_step")

    run()
    assert trainer.calls["WatchSteps"] >= EXAMPLES


def test_export_checkpoint_rejects_relative_or_nul_destinations_and_writes_nothing(trainer: Trainer) -> None:
    exports = trainer.app.store_dir / "exports"
    before = sorted(exports.rglob("*")) if exports.exists() else []

    @FUZZ
    @given(st.one_of(text.filter(lambda s: s != "" and not s.startswith("/")),
                     text.map(lambda s: "/" + s + "\x00")), st.booleans())
    def run(dest: str, wait: bool) -> None:
        req = trainer_pb2.ExportCheckpointRequest(destination=dest, wait=wait)
        expect_rejected(trainer, "ExportCheckpoint", lambda: trainer.stub.ExportCheckpoint(req, timeout=30),
                        "destination")

    run()
    assert trainer.calls["ExportCheckpoint"] >= EXAMPLES
    assert (sorted(exports.rglob("*")) if exports.exists() else []) == before


def test_get_export_rejects_empty_ids_and_reports_unknown_ones_as_not_found(trainer: Trainer) -> None:
    @FUZZ
    @given(st.one_of(st.just(""), text))
    def run(export_id: str) -> None:
        req = trainer_pb2.GetExportRequest(export_id=export_id)
        code = grpc.StatusCode.INVALID_ARGUMENT if not export_id else grpc.StatusCode.NOT_FOUND
        expect_rejected(trainer, "GetExport", lambda: trainer.stub.GetExport(req, timeout=30), "export_id", code)

    run()
    assert trainer.calls["GetExport"] >= EXAMPLES


def test_set_reward_backend_rejects_malformed_entries_and_leaves_the_registry_alone(trainer: Trainer) -> None:
    _, listed_before = trainer.app.registry.list()

    @FUZZ
    @given(broken_backend())
    def run(case: tuple[trainer_pb2.SetRewardBackendRequest, str]) -> None:
        req, field = case
        expect_rejected(trainer, "SetRewardBackend", lambda: trainer.stub.SetRewardBackend(req, timeout=30), field)

    run()
    assert trainer.calls["SetRewardBackend"] >= EXAMPLES
    _, listed_after = trainer.app.registry.list()
    assert [b.name for b in listed_after] == [b.name for b in listed_before]


def test_delete_reward_backend_rejects_bad_names_and_unknown_ones(trainer: Trainer) -> None:
    @FUZZ
    @given(st.one_of(bad_backend_name, good_backend_name.filter(lambda s: s != "math")))
    def run(name: str) -> None:
        good = 1 <= len(name) <= 63 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in name)
        code = grpc.StatusCode.NOT_FOUND if good else grpc.StatusCode.INVALID_ARGUMENT
        req = trainer_pb2.DeleteRewardBackendRequest(name=name)
        expect_rejected(trainer, "DeleteRewardBackend", lambda: trainer.stub.DeleteRewardBackend(req, timeout=30),
                        "name", code)

    run()
    assert trainer.calls["DeleteRewardBackend"] >= EXAMPLES
    assert trainer.app.registry.reference_kinds("math") is not None


@st.composite
def broken_list_prompts(draw: st.DrawFn) -> tuple[trainer_pb2.ListPromptsRequest, str]:
    """A ListPromptsRequest with one thing wrong, and the field the rejection must name."""
    req = trainer_pb2.ListPromptsRequest(ids=draw(st.lists(printable_id, max_size=3)),
                                         state=draw(st.integers(0, 5)), page_size=draw(st.integers(0, 1000)))
    kind = draw(st.sampled_from(["page_size", "page_token", "state", "id", "ids"]))
    if kind == "page_size":
        req.page_size = draw(st.one_of(st.integers(-(2**31), -1), st.integers(1001, 2**31 - 1)))
    elif kind == "page_token":  # anything but one of the server's own tokens
        req.page_token = draw(text.filter(lambda s: s != "" and not s.startswith("YWZ0ZXI6")))
    elif kind == "state":
        req.state = draw(st.one_of(st.integers(-(2**31), -1), st.integers(6, 2**31 - 1)))  # type: ignore[assignment]
    elif kind == "id":
        bad = draw(st.one_of(st.just(""), st.text(min_size=4097, max_size=4200, alphabet="x"),
                             text.filter(lambda s: any(not 0x20 <= ord(c) <= 0x7E for c in s))))
        at = draw(st.integers(0, len(req.ids)))
        req.ids.insert(at, bad)
        return req, f"ids[{at}]"
    else:
        req.ids.extend(f"p{i}" for i in range(1001))
    return req, kind


def test_list_prompts_rejects_malformed_requests(trainer: Trainer) -> None:
    @FUZZ
    @given(broken_list_prompts())
    def run(case: tuple[trainer_pb2.ListPromptsRequest, str]) -> None:
        req, field = case
        expect_rejected(trainer, "ListPrompts", lambda: trainer.stub.ListPrompts(req, timeout=30), field)

    run()
    assert trainer.calls["ListPrompts"] >= EXAMPLES


@st.composite
def broken_list_exports(draw: st.DrawFn) -> tuple[trainer_pb2.ListExportsRequest, str]:
    """A ListExportsRequest with one thing wrong, and the field the rejection must name."""
    req = trainer_pb2.ListExportsRequest(state=draw(st.integers(0, 4)), page_size=draw(st.integers(0, 1000)))
    kind = draw(st.sampled_from(["page_size", "page_token", "state"]))
    if kind == "page_size":
        req.page_size = draw(st.one_of(st.integers(-(2**31), -1), st.integers(1001, 2**31 - 1)))
    elif kind == "page_token":  # anything but one of the server's own tokens
        req.page_token = draw(text.filter(lambda s: s != "" and not s.startswith("YWZ0ZXI6")))
    else:
        req.state = draw(st.one_of(st.integers(-(2**31), -1), st.integers(5, 2**31 - 1)))  # type: ignore[assignment]
    return req, kind


def test_list_exports_rejects_malformed_requests(trainer: Trainer) -> None:
    @FUZZ
    @given(broken_list_exports())
    def run(case: tuple[trainer_pb2.ListExportsRequest, str]) -> None:
        req, field = case
        expect_rejected(trainer, "ListExports", lambda: trainer.stub.ListExports(req, timeout=30), field)

    run()
    assert trainer.calls["ListExports"] >= EXAMPLES


@st.composite
def broken_cancel_prompts(draw: st.DrawFn) -> tuple[trainer_pb2.CancelPromptsRequest, str]:
    """A CancelPromptsRequest naming the queued prompt `to-cancel` and one thing wrong, and the field the
    rejection must name."""
    ids = draw(st.lists(printable_id, max_size=3, unique=True).map(lambda xs: [x for x in xs if x != "to-cancel"]))
    ids.insert(draw(st.integers(0, len(ids))), "to-cancel")
    req = trainer_pb2.CancelPromptsRequest(ids=ids)
    kind = draw(st.sampled_from(["id", "twice", "ids"]))
    if kind == "id":
        bad = draw(st.one_of(st.just(""), st.text(min_size=4097, max_size=4200, alphabet="x"),
                             text.filter(lambda s: any(not 0x20 <= ord(c) <= 0x7E for c in s))))
        at = draw(st.integers(0, len(req.ids)))
        req.ids.insert(at, bad)
        return req, f"ids[{at}]"
    if kind == "twice":
        again = draw(st.sampled_from(list(req.ids)))
        at = draw(st.integers(list(req.ids).index(again) + 1, len(req.ids)))
        req.ids.insert(at, again)
        return req, f"ids[{at}]"
    req.ids.extend(f"p{i}" for i in range(1001))
    return req, "ids"


def test_cancel_prompts_rejects_malformed_requests_and_cancels_nothing(trainer: Trainer) -> None:
    trainer.stub.SubmitPrompts(trainer_pb2.SubmitPromptsRequest(prompts=[valid_prompt("to-cancel")]), timeout=30)
    expect_rejected(trainer, "CancelPrompts",
                    lambda: trainer.stub.CancelPrompts(trainer_pb2.CancelPromptsRequest(), timeout=30), "ids")

    @FUZZ
    @given(broken_cancel_prompts())
    def run(case: tuple[trainer_pb2.CancelPromptsRequest, str]) -> None:
        req, field = case
        expect_rejected(trainer, "CancelPrompts", lambda: trainer.stub.CancelPrompts(req, timeout=30), field)

    run()
    assert trainer.calls["CancelPrompts"] >= EXAMPLES
    got = trainer.stub.CancelPrompts(trainer_pb2.CancelPromptsRequest(ids=["to-cancel"]), timeout=30)
    assert list(got.cancelled_ids) == ["to-cancel"]  # it was queued all along


def test_trainer_still_serves_and_accepts_valid_prompts_after_the_fuzzing(trainer: Trainer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{trainer.app.api_port}") as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    prompts_before, *_ = trainer.stored()
    r = trainer.stub.SubmitPrompts(trainer_pb2.SubmitPromptsRequest(prompts=[valid_prompt("after-fuzz")]), timeout=30)
    assert list(r.accepted_ids) == ["after-fuzz"]
    assert trainer.stored()[0] == prompts_before + 1
