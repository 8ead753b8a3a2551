"""The reward router against real RewardService servers on loopback with scripted behaviour."""

from __future__ import annotations

import math
import random
import socket
import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from scripted_backends import RecordingObserver, Scorer, ScriptedBackend, Servers, group, length_scorer, ok

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc
from grpo_server.rewards.registry import BackendEntry, RewardRegistry
from grpo_server.rewards.router import RewardRouter
from grpo_server.types import CodeReference, IOCase, RewardStatus


@pytest.fixture
def make_router() -> Iterator:
    made: list[RewardRouter] = []

    def make(entries: list[BackendEntry], **kwargs) -> tuple[RewardRouter, RewardRegistry, RecordingObserver]:
        registry = RewardRegistry(entries)
        observer = RecordingObserver()
        kwargs.setdefault("backoff_base_s", 0.01)
        kwargs.setdefault("backoff_max_s", 0.05)
        router = RewardRouter(registry, observer=observer, **kwargs)
        made.append(router)
        return router, registry, observer

    yield make
    for r in made:
        r.close()
        r.registry.stop()


def test_total_reward_is_the_weighted_sum_over_two_backends(servers: Servers, make_router) -> None:
    a = ScriptedBackend(length_scorer)
    b = ScriptedBackend(lambda it: reward_pb2.ScoreResult(
        id=it.id, score=1.0 if "42" in it.completion else 0.0, status=reward_pb2.SCORE_STATUS_OK, feedback="checked"))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a)), BackendEntry("b", servers.start(b))])
    groups = [group("p1", ["42", "x", "abc 42"], rewards=[("a", 0.5), ("b", 2.0)], metadata={"task": "mul"})]

    [scored] = router.score(groups, registry.snapshot())

    assert scored.rewards == [0.5 * 2 + 2.0 * 1, 0.5 * 1 + 0.0, 0.5 * 6 + 2.0 * 1]
    first = scored.completions[0]
    assert [(s.backend, s.weight, s.status) for s in first.scores] == [("a", 0.5, RewardStatus.OK),
                                                                       ("b", 2.0, RewardStatus.OK)]
    assert first.feedback == "checked"
    # The items carry the prompt, the completion, the reference and the metadata, with ids prompt/index.
    [request] = a.requests
    assert [it.id for it in request.items] == ["p1/0", "p1/1", "p1/2"]
    item = request.items[2]
    assert [(m.role, m.content) for m in item.prompt] == [("system", "Be brief."), ("user", "What is 6*7?")]
    assert item.completion == "abc 42" and item.answer == "42" and dict(item.metadata) == {"task": "mul"}


def test_code_reference_is_sent_as_code_tests(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))])
    code = CodeReference(test_code="def check(f): assert f(1) == 2", entry_point="inc",
                         io_cases=(IOCase("1\n", "2\n"),), timeout_seconds=3.0)
    router.score([group("c", ["def inc(x): return x + 1"], code=code)], registry.snapshot())
    item = a.requests[0].items[0]
    assert item.WhichOneof("reference") == "code"
    assert item.code.entry_point == "inc" and item.code.io_cases[0].expected_stdout == "2\n"
    assert item.code.timeout_seconds == 3.0 and item.code.language == "python"


def test_items_are_batched_by_max_batch_size_and_calls_bounded_by_max_concurrency(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), delay_s=0.15)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a), max_batch_size=3, max_concurrency=2)])
    groups = [group(f"p{i}", ["x", "y"]) for i in range(5)]  # 10 items

    scored = router.score(groups, registry.snapshot())

    assert sorted(len(r.items) for r in a.requests) == [1, 3, 3, 3]
    assert a.max_in_flight == 2  # concurrent, but never more than the entry allows
    assert all(r == 1.0 for g in scored for r in g.rewards)
    ids = sorted(it.id for r in a.requests for it in r.items)
    assert ids == sorted(f"p{i}/{j}" for i in range(5) for j in range(2))


def test_batch_size_comes_from_describe_when_the_entry_leaves_it_zero(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), max_batch_size=4)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a), max_batch_size=0)])
    router.score([group("p", ["x"] * 10)], registry.snapshot())
    assert sorted(len(r.items) for r in a.requests) == [2, 4, 4]


def test_an_entry_batch_size_over_the_backends_own_is_cut_to_it_with_one_warning(
    servers: Servers, make_router, caplog: pytest.LogCaptureFixture
) -> None:
    """The registry says 8 items a call, the backend's Describe 4: batches of 4 from the first call (not
    one refused call a step, mended by the refusal path), and the mismatch logged once."""
    a = ScriptedBackend(ok(1.0), max_batch_size=4)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a), max_batch_size=8)])
    with caplog.at_level("WARNING"):
        router.score([group("p", ["x"] * 8)], registry.snapshot())
        router.score([group("q", ["x"] * 8)], registry.snapshot())
    assert [len(r.items) for r in a.requests] == [4, 4, 4, 4]
    assert len([r for r in caplog.records if "max_batch_size" in r.getMessage()]) == 1, caplog.text


def test_backends_are_called_concurrently(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), delay_s=0.6)
    b = ScriptedBackend(ok(1.0), delay_s=0.6)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a)), BackendEntry("b", servers.start(b))])
    router.score([group("p", ["x"], rewards=[("a", 1.0), ("b", 1.0)])], registry.snapshot())  # warm channels
    started = time.monotonic()
    router.score([group("p", ["x"], rewards=[("a", 1.0), ("b", 1.0)])], registry.snapshot())
    assert time.monotonic() - started < 1.1  # one after the other would take >= 1.2 s


def test_unavailable_is_retried_until_the_backend_answers(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(0.75), fail_first=2)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))], max_retries=3)
    [scored] = router.score([group("p", ["x", "y"])], registry.snapshot())
    assert scored.rewards == [0.75, 0.75]
    assert observer.requests == [("a", "UNAVAILABLE"), ("a", "UNAVAILABLE"), ("a", "OK")]
    assert observer.item_failures == []


def test_resource_exhausted_is_retried(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), fail_first=1, fail_code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))], max_retries=1)
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    assert scored.rewards == [1.0]
    assert [c for _, c in observer.requests] == ["RESOURCE_EXHAUSTED", "OK"]


def test_spent_retries_mask_the_items_and_count_them_never_zero(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), fail_always=True)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))], max_retries=2)
    [scored] = router.score([group("p", ["x", "y", "z"])], registry.snapshot())
    assert len(a.requests) == 3  # the first try and two retries
    assert scored.rewards == [None, None, None]
    s = scored.completions[0].scores[0]
    assert s.status is RewardStatus.UNAVAILABLE and s.score is None and "after 3 attempts" in s.message
    assert observer.item_failures == [("a", "unavailable")] * 3


@pytest.mark.parametrize(
    ("code", "status"),
    [(grpc.StatusCode.INTERNAL, RewardStatus.INTERNAL), (grpc.StatusCode.INVALID_ARGUMENT, RewardStatus.INVALID_INPUT),
     (grpc.StatusCode.UNAUTHENTICATED, RewardStatus.INTERNAL)],
)
def test_other_rpc_errors_are_not_retried_and_mask_the_items(servers: Servers, make_router, code, status) -> None:
    a = ScriptedBackend(ok(1.0), fail_always=True, fail_code=code)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))], max_retries=3)
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    assert len(a.requests) == 1
    assert scored.rewards == [None]
    assert scored.completions[0].scores[0].status is status
    assert code.name in scored.completions[0].scores[0].message


def test_a_refused_request_does_not_count_against_the_breaker(servers: Servers, make_router) -> None:
    """INVALID_ARGUMENT is the request's fault, not the backend's: two in a row leave a 2-failure breaker
    closed."""
    a = ScriptedBackend(ok(1.0), fail_always=True, fail_code=grpc.StatusCode.INVALID_ARGUMENT)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))], breaker_failures=2)
    for pid in ("p", "q", "r"):
        router.score([group(pid, ["x"])], registry.snapshot())
    assert len(a.requests) == 3 and router.circuit_states() == {"a": "closed"}


def test_a_call_past_its_deadline_is_masked_as_deadline_exceeded(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), delay_s=1.0)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a), timeout_seconds=0.2)])
    started = time.monotonic()
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    assert time.monotonic() - started < 0.9
    assert scored.rewards == [None]
    assert scored.completions[0].scores[0].status is RewardStatus.DEADLINE_EXCEEDED
    assert observer.requests == [("a", "DEADLINE_EXCEEDED")]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_score_is_masked_as_internal(servers: Servers, make_router, bad: float) -> None:
    a = ScriptedBackend(lambda it: reward_pb2.ScoreResult(
        id=it.id, score=bad if it.completion == "bad" else 1.0, status=reward_pb2.SCORE_STATUS_OK))
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["ok", "bad"])], registry.snapshot())
    assert scored.rewards == [1.0, None]
    assert scored.completions[1].scores[0].status is RewardStatus.INTERNAL
    assert observer.item_failures == [("a", "internal")]


def test_a_non_finite_step_score_is_named_in_the_message(servers: Servers, make_router) -> None:
    a = ScriptedBackend(lambda it: reward_pb2.ScoreResult(id=it.id, score=0.5, step_scores=[0.25, math.nan],
                                                          step_end_offsets=[1, 2], status=reward_pb2.SCORE_STATUS_OK))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["ab"])], registry.snapshot())
    score = scored.completions[0].scores[0]
    assert score.status is RewardStatus.INTERNAL and score.message == "non-finite step score nan (step_scores[1])"


@pytest.mark.parametrize(("scores", "ends", "words"), [
    ([0.5, 1.0], [3], "2 step_scores but 1 step_end_offsets"),
    ([0.5], [], "1 step_scores but 0 step_end_offsets"),
    ([0.5, 1.0], [4, 2], "decrease"),
    ([0.5], [-1], "leave the completion's 0..4 code points"),
    ([0.5, 1.0], [2, 5], "leave the completion's 0..4 code points"),
])
def test_step_scores_the_trainer_cannot_place_mask_the_item(
        servers: Servers, make_router, scores: list[float], ends: list[int], words: str) -> None:
    """The proto pairs each step score with an end offset inside the completion, in order; a result that
    breaks this is masked and counted, not trained on with its steps silently dropped."""
    a = ScriptedBackend(lambda it: reward_pb2.ScoreResult(
        id=it.id, score=1.0, status=reward_pb2.SCORE_STATUS_OK,
        step_scores=scores if it.completion == "b\u00e9d!" else [0.5, 1.0],
        step_end_offsets=ends if it.completion == "b\u00e9d!" else [1, 2]))
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["ok", "b\u00e9d!"])], registry.snapshot())
    assert scored.rewards == [1.0, None]
    good, bad = (c.scores[0] for c in scored.completions)
    assert (good.step_scores, good.step_end_offsets) == ((0.5, 1.0), (1, 2))
    assert bad.status is RewardStatus.INTERNAL
    assert words in bad.message
    assert observer.item_failures == [("a", "internal")]


def test_step_ends_count_code_points_not_bytes(servers: Servers, make_router) -> None:
    """"b\u00e9d!" is 4 code points and 5 UTF-8 bytes: an end offset of 4 is its end, and is kept."""
    a = ScriptedBackend(lambda it: reward_pb2.ScoreResult(
        id=it.id, score=1.0, status=reward_pb2.SCORE_STATUS_OK, step_scores=[0.0, 1.0], step_end_offsets=[2, 4]))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["b\u00e9d!"])], registry.snapshot())
    assert scored.rewards == [1.0]
    assert scored.completions[0].scores[0].step_end_offsets == (2, 4)


def test_a_response_with_the_wrong_number_of_results_masks_its_batch(servers: Servers, make_router) -> None:
    def drop_last(resp: reward_pb2.ScoreResponse) -> reward_pb2.ScoreResponse:
        return reward_pb2.ScoreResponse(results=resp.results[:-1])

    a = ScriptedBackend(ok(1.0), mangle=drop_last)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["x", "y"])], registry.snapshot())
    assert scored.rewards == [None, None]
    assert "1 results for 2 items" in scored.completions[0].scores[0].message
    assert len(observer.item_failures) == 2


def test_a_response_with_the_wrong_number_of_results_counts_against_the_breaker(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), mangle=lambda resp: reward_pb2.ScoreResponse(results=resp.results[:-1]))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))], breaker_failures=1)
    router.score([group("p", ["x", "y"])], registry.snapshot())
    assert router.circuit_states() == {"a": "open"}


def test_a_missing_id_masks_only_that_item(servers: Servers, make_router) -> None:
    def rename_first(resp: reward_pb2.ScoreResponse) -> reward_pb2.ScoreResponse:
        resp.results[0].id = "somebody-else"
        return resp

    a = ScriptedBackend(ok(1.0), mangle=rename_first)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["x", "y"])], registry.snapshot())
    assert scored.rewards == [None, 1.0]
    assert "p/0" in scored.completions[0].scores[0].message


def test_results_are_matched_by_id_not_by_position(servers: Servers, make_router) -> None:
    a = ScriptedBackend(length_scorer, mangle=lambda r: reward_pb2.ScoreResponse(results=list(reversed(r.results))))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["x", "yyy"])], registry.snapshot())
    assert scored.rewards == [1.0, 3.0]


def _status_scorer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
    status = getattr(reward_pb2, item.completion)
    return reward_pb2.ScoreResult(id=item.id, score=0.25, status=status, feedback="f", status_message="why")


def test_non_ok_item_statuses_are_masked_with_the_matching_status(servers: Servers, make_router) -> None:
    a = ScriptedBackend(_status_scorer)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))])
    texts = ["SCORE_STATUS_OK", "SCORE_STATUS_INVALID_INPUT", "SCORE_STATUS_TIMEOUT",
             "SCORE_STATUS_RESOURCE_EXHAUSTED", "SCORE_STATUS_INTERNAL", "SCORE_STATUS_UNSPECIFIED"]
    [scored] = router.score([group("p", texts)], registry.snapshot())  # a math item: TIMEOUT has no score
    assert scored.rewards == [0.25, None, None, None, None, None]
    assert [c.scores[0].status for c in scored.completions] == [
        RewardStatus.OK, RewardStatus.INVALID_INPUT, RewardStatus.TIMEOUT, RewardStatus.RESOURCE_EXHAUSTED,
        RewardStatus.INTERNAL, RewardStatus.INTERNAL]
    assert scored.completions[1].scores[0].message == "why" and scored.completions[1].scores[0].feedback == "f"
    assert len(observer.item_failures) == 5


def test_a_status_this_trainer_does_not_know_masks_only_its_item(servers: Servers, make_router) -> None:
    """A newer (or broken) backend answers a ScoreStatus value our proto has no name for, with no message:
    that item is masked as INTERNAL and named by its number; the other items keep their scores."""
    def scorer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        if item.completion == "new":
            return reward_pb2.ScoreResult(id=item.id, status=97)
        return ok(1.0)(item)

    a = ScriptedBackend(scorer)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["x", "new", "y"])], registry.snapshot())
    assert scored.rewards == [1.0, None, 1.0]
    failed = scored.completions[1].scores[0]
    assert failed.status is RewardStatus.INTERNAL and failed.message == "backend returned unknown status 97"
    assert len(observer.item_failures) == 1


def test_the_code_sandbox_timeout_keeps_its_score(servers: Servers, make_router) -> None:
    a = ScriptedBackend(_status_scorer)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))])
    code = CodeReference(test_code="def check(f): pass", entry_point="f")
    [scored] = router.score([group("c", ["SCORE_STATUS_TIMEOUT"], code=code)], registry.snapshot())
    assert scored.rewards == [0.25]
    assert scored.completions[0].scores[0].status is RewardStatus.TIMEOUT
    assert observer.item_failures == []


def test_the_code_sandbox_resource_exhausted_keeps_its_score_too(servers: Servers, make_router) -> None:
    """A program past its own memory limit failed the tests it did not finish: scored, not masked (masked,
    it would escape a failure's negative advantage). Other statuses of a code item are still masked."""
    a = ScriptedBackend(_status_scorer)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))])
    code = CodeReference(test_code="def check(f): pass", entry_point="f")
    texts = ["SCORE_STATUS_RESOURCE_EXHAUSTED", "SCORE_STATUS_INVALID_INPUT", "SCORE_STATUS_INTERNAL"]
    [scored] = router.score([group("c", texts, code=code)], registry.snapshot())
    assert scored.rewards == [0.25, None, None]
    assert scored.completions[0].scores[0].status is RewardStatus.RESOURCE_EXHAUSTED
    assert len(observer.item_failures) == 2


def test_an_unknown_backend_masks_its_items_and_the_others_still_score(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0))
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))])
    [g1, g2] = router.score([group("p", ["x"], rewards=[("a", 1.0), ("ghost", 1.0)]), group("q", ["y"])],
                            registry.snapshot())
    assert g1.rewards == [None] and g2.rewards == [1.0]
    ghost = g1.completions[0].scores[1]
    assert ghost.status is RewardStatus.UNKNOWN_BACKEND and "not in the registry" in ghost.message
    assert observer.item_failures == [("ghost", "unknown_backend")]


def test_step_scores_and_components_are_passed_through(servers: Servers, make_router) -> None:
    a = ScriptedBackend(lambda it: reward_pb2.ScoreResult(
        id=it.id, score=0.5, status=reward_pb2.SCORE_STATUS_OK, step_scores=[1.0, 0.0], step_end_offsets=[1, 2],
        components={"extracted": 1.0}))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))])
    [scored] = router.score([group("p", ["ab"])], registry.snapshot())
    s = scored.completions[0].scores[0]
    assert s.step_scores == (1.0, 0.0) and s.step_end_offsets == (1, 2) and s.components == {"extracted": 1.0}


def test_the_bearer_token_from_the_token_file_is_sent(servers: Servers, make_router, tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    a = ScriptedBackend(ok(1.0))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a), token_file=str(token))])
    router.score([group("p", ["x"])], registry.snapshot())
    assert a.metadata[0]["authorization"] == "Bearer s3cret"


def test_a_token_file_in_the_services_format_sends_its_one_token(servers: Servers, make_router, tmp_path) -> None:
    """The reward services read `# comment` lines and a byte-order mark out of a token file; the trainer sent
    the whole file ("Bearer # ...\ns3cret"), which gRPC refused as "Invalid metadata" (INTERNAL: every
    item failed against its prompt). A file the trainer cannot send is refused where an operator sees it."""
    from grpo_server.rewards.client import unreadable_files

    token = tmp_path / "token"
    token.write_text("\ufeff# the math service's token, rotated 2026-12\n\n  s3cret  \n", encoding="utf-8")
    a = ScriptedBackend(ok(1.0))
    router, registry, _ = make_router([BackendEntry("a", servers.start(a), token_file=str(token))])
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    assert a.metadata[0]["authorization"] == "Bearer s3cret" and scored.rewards == [1.0]
    for text, words in (("one\ntwo\n", "holds 2 tokens"), ("s3 cret\n", "holds a space"), ("# only\n", "is empty")):
        token.write_text(text)
        [violation] = unreadable_files(BackendEntry("a", "127.0.0.1:1", token_file=str(token)), "backends.a.")
        assert violation.field == "backends.a.token_file" and words in violation.description, violation


class FakeClock:
    """Monotonic seconds moved by hand, so breaker timing is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_repeated_failures_and_recovers(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), fail_always=True, fail_code=grpc.StatusCode.INTERNAL)
    clock = FakeClock()
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))], breaker_failures=2,
                                      breaker_reset_s=30.0, clock=clock)
    for _ in range(2):
        router.score([group("p", ["x"])], registry.snapshot())
    assert len(a.requests) == 2 and router.circuit_states() == {"a": "open"}

    # Open: no call reaches the backend; the items are masked as UNAVAILABLE.
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    assert len(a.requests) == 2
    assert scored.rewards == [None] and "circuit breaker open" in scored.completions[0].scores[0].message

    # After the reset time one trial goes through; it fails, so the breaker opens again.
    clock.now += 30.0
    assert router.circuit_states() == {"a": "half_open"}
    router.score([group("p", ["x"])], registry.snapshot())
    assert len(a.requests) == 3 and router.circuit_states() == {"a": "open"}
    router.score([group("p", ["x"])], registry.snapshot())
    assert len(a.requests) == 3

    # The backend recovers: the next trial succeeds and closes the breaker.
    a.fail_always = False
    clock.now += 30.0
    [scored] = router.score([group("p", ["x", "y"])], registry.snapshot())
    assert scored.rewards == [1.0, 1.0] and router.circuit_states() == {"a": "closed"}


def test_a_breaker_with_no_traffic_is_tried_with_describe_instead_of_staying_half_open(servers: Servers,
                                                                                        make_router) -> None:
    """Only a Score call closed a breaker: a backend that blipped and then got no traffic (nothing to score
    on it) read "half_open" for ever, and the backend-down alert (any state but closed for 10 minutes)
    fired and never cleared."""
    a = ScriptedBackend(ok(1.0), fail_always=True)
    clock = FakeClock()
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))], breaker_failures=1, max_retries=0,
                                      breaker_reset_s=30.0, clock=clock)
    router.score([group("p", ["x"])], registry.snapshot())
    assert router.circuit_states() == {"a": "open"}
    a.fail_always = False  # back, but nothing is sent to it
    clock.now += 30.0
    assert router.circuit_states() == {"a": "half_open"}  # due for its trial: a step would make it
    clock.now += 30.0
    router.circuit_states()  # due for 30 s with no call: a Describe goes out as the trial
    wait_for_state = time.monotonic() + 10
    while router.circuit_states() != {"a": "closed"} and time.monotonic() < wait_for_state:
        time.sleep(0.05)
    assert router.circuit_states() == {"a": "closed"} and len(a.requests) == 1  # no Score call made


def test_unreachable_backend_masks_items_as_unavailable(make_router) -> None:
    router, registry, observer = make_router([BackendEntry("a", "127.0.0.1:1", timeout_seconds=2.0)], max_retries=1)
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    assert scored.rewards == [None]
    assert scored.completions[0].scores[0].status is RewardStatus.UNAVAILABLE
    assert [c for _, c in observer.requests] == ["UNAVAILABLE", "UNAVAILABLE"]


def test_a_new_router_reaches_a_backend_another_router_failed_to_reach_at_that_address(
    servers: Servers, make_router
) -> None:
    # The first router finds nothing at the address (a backend down, or not yet deployed) and stays
    # open; then a backend comes up there and a second router (a new registry, another run) calls it.
    # gRPC's process-wide connection sharing handed the second router the first one's failed connection
    # and its reconnect wait: its first call failed at once with UNAVAILABLE against a backend that was up.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    first, first_registry, _ = make_router([BackendEntry("a", address, timeout_seconds=2.0)], max_retries=0)
    [scored] = first.score([group("p", ["x"])], first_registry.snapshot())
    assert scored.completions[0].scores[0].status is RewardStatus.UNAVAILABLE

    servers.start(ScriptedBackend(ok(1.0)), address)
    second, second_registry, observer = make_router([BackendEntry("a", address, timeout_seconds=2.0)], max_retries=0)
    [scored] = second.score([group("p", ["x"])], second_registry.snapshot())
    assert scored.rewards == [1.0], scored.completions[0].scores[0].message
    assert [c for _, c in observer.requests] == ["OK"]


def test_seconds_until_trial_is_the_open_breakers_time_left_and_zero_for_a_moved_backend(
    servers: Servers, make_router
) -> None:
    router, registry, _ = make_router([BackendEntry("a", "127.0.0.1:1", timeout_seconds=2.0)], max_retries=0,
                                      breaker_failures=1, breaker_reset_s=30.0)
    snapshot = registry.snapshot()
    assert router.seconds_until_trial(["a"], snapshot) == 0.0  # never called
    router.score([group("p", ["x"])], snapshot)
    assert 29.0 < router.seconds_until_trial(["a"], snapshot) <= 30.0
    assert router.seconds_until_trial(["a", "gone"], snapshot) == 0.0  # one of them may be called
    assert router.circuit_states() == registry.circuit_states() == {"a": "open"}
    registry.set(BackendEntry("a", servers.start(ScriptedBackend(ok(1.0)))))
    assert router.seconds_until_trial(["a"], registry.snapshot()) == 0.0  # a new address: a new backend
    # ... whose breaker is closed until it fails: the old address's open breaker no longer speaks for it.
    assert router.circuit_states() == {} and registry.circuit_states() == {"a": "closed"}
    assert [b.circuit for b in registry.list()[1]] == ["closed"]


def test_retries_stop_when_the_breaker_opens_and_the_message_keeps_the_cause(servers: Servers, make_router) -> None:
    a = ScriptedBackend(ok(1.0), fail_always=True)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))], max_retries=5, breaker_failures=2)
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    assert len(a.requests) == 2  # not 6: the open breaker ends the retries
    message = scored.completions[0].scores[0].message
    assert "circuit breaker open" in message and "UNAVAILABLE: scripted UNAVAILABLE" in message


# ------------------------------------------------------------------------------------ retry backoff


class HintingBackend(ScriptedBackend):
    """A ScriptedBackend whose first `fail_first` Score calls fail with `fail_code` carrying a
    google.rpc.RetryInfo of `hint_s` seconds (None: no RetryInfo). `arrivals`: monotonic time of each
    call's arrival (same process as the router, so the gaps measure the router's waits)."""

    def __init__(self, scorer: Scorer, *, hint_s: float | None, fail_first: int = 1,
                 fail_code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED) -> None:
        super().__init__(scorer)
        self.hint_s = hint_s
        self.hinted_failures = fail_first
        self.hinted_code = fail_code
        self.arrivals: list[float] = []

    def Score(self, request: reward_pb2.ScoreRequest, context: grpc.ServicerContext) -> reward_pb2.ScoreResponse:
        with self._lock:
            self.arrivals.append(time.monotonic())
            n = len(self.arrivals)
        if n <= self.hinted_failures:
            status = status_pb2.Status(code=self.hinted_code.value[0], message=f"scripted {self.hinted_code.name}")
            if self.hint_s is not None:
                delay = duration_pb2.Duration()
                delay.FromNanoseconds(round(self.hint_s * 1e9))
                detail = any_pb2.Any()
                detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
                status.details.append(detail)
            context.abort_with_status(rpc_status.to_status(status))
        return super().Score(request, context)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


def _real_rpc_error(address: str) -> grpc.RpcError:
    """The RpcError a real Score call to `address` ends with (the backend must fail it)."""
    with grpc.insecure_channel(address) as channel:
        try:
            reward_pb2_grpc.RewardServiceStub(channel).Score(reward_pb2.ScoreRequest(), timeout=10)
        except grpc.RpcError as err:
            return err
    raise AssertionError("the backend did not fail the call")


def test_backoff_jitter_stays_within_its_bounds_and_varies(servers: Servers, make_router) -> None:
    # A real UNAVAILABLE without RetryInfo: the delay is uniform(0.5, 1) * min(max, base * 2**attempt).
    error = _real_rpc_error(servers.start(ScriptedBackend(ok(1.0), fail_always=True)))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    router, _, _ = make_router([], backoff_base_s=0.1, backoff_max_s=1.0)
    saved = random.getstate()
    try:
        # The step loop re-seeds the module-level `random` every step: the jitter must not follow it.
        random.seed(1234)
        first = {k: [router._backoff(k, error) for _ in range(200)] for k in range(6)}
        random.seed(1234)
        again = {k: [router._backoff(k, error) for _ in range(200)] for k in range(6)}
    finally:
        random.setstate(saved)
    assert first != again
    for k, delays in first.items():
        cap = min(1.0, 0.1 * 2**k)  # 0.1, 0.2, 0.4, 0.8, then the 1.0 maximum
        assert all(0.5 * cap <= d <= cap for d in delays), (k, min(delays), max(delays))
        assert len(set(delays)) > 150  # it varies from call to call...
        assert min(delays) < 0.6 * cap and max(delays) > 0.9 * cap  # ...over the whole documented range


def test_backoff_takes_the_retry_info_hint_capped_at_the_maximum(servers: Servers, make_router) -> None:
    small = _real_rpc_error(servers.start(HintingBackend(ok(1.0), hint_s=0.7)))
    huge = _real_rpc_error(servers.start(HintingBackend(ok(1.0), hint_s=30.0)))
    router, _, _ = make_router([], backoff_base_s=0.01, backoff_max_s=2.0)
    for attempt in range(3):
        assert router._backoff(attempt, small) == pytest.approx(0.7)  # longer than the jitter: the hint
        assert router._backoff(attempt, huge) == 2.0  # longer than the maximum: the maximum
    # A hint shorter than the jittered delay does not shorten it.
    tiny = _real_rpc_error(servers.start(HintingBackend(ok(1.0), hint_s=0.001)))
    router2, _, _ = make_router([], backoff_base_s=0.2, backoff_max_s=2.0)
    assert all(0.1 <= router2._backoff(0, tiny) <= 0.2 for _ in range(50))


@pytest.mark.parametrize("code", [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE])
def test_a_retry_waits_at_least_the_backends_retry_info_delay(servers: Servers, make_router, code) -> None:
    a = HintingBackend(ok(0.5), hint_s=0.6, fail_first=2, fail_code=code)
    # Without the hint the jittered wait would be at most 0.02 s.
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))], max_retries=3,
                                             backoff_base_s=0.01, backoff_max_s=5.0)
    [scored] = router.score([group("p", ["x", "y"])], registry.snapshot())
    assert scored.rewards == [0.5, 0.5]
    assert [c for _, c in observer.requests] == [code.name, code.name, "OK"]
    gaps = a.gaps()
    assert len(gaps) == 2
    assert all(g >= 0.6 * 0.95 for g in gaps), gaps  # each retry honoured the 0.6 s hint
    assert all(g < 0.6 + 3.0 for g in gaps), gaps  # and did not wait for something else


def test_a_retry_info_delay_is_capped_at_backoff_max(servers: Servers, make_router) -> None:
    a = HintingBackend(ok(1.0), hint_s=30.0, fail_first=1)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))], max_retries=2,
                                      backoff_base_s=0.01, backoff_max_s=0.5)
    started = time.monotonic()
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    elapsed = time.monotonic() - started
    assert scored.rewards == [1.0]
    [gap] = a.gaps()
    assert gap >= 0.5 * 0.95, gap  # the cap, not the 0.01 s jitter...
    assert gap < 0.5 + 3.0 and elapsed < 10.0, (gap, elapsed)  # ...and far from the 30 s hint


def test_without_a_hint_the_retry_waits_the_jittered_backoff(servers: Servers, make_router) -> None:
    a = HintingBackend(ok(1.0), hint_s=None, fail_first=1)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a))], max_retries=2,
                                      backoff_base_s=0.5, backoff_max_s=5.0)
    [scored] = router.score([group("p", ["x"])], registry.snapshot())
    assert scored.rewards == [1.0]
    [gap] = a.gaps()
    assert gap >= 0.25 * 0.95, gap  # uniform(0.5, 1) * 0.5 s: at least a quarter second
    assert gap < 0.5 + 3.0, gap


def test_a_backend_with_many_workers_does_not_hold_up_the_others(servers: Servers, make_router) -> None:
    """Workers share one pool; they were submitted backend by backend, so a backend whose max_concurrency
    filled the pool held every other backend's calls until its whole queue was done."""
    arrivals: list[str] = []

    def slow(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        arrivals.append("a")
        time.sleep(0.3)
        return reward_pb2.ScoreResult(id=item.id, score=1.0, status=reward_pb2.SCORE_STATUS_OK)

    def fast(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        arrivals.append("b")
        return reward_pb2.ScoreResult(id=item.id, score=2.0, status=reward_pb2.SCORE_STATUS_OK)

    a, b = ScriptedBackend(slow), ScriptedBackend(fast)
    router, registry, _ = make_router([BackendEntry("a", servers.start(a), max_batch_size=1, max_concurrency=4),
                                       BackendEntry("b", servers.start(b))], max_workers=4)
    groups = [group(f"a{i}", ["x"]) for i in range(8)] + [group("b", ["y"], rewards=[("b", 1.0)])]
    scored = router.score(groups, registry.snapshot())
    assert [g.rewards for g in scored] == [[1.0]] * 8 + [[2.0]]
    assert arrivals.index("b") < 4, arrivals  # among the first calls, not after all eight of a's


class RefusesOverItsLimit(ScriptedBackend):
    """Refuses Score calls over its max_batch_size (INVALID_ARGUMENT, as the proto says), which may change
    while it runs."""

    def Score(self, request, context):  # type: ignore[no-untyped-def]
        if len(request.items) > self.max_batch_size:
            self.requests.append(request)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{len(request.items)} items, at most {self.max_batch_size}")
        return super().Score(request, context)


class DescribeFailsFirst(RefusesOverItsLimit):
    """Its first Describe fails, as a backend's does while it starts."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.describes = 0

    def Describe(self, request, context):  # type: ignore[no-untyped-def]
        self.describes += 1
        if self.describes == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "starting")
        return super().Describe(request, context)


def test_a_batch_cut_before_the_backend_described_itself_is_cut_again_to_its_size(servers: Servers,
                                                                                   make_router) -> None:
    """A failed Describe is kept for 10 s; batches cut meanwhile to the default 64 were refused whole and
    every item masked as INVALID_INPUT (the prompts' fault), step after step."""
    a = DescribeFailsFirst(ok(1.0), max_batch_size=4)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a), max_batch_size=0)])
    [scored] = router.score([group("p", ["x"] * 8)], registry.snapshot())
    assert scored.rewards == [1.0] * 8
    assert [len(r.items) for r in a.requests] == [8, 4, 4] and a.describes == 2
    assert observer.item_failures == [] and router.circuit_states() == {"a": "closed"}
    router.score([group("p", ["x"] * 8)], registry.snapshot())  # the answer is kept: batches of 4 at once
    assert [len(r.items) for r in a.requests[3:]] == [4, 4] and a.describes == 2


def test_a_backend_redeployed_with_a_smaller_batch_limit_gets_batches_within_it(servers: Servers,
                                                                                 make_router) -> None:
    """Describe's answer was kept until the entry changed: a backend redeployed at the same address with a
    smaller --max-batch refused every batch, each item was masked INVALID_INPUT (the prompts' fault,
    FAILED after 3 steps), until the trainer restarted."""
    a = RefusesOverItsLimit(ok(1.0), max_batch_size=64)
    router, registry, observer = make_router([BackendEntry("a", servers.start(a), max_batch_size=0)])
    [scored] = router.score([group("p", ["x"] * 8)], registry.snapshot())
    assert scored.rewards == [1.0] * 8 and [len(r.items) for r in a.requests] == [8]
    a.max_batch_size = 4  # redeployed with --max-batch 4
    for _ in range(2):
        [scored] = router.score([group("p", ["x"] * 8)], registry.snapshot())
        assert scored.rewards == [1.0] * 8
    # refused once, described again, then cut to 4: the next step's batches are cut at once
    assert [len(r.items) for r in a.requests[1:]] == [8, 4, 4, 4, 4]
    assert observer.item_failures == [] and router.circuit_states() == {"a": "closed"}


def test_batches_are_cut_to_the_message_limit_and_an_item_alone_over_it_is_masked(servers: Servers,
                                                                                    make_router) -> None:
    """Batches were cut by item count only: a batch over the channel's 64 MiB failed RESOURCE_EXHAUSTED
    on the trainer's side, was retried as an overload, opened the breaker and never got through."""
    a = ScriptedBackend(ok(1.0))
    router, registry, observer = make_router([BackendEntry("a", servers.start(a))], max_message_bytes=2000)
    texts = ["x" * 500] * 6 + ["y" * 3000]
    [scored] = router.score([group("p", texts)], registry.snapshot())
    assert scored.rewards == [1.0] * 6 + [None]
    big = scored.completions[6].scores[0]
    assert big.status is RewardStatus.INVALID_INPUT and "a Score request carries at most 2000" in big.message
    assert all(r.ByteSize() <= 2000 for r in a.requests) and len(a.requests) > 1
    assert sum(len(r.items) for r in a.requests) == 6  # the big item was never sent
    assert observer.item_failures == [("a", "invalid_input")] and {c for _, c in observer.requests} == {"OK"}
    assert router.circuit_states() == {"a": "closed"}


def test_a_batch_over_the_backends_receive_limit_is_sent_in_halves(servers: Servers, make_router) -> None:
    """RESOURCE_EXHAUSTED "larger than max" is the request's size, not an overload: it was retried, counted
    against the breaker and failed again at every step."""
    a = ScriptedBackend(ok(1.0))
    address = servers.start(a, options=[("grpc.max_receive_message_length", 3000)])
    router, registry, observer = make_router([BackendEntry("a", address)], breaker_failures=2)
    texts = ["x" * 600] * 8 + ["y" * 4000]
    for _ in range(2):
        [scored] = router.score([group("p", texts)], registry.snapshot())
        assert scored.rewards == [1.0] * 8 + [None]
        big = scored.completions[8].scores[0]
        assert big.status is RewardStatus.INVALID_INPUT and "larger than max" in big.message, big.message
    assert sum(len(r.items) for r in a.requests) == 16 and all(r.ByteSize() <= 3000 for r in a.requests)
    assert router.circuit_states() == {"a": "closed"}
    assert observer.item_failures == [("a", "invalid_input")] * 2


def test_a_corrupt_retry_hint_is_no_hint_and_ends_nothing(servers: Servers, make_router) -> None:
    """A backend's RetryInfo detail of bytes that do not parse made score() raise (DecodeError), which
    failed the step and ended the run: it is ignored, the call retried, the batch masked UNAVAILABLE."""

    class CorruptHint(ScriptedBackend):
        def Score(self, request, context):  # type: ignore[no-untyped-def]
            self.requests.append(request)
            detail = any_pb2.Any(type_url="type.googleapis.com/google.rpc.RetryInfo", value=b"\x0a\x05ab")
            context.abort_with_status(rpc_status.to_status(status_pb2.Status(
                code=grpc.StatusCode.UNAVAILABLE.value[0], message="overloaded", details=[detail])))

    backend = CorruptHint(ok(1.0))
    router, registry, observer = make_router([BackendEntry("b", servers.start(backend))], max_retries=2)
    [scored] = router.score([group("p1", ["42", "41"], rewards=[("b", 1.0)])], registry.snapshot())
    assert [c.scores[0].status for c in scored.completions] == [RewardStatus.UNAVAILABLE] * 2
    assert len(backend.requests) == 3  # the first call and its two retries
    assert observer.item_failures == [("b", "unavailable")] * 2


def test_a_refusal_naming_one_item_masks_that_item_and_scores_the_others(servers: Servers, make_router) -> None:
    """A backend answers INVALID_ARGUMENT for the whole request, its BadRequest naming items[i]: only those
    prompts are at fault. Every item of the batch was masked INVALID_INPUT (an attempt counted against
    each prompt); now the named ones are, the others sent again."""

    class RefusesLong(ScriptedBackend):
        def Score(self, request, context):  # type: ignore[no-untyped-def]
            self.requests.append(request)
            bad = [i for i, it in enumerate(request.items) if len(it.completion) > 5]
            if bad:
                detail = any_pb2.Any()
                detail.Pack(error_details_pb2.BadRequest(field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f"items[{i}].completion", description="too long")
                    for i in bad]))
                context.abort_with_status(rpc_status.to_status(status_pb2.Status(
                    code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="bad items", details=[detail])))
            return reward_pb2.ScoreResponse(results=[self.scorer(it) for it in request.items])

    backend = RefusesLong(ok(1.0))
    router, registry, observer = make_router([BackendEntry("b", servers.start(backend))])
    groups = [group("p1", ["42", "far too long"], rewards=[("b", 1.0)]), group("p2", ["7", "8"], rewards=[("b", 1.0)])]
    scored = router.score(groups, registry.snapshot())
    statuses = [[c.scores[0].status for c in g.completions] for g in scored]
    assert statuses == [[RewardStatus.OK, RewardStatus.INVALID_INPUT], [RewardStatus.OK, RewardStatus.OK]]
    masked = scored[0].completions[1].scores[0]
    assert "items[1].completion: too long" in masked.message
    assert [len(r.items) for r in backend.requests] == [4, 3]  # the batch, then the three it did not name
    assert observer.item_failures == [("b", "invalid_input")]
