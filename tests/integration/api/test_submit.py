"""SubmitPrompts end to end: what is stored, idempotency, duplicates, a full queue, a loading model."""

from __future__ import annotations

import grpc
import pytest
from api_support import Api, details, prompt, submit, violations
from google.rpc import error_details_pb2

from grpo.trainer.v1 import trainer_pb2
from grpo_server.api.settings import ApiLimits
from grpo_server.types import PromptState


def test_accepted_prompts_are_queued_in_order_with_default_rewards(api: Api) -> None:
    resp = api.stub.SubmitPrompts(submit(prompt("a"), prompt("b", rewards=[trainer_pb2.RewardSpec(backend="rm")])))
    assert list(resp.accepted_ids) == ["a", "b"] and resp.queue_depth == 2 and not resp.duplicate
    a, b = api.store.lease(2, step=1)
    assert (a.id, b.id) == ("a", "b")
    assert [(r.backend, r.weight) for r in a.rewards] == [("math", 1.0)]  # empty rewards -> the default
    assert [(r.backend, r.weight) for r in b.rewards] == [("rm", 1.0)]  # weight 0 (unset) -> 1
    assert a.answer == "5" and a.messages[0].content == "What is 2+3?"


def test_submit_wakes_a_loop_waiting_for_work(api: Api) -> None:
    import threading

    woke = threading.Event()

    def loop() -> None:
        if api.control.wait_for_work(timeout=10):
            woke.set()

    t = threading.Thread(target=loop)
    t.start()
    api.stub.SubmitPrompts(submit(prompt("a")))
    t.join()
    assert woke.is_set()


def test_resubmission_with_the_same_request_id_returns_the_first_answer(api: Api) -> None:
    first = api.stub.SubmitPrompts(submit(prompt("a"), prompt("b"), request_id="req-7"))
    api.stub.SubmitPrompts(submit(prompt("c")))
    again = api.stub.SubmitPrompts(submit(prompt("a"), prompt("b"), request_id="req-7"))
    assert again.duplicate
    assert list(again.accepted_ids) == ["a", "b"] and again.queue_depth == first.queue_depth == 2
    assert api.store.counts()[PromptState.QUEUED] == 3


def test_a_retry_gets_its_first_answer_even_when_the_request_would_no_longer_pass(api: Api) -> None:
    """The first answer was lost; meanwhile the backend the prompt names was deleted and the tokenizer is
    reloading. The retry is answered from the record (its prompts are queued), not refused."""
    first = api.stub.SubmitPrompts(submit(prompt("a", rewards=[trainer_pb2.RewardSpec(backend="rm")]),
                                          request_id="req-9"))
    api.registry.delete("rm")
    tokenizer, api.tokenizer["tokenizer"] = api.tokenizer["tokenizer"], None
    again = api.stub.SubmitPrompts(submit(prompt("a", rewards=[trainer_pb2.RewardSpec(backend="rm")]),
                                          request_id="req-9"))
    assert again.duplicate and list(again.accepted_ids) == ["a"] and again.queue_depth == first.queue_depth
    with pytest.raises(grpc.RpcError) as e:  # the same prompts under a new request id are validated
        api.stub.SubmitPrompts(submit(prompt("a2", rewards=[trainer_pb2.RewardSpec(backend="rm")]),
                                      request_id="req-10"))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE  # the tokenizer is loading
    api.tokenizer["tokenizer"] = tokenizer
    with pytest.raises(grpc.RpcError) as e:  # and other prompts under the first one are still refused
        api.stub.SubmitPrompts(submit(prompt("b"), request_id="req-9"))
    assert list(violations(e.value)) == ["request_id"]
    assert set(api.store.prompt_states()) == {"a"}


def test_a_request_id_sent_again_with_other_prompts_is_invalid_argument_naming_it(api: Api) -> None:
    api.stub.SubmitPrompts(submit(prompt("a"), prompt("b"), request_id="req-8"))
    for changed in ((prompt("x"),), (prompt("a"), prompt("b", text="What is 9+9?")), (prompt("b"), prompt("a"))):
        with pytest.raises(grpc.RpcError) as e:
            api.stub.SubmitPrompts(submit(*changed, request_id="req-8"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        v = violations(e.value)
        assert list(v) == ["request_id"] and "'req-8' was first used for other prompts (it queued a, b)" in v["request_id"]
    assert set(api.store.prompt_states()) == {"a", "b"} and api.store.queue_depth() == 2


def test_an_id_already_queued_is_rejected_and_nothing_of_the_request_is_stored(api: Api) -> None:
    api.stub.SubmitPrompts(submit(prompt("a")))
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(submit(prompt("new"), prompt("a")))
    v = violations(e.value)
    assert list(v) == ["prompts[1].id"] and "already queued" in v["prompts[1].id"]
    assert set(api.store.prompt_states()) == {"a"}


def test_an_id_already_queued_is_named_with_the_other_bad_fields(api: Api) -> None:
    """The store's check ran only once validation passed: with another bad field in the request, the queued
    id was not named, and the fixed request was refused again for it."""
    api.stub.SubmitPrompts(submit(prompt("a")))
    bad_weight = prompt("b", rewards=[trainer_pb2.RewardSpec(backend="math", weight=-1)])
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(submit(prompt("a"), bad_weight))
    v = violations(e.value)
    assert set(v) == {"prompts[0].id", "prompts[1].rewards[0].weight"}, v
    assert "already queued" in v["prompts[0].id"]
    assert set(api.store.prompt_states()) == {"a"}


def test_full_queue_gives_resource_exhausted_with_retry_info(make_api) -> None:
    api: Api = make_api(limits=ApiLimits(max_queue_depth=3, retry_after_seconds=7))
    api.stub.SubmitPrompts(submit(prompt("a"), prompt("b")))
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(submit(prompt("c"), prompt("d")))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    [retry] = details(e.value, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == 7
    assert set(api.store.prompt_states()) == {"a", "b"}


def test_submit_while_the_tokenizer_loads_is_unavailable_with_retry_info(make_api) -> None:
    api: Api = make_api(tokenizer_loaded=False)
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(submit(prompt("a")))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details(e.value, error_details_pb2.RetryInfo)
    api.tokenizer["tokenizer"] = None
    assert api.store.queue_depth() == 0


def test_token_limit_off_accepts_prompts_before_the_tokenizer_loads(make_api) -> None:
    api: Api = make_api(tokenizer_loaded=False, limits=ApiLimits(max_prompt_tokens=0))
    assert api.stub.SubmitPrompts(submit(prompt("a"))).queue_depth == 1


def test_large_request_within_the_raised_message_limit_is_accepted(make_api) -> None:
    api: Api = make_api(limits=ApiLimits(max_prompt_tokens=8192))
    # ~6 MB: over gRPC's 4 MiB default, under the server's raised limit (64 MiB by default).
    prompts = [prompt(f"p{i}", text=("word " * 1200)) for i in range(1000)]
    resp = api.stub.SubmitPrompts(submit(*prompts))
    assert resp.queue_depth == 1000


def test_a_request_with_a_thousand_bad_prompts_gets_a_readable_truncated_bad_request(api: Api) -> None:
    prompts = [prompt(f"p{i}", text="word " * 1200) for i in range(1000)]  # each over 1024 tokens
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(submit(*prompts))
    v = violations(e.value)
    assert 10 < len(v) < 1000 and "prompts[0].messages" in v
    assert "1000 bad fields" in e.value.details() and "lists the first" in e.value.details()
    assert api.store.queue_depth() == 0
