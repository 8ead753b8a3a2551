"""The reward model service pads a batch with the token the checkpoint itself pools with, on every config
the model reads it from, refuses a model with no token to pad with, takes RoBERTa-like position limits as
they are, and versions a model by every tokenizer file that changes its scores. Each checked against
Hugging Face on the same text alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from grpo_rewards.reward_model.model import RewardModel, model_identity
from grpo_server.models.tiny import build_tokenizer, tiny_llama_config

PROMPT = [("user", "What is 2 + 2?")]


def hf_score(path: Path, text: str) -> float:
    """Hugging Face's score of one rendered text, alone (no padding), with the checkpoint's own config."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    with torch.no_grad():
        return float(model(**tok(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0])


def llama_rm(path: Path, *, config_pad: int | None) -> Path:
    """A tiny Llama classifier whose tokenizer has no pad token; its config names `config_pad`. The chat
    template ends each turn with EOS (Llama 3's way), so pooling with EOS as the pad reads another token."""
    from transformers import LlamaForSequenceClassification

    tok = build_tokenizer()
    tok.pad_token = None
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                         "{{ eos_token }}{% endfor %}")
    config = tiny_llama_config(len(tok), bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=config_pad)
    config.num_labels = 1
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_tokenizer_without_a_pad_token_pads_with_the_checkpoints_own_pad_id(tmp_path: Path) -> None:
    """The service put EOS in the config's place (3 here): the last-token pooling skipped the final EOS
    and read the token before it (0.152 where Hugging Face gives -0.037)."""
    tok = build_tokenizer()
    config_pad = tok.convert_tokens_to_ids("<|im_start|>")
    assert config_pad != tok.eos_token_id
    path = llama_rm(tmp_path / "rm", config_pad=config_pad)
    rm = RewardModel(path, device="cpu")
    assert rm.model.config.pad_token_id == rm.tokenizer.pad_token_id == config_pad
    texts = [rm.render(PROMPT, c) for c in ("4", "plus minus times " * 4)]
    for text, batched in zip(texts, rm.score_texts(texts), strict=True):
        assert batched.score == pytest.approx(hf_score(path, text.text), abs=1e-5)


def test_a_model_with_no_pad_eos_or_unknown_token_is_refused_at_load(tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    path = llama_rm(tmp_path / "rm", config_pad=None)
    base = build_tokenizer()
    bare = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer)  # no special token named at all
    bare.chat_template = None
    (path / "tokenizer_config.json").unlink()
    bare.save_pretrained(path)
    with pytest.raises(ValueError, match="names a token to pad a batch with"):
        RewardModel(path, device="cpu")


def test_a_composite_config_pools_with_the_pad_token_of_its_text_config(tmp_path: Path) -> None:
    """Gemma 3's classifier reads config.text_config.pad_token_id: the service set only the top-level one,
    so padded texts were pooled on a pad position (batched scores differed from the same texts alone), or,
    with none there, every batch failed and was run again one text at a time."""
    from transformers import (
        Gemma3Config,
        Gemma3ForSequenceClassification,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    tok = build_tokenizer()
    for text_pad in (0, None):
        path = tmp_path / f"g3-{text_pad}"
        text = Gemma3TextConfig(vocab_size=len(tok) + 8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                                sliding_window=64, pad_token_id=text_pad, eos_token_id=tok.eos_token_id, bos_token_id=None)
        vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                    image_size=28, patch_size=14)
        config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                              image_token_index=len(tok) + 1, boi_token_index=len(tok) + 2,
                              eoi_token_index=len(tok) + 3, num_labels=1)
        torch.manual_seed(0)
        Gemma3ForSequenceClassification(config).save_pretrained(path)
        tok.save_pretrained(path)
        rm = RewardModel(path, device="cpu")
        assert rm.model.config.get_text_config().pad_token_id == rm.tokenizer.pad_token_id
        texts = [rm.render(PROMPT, c) for c in ("4", "plus minus times " * 5, "yes")]
        alone = [rm.score_texts([t])[0].score for t in texts]
        assert [s.score for s in rm.score_texts(texts)] == pytest.approx(alone, abs=1e-5), text_pad


def test_a_roberta_like_models_limit_leaves_out_the_positions_before_its_first(tmp_path: Path) -> None:
    """RoBERTa numbers positions from padding_idx + 1: max_position_embeddings 66 with pad id 1 holds 64
    tokens. The service took 66, and a long text failed INTERNAL ("index 66 is out of bounds")."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    tok = build_tokenizer()
    tok.chat_template = None
    path = tmp_path / "roberta"
    config = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=66, pad_token_id=tok.pad_token_id,
                           num_labels=1, type_vocab_size=1)
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    rm = RewardModel(path, device="cpu")
    assert rm.max_length == 66 - (tok.pad_token_id + 1)
    long = rm.score_texts([rm.render(PROMPT, "plus minus times " * 200)])[0]
    assert long.truncated and long.tokens == rm.max_length and long.score == long.score  # scored, not NaN


def test_the_version_changes_with_every_tokenizer_file(tmp_path: Path) -> None:
    """Two directories differing only in vocab.txt scored differently under one version."""
    a, b = tmp_path / "a" / "rm", tmp_path / "b" / "rm"  # one name: the version starts with it
    llama_rm(a, config_pad=0)
    for name in ("vocab.txt", "merges.txt", "tokenizer.model", "added_tokens.json"):
        shutil.copytree(a, b, dirs_exist_ok=True)
        (a / name).write_text("one")
        (b / name).write_text("two")
        assert model_identity(a) != model_identity(b), name
        shutil.rmtree(b)
