"""Small helpers both rollout engines use: stop tokens, dtype names, cutting a generated row at its stop."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def eos_token_ids(tokenizer: Any, generation_config: Any = None, extra: Iterable[int] = ()) -> tuple[int, ...]:
    """Every token id that ends a completion: the tokenizer's eos, the model's generation_config eos
    (an int or a list; chat models often list their end-of-turn token there) and `extra`. Sorted,
    unique. vLLM stops on the same set (tokenizer eos + generation_config eos + stop_token_ids)."""
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos is not None:
        ids.update(int(i) for i in gen_eos)
    ids.update(int(i) for i in extra)
    return tuple(sorted(ids))


def cut_at_stop(token_ids: Sequence[int], stop_ids: Iterable[int]) -> tuple[int, bool]:
    """Length of a generated row up to and including its first stop token, and whether it stopped.
    A row without a stop token keeps its full length (it ran into max_new_tokens)."""
    stops = set(stop_ids)
    for i, tok in enumerate(token_ids):
        if tok in stops:
            return i + 1, True
    return len(token_ids), False


def check_prompts(prompts: Sequence[Sequence[int]]) -> None:
    """Reject empty prompts with an error naming the index (a model needs at least one token)."""
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompts[{i}] is empty; a prompt needs at least one token")
