"""Tiny real models for the rollout engine tests (built offline in about a second each), and the
trainer-side reference log-probs.

- `build_rollout_tiny`: the project's tiny Llama (2 attention heads of 32: vLLM's CPU attention kernels
  support head sizes 32, 64, 80, ... only) with the overrides TINY_OVERRIDES names.
- `build_eos_model`: the same architecture with weights edited so that every position sees the same hidden
  state and the end-of-sequence token has probability EOS_PROB at every step (all other tokens
  uniform). Completions then stop at eos at random lengths, so a batch mixes "stop" and "length"
  finishes, and the engines' eos handling can be checked on a real model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from grpo_server.models.tiny import build_tiny_model

EOS_PROB = 0.2
TINY_OVERRIDES: dict[str, Any] = {"num_attention_heads": 2, "num_key_value_heads": 1}


def build_rollout_tiny(path: Path, *, tied: bool = True) -> Path:
    """The tiny model with head size 32 (works in vLLM on CPU)."""
    return build_tiny_model(path, seed=0, tie_word_embeddings=tied, **TINY_OVERRIDES)


def build_eos_model(path: Path, eos_prob: float = EOS_PROB) -> Path:
    """A tiny model whose next-token distribution is the same at every step: eos with `eos_prob`,
    every other token equally likely. Built from the tiny model (untied head): all input embeddings
    set equal, so the final hidden state h is the same everywhere; then the head's eos row is set so
    that its logit is a = log(eos_prob * (V - 1) / (1 - eos_prob)) and every other row is zero."""
    from transformers import AutoModelForCausalLM

    build_rollout_tiny(path, tied=False)
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    eos = int(model.config.eos_token_id)
    vocab = model.config.vocab_size
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb.copy_(emb[0:1].expand_as(emb))
        h = model.model(input_ids=torch.tensor([[5, 6, 7]])).last_hidden_state[0, -1]  # [hidden]
        a = math.log(eos_prob * (vocab - 1) / (1 - eos_prob))
        head = model.get_output_embeddings().weight
        head.zero_()
        head[eos] = a * h / h.dot(h)
    model.save_pretrained(path, safe_serialization=True)
    return path


def reference_logprobs(model, prompt: list[int], completion: tuple[int, ...] | list[int], temperature: float = 1.0):
    """The trainer's way: one plain forward over prompt + completion, log_softmax(logits / T), the
    completion tokens' entries. Returns a float64 tensor [len(completion)]."""
    ids = torch.tensor([list(prompt) + list(completion)])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].double() / temperature
    model.train(was_training)
    return torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt) :].unsqueeze(-1)).squeeze(-1)
