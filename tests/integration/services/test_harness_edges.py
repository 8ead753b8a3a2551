"""The reward-service harness at its edges, over real gRPC on loopback: calls whose client is gone before
the answer, request bodies protobuf refuses, a SIGTERM right after start-up, and the format service's
own per-item limit."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence

import grpc
import pytest
from reward_service_kit import REPO, bad_request_fields, item, metric_value, reward_stub, scrape_metrics

from grpo.reward.v1 import reward_pb2
from grpo_rewards.format_reward.scorer import FormatConfig, FormatScorer

SCORE = "/grpo.reward.v1.RewardService/Score"


class AbandonAwareScorer:
    """Blocks in score() until its call is abandoned (or 10 s pass); records what `call_abandoned()` said."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.saw_abandoned: list[bool] = []

    def describe(self) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(name="abandon-aware", version="1", capabilities=reward_pb2.Capabilities(
            reference_kinds=[reward_pb2.REFERENCE_KIND_NONE]))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        from grpo_rewards.common import call_abandoned

        self.entered.set()
        self.saw_abandoned.append(call_abandoned().wait(10))
        return [reward_pb2.ScoreResult(id=it.id, status=reward_pb2.SCORE_STATUS_OK) for it in items]

    def close(self) -> None:
        pass


def test_a_call_past_its_deadline_is_counted_as_deadline_exceeded_and_the_backend_is_told(serve, channel_to):
    scorer = AbandonAwareScorer()
    running = serve(scorer, metrics_listen="127.0.0.1:0")
    stub = reward_stub(channel_to(running.address))
    with pytest.raises(grpc.RpcError) as exc:
        stub.Score(reward_pb2.ScoreRequest(items=[item("a"), item("b")]), timeout=0.3)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert running.servicer.wait_idle(5)
    scorer.entered.clear()
    cancelled = stub.Score.future(reward_pb2.ScoreRequest(items=[item("c")]), timeout=30)
    assert scorer.entered.wait(10)
    cancelled.cancel()
    assert running.servicer.wait_idle(5)
    assert scorer.saw_abandoned == [True, True], "call_abandoned() was set for both calls, well before 10 s"
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_requests_total", 'code="DEADLINE_EXCEEDED"') == 1
    assert metric_value(text, "grpo_reward_requests_total", 'code="CANCELLED"') == 1
    assert metric_value(text, "grpo_reward_requests_total", 'code="OK"') == 0
    # Nobody received those items: they are not counted as scored.
    assert metric_value(text, "grpo_reward_items_total", 'status="ok"') == 0


class NotAnException(BaseException):
    pass


class EscapingScorer(AbandonAwareScorer):
    """score() lets a BaseException that is no Exception escape (as a timeout signal's can)."""

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        raise NotAnException("escaped")


def test_a_base_exception_escaping_the_scorer_answers_internal_at_once(serve, channel_to):
    """It was not caught: the gRPC handler never answered, the client waited out its deadline and lost the
    batch, and the server counted UNKNOWN."""
    running = serve(EscapingScorer(), metrics_listen="127.0.0.1:0")
    stub = reward_stub(channel_to(running.address))
    response = stub.Score(reward_pb2.ScoreRequest(items=[item("a"), item("b")]), timeout=10)
    assert [(r.id, r.status) for r in response.results] == [("a", reward_pb2.SCORE_STATUS_INTERNAL),
                                                            ("b", reward_pb2.SCORE_STATUS_INTERNAL)]
    assert response.results[0].status_message == "backend error: NotAnException"
    assert metric_value(scrape_metrics(running.metrics_port), "grpo_reward_requests_total", 'code="OK"') == 1


@pytest.mark.parametrize("field", ["items[1].completion", "items[0].prompt[1].content", "items[0].metadata",
                                   "items[1].code.io_cases[1].stdin", "items[0].answer"])
def test_a_string_field_that_is_not_utf8_is_invalid_argument_naming_it(serve, channel_to, field):
    # Python's protobuf refuses to send such a request, but other languages' libraries can (a JavaScript
    # string with a lone surrogate). gRPC's default answer was INTERNAL "Exception deserializing request!".
    running = serve(FormatScorer(), metrics_listen="127.0.0.1:0")
    marker = {"items[1].completion": "C0MPLETION", "items[0].prompt[1].content": "PR0MPT",
              "items[0].metadata": "METADATA", "items[1].code.io_cases[1].stdin": "STD1N",
              "items[0].answer": "ANSWER"}[field]
    request = reward_pb2.ScoreRequest(items=[
        item("a", "fine", prompt=[("user", "hello"), ("user", "PR0MPT")], metadata={"k": "METADATA"},
             answer="ANSWER"),
        item("b", "C0MPLETION", code=reward_pb2.CodeTests(io_cases=[reward_pb2.IOCase(stdin="x"),
                                                                   reward_pb2.IOCase(stdin="STD1N")])),
    ]).SerializeToString()
    raw = channel_to(running.address).unary_unary(SCORE, request_serializer=lambda b: b,
                                                   response_deserializer=reward_pb2.ScoreResponse.FromString)
    assert len(raw(request, timeout=10).results) == 2
    broken = request.replace(marker.encode(), b"\xed\xa0\x80" + marker.encode()[3:])  # a UTF-16 surrogate
    with pytest.raises(grpc.RpcError) as exc:
        raw(broken, timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(exc.value) == [field]
    assert exc.value.details() == f"invalid request: {field}: not valid UTF-8; protobuf string fields must be UTF-8"
    assert metric_value(scrape_metrics(running.metrics_port), "grpo_reward_requests_total",
                        'code="INVALID_ARGUMENT"') == 1


def test_bytes_that_are_no_score_request_are_invalid_argument(serve, channel_to):
    running = serve(FormatScorer())
    raw = channel_to(running.address).unary_unary(SCORE, request_serializer=lambda b: b,
                                                   response_deserializer=reward_pb2.ScoreResponse.FromString)
    with pytest.raises(grpc.RpcError) as exc:
        raw(b"\x0a\xff\xff\xff", timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(exc.value) == ["items"]


SIGNALLED_DURING_START = """
import os, signal, sys
from grpo_rewards.common import configure_logging, serve_forever
from grpo_rewards.format_reward.scorer import FormatScorer
from grpo_rewards.format_reward.server import build_parser

class SignalledDuringStart(FormatScorer):
    sent = False

    def describe(self):
        if not self.sent:  # start_server asks first: the SIGTERM lands while the service comes up
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return super().describe()

configure_logging("INFO")
sys.exit(serve_forever(SignalledDuringStart(), build_parser().parse_args(["--listen", "127.0.0.1:0"])))
"""


def test_a_sigterm_while_the_service_comes_up_drains_and_exits_0():
    # Scripts wait for the "listening on" line and may stop the service right away. The handlers used to
    # be installed only after start-up had logged that line: a SIGTERM in between killed the process
    # (status -15: no drain, no scorer.close()); sent the moment the line appeared, about half the time.
    proc = subprocess.run([sys.executable, "-c", SIGNALLED_DURING_START], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "listening on" in proc.stderr and "received SIGTERM" in proc.stderr
    assert "format stopped after" in proc.stderr


def test_the_format_services_length_limit_names_the_field_and_the_flag(serve, channel_to):
    running = serve(FormatScorer(FormatConfig(max_completion_chars=10)))
    (r,) = reward_stub(channel_to(running.address)).Score(
        reward_pb2.ScoreRequest(items=[item("long", "x" * 11)]), timeout=10).results
    assert r.status == reward_pb2.SCORE_STATUS_INVALID_INPUT
    assert r.status_message == "completion: 11 characters; at most 10 are allowed (--max-completion-chars)"
