"""Chunked log-probs and entropies equal the naive log_softmax + gather, in values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_server.algorithm import chosen_token_logprobs, entropy_from_logits, token_logprobs_from_hidden

N, T, H, V = 3, 5, 8, 11


def _naive(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def _naive_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_chosen_token_logprobs_match_log_softmax_gather_with_gradients(
    gen: torch.Generator, temperature: float, chunk_size: int
) -> None:
    logits = (torch.randn(N, T, V, generator=gen) * 3).requires_grad_()
    ids = torch.randint(0, V, (N, T), generator=gen)
    weights = torch.randn(N, T, generator=gen)
    got = chosen_token_logprobs(logits, ids, temperature=temperature, chunk_size=chunk_size)
    (got * weights).sum().backward()
    grad_got = logits.grad.clone()  # type: ignore[union-attr]
    logits.grad = None
    want = _naive(logits, ids, temperature)
    (want * weights).sum().backward()
    assert got.shape == (N, T) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_got, logits.grad, atol=1e-5, rtol=0)


def test_bf16_logits_are_reduced_in_fp32(gen: torch.Generator) -> None:
    logits = (torch.randn(N, T, V, generator=gen) * 4).to(torch.bfloat16)
    ids = torch.randint(0, V, (N, T), generator=gen)
    got = chosen_token_logprobs(logits, ids, chunk_size=2)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, _naive(logits.float(), ids), atol=1e-5, rtol=0)


def test_entropy_from_logits_matches_the_naive_entropy(gen: torch.Generator) -> None:
    logits = torch.randn(N, T, V, generator=gen) * 2
    torch.testing.assert_close(entropy_from_logits(logits, 4), _naive_entropy(logits), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        entropy_from_logits(logits, 4, temperature=0.5), _naive_entropy(logits, 0.5), atol=1e-5, rtol=0
    )
    uniform = torch.zeros(1, 1, V)
    assert entropy_from_logits(uniform, 4).item() == pytest.approx(torch.log(torch.tensor(float(V))).item())


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_hidden_state_log_probs_and_entropies_match_the_full_lm_head(
    gen: torch.Generator, with_bias: bool, temperature: float
) -> None:
    hidden = torch.randn(N, T, H, generator=gen, requires_grad=True)
    weight = torch.randn(V, H, generator=gen, requires_grad=True)
    bias = torch.randn(V, generator=gen, requires_grad=True) if with_bias else None
    ids = torch.randint(0, V, (N, T), generator=gen)
    w_logp, w_ent = torch.randn(N, T, generator=gen), torch.randn(N, T, generator=gen)

    logp, ent = token_logprobs_from_hidden(
        hidden, weight, ids, temperature=temperature, chunk_size=4, with_entropy=True, lm_head_bias=bias
    )
    assert ent is not None
    ((logp * w_logp).sum() + (ent * w_ent).sum()).backward()
    grads = [t.grad.clone() for t in (hidden, weight, bias) if t is not None]  # type: ignore[union-attr]
    for t in (hidden, weight, bias):
        if t is not None:
            t.grad = None

    logits = torch.nn.functional.linear(hidden, weight, bias)
    want_logp, want_ent = _naive(logits, ids, temperature), _naive_entropy(logits, temperature)
    ((want_logp * w_logp).sum() + (want_ent * w_ent).sum()).backward()
    want_grads = [t.grad for t in (hidden, weight, bias) if t is not None]

    torch.testing.assert_close(logp, want_logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, want_ent, atol=1e-5, rtol=0)
    for got, want in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, atol=5e-5, rtol=1e-4)  # fp32 sums in another order


def test_hidden_state_log_probs_without_entropy_return_none(gen: torch.Generator) -> None:
    hidden, weight = torch.randn(2, 3, H, generator=gen), torch.randn(V, H, generator=gen)
    ids = torch.randint(0, V, (2, 3), generator=gen)
    logp, ent = token_logprobs_from_hidden(hidden, weight, ids)
    assert ent is None
    torch.testing.assert_close(logp, _naive(hidden @ weight.T, ids), atol=1e-5, rtol=0)


def test_a_token_of_probability_zero_adds_nothing_to_the_entropy_or_its_gradient() -> None:
    """H = -sum p log p with 0 log 0 = 0: a -inf logit (or bias) made the entropy NaN in both paths."""
    logits = torch.tensor([[0.0, 0.0, float("-inf")]], requires_grad=True)
    entropy = entropy_from_logits(logits)
    entropy.sum().backward()
    assert entropy.tolist() == pytest.approx([math.log(2.0)])
    assert logits.grad is not None and torch.isfinite(logits.grad).all(), logits.grad
    hidden = torch.ones(1, 1, requires_grad=True)
    _, ent = token_logprobs_from_hidden(hidden.unsqueeze(0), torch.zeros(3, 1), torch.zeros(1, 1, dtype=torch.long),
                                        with_entropy=True, lm_head_bias=torch.tensor([0.0, 0.0, float("-inf")]))
    assert ent is not None and ent.flatten().tolist() == pytest.approx([math.log(2.0)])
    ent.sum().backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all(), hidden.grad


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_entropy_refuses_a_temperature_that_is_not_positive(temperature: float) -> None:
    """As chosen_token_logprobs does: -1 gave the entropy of softmax(-z) silently, 0 gave NaN."""
    with pytest.raises(ValueError, match="temperature must be > 0"):
        entropy_from_logits(torch.zeros(1, 2), temperature=temperature)


def _largest_saved_for_backward(fn) -> int:  # type: ignore[no-untyped-def]
    """The element count of the largest tensor autograd keeps for backward while fn runs."""
    sizes = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return max(sizes)


def test_chunked_paths_never_keep_logits_of_the_whole_batch_for_backward(gen: torch.Generator) -> None:
    n, t, h, v, chunk = 4, 16, 8, 50, 8
    hidden = torch.randn(n, t, h, generator=gen, requires_grad=True)
    weight = torch.randn(v, h, generator=gen, requires_grad=True)
    ids = torch.randint(0, v, (n, t), generator=gen)
    saved = _largest_saved_for_backward(
        lambda: token_logprobs_from_hidden(hidden, weight, ids, chunk_size=chunk, with_entropy=True)
    )
    assert saved < chunk * v + 1  # at most one chunk's worth, never n * t * v
    # The naive path keeps [n*t, v] fp32 logits: the check above can tell the difference.
    naive = _largest_saved_for_backward(lambda: _naive(hidden @ weight.T, ids))
    assert naive >= n * t * v

    # From bf16 logits: no fp32 copy of more than one chunk is kept.
    logits = torch.randn(n, t, v, generator=gen).to(torch.bfloat16).requires_grad_()
    assert (
        _largest_saved_for_backward(lambda: chosen_token_logprobs(logits, ids, chunk_size=chunk)) <= chunk * v
    )
    assert _largest_saved_for_backward(lambda: _naive(logits, ids)) >= n * t * v


def test_no_grad_calls_build_no_graph(gen: torch.Generator) -> None:
    hidden = torch.randn(2, 3, H, generator=gen, requires_grad=True)
    weight = torch.randn(V, H, generator=gen, requires_grad=True)
    with torch.no_grad():
        logp, _ = token_logprobs_from_hidden(hidden, weight, torch.zeros(2, 3, dtype=torch.long))
    assert not logp.requires_grad


def test_tiny_llama_log_probs_from_hidden_states_equal_its_own_logits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    from grpo_server.models.tiny import build_tiny_model

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "tiny"), dtype=torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    out = model(input_ids=ids, output_hidden_states=True)
    targets = ids[:, 1:]
    want = _naive(out.logits[:, :-1], targets, 0.8)
    hidden = out.hidden_states[-1][:, :-1]  # after the final norm: what the LM head reads
    got, ent = token_logprobs_from_hidden(
        hidden,
        model.get_output_embeddings().weight,
        targets,
        temperature=0.8,
        chunk_size=5,
        with_entropy=True,
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert ent is not None
    torch.testing.assert_close(ent, _naive_entropy(out.logits[:, :-1], 0.8), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        chosen_token_logprobs(out.logits[:, :-1], targets, temperature=0.8, chunk_size=5),
        want,
        atol=1e-5,
        rtol=0,
    )
