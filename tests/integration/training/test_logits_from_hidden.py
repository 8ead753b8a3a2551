"""The trainer's log-probs apply the LM head to the decoder's output itself; a model whose forward changes
the logits after the head (Granite's logits_scaling, Cohere's logit_scale, Gemma 2's soft cap, or any
other change made in its own forward) would train on another distribution than the sampler's. Such a
model is refused at start (`logits_from_hidden_problem`), naming why."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    CohereConfig,
    Gemma2Config,
    GraniteConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

from grpo_server.training.loss import logits_from_hidden_problem

SIZES: dict[str, Any] = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)


def build(config: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def test_a_model_whose_logits_are_the_head_on_the_decoder_output_is_accepted() -> None:
    model = build(LlamaConfig(**SIZES))
    model.train()
    assert logits_from_hidden_problem(model) is None
    assert model.training  # left as it was found


@pytest.mark.parametrize(("config", "field"), [
    (GraniteConfig(**SIZES, logits_scaling=8.0), "logits_scaling = 8.0"),
    (CohereConfig(**SIZES, logit_scale=0.0625), "logit_scale = 0.0625"),
    (Gemma2Config(**SIZES, head_dim=16, final_logit_softcapping=30.0), "final_logit_softcapping = 30.0"),
], ids=["granite", "cohere", "gemma2"])
def test_a_model_that_post_processes_its_logits_is_refused_naming_the_field(config: Any, field: str) -> None:
    problem = logits_from_hidden_problem(build(config))
    assert problem is not None and f"its config sets {field}" in problem


class ScaledLlama(LlamaForCausalLM):
    """A family the check knows no field of: its forward halves the logits."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 0.5
        return out


def test_a_model_that_changes_its_logits_in_its_own_forward_is_refused() -> None:
    torch.manual_seed(0)
    model = ScaledLlama(LlamaConfig(**SIZES))
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20.0)  # logits well away from 0
    problem = logits_from_hidden_problem(model)
    assert problem is not None and "differ from the LM head applied to its decoder's output" in problem
