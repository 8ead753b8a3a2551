"""Every validation rule of SubmitPrompts (and the other RPCs): INVALID_ARGUMENT with a BadRequest naming
each bad field by its path, and nothing of a rejected request stored."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import grpc
import pytest
from api_support import Api, prompt, submit, violations

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_server.api.settings import ApiLimits
from grpo_server.api.validation import PromptRoom
from grpo_server.chat import encode_prompt

Msg = reward_pb2.Message
Spec = trainer_pb2.RewardSpec


def code_prompt(pid: str = "c0", rewards: list[trainer_pb2.RewardSpec] | None = None, **code: object) -> trainer_pb2.Prompt:
    """A code prompt, rewarded by the "code" backend unless `rewards` says otherwise ([] = the default)."""
    return prompt(pid, answer=None, code=reward_pb2.CodeTests(**code),  # type: ignore[arg-type]
                  rewards=[Spec(backend="code")] if rewards is None else rewards)


def with_messages(*msgs: tuple[str, str]) -> trainer_pb2.Prompt:
    p = prompt("m0")
    del p.messages[:]
    p.messages.extend(Msg(role=r, content=c) for r, c in msgs)
    return p


# (request builder, expected {field path: a phrase of its description})
CASES: dict[str, tuple[Callable[[], trainer_pb2.SubmitPromptsRequest], dict[str, str]]] = {
    "no_prompts": (lambda: submit(), {"prompts": "at least one"}),
    "too_many_prompts": (lambda: submit(*[prompt(f"p{i}") for i in range(5)]), {"prompts": "at most 4"}),
    "request_id_too_long": (lambda: submit(prompt(), request_id="r" * 129), {"request_id": "at most 128"}),
    "request_id_with_nul": (lambda: submit(prompt(), request_id="a\x00b"), {"request_id": "NUL"}),
    "id_missing": (lambda: submit(prompt("")), {"prompts[0].id": "required"}),
    "id_not_printable_ascii": (lambda: submit(prompt("naïve")), {"prompts[0].id": "printable ASCII"}),
    "id_with_a_tab": (lambda: submit(prompt("a\tb")), {"prompts[0].id": "printable ASCII"}),
    "id_too_long": (lambda: submit(prompt("x" * 257)), {"prompts[0].id": "at most 256"}),
    "id_repeated_in_request": (lambda: submit(prompt("a"), prompt("a")), {"prompts[1].id": "duplicates prompts[0].id"}),
    "no_messages": (lambda: submit(with_messages()), {"prompts[0].messages": "at least one"}),
    "too_many_messages": (lambda: submit(with_messages(*[("user", "hi")] * 65)), {"prompts[0].messages": "at most 64"}),
    "unknown_role": (lambda: submit(with_messages(("tool", "x"), ("user", "hi"))),
                     {"prompts[0].messages[0].role": "system, user, assistant"}),
    "last_message_from_assistant": (lambda: submit(with_messages(("user", "hi"), ("assistant", "hello"))),
                                    {"prompts[0].messages[1].role": "must not be from the assistant"}),
    "content_with_nul": (lambda: submit(with_messages(("user", "a\x00b"))), {"prompts[0].messages[0].content": "NUL"}),
    "content_too_long": (lambda: submit(with_messages(("user", "é" * 40_000))),
                         {"prompts[0].messages[0].content": "80000 bytes; at most 65536"}),
    "too_many_tokens": (lambda: submit(prompt(text="one two three " * 400)),
                        {"prompts[0].messages": "at most 1024"}),
    "answer_too_long": (lambda: submit(prompt(answer="1" * 70_000)), {"prompts[0].answer": "at most 65536"}),
    "code_without_tests": (lambda: submit(code_prompt()),
                           {"prompts[0].code": "test_code, io_cases"}),
    "code_test_without_entry_point": (lambda: submit(code_prompt(test_code="def check(c): pass")),
                                      {"prompts[0].code.entry_point": "required with test_code"}),
    "code_entry_point_not_an_identifier": (
        lambda: submit(code_prompt(test_code="def check(c): pass", entry_point="my func")),
        {"prompts[0].code.entry_point": "not a Python identifier"}),
    "code_language_not_python": (
        lambda: submit(code_prompt(language="rust", io_cases=[reward_pb2.IOCase(stdin="1", expected_stdout="1")])),
        {"prompts[0].code.language": "use 'python'"}),
    "code_timeout_not_finite": (
        lambda: submit(code_prompt(timeout_seconds=math.inf, io_cases=[reward_pb2.IOCase(stdin="", expected_stdout="1")])),
        {"prompts[0].code.timeout_seconds": "finite and >= 0"}),
    "code_too_large": (
        lambda: submit(code_prompt(io_cases=[reward_pb2.IOCase(stdin="x" * 600_000, expected_stdout="y" * 600_000)])),
        {"prompts[0].code": "at most 1048576"}),
    "unknown_backend": (lambda: submit(prompt(rewards=[Spec(backend="nope")])),
                        {"prompts[0].rewards[0].backend": "unknown backend 'nope'"}),
    "empty_backend_name": (lambda: submit(prompt(rewards=[Spec(backend="")])),
                           {"prompts[0].rewards[0].backend": "required"}),
    "backend_named_twice": (lambda: submit(prompt(rewards=[Spec(backend="math"), Spec(backend="math")])),
                            {"prompts[0].rewards[1].backend": "duplicates prompts[0].rewards[0].backend"}),
    "too_many_rewards": (lambda: submit(prompt(rewards=[Spec(backend=f"b{i}") for i in range(9)])),
                         {"prompts[0].rewards": "at most 8"}),
    "weight_nan": (lambda: submit(prompt(rewards=[Spec(backend="math", weight=math.nan)])),
                   {"prompts[0].rewards[0].weight": "finite and > 0"}),
    "weight_infinite": (lambda: submit(prompt(rewards=[Spec(backend="math", weight=math.inf)])),
                        {"prompts[0].rewards[0].weight": "finite and > 0"}),
    "weight_negative": (lambda: submit(prompt(rewards=[Spec(backend="math", weight=-0.5)])),
                        {"prompts[0].rewards[0].weight": "finite and > 0"}),
    "backend_refuses_the_reference_kind": (
        lambda: submit(code_prompt(io_cases=[reward_pb2.IOCase(stdin="", expected_stdout="1")],
                                   rewards=[Spec(backend="math")])),
        {"prompts[0].code": "backend 'math' accepts an answer"}),
    "backend_needs_a_reference": (lambda: submit(prompt(answer=None, rewards=[Spec(backend="math")])),
                                  {"prompts[0].rewards[0].backend": "reference is missing"}),
    "default_backend_refuses_the_reference_kind": (
        lambda: submit(code_prompt(io_cases=[reward_pb2.IOCase(stdin="", expected_stdout="1")], rewards=[])),
        {"prompts[0].rewards": "default backend 'math' applies"}),
    "too_many_metadata_pairs": (lambda: submit(prompt(metadata={f"k{i}": "v" for i in range(33)})),
                                {"prompts[0].metadata": "at most 32"}),
    "metadata_value_too_long": (lambda: submit(prompt(metadata={"k": "v" * 1025})),
                                {'prompts[0].metadata["k"]': "the value is 1025 bytes"}),
    "metadata_key_too_long": (lambda: submit(prompt(metadata={"k" * 1025: "v"})),
                              {f'prompts[0].metadata["{"k" * 1025}"]': "the key is 1025 bytes"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rule_rejects_with_the_field_path_and_stores_nothing(make_api, case: str) -> None:
    kinds = {"math": {"answer"}, "code": {"code"}, **{f"b{i}": {"none", "answer", "code"} for i in range(9)}}
    api: Api = make_api(limits=ApiLimits(max_prompts_per_request=4), kinds=kinds)
    build, expected = CASES[case]
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(build())
    got = violations(e.value)
    assert set(got) == set(expected), got
    for path, phrase in expected.items():
        assert phrase in got[path], (path, got[path])
    assert api.store.prompt_states() == {}


def test_every_bad_field_of_a_request_is_listed(api: Api) -> None:
    bad = submit(
        prompt("ok"),
        prompt("p1", rewards=[Spec(backend="math", weight=-1), Spec(backend="ghost")]),
        with_messages(("robot", "x")),
        prompt("p1"),
        request_id="r" * 200,
    )
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(bad)
    assert set(violations(e.value)) == {
        "request_id",
        "prompts[1].rewards[0].weight",
        "prompts[1].rewards[1].backend",
        "prompts[2].messages[0].role",
        "prompts[3].id",
    }
    assert "5 bad fields" in e.value.details()
    assert api.store.prompt_states() == {}


def test_unknown_default_backend_is_named(make_api) -> None:
    api: Api = make_api(default_rewards=[("gone", 1.0)])
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(submit(prompt()))
    assert "default backend 'gone'" in violations(e.value)["prompts[0].rewards"]


def test_prompt_at_the_token_limit_is_accepted_one_over_is_not(make_api, tiny_tokenizer) -> None:
    chat = [{"role": "user", "content": "one two three " * 20}]
    n = len(tiny_tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)["input_ids"])
    at_limit: Api = make_api(limits=ApiLimits(max_prompt_tokens=n))
    assert at_limit.stub.SubmitPrompts(submit(prompt(text="one two three " * 20))).queue_depth == 1
    below: Api = make_api(limits=ApiLimits(max_prompt_tokens=n - 1))
    with pytest.raises(grpc.RpcError) as e:
        below.stub.SubmitPrompts(submit(prompt(text="one two three " * 20)))
    assert f"is {n} tokens" in violations(e.value)["prompts[0].messages"]


def test_a_prompt_over_the_token_limit_is_named_with_its_other_bad_fields(make_api, tiny_tokenizer) -> None:
    """The token count ran only for a prompt with no other bad field: with a bad weight beside it, only
    the weight was named, and the fixed request was refused again for its length."""
    chat = [{"role": "user", "content": "one two three " * 20}]
    n = len(tiny_tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)["input_ids"])
    api: Api = make_api(limits=ApiLimits(max_prompt_tokens=n - 1))
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SubmitPrompts(submit(prompt(text="one two three " * 20, rewards=[Spec(backend="math", weight=-1)])))
    v = violations(e.value)
    assert set(v) == {"prompts[0].messages", "prompts[0].rewards[0].weight"}, v
    assert f"is {n} tokens" in v["prompts[0].messages"]
    assert api.store.prompt_states() == {}


def test_a_retry_is_looked_up_with_an_id_a_lowered_request_id_limit_would_refuse() -> None:
    """A request id over limits.max_request_id_bytes was never looked up, so the retry of a request a
    higher limit took was validated and refused naming request_id instead of getting its first answer."""
    from grpo_server.api.validation import REPLAY_LOOKUP_MAX_BYTES, replayable_request_id

    rid = "r" * 100
    assert replayable_request_id(submit(prompt(), request_id=rid), ApiLimits(max_request_id_bytes=64)) == rid
    huge = "r" * (REPLAY_LOOKUP_MAX_BYTES + 1)
    assert replayable_request_id(submit(prompt(), request_id=huge), ApiLimits()) is None


def test_a_prompt_must_leave_room_for_its_completions_in_the_models_context(make_api, tiny_tokenizer) -> None:
    # vLLM refuses a prompt longer than the context and ended the whole step with it (and, requeued at its
    # place, every step after a restart); one that leaves less than max_new_tokens gets cut-off completions.
    chat = [{"role": "user", "content": "one two three " * 20}]
    n = len(encode_prompt(tiny_tokenizer, chat))
    for limits in (ApiLimits(), ApiLimits(max_prompt_tokens=0)):  # checked with the token limit off too
        fits: Api = make_api(limits=limits, room=PromptRoom(context=n + 32, completion=32))
        assert fits.stub.SubmitPrompts(submit(prompt(text="one two three " * 20))).queue_depth == 1
        over: Api = make_api(limits=limits, room=PromptRoom(context=n + 31, completion=32))
        with pytest.raises(grpc.RpcError) as e:
            over.stub.SubmitPrompts(submit(prompt(text="one two three " * 20)))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(e.value)["prompts[0].messages"] == (
            f"the prompt is {n} tokens with the chat template applied, and its completions take up to 32 "
            f"(rollout.max_new_tokens): more than the model's context of {n + 31} tokens; at most {n - 1} prompt "
            "tokens fit")
        assert over.store.prompt_states() == {}
    # While the model loads (no tokenizer, no context yet) with the token limit off, prompts are taken
    # uncounted, as before: the trainer turns away one too long when a step leases it.
    loading: Api = make_api(limits=ApiLimits(max_prompt_tokens=0), tokenizer_loaded=False,
                            room=PromptRoom(context=8, completion=4))
    assert loading.stub.SubmitPrompts(submit(prompt(text="one two three " * 20))).queue_depth == 1


def test_prompt_tokens_are_counted_as_rendered_with_the_template_variables(make_api, tiny_tokenizer) -> None:
    # Qwen3's way: with enable_thinking false the generation prompt closes an empty reasoning block.
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = tiny_tokenizer.chat_template.replace(
        "{{ '<|im_start|>assistant\n' }}",
        "{{ '<|im_start|>assistant\n' }}{% if enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}")
    chat = [{"role": "user", "content": "one two three " * 20}]
    n = len(encode_prompt(tokenizer, chat, {"enable_thinking": False}))
    assert n > len(encode_prompt(tokenizer, chat))
    at_limit: Api = make_api(limits=ApiLimits(max_prompt_tokens=n), tokenizer=tokenizer,
                             chat_template_kwargs={"enable_thinking": False})
    assert at_limit.stub.SubmitPrompts(submit(prompt(text="one two three " * 20))).queue_depth == 1
    below: Api = make_api(limits=ApiLimits(max_prompt_tokens=n - 1), tokenizer=tokenizer,
                          chat_template_kwargs={"enable_thinking": False})
    with pytest.raises(grpc.RpcError) as e:
        below.stub.SubmitPrompts(submit(prompt(text="one two three " * 20)))
    assert f"is {n} tokens" in violations(e.value)["prompts[0].messages"]


def test_a_model_without_a_chat_template_takes_prompts(make_api, tiny_tokenizer) -> None:
    # Its prompts are the contents joined by newlines, and they are counted so. The count used to call
    # apply_chat_template anyway, which raises without a template: every prompt was refused with "the
    # model's chat template rejects these messages", though the rollouts would have taken it.
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = None
    n = len(tokenizer("one two three " * 20 + "\n")["input_ids"])
    at_limit: Api = make_api(limits=ApiLimits(max_prompt_tokens=n), tokenizer=tokenizer)
    assert at_limit.stub.SubmitPrompts(submit(prompt(text="one two three " * 20))).queue_depth == 1
    below: Api = make_api(limits=ApiLimits(max_prompt_tokens=n - 1), tokenizer=tokenizer)
    with pytest.raises(grpc.RpcError) as e:
        below.stub.SubmitPrompts(submit(prompt(text="one two three " * 20)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"is {n} tokens" in violations(e.value)["prompts[0].messages"]
    assert below.store.prompt_states() == {}


def test_invalid_utf8_on_the_wire_is_invalid_argument(api: Api) -> None:
    # Python's protobuf refuses to build such a message, other languages' may not: send raw bytes.
    good = submit(prompt("a", text="hello")).SerializeToString()
    raw = good.replace(b"hello", b"hel\xfflo")
    call = api.channel.unary_unary("/grpo.trainer.v1.TrainerService/SubmitPrompts")
    with pytest.raises(grpc.RpcError) as e:
        call(raw)
    assert "UTF-8" in violations(e.value)[""]
    assert api.store.prompt_states() == {}


# ------------------------------------------------------------------------------------ other RPCs


def test_negative_step_numbers_are_rejected(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as e:
        api.stub.StepStatus(trainer_pb2.StepStatusRequest(step=-1))
    assert "step" in violations(e.value)
    with pytest.raises(grpc.RpcError) as e:
        next(iter(api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(after_step=-2))))
    assert "after_step" in violations(e.value)


def test_set_backend_lists_each_bad_field(api: Api) -> None:
    bad = trainer_pb2.RewardBackend(name="Bad Name", address="nohostport", timeout_seconds=-1,
                                    max_batch_size=-1, max_concurrency=-3)
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(backend=bad))
    assert set(violations(e.value)) == {"backend.name", "backend.address", "backend.timeout_seconds",
                                        "backend.max_batch_size", "backend.max_concurrency"}
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest())
    assert "backend" in violations(e.value)
    assert api.registry.version == 1


@pytest.mark.parametrize("address", ["127.0.0.1:\uff13\uff16\uff12", "127.0.0.1:\u0663\u0666", "[127.0.0.1]:50051",
                                     "[.]:50051", "[::1:50051"])
def test_set_backend_refuses_an_address_grpc_cannot_dial(api: Api, address: str) -> None:
    """A fullwidth or Arabic-Indic port (Python reads it, gRPC does not) and a bracketed host that is no
    IPv6 address were stored, and every Score call to them failed UNAVAILABLE."""
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(
            backend=trainer_pb2.RewardBackend(name="rm2", address=address)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and list(violations(e.value)) == ["backend.address"]
    assert api.registry.version == 1
    api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(
        backend=trainer_pb2.RewardBackend(name="rm2", address="[::1]:50051")))  # an IPv6 literal is fine
    assert api.registry.version == 2


def test_set_backend_refuses_a_deadline_grpc_cannot_keep(api: Api) -> None:
    # gRPC in Python fails a call with a deadline of 1e10 s at once (DEADLINE_EXCEEDED): such a backend
    # would mask every item it was sent. One day is the longest deadline taken.
    for seconds, ok in ((1e10, False), (86400.5, False), (86400.0, True)):
        backend = trainer_pb2.RewardBackend(name="slow", address="127.0.0.1:50999", timeout_seconds=seconds)
        if ok:
            api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(backend=backend))
            continue
        with pytest.raises(grpc.RpcError) as e:
            api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(backend=backend))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 86400" in violations(e.value)["backend.timeout_seconds"]


def test_registry_refusal_is_invalid_argument(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as e:
        api.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(
            backend=trainer_pb2.RewardBackend(name="x", address="127.0.0.1:1")))
    assert "reserved" in violations(e.value)["backend"]


def test_delete_backend_and_get_export_check_their_arguments(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as e:
        api.stub.DeleteRewardBackend(trainer_pb2.DeleteRewardBackendRequest(name=""))
    assert "name" in violations(e.value)
    with pytest.raises(grpc.RpcError) as e:
        api.stub.GetExport(trainer_pb2.GetExportRequest())
    assert "export_id" in violations(e.value)


def test_export_destination_must_be_absolute(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as e:
        api.stub.ExportCheckpoint(trainer_pb2.ExportCheckpointRequest(destination="relative/dir"))
    assert "absolute" in violations(e.value)["destination"]
