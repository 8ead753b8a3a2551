"""A tiny causal language model built from a config, with a real byte-level BPE tokenizer and a ChatML
chat template: everything a test or a quick try needs, made offline in about a second.

The model is a `LlamaForCausalLM` with random weights (seeded); the tokenizer is trained on a small
generated corpus of arithmetic and English, so any text round-trips (byte-level); frequent numbers are
single tokens, others a few. `build_tiny_model(dir)` writes a Hugging Face directory that `transformers` and vLLM load as is.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def _corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["what", "is", "the", "answer", "with", "just", "number", "plus", "minus", "times", "sum", "of", "and", "a", "an", "to", "be", "in", "it", "you", "solve", "problem", "first", "then", "final", "result", "boxed", "def", "return", "print", "for", "if", "else", "while", "import", "user", "assistant", "system", "question", "correct", "wrong", "yes", "no"]
    lines = []
    for _ in range(2000):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        lines.append(f"What is {a}+{b}? Answer with just the number. {a + b}")
        lines.append(" ".join(rng.choice(words) for _ in range(8)))
    lines.append("".join(chr(c) for c in range(32, 127)))
    return lines


def build_tokenizer(vocab_size: int = 512, seed: int = 0) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama_config(vocab_size: int, **overrides: Any) -> Any:
    """A LlamaConfig of about 100k parameters (hidden 64, 2 layers, 2 heads of 32)."""
    from transformers import LlamaConfig

    kw: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        # head size 32: the smallest vLLM's CPU attention supports, so the tiny model runs there too
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    kw.update(overrides)
    return LlamaConfig(**kw)


def build_tiny_model(path: str | Path, *, seed: int = 0, classifier: bool = False, **config_overrides: Any) -> Path:
    """Write a tiny Llama (causal LM, or a one-label sequence classifier with `classifier=True`) and its
    tokenizer to `path` as a Hugging Face directory; returns the path. Deterministic for a given seed."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM, LlamaForSequenceClassification

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed=seed)
    config = tiny_llama_config(
        len(tokenizer),
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config_overrides,
    )
    torch.manual_seed(seed)
    model: Any
    if classifier:
        config.num_labels = 1
        model = LlamaForSequenceClassification(config)
    else:
        model = LlamaForCausalLM(config)
        model.generation_config = GenerationConfig(
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
        )
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    (path / "tiny_model.json").write_text(json.dumps({"seed": seed, "classifier": classifier}) + "\n")
    return path
