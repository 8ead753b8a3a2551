"""Each distinct prompt through the decoder once: the same log-probs, loss and gradients as the padded
full-sequence forward (grpo_server.training.loss._shared_prompt_hidden), in both layouts: packed (one
sequence per prompt, a 4D mask; taken with sdpa and eager attention) and KV-cache (taken with other
attention implementations, or when the packed mask would be too large)."""

from __future__ import annotations

import functools

import pytest
import torch
from engine_helpers import load_tiny

from grpo_server.models.tiny import build_tiny_model
from grpo_server.training import loss as loss_module
from grpo_server.training.loss import LossConfig, completion_logprobs, global_normalizer, grpo_loss
from grpo_server.types import TrainBatch


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-shared"), seed=0)


def grouped_batch(seed: int = 7) -> TrainBatch:
    """Three prompts of 5, 9 and 3 tokens with 4, 3 and 3 completions of 1 to 8 tokens, right-padded,
    rows of one prompt not all adjacent, one completion masked out (a failed reward) and one counted
    only in part."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, 400, (n,), generator=g).tolist() for n in (5, 9, 3)]
    rows = [(0, 3), (0, 8), (1, 2), (0, 1), (0, 5), (1, 7), (2, 4), (1, 1), (2, 6), (2, 2)]
    length = max(len(prompts[p]) + c for p, c in rows)
    n = len(rows)
    ids = torch.zeros((n, length), dtype=torch.long)
    att = torch.zeros_like(ids)
    cmask = torch.zeros((n, length))
    for i, (p, c) in enumerate(rows):
        prompt = prompts[p]
        ids[i, : len(prompt)] = torch.tensor(prompt)
        ids[i, len(prompt) : len(prompt) + c] = torch.randint(3, 400, (c,), generator=g)
        att[i, : len(prompt) + c] = 1
        if i != 4:  # row 4 failed its reward: no loss token
            cmask[i, len(prompt) : len(prompt) + c] = 1.0
    cmask[5, len(prompts[1]) + 2] = 0.0  # one token of row 5 does not count
    return TrainBatch(
        input_ids=ids, attention_mask=att, completion_mask=cmask,
        advantages=torch.randn(n, generator=g), sampler_logprobs=torch.zeros((n, length)),
    )  # fmt: skip


@pytest.fixture(params=["packed", "cached"])
def layout(request, monkeypatch):
    """Force one layout; the other one fails the test if it is called."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the {request.param} layout was expected")

    if request.param == "packed":
        monkeypatch.setattr(loss_module, "_cached_hidden", refuse)
    else:
        monkeypatch.setattr(loss_module, "PACKED_MASK_LIMIT", 0)
        monkeypatch.setattr(loss_module, "_packed_hidden", refuse)
    return request.param


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prompts_give_the_same_logprobs_and_entropies(tiny_dir, temperature, layout):
    model = load_tiny(tiny_dir)
    batch = grouped_batch()
    with torch.no_grad():
        plain, plain_ent = completion_logprobs(
            model, batch, temperature, with_entropy=True, share_prompts=False
        )
        shared, shared_ent = completion_logprobs(
            model, batch, temperature, with_entropy=True, share_prompts=True
        )
    assert plain.shape == shared.shape == batch.input_ids.shape
    assert int((plain != 0).sum()) == int(batch.completion_mask.sum())  # every loss token has a log-prob
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared_ent, plain_ent, atol=1e-5, rtol=1e-5)


def test_shared_prompts_give_the_same_loss_and_gradients(tiny_dir, layout):
    batch = grouped_batch()
    results = []
    for share in (False, True):
        model = load_tiny(tiny_dir)
        cfg = LossConfig(aggregation="dapo", beta=0.0, share_prompts=share)
        normalizer = global_normalizer([batch], cfg.aggregation, cfg.max_tokens)
        old = (
            completion_logprobs(model, batch, share_prompts=False)[0].detach() - 0.05 * batch.completion_mask
        )
        loss, metrics = functools.partial(grpo_loss, cfg=cfg)(
            model, TrainBatch(**{**vars(batch), "old_logprobs": old}), normalizer
        )
        loss.backward()
        results.append((loss.detach(), metrics, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (plain_loss, plain_m, plain_g), (shared_loss, shared_m, shared_g) = results
    torch.testing.assert_close(shared_loss, plain_loss, atol=1e-6, rtol=1e-5)
    assert shared_m.keys() == plain_m.keys()
    for key, value in plain_m.items():
        assert shared_m[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert plain_g.keys() == shared_g.keys()
    assert any(float(g.abs().sum()) > 0 for g in plain_g.values())
    for name in plain_g:
        torch.testing.assert_close(shared_g[name], plain_g[name], atol=1e-6, rtol=1e-4, msg=name)


def test_rows_with_their_own_prompts_take_the_plain_path_with_the_same_result(tiny_dir):
    model = load_tiny(tiny_dir)
    batch = grouped_batch()
    one_each = TrainBatch(
        **{k: (v[[0, 2, 6]] if isinstance(v, torch.Tensor) else v) for k, v in vars(batch).items()}
    )
    with torch.no_grad():
        torch.testing.assert_close(
            completion_logprobs(model, one_each, share_prompts=True)[0],
            completion_logprobs(model, one_each, share_prompts=False)[0],
        )


def test_eager_attention_takes_the_packed_layout_with_the_same_result(tiny_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    batch = grouped_batch(seed=3)
    with torch.no_grad():
        plain = completion_logprobs(model, batch, share_prompts=False)[0]
        monkeypatch.setattr(loss_module, "_cached_hidden", None)  # calling it would fail
        packed = completion_logprobs(model, batch, share_prompts=True)[0]
    torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)


def test_bfloat16_packed_layout_matches_the_plain_forward(tiny_dir, monkeypatch):
    model = load_tiny(tiny_dir).to(torch.bfloat16)
    batch = grouped_batch(seed=5)
    monkeypatch.setattr(loss_module, "_cached_hidden", None)
    with torch.no_grad():
        plain = completion_logprobs(model, batch, share_prompts=False)[0]
        packed = completion_logprobs(model, batch, share_prompts=True)[0]
    # bfloat16 keeps 8 bits of mantissa: the two orders of summation differ by its rounding.
    torch.testing.assert_close(packed, plain, atol=0.05, rtol=0.02)
    assert int((packed != 0).sum()) == int(batch.completion_mask.sum())


def test_the_layout_follows_the_attention_implementation_and_the_mask_size(tiny_dir, monkeypatch):
    model = load_tiny(tiny_dir)
    grouped = loss_module._group_rows(grouped_batch())
    assert grouped is not None
    assert loss_module._packed_layout_applies(model, grouped)  # sdpa, the default
    model.config._attn_implementation = "flash_attention_2"  # takes no custom 4D mask
    assert not loss_module._packed_layout_applies(model, grouped)
    model.config._attn_implementation = "sdpa"
    # 3 prompts; the longest packs 9 prompt tokens + completions of 2, 7 and 1 tokens less one each.
    assert loss_module._packed_mask_size(grouped) == 3 * (9 + 1 + 6 + 0) ** 2
    monkeypatch.setattr(loss_module, "PACKED_MASK_LIMIT", 3 * 16**2 - 1)
    assert not loss_module._packed_layout_applies(model, grouped)


def _count(calls: list[int], *_: object) -> None:
    calls.append(1)


@pytest.mark.parametrize("packed", [True, False])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_dir, monkeypatch, packed):
    """training.gradient_checkpointing: the packed layout under checkpointed layers, and the plain forward
    where only the KV-cache layout would apply (checkpointed layers keep no cache)."""
    if not packed:
        monkeypatch.setattr(loss_module, "PACKED_MASK_LIMIT", 0)
        monkeypatch.setattr(loss_module, "_cached_hidden", None)  # must not be reached
    batch = grouped_batch(seed=11)
    normalizer = global_normalizer([batch], "grpo", None)
    results = []
    for checkpointed in (False, True):  # against the plain forward without checkpointing
        cfg = LossConfig(aggregation="grpo", beta=0.0, share_prompts=checkpointed)
        model = load_tiny(tiny_dir)
        if checkpointed:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert model.is_gradient_checkpointing
        calls: list[int] = []
        model.model.layers[0].self_attn.register_forward_pre_hook(functools.partial(_count, calls))
        loss, _ = grpo_loss(model, batch, normalizer, cfg)
        loss.backward()
        # Checkpointed, the layer runs again in the backward pass.
        assert len(calls) == (2 if checkpointed else 1)
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a)
    assert any(float(g.abs().sum()) > 0 for g in grads_a.values())
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-6, rtol=1e-4, msg=name)


def test_a_model_with_a_sliding_window_gets_the_sampler_s_log_probs(tmp_path):
    """The packed layout's mask is a plain causal one: a sliding-window layer attended past its window
    (Mistral, window 8 here, with prompts and completions past 8 tokens), 12 nats off the model's own
    forward. Such a model takes the plain forward."""
    from transformers import AutoModelForCausalLM, MistralConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(MistralConfig(
        vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=128, sliding_window=4, attn_implementation="sdpa"))
    model.eval()
    batch = grouped_batch()
    with torch.no_grad():
        shared, _ = completion_logprobs(model, batch, 1.0, share_prompts=True)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
        own = torch.log_softmax(logits, -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.completion_mask[:, 1:] > 0
    torch.testing.assert_close(shared[:, 1:][mask], own[mask], atol=1e-5, rtol=1e-5)
