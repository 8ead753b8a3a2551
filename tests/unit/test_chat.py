"""Chat messages to prompt token ids (grpo_server.chat): the model's template or `model.chat_template`,
`model.chat_template_kwargs`, and a tokenizer without a template. The tiny model's real tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grpo_server.chat import encode_prompt, prompt_token_counter, read_chat_template, use_chat_template
from grpo_server.config import ConfigError, parse_config
from grpo_server.models.tiny import CHAT_TEMPLATE, build_tokenizer

# Qwen3's way: with enable_thinking false the generation prompt closes an empty reasoning block.
THINKING_TEMPLATE = CHAT_TEMPLATE.replace(
    "{{ '<|im_start|>assistant\n' }}",
    "{{ '<|im_start|>assistant\n' }}{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\n\n</think>\n\n' }}{% endif %}",
)
CHAT = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture
def tokenizer() -> Any:
    return build_tokenizer(seed=0)


def text(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids))


def test_the_template_renders_the_messages_for_the_assistants_turn(tokenizer) -> None:
    assert text(tokenizer, encode_prompt(tokenizer, CHAT)) == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")


def test_template_variables_reach_the_template(tokenizer) -> None:
    use_chat_template(tokenizer, THINKING_TEMPLATE, {"enable_thinking": False})
    closed = text(tokenizer, encode_prompt(tokenizer, CHAT, {"enable_thinking": False}))
    assert closed.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert text(tokenizer, encode_prompt(tokenizer, CHAT, {"enable_thinking": True})).endswith("assistant\n")
    assert text(tokenizer, encode_prompt(tokenizer, CHAT)).endswith("assistant\n")


def test_without_a_template_the_contents_are_joined_by_newlines(tokenizer) -> None:
    tokenizer.chat_template = None
    chat = [{"role": "system", "content": "Be brief."}, *CHAT]
    assert encode_prompt(tokenizer, chat) == list(tokenizer("Be brief.\nWhat is 2+2?\n")["input_ids"])


@pytest.mark.parametrize("template", [THINKING_TEMPLATE, None])
def test_the_token_counter_counts_what_is_encoded(tokenizer, template) -> None:
    # The API's prompt-token limit counted with apply_chat_template alone: a tokenizer without a template
    # made every SubmitPrompts fail, and template variables were not counted.
    tokenizer.chat_template = template
    kwargs = {"enable_thinking": False} if template else {}
    count = prompt_token_counter(tokenizer, kwargs)
    assert count(CHAT) == len(encode_prompt(tokenizer, CHAT, kwargs)) > 0
    if template:
        assert count(CHAT) > len(encode_prompt(tokenizer, CHAT))


def test_a_template_that_cannot_render_stops_the_load_naming_the_setting(tokenizer) -> None:
    with pytest.raises(ValueError) as e:
        use_chat_template(tokenizer, "{% for m in messages %}{{ m['content'] }", {}, source="/t/chat.jinja")
    assert str(e.value).startswith("model.chat_template (/t/chat.jinja) fails on a plain user message: "
                                   "TemplateSyntaxError: ")
    refusing = "{% if not enable_thinking %}{{ raise_exception('set enable_thinking') }}{% endif %}"
    with pytest.raises(ValueError) as e:
        use_chat_template(tokenizer, refusing, {"enable_thinking": False}, source="t.jinja")
    assert str(e.value) == ("model.chat_template (t.jinja) fails on a plain user message with "
                            "model.chat_template_kwargs: TemplateError: set enable_thinking")
    use_chat_template(tokenizer, refusing, {"enable_thinking": True})  # renders: no error


def test_template_variables_without_any_template_are_refused(tokenizer) -> None:
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="model.chat_template_kwargs is set, but the model's tokenizer has no "
                                         "chat template"):
        use_chat_template(tokenizer, None, {"enable_thinking": False})
    use_chat_template(tokenizer, None, {})  # no template, no variables: the contents joined by newlines


def test_reading_a_template_file(tmp_path: Path) -> None:
    good = tmp_path / "chat.jinja"
    good.write_text(THINKING_TEMPLATE, encoding="utf-8")
    assert read_chat_template(good) == THINKING_TEMPLATE
    (tmp_path / "empty.jinja").write_text(" \n")
    (tmp_path / "latin1.jinja").write_bytes("caf\xe9".encode("latin-1"))
    for name, problem in [("missing.jinja", "no such file"), ("", "is a directory; give the template file"),
                          ("empty.jinja", "is empty"), ("latin1.jinja", "is not UTF-8 text (unexpected end of data "
                                                                         "at byte 3)")]:
        with pytest.raises(ValueError) as e:
            read_chat_template(tmp_path / name)
        assert problem in str(e.value) and str(tmp_path) in str(e.value)


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"tokenize": False}, "'tokenize' is an argument of apply_chat_template, not a template variable"),
    ({"add_generation_prompt": False}, "'add_generation_prompt' is an argument of apply_chat_template"),
    ({"enable-thinking": False}, "'enable-thinking' is not a template variable name"),
])
def test_the_config_refuses_variables_the_template_cannot_get(kwargs, problem) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"model": {"chat_template_kwargs": kwargs}})
    assert "model.chat_template_kwargs" in str(e.value) and problem in str(e.value)


def test_the_config_takes_a_template_file_and_json_variables() -> None:
    cfg = parse_config({"model": {"chat_template": "chat.jinja",
                                  "chat_template_kwargs": {"enable_thinking": False, "tools_json": [{"a": 1}]}}})
    assert cfg.model.chat_template == "chat.jinja"
    assert cfg.model.chat_template_kwargs == {"enable_thinking": False, "tools_json": [{"a": 1}]}
