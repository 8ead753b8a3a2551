"""Stored prompts that cannot be rolled out: one too long for the model's context (queued before the
context was known or made smaller; the API refuses it now, see test_validation.py) and one the chat
template now rejects (model.chat_template changed since it was queued). vLLM refuses the first and the
template raises on the second: either ended the step and the run, and, requeued at its place, every run
after a restart. Now such a prompt goes back to the queue as one no completion was scored for (an attempt
counted), the step trains the others, and after training.max_prompt_attempts it is FAILED with the
reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_trainer import prompts, queue_in_store, wait_for

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.chat import encode_prompt
from grpo_server.models.tiny import CHAT_TEMPLATE, build_tokenizer, tiny_llama_config
from grpo_server.types import PromptState


# 2008 tokens: more than the context; 508: fits, but not with its completions of up to 8 tokens (the HF
# engine generated past the model's 512 positions: an IndexError for a model with learned positions).
@pytest.mark.parametrize("repeats", [200, 50], ids=["over the context", "no room for the completions"])
def test_a_stored_prompt_too_long_for_the_context_fails_without_ending_the_run(toy_backend, start_trainer,
                                                                               tmp_path: Path, repeats: int) -> None:
    context = tiny_llama_config(1).max_position_embeddings  # the tiny model's: 512
    text = "one two three " * repeats
    length = len(encode_prompt(build_tokenizer(seed=0), [{"role": "user", "content": text}]))
    assert length > context if repeats == 200 else context - 8 < length < context
    long = trainer_pb2.Prompt(id="long", messages=[reward_pb2.Message(role="user", content=text)], answer="6")
    good = prompts(2, prefix="good")
    store_dir = tmp_path / "store"
    # queued as the API of a trainer with a larger context would have: long, good0, good1
    queue_in_store(store_dir, [long, *good], "toy")

    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(store_dir, [("toy", backend.address)],
                        algorithm={"prompts_per_step": 2, "group_size": 2, "beta": 0.0},
                        training={"max_prompt_attempts": 2})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    reports = []
    for report in client.iter_steps(timeout=300):
        reports.append(report)
        if report.state != trainer_pb2.STEP_STATE_RUNNING and report.step >= 2:
            break
    # Step 1 trains good0 and puts long back (1 attempt); step 2 trains good1, and long is FAILED (2).
    assert [(r.state, set(r.prompt_ids)) for r in reports] == [
        (trainer_pb2.STEP_STATE_COMPLETED, {"good0"}), (trainer_pb2.STEP_STATE_COMPLETED, {"good1"})], reports
    wait_for(lambda: client.step_status().run.prompts_failed == 1 or None, 60,
             lambda: f"the long prompt was not given up on: {client.step_status().run}")
    assert app.failed is None and app.loop.alive
    states = app.store.prompt_states()
    reasons = app.store.failure_reasons()
    assert states["long"][0] is PromptState.FAILED, states
    assert (f"the prompt is {length} tokens and its completions take up to 8 (rollout.max_new_tokens): no room "
            f"for a completion in the context of {context}; at most {context - 8} prompt tokens fit") == reasons["long"].split(
                "; the last: ")[1], reasons


def no_system_template(tmp_path: Path) -> Path:
    """A chat template that rejects a system message, as many models' templates do."""
    template = tmp_path / "no-system.jinja"
    template.write_text("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                        "{% endif %}" + CHAT_TEMPLATE)
    return template


def system_prompt() -> trainer_pb2.Prompt:
    """A prompt opening with a system message (which no_system_template rejects)."""
    return trainer_pb2.Prompt(id="system", answer="2", messages=[
        reward_pb2.Message(role="system", content="Be brief."), reward_pb2.Message(role="user", content="1+1?")])


def test_a_stored_prompt_the_chat_template_now_rejects_fails_without_ending_the_run(toy_backend, start_trainer,
                                                                                   tmp_path: Path) -> None:
    template = no_system_template(tmp_path)
    system = system_prompt()
    good = prompts(2, prefix="good")
    store_dir = tmp_path / "store"
    queue_in_store(store_dir, [system, *good], "toy")  # as a trainer whose template took a system message

    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(store_dir, [("toy", backend.address)], model={"chat_template": str(template)},
                        algorithm={"prompts_per_step": 2, "group_size": 2, "beta": 0.0},
                        training={"max_prompt_attempts": 2})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    wait_for(lambda: client.step_status().run.prompts_failed == 1 or None, 300,
             lambda: f"the prompt was not given up on: {client.step_status().run}")
    assert app.failed is None and app.loop.alive
    assert app.store.get_step(1).state.value == "completed"
    reasons = app.store.failure_reasons()
    assert "the model's chat template rejects the prompt's messages: System role not supported" in reasons["system"]


def test_in_a_skipped_step_each_prompt_is_failed_for_its_own_cause(toy_backend, start_trainer, tmp_path: Path) -> None:
    """A step none of whose prompts could be rolled out gave them all the first one's reason: the prompt
    the template rejects was failed as "the prompt is 2008 tokens"."""
    template = no_system_template(tmp_path)
    long = trainer_pb2.Prompt(id="long", messages=[reward_pb2.Message(role="user", content="one two three " * 200)],
                              answer="6")
    store_dir = tmp_path / "store"
    queue_in_store(store_dir, [long, system_prompt()], "toy")
    _, backend = toy_backend("toy", 0.5)
    app = start_trainer(store_dir, [("toy", backend.address)], model={"chat_template": str(template)},
                        algorithm={"prompts_per_step": 2, "group_size": 2, "beta": 0.0},
                        training={"max_prompt_attempts": 1})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    wait_for(lambda: client.step_status().run.prompts_failed == 2 or None, 300,
             lambda: f"the prompts were not given up on: {client.step_status().run}")
    assert app.store.get_step(1).state.value == "skipped"
    reasons = app.store.failure_reasons()
    assert "no room for a completion" in reasons["long"] and "chat template" not in reasons["long"], reasons
    assert "chat template rejects the prompt's messages" in reasons["system"] and "tokens" not in reasons["system"]


def test_a_prompt_that_cannot_be_rolled_out_counts_its_attempts_through_a_reward_outage(
        start_trainer, tmp_path: Path) -> None:
    """The skip of an outage put every prompt of the step back without an attempt: the one that could not
    be rolled out (its own fault) came back at the head of the queue for as long as the outage lasted."""
    from live_trainer import free_port

    long = trainer_pb2.Prompt(id="long", messages=[reward_pb2.Message(role="user", content="one two three " * 200)],
                              answer="6")
    store_dir = tmp_path / "store"
    queue_in_store(store_dir, [long, *prompts(1, prefix="good")], "toy")
    app = start_trainer(store_dir, [("toy", f"127.0.0.1:{free_port()}")],  # nothing listens: an outage
                        algorithm={"prompts_per_step": 2, "group_size": 2, "beta": 0.0},
                        training={"max_prompt_attempts": 2})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    wait_for(lambda: client.step_status().run.prompts_failed == 1 or None, 300,
             lambda: f"the long prompt was not given up on: {client.step_status().run}")
    states = app.store.prompt_states()
    assert states["long"][0] is PromptState.FAILED and states["good0"][0] is not PromptState.FAILED, states
    assert "no room for a completion" in app.store.failure_reasons()["long"]
    [good] = app.store.list_prompts(ids=["good0"])
    assert good.attempts == 0  # the outage counted none of its


def test_a_completion_length_that_fills_the_context_fails_the_start(tmp_path: Path) -> None:
    """rollout.max_new_tokens at or over the context (the model's, or rollout.vllm_max_model_len when that
    is smaller and vLLM may run) leaves no room for any prompt: the start fails naming the setting, before
    any prompt is leased, instead of every prompt being refused."""
    from live_trainer import parsed_config

    from grpo_server.app import TrainerApp
    from grpo_server.config import ConfigError

    app = TrainerApp(parsed_config(rollout={"max_new_tokens": 512}), tmp_path / "store", backend_overrides=[])
    app.start()
    try:
        wait_for(lambda: app.failed or app.ready.is_set() or None, 300)
        assert not app.ready.is_set()
        assert app.failed == ("StartupError: rollout.max_new_tokens: 512 tokens of completion leave no room for a "
                              "prompt in the model's context of 512 tokens"), app.failed
    finally:
        app.shutdown(grace=30)
    # rollout.vllm_max_model_len is known without the model: refused with the config itself.
    with pytest.raises(ConfigError, match="max_new_tokens 64 leaves no room for a prompt in vllm_max_model_len 64"):
        parsed_config(rollout={"engine": "auto", "vllm_max_model_len": 64, "max_new_tokens": 64})
