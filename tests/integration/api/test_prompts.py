"""ListPrompts over a real server and store: each submission and where it is (queued, leased, trained in
a checkpoint, failed with its reason), in submission order, filtered by id and state, a page at a time;
bad requests are INVALID_ARGUMENT naming the field (the read role it needs: test_auth.py). And
`grpo prompts`."""

from __future__ import annotations

import base64
import io
import json

import grpc
import pytest
from api_support import Api, prompt, submit, violations

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient, cli
from grpo_server.api.validation import page_token

Q, L, T, F = (trainer_pb2.PROMPT_STATE_QUEUED, trainer_pb2.PROMPT_STATE_LEASED, trainer_pb2.PROMPT_STATE_TRAINED,
              trainer_pb2.PROMPT_STATE_FAILED)


def listed(api: Api, **kw: object) -> trainer_pb2.ListPromptsResponse:
    return api.stub.ListPrompts(trainer_pb2.ListPromptsRequest(**kw))  # type: ignore[arg-type]


@pytest.fixture
def run(api: Api) -> Api:
    """Six prompts: a, b trained in checkpoint 1; c given up on after 2 attempts; d leased by step 4;
    e, f queued; then `a` submitted again (queued)."""
    api.store.max_attempts = 2
    api.stub.SubmitPrompts(submit(*(prompt(p) for p in "abcdef")))
    api.store.lease(2, 1)  # a, b
    api.store.commit_checkpoint(1, "/ckpt/1")
    for step in (2, 3):
        assert [r.id for r in api.store.lease(1, step)] == ["c"]
        api.store.requeue_step(step, count_attempt=True, reason="every reward item was rejected")
    api.store.lease(1, 4)  # d
    api.stub.SubmitPrompts(submit(prompt("a")))
    return api


def test_every_submission_is_listed_in_order_with_where_it_is(run: Api) -> None:
    got = listed(run)
    assert [(p.id, p.state) for p in got.prompts] == [("a", T), ("b", T), ("c", F), ("d", L), ("e", Q), ("f", Q),
                                                      ("a", Q)]
    assert got.next_page_token == ""
    a, b, c, d, e = got.prompts[:5]
    assert (a.step, a.checkpoint_step, a.attempts, a.reason) == (1, 1, 0, "")
    assert (c.step, c.checkpoint_step, c.attempts) == (3, 0, 2)
    assert c.reason == "gave up after 2 failed attempts; the last: every reward item was rejected"
    assert (d.step, d.checkpoint_step, d.reason) == (4, 0, "")
    assert (e.step, e.attempts) == (0, 0)
    assert a.submitted_at.seconds > 0 and a.updated_at.ToNanoseconds() >= a.submitted_at.ToNanoseconds()


def test_filters_by_id_and_state(run: Api) -> None:
    assert [(p.id, p.state) for p in listed(run, ids=["a", "d", "zz"]).prompts] == [("a", T), ("d", L), ("a", Q)]
    assert [p.id for p in listed(run, state=F).prompts] == ["c"]
    assert [p.id for p in listed(run, state=Q).prompts] == ["e", "f", "a"]
    assert [p.id for p in listed(run, ids=["a"], state=T).prompts] == ["a"]
    assert list(listed(run, ids=["zz"]).prompts) == []


def test_pages_follow_one_another_without_gaps_or_repeats(run: Api) -> None:
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = listed(run, page_size=3, page_token=token)
        pages += 1
        assert len(page.prompts) <= 3
        seen += [p.id for p in page.prompts]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["a", "b", "c", "d", "e", "f", "a"] and pages == 3
    # A prompt submitted after a page was read appears on a later page, not before it.
    first = listed(run, page_size=6)
    run.stub.SubmitPrompts(submit(prompt("g")))
    assert [p.id for p in listed(run, page_token=first.next_page_token).prompts] == ["a", "g"]
    # The Python client walks every page.
    client = TrainerClient(run.target)
    try:
        assert [p.id for p in client.iter_prompts(page_size=2)] == ["a", "b", "c", "d", "e", "f", "a", "g"]
        assert [p.id for p in client.iter_prompts(state=F)] == ["c"]
    finally:
        client.close()


@pytest.mark.parametrize(("request_kw", "field"), [
    ({"page_size": -1}, "page_size"),
    ({"page_size": 1001}, "page_size"),
    ({"page_token": "not-a-token"}, "page_token"),
    ({"page_token": "YWZ0ZXI6LTE="}, "page_token"),  # base64 of "after:-1"
    ({"state": 9}, "state"),
    ({"ids": [""]}, "ids[0]"),
    ({"ids": ["ok", "x" * 4097]}, "ids[1]"),
    ({"ids": ["caf\u00e9"]}, "ids[0]"),
    ({"ids": [f"p{i}" for i in range(1001)]}, "ids"),
])
def test_bad_requests_are_invalid_argument_naming_the_field(run: Api, request_kw: dict, field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        listed(run, **request_kw)
    assert field in violations(err.value), violations(err.value)


def test_page_tokens_are_opaque_and_checked(run: Api) -> None:
    assert [p.id for p in listed(run, page_token=page_token(5)).prompts] == ["f", "a"]
    assert set(violations(pytest.raises(grpc.RpcError, listed, run, page_size=-3, page_token="@@").value)) == {
        "page_size", "page_token"}


def test_a_page_token_is_only_good_with_the_filter_it_was_issued_for(run: Api) -> None:
    queued = listed(run, state=Q, page_size=1)  # e, then a token "after e" of the QUEUED listing
    assert [p.id for p in queued.prompts] == ["e"] and queued.next_page_token
    # The same position in another listing is another page: refused, not answered with the wrong prompts.
    for other in ({}, {"state": F}, {"state": Q, "ids": ["e", "f"]}):
        with pytest.raises(grpc.RpcError) as err:
            listed(run, page_token=queued.next_page_token, **other)
        found = violations(err.value)
        assert list(found) == ["page_token"], found
        assert "different filter" in found["page_token"] and "without a page_token" in found["page_token"]
    by_id = listed(run, ids=["a", "d"], page_size=1)
    with pytest.raises(grpc.RpcError) as err:
        listed(run, ids=["a"], page_token=by_id.next_page_token)
    assert "different filter" in violations(err.value)["page_token"]
    # The ids are a set: their order and repeats do not change the filter.
    assert [p.id for p in listed(run, ids=["d", "a", "a"], page_token=by_id.next_page_token).prompts] == ["d", "a"]


@pytest.mark.parametrize(("request_kw", "expected"), [
    ({}, ["a", "b", "c", "d", "e", "f", "a"]),
    ({"state": Q}, ["e", "f", "a"]),
    ({"ids": ["a", "c", "f"]}, ["a", "c", "f", "a"]),
    ({"ids": ["a", "b", "e"], "state": Q}, ["e", "a"]),
])
def test_the_same_filter_pages_through_every_match_once(run: Api, request_kw: dict, expected: list[str]) -> None:
    for sizes in ([1], [2, 1, 3]):  # the page size may change from page to page
        seen: list[str] = []
        token, n = "", 0
        while True:
            page = listed(run, page_size=sizes[n % len(sizes)], page_token=token, **request_kw)
            seen += [p.id for p in page.prompts]
            token, n = page.next_page_token, n + 1
            if not token:
                break
        assert seen == expected, sizes


def test_a_page_token_of_the_format_before_filters_is_refused(run: Api) -> None:
    """Tokens are issued per call, never stored; one held by a client across an upgrade says nothing
    of its filter, so it is refused with what to do rather than trusted."""
    old = base64.urlsafe_b64encode(b"after:5").decode()
    with pytest.raises(grpc.RpcError) as err:
        listed(run, page_token=old)
    found = violations(err.value)
    assert list(found) == ["page_token"] and "without a page_token" in found["page_token"], found


def test_grpo_prompts_lists_failed_prompts_with_their_reason(run: Api) -> None:
    out = io.StringIO()
    assert cli.main(["--target", run.target, "prompts", "--state", "failed"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["id", "state", "step", "checkpoint", "attempts", "reason"]
    assert lines[1].split()[:5] == ["c", "failed", "3", "-", "2"] and "gave up after 2 failed attempts" in lines[1]
    assert len(lines) == 2

    out = io.StringIO()
    assert cli.main(["--target", run.target, "--json", "prompts", "a", "nope"], out=out) == 0
    doc = json.loads(out.getvalue())
    assert [(p["id"], p["state"]) for p in doc["prompts"]] == [("a", "PROMPT_STATE_TRAINED"), ("a", "PROMPT_STATE_QUEUED")]

    out = io.StringIO()
    assert cli.main(["--target", run.target, "prompts", "--limit", "2", "a", "nope"], out=out) == 0
    assert len(out.getvalue().splitlines()) == 3  # the header and two prompts, the limit reached

    out = io.StringIO()
    assert cli.main(["--target", run.target, "prompts", "b", "nope"], out=out) == 0
    assert out.getvalue().splitlines()[-1] == "unknown: nope (never submitted, or deleted under retention.prompt_rows_seconds)"


def test_grpo_prompts_says_so_when_nothing_matches(make_api) -> None:
    api = make_api()
    target = f"localhost:{api.port}"
    for argv, said in ((["prompts"], "no prompts (none submitted, or deleted under retention.prompt_rows_seconds)\n"), (["prompts", "--state", "failed"], "no failed prompts\n")):
        out = io.StringIO()
        assert cli.main(["--target", target, *argv], out=out) == 0
        assert out.getvalue() == said  # a sentence, not a bare table header
