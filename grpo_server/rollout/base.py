"""The rollout engine interface: sample G completions per prompt with the sampler's log-probs, take the
trainer's weights after each optimizer step, and score a fixed completion (to prove the weights arrived).

Two engines implement it: `vllm` (vLLM in process, grpo_server.rollout.vllm_engine) and `hf` (transformers
`generate`, grpo_server.rollout.hf). `make_engine` builds either by name; the engine modules are imported
lazily so that importing this module never imports vLLM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from grpo_server.types import Completion


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample one step's completions.

    n:              completions per prompt (the group size G).
    max_new_tokens: completion length limit in tokens; a completion cut there has finish_reason "length".
    temperature:    logits are divided by it before sampling (> 0); the returned log-probs are of that
                    tempered distribution, log_softmax(logits / temperature), with no filtering on.
    top_p, top_k:   nucleus / top-k filtering of the sampling distribution (1.0 / -1 = off). The returned
                    log-probs are then of the filtered distribution, the kept tokens renormalised: larger
                    than the trainer's by -log(kept mass) (docs/rollout.md, "Which log-probs are returned").
    seed:           per-call seed for reproducible sampling; None uses the engine's running RNG.
    stop_token_ids: extra tokens that end a completion (besides the tokenizer's eos); the stop token is
                    kept at the end of token_ids, like eos.
    """

    n: int
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 = off
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (greedy is not a sampling policy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError(f"top_k must be -1 (off) or >= 1, got {self.top_k}")


@runtime_checkable
class RolloutEngine(Protocol):
    """What the step loop needs from a rollout engine."""

    name: str  # "vllm" or "hf"

    def generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig) -> list[list[Completion]]:
        """Sample `sampling.n` completions for each prompt (token ids, no padding).

        Returns one list per prompt, in prompt order, of n Completions: token_ids (the eos or stop token
        included when generation stopped on it), logprobs (one per token, nats, of the tempered
        distribution log_softmax(logits / T) at the chosen token), text (decoded, special tokens
        skipped), finish_reason ("stop" or "length").
        """
        ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Make the engine sample from these weights from now on. Names are Hugging Face parameter
        names, as `model.named_parameters()` / `state_dict()` give them."""
        ...

    def completion_logprobs(
        self, prompt: Sequence[int], completion: Sequence[int], temperature: float = 1.0
    ) -> list[float]:
        """The engine's own log-probs (nats) of a fixed completion after the prompt (teacher forcing):
        element i is log_softmax(logits / temperature)[completion[i]] given prompt + completion[:i].
        Returns len(completion) floats."""
        ...

    def close(self) -> None:
        """Release the engine's memory and workers. The engine is unusable afterwards."""
        ...


ENGINE_KINDS = ("vllm", "hf")


def make_engine(
    kind: str,
    *,
    model_path: str,
    model: torch.nn.Module | None,
    tokenizer: Any,
    dtype: str,
    device: str,
    seed: int,
    **engine_options: Any,
) -> RolloutEngine:
    """Build a rollout engine by name.

    kind:       "hf" or "vllm".
    model_path: a Hugging Face directory (the initial weights and tokenizer).
    model:      for "hf", the trainer's own nn.Module to share (then load_weights is a no-op); None to
                load a private copy from model_path. Ignored by "vllm" (it must be None there).
    tokenizer:  the tokenizer (decoding, eos and pad ids); None loads it from model_path.
    dtype:      "float32", "bfloat16", "float16" or "auto" (vllm: the model's on GPU; on CPU bfloat16 with bfloat16
                instructions, else float32;
                hf: the shared model's dtype, else float32).
    device:     "cpu" or "cuda[:i]".
    seed:       the engine's base seed (vLLM's global seed; the HF engine seeds torch only per call when
                SamplingConfig.seed is set and otherwise uses torch's global RNG).
    engine_options: engine-specific keywords (vllm: gpu_memory_utilization, max_model_len,
                enforce_eager, ...; see each engine's constructor).
    """
    if kind == "hf":
        from grpo_server.rollout.hf import HFEngine

        return HFEngine(
            model_path=model_path, model=model, tokenizer=tokenizer, dtype=dtype, device=device, seed=seed,
            **engine_options,
        )
    if kind == "vllm":
        if model is not None:
            raise ValueError("the vllm engine loads its own copy of the weights; pass model=None")
        from grpo_server.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(
            model_path=model_path, tokenizer=tokenizer, dtype=dtype, device=device, seed=seed, **engine_options
        )
    raise ValueError(f"unknown rollout engine {kind!r}; allowed: {', '.join(ENGINE_KINDS)}")
