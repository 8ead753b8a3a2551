"""Chat messages to prompt token ids: the one rendering the trainer samples from (rollouts, SDPO's
teacher prompts) and the API counts (`limits.max_prompt_tokens`), so the two never disagree.

The model's chat template, or `model.chat_template` (a Jinja file) in its place, renders the messages
ready for the assistant's turn, with `model.chat_template_kwargs` as extra template variables
(`enable_thinking: false` for Qwen3). A tokenizer without a template gets the messages' contents joined
by newlines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# apply_chat_template's own arguments: a template variable of that name would be taken as the argument.
RESERVED_TEMPLATE_KWARGS = frozenset({
    "conversation", "messages", "tools", "documents", "chat_template", "add_generation_prompt",
    "continue_final_message", "tokenize", "padding", "truncation", "max_length", "return_tensors",
    "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs", "processor_kwargs",
})
# What a template must render, at start, with the configured variables.
PROBE_MESSAGES = ({"role": "user", "content": "What is 2+2?"},)


def encode_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]],
                  template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
    """Prompt token ids of `messages`, ready for the assistant's turn (see the module's docstring)."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True,
                                            tokenize=True, **dict(template_kwargs or {}))
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    text = "\n".join(m["content"] for m in messages) + "\n"
    return list(tokenizer(text)["input_ids"])


def prompt_token_counter(tokenizer: Any, template_kwargs: Mapping[str, Any] | None = None
                         ) -> Callable[[Sequence[Mapping[str, str]]], int]:
    """The length of `encode_prompt(tokenizer, messages, template_kwargs)`, exactly what the rollout
    engine is fed. Calls are serialised (fast tokenizers are not safe to call from several threads)."""
    lock = threading.Lock()

    def count(messages: Sequence[Mapping[str, str]]) -> int:
        with lock:
            return len(encode_prompt(tokenizer, messages, template_kwargs))

    return count


def read_chat_template(path: str | Path) -> str:
    """The text of a chat template file; ValueError saying why it cannot serve (the caller names the
    setting)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{p} is a directory; give the template file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"{p}: cannot read: {exc.strerror}") from None
    if not text.strip():
        raise ValueError(f"{p} is empty")
    return text


def use_chat_template(tokenizer: Any, template: str | None, template_kwargs: Mapping[str, Any],
                      source: str = "") -> None:
    """Install `template` (when given) as `tokenizer`'s chat template, then render a plain user message
    with `template_kwargs`: a template that cannot (a Jinja syntax error, a variable it refuses) stops
    the trainer at start with a ValueError naming the setting, not at the first rollout. `source` names
    the template in messages (its file)."""
    if template is not None:
        tokenizer.chat_template = template
    if not getattr(tokenizer, "chat_template", None):
        if template_kwargs:
            raise ValueError("model.chat_template_kwargs is set, but the model's tokenizer has no chat template "
                             "(prompts are its messages' contents joined by newlines): set model.chat_template")
        return
    try:
        encode_prompt(tokenizer, PROBE_MESSAGES, template_kwargs)
    except Exception as exc:  # Jinja's TemplateError, a template's raise_exception, a kwarg it chokes on
        what = f"model.chat_template ({source})" if template is not None else "the model's chat template"
        with_kwargs = " with model.chat_template_kwargs" if template_kwargs else ""
        raise ValueError(f"{what} fails on a plain user message{with_kwargs}: "
                         f"{type(exc).__name__}: {exc}") from None
