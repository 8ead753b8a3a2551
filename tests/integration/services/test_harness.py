"""The reward-service harness (grpo_rewards.common) over real gRPC on loopback.

The backends here are small test scorers (an echo, a gate that blocks until released, one that raises):
the harness must behave the same whatever the backend does.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from reward_service_kit import (
    REWARD_SERVICE,
    bad_request_fields,
    health_status,
    item,
    metric_value,
    reflection_services,
    reward_stub,
    scrape_metrics,
)

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common import Limits, base_arg_parser, start_server
from grpo_rewards.common.auth import read_tokens
from grpo_rewards.common.server import split_host_port

ANSWER_ONLY: list[reward_pb2.ReferenceKind.ValueType] = [reward_pb2.REFERENCE_KIND_ANSWER]


class EchoScorer:
    """Scores an item with the length of its completion; counts calls; records close()."""

    def __init__(self, kinds: Sequence[reward_pb2.ReferenceKind.ValueType] = ANSWER_ONLY) -> None:
        self.kinds = list(kinds)
        self.closed = False
        self.batches: list[int] = []

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name="echo", version="0.0.1",
            capabilities=reward_pb2.Capabilities(feedback=True, max_batch_size=999, reference_kinds=self.kinds))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        self.batches.append(len(items))
        return [reward_pb2.ScoreResult(id=it.id, score=float(len(it.completion)), status=reward_pb2.SCORE_STATUS_OK)
                for it in items]

    def close(self) -> None:
        self.closed = True


class GateScorer(EchoScorer):
    """Blocks in score() until `release` is set; `entered` is set once a call is inside."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        self.entered.set()
        self.release.wait(30)
        return super().score(items)


class RaisingScorer(EchoScorer):
    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        if items[0].completion == "boom":
            raise ZeroDivisionError("a bug in the backend")
        return super().score(items)


class ShortScorer(EchoScorer):
    """Breaks the contract: one result fewer than items."""

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        return super().score(items)[:-1]


class ReversedScorer(EchoScorer):
    """Breaks the contract: every result, in the reverse order."""

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        return super().score(items)[::-1]


class UnsetStatusScorer(EchoScorer):
    """Breaks the contract: results without a status."""

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        return [reward_pb2.ScoreResult(id=it.id, score=1.0) for it in items]


def score(channel: grpc.Channel, items: Sequence[reward_pb2.ScoreItem], **kw) -> reward_pb2.ScoreResponse:
    return reward_stub(channel).Score(reward_pb2.ScoreRequest(items=list(items)), timeout=30, **kw)


# -- the happy path --------------------------------------------------------------------------------------

def test_describe_advertises_the_batch_limit_the_harness_enforces(serve, channel_to):
    running = serve(EchoScorer(), max_batch=7)
    d = reward_stub(channel_to(running.address)).Describe(reward_pb2.DescribeRequest(), timeout=10)
    assert (d.name, d.version) == ("echo", "0.0.1")
    assert d.capabilities.max_batch_size == 7
    assert list(d.capabilities.reference_kinds) == ANSWER_ONLY
    ch = channel_to(running.address)
    assert len(score(ch, [item(f"i{k}", answer="1") for k in range(7)]).results) == 7  # the limit: taken
    with pytest.raises(grpc.RpcError) as exc:
        score(ch, [item(f"i{k}", answer="1") for k in range(8)])  # one over it: refused
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "items" in (exc.value.details() or "")


def test_results_come_back_in_request_order_with_ids_echoed(serve, channel_to):
    running = serve(EchoScorer())
    resp = score(channel_to(running.address), [item(f"id-{i}", "x" * i, answer="1") for i in range(10)])
    assert [r.id for r in resp.results] == [f"id-{i}" for i in range(10)]
    assert [r.score for r in resp.results] == [float(i) for i in range(10)]


def test_health_reports_serving_for_the_server_and_the_reward_service(serve, channel_to):
    ch = channel_to(serve(EchoScorer()).address)
    assert health_status(ch, "") == "SERVING"
    assert health_status(ch, REWARD_SERVICE) == "SERVING"


def test_reflection_lists_the_reward_health_and_reflection_services(serve, channel_to):
    names = reflection_services(channel_to(serve(EchoScorer()).address))
    assert {REWARD_SERVICE, "grpc.health.v1.Health"} <= names
    assert any(n.startswith("grpc.reflection.") for n in names)


# -- validation --------------------------------------------------------------------------------------------

SMALL = Limits(max_id_bytes=8, max_completion_bytes=100, max_prompt_bytes=50, max_metadata_entries=2,
               max_metadata_key_bytes=10, max_metadata_value_bytes=20)

MALFORMED = {
    "empty batch": ([], "items"),
    "batch over the limit": ([item(f"i{n}", answer="1") for n in range(5)], "items"),
    "missing id": ([item("a", answer="1"), item("", answer="1")], "items[1].id"),
    "duplicate id": ([item("a", answer="1"), item("b", answer="1"), item("a", answer="1")], "items[2].id"),
    "oversize id": ([item("x" * 9, answer="1")], "items[0].id"),
    "oversize multibyte id": ([item("é" * 5, answer="1")], "items[0].id"),  # 5 characters, 10 bytes
    "oversize completion": ([item("a", "c" * 101, answer="1")], "items[0].completion"),
    "oversize prompt": ([item("a", prompt=[("user", "p" * 60)], answer="1")], "items[0].prompt"),
    "too many metadata entries": ([item("a", metadata={"k1": "v", "k2": "v", "k3": "v"}, answer="1")],
                                  "items[0].metadata"),
    "oversize metadata key": ([item("a", metadata={"k" * 11: "v"}, answer="1")], "items[0].metadata"),
    "oversize metadata value": ([item("a", metadata={"task": "v" * 21}, answer="1")], "items[0].metadata[task]"),
    "reference kind not accepted": ([item("a", code=reward_pb2.CodeTests(test_code="assert 1"))], "items[0].code"),
    "reference missing": ([item("a", "42")], "items[0].reference"),
}


@pytest.mark.parametrize("items,field", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_invalid_argument_naming_the_field(serve, channel_to, items, field):
    scorer = EchoScorer()
    running = serve(scorer, max_batch=4, limits=SMALL)
    with pytest.raises(grpc.RpcError) as exc:
        score(channel_to(running.address), items)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(exc.value) == [field]
    assert field in exc.value.details()
    assert scorer.batches == [], "nothing of a rejected request reaches the backend"


def test_every_offending_item_is_named_in_one_rejection(serve, channel_to):
    running = serve(EchoScorer(), limits=SMALL)
    items = [item("", answer="1"), item("ok", answer="1"), item("b", "c" * 101)]
    with pytest.raises(grpc.RpcError) as exc:
        score(channel_to(running.address), items)
    assert bad_request_fields(exc.value) == ["items[0].id", "items[2].completion", "items[2].reference"]


def test_backend_accepting_no_reference_takes_items_without_one(serve, channel_to):
    running = serve(EchoScorer(kinds=[reward_pb2.REFERENCE_KIND_NONE, reward_pb2.REFERENCE_KIND_ANSWER]))
    resp = score(channel_to(running.address), [item("a", "xyz"), item("b", "q", answer="1")])
    assert [r.score for r in resp.results] == [3.0, 1.0]


# -- backend failures -------------------------------------------------------------------------------------

def test_backend_exception_becomes_internal_results_and_the_server_keeps_serving(serve, channel_to):
    ch = channel_to(serve(RaisingScorer()).address)
    resp = score(ch, [item("a", "boom", answer="1"), item("b", "fine", answer="1")])
    assert [r.status for r in resp.results] == [reward_pb2.SCORE_STATUS_INTERNAL] * 2
    assert all("ZeroDivisionError" in r.status_message for r in resp.results)
    assert score(ch, [item("c", "fine", answer="1")]).results[0].status == reward_pb2.SCORE_STATUS_OK


def test_backend_returning_too_few_results_becomes_internal_results(serve, channel_to):
    resp = score(channel_to(serve(ShortScorer()).address), [item("a", answer="1"), item("b", answer="1")])
    assert [(r.id, r.status) for r in resp.results] == [("a", reward_pb2.SCORE_STATUS_INTERNAL),
                                                         ("b", reward_pb2.SCORE_STATUS_INTERNAL)]


def test_backend_returning_results_out_of_order_becomes_internal_results(serve, channel_to):
    """As many results as items, but not in their order: no result may land on another item."""
    resp = score(channel_to(serve(ReversedScorer()).address), [item("a", answer="1"), item("b", answer="1")])
    assert [(r.id, r.status) for r in resp.results] == [("a", reward_pb2.SCORE_STATUS_INTERNAL),
                                                         ("b", reward_pb2.SCORE_STATUS_INTERNAL)]
    assert all("mismatched results" in r.status_message for r in resp.results)


def test_a_result_without_a_status_becomes_internal(serve, channel_to):
    resp = score(channel_to(serve(UnsetStatusScorer()).address), [item("a", answer="1")])
    assert [(r.id, r.status, r.status_message) for r in resp.results] == [
        ("a", reward_pb2.SCORE_STATUS_INTERNAL, "backend left the status unspecified")]


# -- limits -----------------------------------------------------------------------------------------------

def test_calls_over_the_concurrency_limit_get_resource_exhausted_while_health_answers(serve, channel_to):
    scorer = GateScorer()
    ch = channel_to(serve(scorer, max_concurrency=1).address)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(score, ch, [item("slow", answer="1")])
        assert scorer.entered.wait(10)
        with pytest.raises(grpc.RpcError) as exc:
            score(ch, [item("second", answer="1")])
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert health_status(ch) == "SERVING"
        assert reward_stub(ch).Describe(reward_pb2.DescribeRequest(), timeout=5).name == "echo"
        scorer.release.set()
        assert first.result(10).results[0].status == reward_pb2.SCORE_STATUS_OK
    assert score(ch, [item("third", answer="1")]).results[0].status == reward_pb2.SCORE_STATUS_OK


def test_requests_above_grpcs_default_4_mib_are_accepted(serve, channel_to):
    ch = channel_to(serve(EchoScorer()).address, options=[("grpc.max_send_message_length", -1)])
    big = "x" * (3 * 1024 * 1024)
    resp = score(ch, [item("a", big, answer="1"), item("b", big, answer="1")])  # ~6 MiB request
    assert [r.score for r in resp.results] == [float(len(big))] * 2


def test_requests_above_max_message_bytes_are_refused(serve, channel_to):
    ch = channel_to(serve(EchoScorer(), max_message_bytes=1024 * 1024).address)
    with pytest.raises(grpc.RpcError) as exc:
        score(ch, [item("a", "x" * (2 * 1024 * 1024), answer="1")])
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- auth and TLS -----------------------------------------------------------------------------------------

def test_without_a_token_file_calls_need_no_token(serve, channel_to):
    ch = channel_to(serve(EchoScorer()).address)
    assert score(ch, [item("a", answer="1")]).results[0].status == reward_pb2.SCORE_STATUS_OK


@pytest.mark.parametrize("metadata", [None, [("authorization", "Bearer wrong")], [("authorization", "token-one")],
                                      [("authorization", "Basic token-one")]],
                         ids=["no header", "wrong token", "no scheme", "basic scheme"])
def test_with_a_token_file_calls_without_a_valid_bearer_token_are_unauthenticated(serve, channel_to, token_file,
                                                                                 metadata):
    scorer = EchoScorer()
    ch = channel_to(serve(scorer, token_file=token_file).address)
    for call in (lambda: score(ch, [item("a", answer="1")], metadata=metadata),
                 lambda: reward_stub(ch).Describe(reward_pb2.DescribeRequest(), timeout=5, metadata=metadata)):
        with pytest.raises(grpc.RpcError) as exc:
            call()
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert scorer.batches == []


def test_every_token_in_the_file_is_accepted_and_health_and_reflection_stay_open(serve, channel_to, token_file):
    ch = channel_to(serve(EchoScorer(), token_file=token_file).address)
    for token in ("token-one", "token-two"):
        resp = score(ch, [item("a", answer="1")], metadata=[("authorization", f"Bearer {token}")])
        assert resp.results[0].status == reward_pb2.SCORE_STATUS_OK
    assert health_status(ch) == "SERVING"
    assert REWARD_SERVICE in reflection_services(ch)


def test_a_rotated_token_file_takes_effect_without_restart(serve, channel_to, token_file):
    ch = channel_to(serve(EchoScorer(), token_file=token_file).address)
    auth = [("authorization", "Bearer token-three")]
    with pytest.raises(grpc.RpcError):
        score(ch, [item("a", answer="1")], metadata=auth)
    time.sleep(1.1)  # reloads are checked at most once a second
    token_file.write_text("token-three\n")
    deadline = time.monotonic() + 5
    while True:
        try:
            assert score(ch, [item("a", answer="1")], metadata=auth).results[0].status == reward_pb2.SCORE_STATUS_OK
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert time.monotonic() < deadline, "the new token was never accepted"
            time.sleep(0.3)
    with pytest.raises(grpc.RpcError):
        score(ch, [item("a", answer="1")], metadata=[("authorization", "Bearer token-one")])


@pytest.mark.parametrize("content", [b"", b"token-\xff\n"], ids=["caught empty", "not UTF-8"])
def test_a_token_file_that_turns_empty_or_undecodable_keeps_the_previous_tokens(serve, channel_to, token_file, content):
    """An in-place rewrite caught half-way, or a stray byte: the tokens in force stay in force (before, an
    empty file refused every token and a non-UTF-8 one failed every call with UNKNOWN), and the file is
    read again once it is whole."""
    ch = channel_to(serve(EchoScorer(), token_file=token_file).address)
    auth = [("authorization", "Bearer token-one")]
    time.sleep(1.1)  # reloads are checked at most once a second
    token_file.write_bytes(content)
    for _ in range(4):  # across more than one reload check
        assert score(ch, [item("a", answer="1")], metadata=auth).results[0].status == reward_pb2.SCORE_STATUS_OK
        time.sleep(0.4)
    token_file.write_text("token-three\n")
    deadline = time.monotonic() + 5
    while True:
        try:
            score(ch, [item("a", answer="1")], metadata=auth)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED  # the whole file replaced token-one
            break
        assert time.monotonic() < deadline, "the completed file was never read"
        time.sleep(0.3)


def test_a_token_file_saved_with_a_byte_order_mark_reads_its_first_line(tmp_path):
    # Windows editors write UTF-8 with a BOM: the first token became "\ufeffsecret" (every client refused)
    # and a first "# comment" line became a token.
    path = tmp_path / "tokens"
    path.write_text("\ufeffsecret\n", encoding="utf-8")
    assert read_tokens(path) == {"secret"}
    path.write_text("\ufeff# tokens\nsecret\n", encoding="utf-8")
    assert read_tokens(path) == {"secret"}


def test_an_empty_token_file_is_refused_at_start(tmp_path):
    empty = tmp_path / "tokens"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="no tokens"):
        start_server(EchoScorer(), token_file=empty)


@pytest.mark.parametrize(("content", "words"), [
    (None, "--token-file {path}: cannot read: No such file or directory"),
    (b"\xff\xfetoken\n", "--token-file {path}: not UTF-8 text (byte 0: invalid start byte)"),
])
def test_an_unreadable_token_file_is_named_by_its_flag(tmp_path, content, words):
    """The TLS files' errors name their flag; a token file's said only `[Errno 2] No such file or directory:
    '/x'`, leaving the operator to guess which of the service's files it was."""
    path = tmp_path / "tokens"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        start_server(EchoScorer(), token_file=path)
    assert str(err.value) == words.format(path=path)


def test_a_backend_accepting_no_reference_kind_says_so(serve, channel_to):
    """A backend whose Describe lists no reference kinds refuses every item; the refusal said `this backend
    accepts: ` followed by nothing."""
    ch = channel_to(serve(EchoScorer(kinds=[])).address)
    with pytest.raises(grpc.RpcError) as err:
        score(ch, [reward_pb2.ScoreItem(id="a", completion="x")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "accepts no reference kind (its Describe lists none in capabilities.reference_kinds)" in err.value.details()


def test_tls_server_serves_clients_trusting_its_ca_and_refuses_plaintext(serve, channel_to, tls_files):
    from grpo_rewards.common import TLSConfig

    running = serve(EchoScorer(), tls=TLSConfig(tls_files.server_cert, tls_files.server_key))
    secure = channel_to(running.address, tls_files.channel_credentials(client_cert=False))
    assert score(secure, [item("a", answer="1")]).results[0].status == reward_pb2.SCORE_STATUS_OK
    with pytest.raises(grpc.RpcError) as exc:
        score(channel_to(running.address), [item("a", answer="1")], wait_for_ready=False)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_server_requires_a_client_certificate_signed_by_its_ca(serve, channel_to, tls_files):
    from grpo_rewards.common import TLSConfig

    running = serve(EchoScorer(), tls=TLSConfig(tls_files.server_cert, tls_files.server_key, tls_files.ca_cert))
    with pytest.raises(grpc.RpcError) as exc:
        score(channel_to(running.address, tls_files.channel_credentials(client_cert=False)), [item("a", answer="1")])
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    mutual = channel_to(running.address, tls_files.channel_credentials(client_cert=True))
    assert score(mutual, [item("a", answer="1")]).results[0].status == reward_pb2.SCORE_STATUS_OK


# -- graceful drain ---------------------------------------------------------------------------------------

def test_stop_drains_in_flight_calls_while_health_says_not_serving(serve, channel_to):
    scorer = GateScorer()
    running = serve(scorer)
    ch = channel_to(running.address)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(score, ch, [item("slow", "abc", answer="1")])
        assert scorer.entered.wait(10)
        stopped = running.stop(10.0, wait=False)
        deadline = time.monotonic() + 5
        while health_status(ch) != "NOT_SERVING":
            assert time.monotonic() < deadline, "health never went NOT_SERVING"
            time.sleep(0.05)
        assert health_status(ch, REWARD_SERVICE) == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as exc:
            score(ch, [item("late", answer="1")])
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not stopped.is_set() and not scorer.closed
        scorer.release.set()
        result = slow.result(10).results[0]
    assert (result.id, result.status, result.score) == ("slow", reward_pb2.SCORE_STATUS_OK, 3.0)
    assert stopped.wait(10)
    assert scorer.closed


def test_a_call_admitted_before_the_drain_but_still_being_validated_is_waited_for(serve, channel_to, monkeypatch):
    """A large request spends time in validation after the drain check. A drain that starts then must wait
    for it: before, it saw no call in flight, stopped the server within a second and closed the scorer
    under the call."""
    import grpo_rewards.common.servicer as servicer_module

    validating, go_on = threading.Event(), threading.Event()
    validate = servicer_module.validate_request

    def slow_validation(*args, **kwargs):
        validating.set()
        assert go_on.wait(10)
        return validate(*args, **kwargs)

    monkeypatch.setattr(servicer_module, "validate_request", slow_validation)
    scorer = GateScorer()
    running = serve(scorer)
    ch = channel_to(running.address)
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(score, ch, [item("big", "abc", answer="1")])
        assert validating.wait(10)
        stopped = running.stop(10.0, wait=False)
        go_on.set()
        assert scorer.entered.wait(10)
        time.sleep(1.5)  # past the 1 s the server gives calls once the drain has found none
        assert not stopped.is_set() and not scorer.closed
        scorer.release.set()
        result = call.result(10).results[0]
    assert (result.id, result.status, result.score) == ("big", reward_pb2.SCORE_STATUS_OK, 3.0)
    assert stopped.wait(10) and scorer.closed


def test_stop_gives_up_on_calls_that_outlast_the_drain_time(serve, channel_to):
    scorer = GateScorer()
    running = serve(scorer)
    ch = channel_to(running.address)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(score, ch, [item("slow", answer="1")])
        assert scorer.entered.wait(10)
        t0 = time.monotonic()
        running.stop(0.5)
        assert time.monotonic() - t0 < 5
        assert scorer.closed
        scorer.release.set()
        with pytest.raises(grpc.RpcError):
            slow.result(10)


# -- metrics ----------------------------------------------------------------------------------------------

def test_metrics_count_items_by_status_and_calls_by_code(serve, channel_to):
    running = serve(RaisingScorer(), metrics_listen="127.0.0.1:0", max_batch=3)
    ch = channel_to(running.address)
    score(ch, [item("a", "x", answer="1"), item("b", "y", answer="1")])
    score(ch, [item("c", "boom", answer="1")])
    with pytest.raises(grpc.RpcError):
        score(ch, [])
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_items_total", 'status="ok"') == 2
    assert metric_value(text, "grpo_reward_items_total", 'status="internal"') == 1
    assert metric_value(text, "grpo_reward_requests_total", 'code="OK"') == 2
    assert metric_value(text, "grpo_reward_requests_total", 'code="INVALID_ARGUMENT"') == 1
    assert metric_value(text, "grpo_reward_score_duration_seconds_count") == 3
    assert metric_value(text, "grpo_reward_in_flight_requests") == 0
    assert 'grpo_reward_build_info{python=' in text and 'service="echo",version="0.0.1"} 1.0' in text


def test_score_calls_refused_by_auth_are_counted_with_their_code(serve, channel_to, token_file):
    running = serve(EchoScorer(), metrics_listen="127.0.0.1:0", token_file=token_file)
    ch = channel_to(running.address)
    for metadata in (None, [("authorization", "Bearer wrong")]):
        with pytest.raises(grpc.RpcError) as exc:
            score(ch, [item("a", answer="1")], metadata=metadata)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError):  # not a Score call: not in the Score counter
        reward_stub(ch).Describe(reward_pb2.DescribeRequest(), timeout=5)
    score(ch, [item("a", answer="1")], metadata=[("authorization", "Bearer token-one")])
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_requests_total", 'code="UNAUTHENTICATED"') == 2
    assert metric_value(text, "grpo_reward_requests_total", 'code="OK"') == 1


def test_unauthenticated_is_exported_as_zero_from_the_start(serve):
    running = serve(EchoScorer(), metrics_listen="127.0.0.1:0")
    assert metric_value(scrape_metrics(running.metrics_port), "grpo_reward_requests_total",
                        'code="UNAUTHENTICATED"') == 0


def test_grpcs_own_message_size_refusal_is_not_counted(serve, channel_to):
    # Documented limit (docs/reward-services.md, Metrics): gRPC's core refuses the oversized message
    # before any Python code sees the request, so no counter moves. This pins that documentation.
    running = serve(EchoScorer(), metrics_listen="127.0.0.1:0", max_message_bytes=1024 * 1024)
    ch = channel_to(running.address)
    with pytest.raises(grpc.RpcError) as exc:
        score(ch, [item("a", "x" * (2 * 1024 * 1024), answer="1")])
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    text = scrape_metrics(running.metrics_port)
    total = sum(float(v) for v in re.findall(r"^grpo_reward_requests_total\{[^}]*\} (\S+)$", text, re.MULTILINE))
    assert total == 0
    assert metric_value(text, "grpo_reward_score_duration_seconds_count") == 0


class GarbageScorer(EchoScorer):
    """Breaks the contract badly: returns something that is not a ScoreResult."""

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        return ["not a result"] * len(items)  # type: ignore[list-item]


def test_a_score_call_failing_with_an_unexpected_exception_is_counted_as_unknown(serve, channel_to):
    running = serve(GarbageScorer(), metrics_listen="127.0.0.1:0")
    with pytest.raises(grpc.RpcError) as exc:
        score(channel_to(running.address), [item("a", answer="1")])
    assert exc.value.code() == grpc.StatusCode.UNKNOWN
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_requests_total", 'code="UNKNOWN"') == 1
    assert metric_value(text, "grpo_reward_requests_total", 'code="OK"') == 0


def test_in_flight_gauge_counts_calls_being_scored(serve, channel_to):
    scorer = GateScorer()
    running = serve(scorer, metrics_listen="127.0.0.1:0")
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(score, channel_to(running.address), [item("a", answer="1")])
        assert scorer.entered.wait(10)
        assert metric_value(scrape_metrics(running.metrics_port), "grpo_reward_in_flight_requests") == 1
        scorer.release.set()
        fut.result(10)
    assert metric_value(scrape_metrics(running.metrics_port), "grpo_reward_in_flight_requests") == 0


def test_metrics_pass_promtool_check(serve, channel_to, tmp_path: Path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (make sysdeps does)"
    running = serve(EchoScorer(), metrics_listen="127.0.0.1:0")
    score(channel_to(running.address), [item("a", answer="1")])
    proc = subprocess.run([promtool, "check", "metrics"], input=scrape_metrics(running.metrics_port),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


# -- flags and start-up -----------------------------------------------------------------------------------

# An IPv6 address without brackets: gRPC read "::0" as a host without a port and bound port 443.
@pytest.mark.parametrize("listen", ["50051", "localhost", "host:port", "127.0.0.1:70000", "::0", "::1:50071",
                                    "[1.2.3.4]:50051", "[::1:50051", "host:٥٠"])
def test_a_malformed_listen_flag_is_a_usage_error(listen, capsys):
    with pytest.raises(SystemExit) as exc:
        base_arg_parser("x", "y").parse_args(["--listen", listen])
    assert exc.value.code == 2
    assert "HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--max-batch", "0"], "argument --max-batch: must be at least 1, got 0"),
    (["--max-concurrency", "abc"], "argument --max-concurrency: expected an integer, got 'abc'"),
    (["--drain-seconds", "nan"], "argument --drain-seconds: must be a finite number >= 0"),
    (["--drain-seconds", "inf"], "argument --drain-seconds: must be a finite number >= 0"),
    (["--drain-seconds", "-1"], "argument --drain-seconds: must be a finite number >= 0"),
    (["--drain-seconds", "1e12"], "argument --drain-seconds: must be a finite number >= 0 and at most 86400"),
    (["--max-message-bytes", str(2**31)], "argument --max-message-bytes: must be at most 2147483647"),
    # Describe's max_batch_size is an int32: a larger value failed the start with "Value out of range".
    (["--max-batch", "3000000000"], "argument --max-batch: must be at most 2147483647"),
    (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    (["--tls-key", "key.pem"], "--tls-cert and --tls-key go together"),
    (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_common_flag_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        base_arg_parser("grpo-reward-x", "y").parse_args(argv)
    assert exc.value.code == 2
    assert f"grpo-reward-x: error: {message}" in capsys.readouterr().err


def test_good_common_flag_values_parse():
    args = base_arg_parser("x", "y").parse_args(["--drain-seconds", "0", "--max-message-bytes", str(2**31 - 1),
                                                 "--tls-cert", "c", "--tls-key", "k", "--listen", "[::1]:0"])
    assert (args.drain_seconds, args.max_message_bytes, str(args.tls_cert)) == (0.0, 2**31 - 1, "c")
    assert split_host_port(args.listen) == ("::1", 0)


def test_flags_have_working_defaults():
    args = base_arg_parser("x", "y", default_listen="127.0.0.1:50061").parse_args([])
    assert (args.listen, args.metrics_listen, args.max_batch, args.max_concurrency, args.token_file,
            args.drain_seconds) == ("127.0.0.1:50061", None, 64, 8, None, 30.0)


def test_a_port_in_use_is_refused_at_start(serve):
    running = serve(EchoScorer())
    with pytest.raises(RuntimeError):
        start_server(EchoScorer(), listen=running.address)


def test_a_health_watch_keeps_nothing_of_its_service_name_once_it_ends(serve, channel_to):
    """grpc_health's servicer kept every name a Watch had asked about, with no token needed (4 MiB names:
    160 MB for 40 watches, for good). The services' own names are still watched as before."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    running = serve(EchoScorer())
    health = health_pb2_grpc.HealthStub(channel_to(running.address))
    for name in ("x" * (4 << 20), "never-heard-of"):
        watches = [health.Watch(health_pb2.HealthCheckRequest(service=f"{i}{name}"), timeout=60) for i in range(5)]
        assert {next(w).status for w in watches} == {health_pb2.HealthCheckResponse.SERVICE_UNKNOWN}
        for w in watches:
            w.cancel()
    known = health.Watch(health_pb2.HealthCheckRequest(service="grpo.reward.v1.RewardService"), timeout=60)
    try:
        assert next(known).status == health_pb2.HealthCheckResponse.SERVING
        deadline = time.monotonic() + 10
        while len(running.health._send_response_callbacks) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(running.health._send_response_callbacks) == {"grpo.reward.v1.RewardService"}
    finally:
        known.cancel()


def _churn_health_watches(address: str, seconds: float, threads: int = 4) -> int:
    """Start and cancel health Watch streams from `threads` threads for `seconds`; how many."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stop = threading.Event()
    count = [0] * threads

    def churn(k: int) -> None:
        with grpc.insecure_channel(address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while not stop.is_set():
                call = stub.Watch(health_pb2.HealthCheckRequest(service=f"{k}-{count[k]}"), timeout=5)
                with contextlib.suppress(grpc.RpcError):
                    next(call)
                call.cancel()
                count[k] += 1

    workers = [threading.Thread(target=churn, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join(10)
    return sum(count)


def test_health_watches_started_and_cancelled_by_the_thousand_leave_the_service_answering(serve, channel_to):
    """grpc_health sent a Watch's first response holding its lock, and the callback of a Watch that ended
    took that lock on gRPC's one polling thread, the thread the send waited for: one client without a token
    starting and cancelling Watch streams deadlocked the service (every RPC, and the drain, for good).
    Every stream that ended is forgotten, also one that ended before its callback could be added."""
    from grpc_health.v1 import health_pb2

    running = serve(EchoScorer())
    ch = channel_to(running.address)
    churned = _churn_health_watches(running.address, 8.0)
    assert churned > 100, churned
    assert health_status(ch, "") == "SERVING"
    assert reward_stub(ch).Describe(reward_pb2.DescribeRequest(), timeout=5).name
    deadline = time.monotonic() + 5
    while running.health._send_response_callbacks and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running.health._send_response_callbacks == {}
    started = time.monotonic()
    running.stop(2.0)  # the drain: health NOT_SERVING for every name, under the servicer's lock
    assert time.monotonic() - started < 10
    assert running.health._server_status[""] == health_pb2.HealthCheckResponse.NOT_SERVING


def test_an_answer_over_the_message_limit_is_refused_and_counted_so(serve, channel_to):
    """gRPC refused to send it ("Sent message larger than max") after the handler had counted the call
    OK and its items scored: the client lost the batch, the metrics said it was scored."""

    class Wordy(EchoScorer):
        def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
            return [reward_pb2.ScoreResult(id=it.id, score=1.0, status=reward_pb2.SCORE_STATUS_OK, feedback="f" * 100)
                    for it in items]

    running = serve(Wordy(), max_message_bytes=4000, metrics_listen="127.0.0.1:0")
    stub = reward_stub(channel_to(running.address))
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(reward_pb2.ScoreRequest(items=[item(f"i{k}", "x", answer="1") for k in range(60)]), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "more than this service sends in one message (--max-message-bytes 4000)" in err.value.details()
    assert stub.Score(reward_pb2.ScoreRequest(items=[item("one", "x", answer="1")]), timeout=10).results[0].score == 1.0
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_requests_total", 'code="RESOURCE_EXHAUSTED"') == 1
    assert metric_value(text, "grpo_reward_requests_total", 'code="OK"') == 1
    assert metric_value(text, "grpo_reward_items_total", 'status="ok"') == 1
