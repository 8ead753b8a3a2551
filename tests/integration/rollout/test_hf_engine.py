"""The HF rollout engine on a real tiny Llama: shapes, eos and stop tokens, seeds, the sampler's
log-probs against teacher forcing, and weight sync (shared module and private copy)."""

from __future__ import annotations

import pytest
import torch
from rollout_models import EOS_PROB, reference_logprobs
from transformers import AutoModelForCausalLM

from grpo_server.rollout.base import RolloutEngine, SamplingConfig, make_engine
from grpo_server.rollout.hf import HFEngine

FP32_TOL = 1e-4


def hf_engine(model_dir, tokenizer, model=None) -> HFEngine:
    engine = make_engine(
        "hf", model_path=str(model_dir), model=model, tokenizer=tokenizer, dtype="float32", device="cpu", seed=0
    )
    assert isinstance(engine, HFEngine)
    return engine


@pytest.fixture
def trainer_model(tiny_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)


def test_engine_satisfies_the_rollout_interface(tiny_dir, tokenizer):
    engine = hf_engine(tiny_dir, tokenizer)
    assert isinstance(engine, RolloutEngine)
    assert engine.name == "hf"


def test_generate_gives_n_completions_per_prompt_with_one_logprob_per_token(tiny_dir, tokenizer, prompts):
    engine = hf_engine(tiny_dir, tokenizer)
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
    # the random tiny model rarely says eos: most completions run to the limit
    assert any(c.finish_reason == "length" and len(c.token_ids) == 12 for g in out for c in g)


def test_a_tokenizer_without_eos_or_pad_pads_with_the_models_stop_token(eos_dir, prompts):
    """The stop set allows a tokenizer without eos (the model's generation_config names it), but the
    engine took its padding from the tokenizer alone and failed with int(None)."""
    from transformers import AutoTokenizer

    bare = AutoTokenizer.from_pretrained(eos_dir)
    eos = bare.eos_token_id
    bare.eos_token, bare.pad_token = None, None
    model = AutoModelForCausalLM.from_pretrained(eos_dir, dtype=torch.float32)
    assert (bare.eos_token_id, bare.pad_token_id, model.generation_config.eos_token_id) == (None, None, eos)
    pad = model.generation_config.pad_token_id
    assert pad is not None and hf_engine(eos_dir, bare, model=model).pad_token_id == pad
    model.generation_config.pad_token_id = None  # then the stop token pads
    engine = hf_engine(eos_dir, bare, model=model)
    assert engine.pad_token_id == eos
    out = engine.generate(prompts, SamplingConfig(n=8, max_new_tokens=8, seed=1))
    stopped = [c for g in out for c in g if c.finish_reason == "stop"]
    assert stopped and all(c.token_ids[-1] == eos for c in stopped)
    model.generation_config.eos_token_id = None
    with pytest.raises(ValueError, match="names a pad or eos token"):
        hf_engine(eos_dir, bare, model=model)


def test_completion_stops_at_eos_keeps_it_and_cuts_the_padding(eos_dir, tokenizer, prompts):
    engine = hf_engine(eos_dir, tokenizer)
    eos = tokenizer.eos_token_id
    out = engine.generate(prompts, SamplingConfig(n=16, max_new_tokens=8, seed=1))
    finishes = {c.finish_reason for g in out for c in g}
    assert finishes == {"stop", "length"}, "with P(eos)=0.2 per token, 48 completions of 8 tokens mix both"
    for c in (c for g in out for c in g):
        if c.finish_reason == "stop":
            assert c.token_ids[-1] == eos
            assert eos not in c.token_ids[:-1]
            assert c.logprobs[-1] == pytest.approx(torch.log(torch.tensor(EOS_PROB)).item(), abs=1e-4)
        else:
            assert len(c.token_ids) == 8 and eos not in c.token_ids
        assert "<|im_end|>" not in c.text


def test_extra_stop_tokens_end_a_completion_like_eos(tiny_dir, tokenizer, prompts):
    engine = hf_engine(tiny_dir, tokenizer)
    vocab = len(tokenizer)
    every_token = tuple(t for t in range(vocab) if t != tokenizer.eos_token_id)
    out = engine.generate(prompts, SamplingConfig(n=3, max_new_tokens=10, seed=0, stop_token_ids=every_token))
    for c in (c for g in out for c in g):
        assert len(c.token_ids) == 1 and c.finish_reason == "stop"


def test_same_seed_gives_same_completions_and_leaves_the_global_rng_alone(tiny_dir, tokenizer, prompts):
    engine = hf_engine(tiny_dir, tokenizer)
    cfg = SamplingConfig(n=3, max_new_tokens=10, seed=123)
    state = torch.get_rng_state()
    first = engine.generate(prompts, cfg)
    assert torch.equal(torch.get_rng_state(), state), "a seeded call must not consume the caller's RNG"
    second = engine.generate(prompts, cfg)
    other = engine.generate(prompts, SamplingConfig(n=3, max_new_tokens=10, seed=124))
    assert first == second
    assert [c.token_ids for g in first for c in g] != [c.token_ids for g in other for c in g]
    # the n samples of a prompt are distinct draws, not copies
    assert len({c.token_ids for c in first[0]}) > 1


def test_unseeded_calls_follow_torch_global_rng(tiny_dir, tokenizer, prompts):
    engine = hf_engine(tiny_dir, tokenizer)
    cfg = SamplingConfig(n=2, max_new_tokens=6)
    torch.manual_seed(7)
    a = engine.generate(prompts, cfg)
    torch.manual_seed(7)
    b = engine.generate(prompts, cfg)
    assert a == b


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_equal_teacher_forced_logprobs(tiny_dir, tokenizer, prompts, trainer_model, temperature):
    engine = hf_engine(tiny_dir, tokenizer)
    out = engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=10, temperature=temperature, seed=3))
    for prompt, group in zip(prompts, out, strict=True):  # prompts of different lengths: left padding
        for c in group:
            ref = reference_logprobs(trainer_model, prompt, c.token_ids, temperature)
            torch.testing.assert_close(torch.tensor(c.logprobs, dtype=torch.float64), ref, atol=FP32_TOL, rtol=0)
            engine_tf = engine.completion_logprobs(prompt, c.token_ids, temperature)
            torch.testing.assert_close(torch.tensor(engine_tf, dtype=torch.float64), ref, atol=FP32_TOL, rtol=0)


def test_top_k_samples_inside_the_top_k_and_renormalises_its_logprobs(tiny_dir, tokenizer, prompts, trainer_model):
    engine = hf_engine(tiny_dir, tokenizer)
    k, temperature = 5, 0.8
    out = engine.generate(prompts[:1], SamplingConfig(n=4, max_new_tokens=8, temperature=temperature, top_k=k, seed=0))
    prompt = prompts[0]
    for c in out[0]:
        ids = torch.tensor([prompt + list(c.token_ids)])
        with torch.no_grad():
            logits = trainer_model(input_ids=ids).logits[0, len(prompt) - 1 : -1].double() / temperature
        top = logits.topk(k, dim=-1)
        for t, tok in enumerate(c.token_ids):
            assert tok in top.indices[t].tolist()
            expected = torch.log_softmax(top.values[t], -1)[top.indices[t].tolist().index(tok)]
            assert c.logprobs[t] == pytest.approx(expected.item(), abs=FP32_TOL)


def test_the_models_generation_config_does_not_change_the_sampling(tiny_dir, tokenizer, prompts, trainer_model):
    """A checkpoint's generation_config.json (here: top_k=1, a repetition penalty) must not leak into
    rollouts: the sampled distribution stays log_softmax(logits / T), and the config is restored."""
    from transformers import GenerationConfig

    trainer_model.generation_config = GenerationConfig(top_k=1, repetition_penalty=3.0, eos_token_id=2)
    engine = hf_engine(tiny_dir, tokenizer, model=trainer_model)
    out = engine.generate(prompts[:1], SamplingConfig(n=3, max_new_tokens=8, seed=0))
    assert trainer_model.generation_config.top_k == 1
    for c in out[0]:
        ref = reference_logprobs(trainer_model, prompts[0], c.token_ids)
        torch.testing.assert_close(torch.tensor(c.logprobs, dtype=torch.float64), ref, atol=FP32_TOL, rtol=0)


def test_generation_runs_in_eval_mode_without_grad_and_restores_train_mode(tiny_dir, tokenizer, prompts):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, attention_dropout=0.5)
    engine = hf_engine(tiny_dir, tokenizer, model=model)
    cfg = SamplingConfig(n=2, max_new_tokens=6, seed=5)
    model.eval()
    expected = engine.generate(prompts, cfg)
    model.train()
    # same seed: with dropout active the samples (and log-probs) would differ from the eval-mode ones
    assert engine.generate(prompts, cfg) == expected, "dropout was active during generation"
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_shared_model_samples_from_the_trainers_current_weights(tiny_dir, tokenizer, prompts, trainer_model):
    engine = hf_engine(tiny_dir, tokenizer, model=trainer_model)
    completion = engine.generate(prompts[:1], SamplingConfig(n=1, max_new_tokens=8, seed=0))[0][0].token_ids
    before = torch.tensor(engine.completion_logprobs(prompts[0], completion))
    _optimizer_step(trainer_model, prompts[0], completion)
    engine.load_weights(trainer_model.named_parameters())  # a no-op for a shared module
    after = torch.tensor(engine.completion_logprobs(prompts[0], completion), dtype=torch.float64)
    torch.testing.assert_close(after, reference_logprobs(trainer_model, prompts[0], completion), atol=FP32_TOL, rtol=0)
    assert (after - before.double()).abs().max() > 1e-2


def test_private_copy_scores_with_the_trainers_new_weights_after_load_weights(tiny_dir, tokenizer, prompts, trainer_model):
    """The issue's check: after an update and a sync, the rollout engine scores a fixed completion
    with the trainer's new weights (fp32: within 1e-4); without the sync it clearly would not."""
    engine = hf_engine(tiny_dir, tokenizer)
    prompt = prompts[1]
    completion = engine.generate([prompt], SamplingConfig(n=1, max_new_tokens=10, seed=0))[0][0].token_ids
    ref_before = reference_logprobs(trainer_model, prompt, completion)
    torch.testing.assert_close(
        torch.tensor(engine.completion_logprobs(prompt, completion), dtype=torch.float64), ref_before, atol=FP32_TOL, rtol=0
    )
    _optimizer_step(trainer_model, prompt, completion)
    ref_after = reference_logprobs(trainer_model, prompt, completion)
    stale = torch.tensor(engine.completion_logprobs(prompt, completion), dtype=torch.float64)
    assert (stale - ref_after).abs().max() > 100 * FP32_TOL, "the update must be visible for this test to mean anything"

    engine.load_weights(trainer_model.named_parameters())
    synced = torch.tensor(engine.completion_logprobs(prompt, completion), dtype=torch.float64)
    torch.testing.assert_close(synced, ref_after, atol=FP32_TOL, rtol=0)
    # and the sampler itself now draws from the new weights
    c = engine.generate([prompt], SamplingConfig(n=1, max_new_tokens=6, seed=9))[0][0]
    ref = reference_logprobs(trainer_model, prompt, c.token_ids)
    torch.testing.assert_close(torch.tensor(c.logprobs, dtype=torch.float64), ref, atol=FP32_TOL, rtol=0)


def test_load_weights_accepts_a_state_dict_with_a_tied_head(tiny_dir, tokenizer, trainer_model):
    engine = hf_engine(tiny_dir, tokenizer)
    with torch.no_grad():
        for p in trainer_model.parameters():
            p.add_(0.01)
    engine.load_weights(trainer_model.state_dict().items())
    for name, p in engine.model.named_parameters():
        torch.testing.assert_close(p, trainer_model.get_parameter(name))


def test_load_weights_rejects_unknown_names_and_wrong_shapes(tiny_dir, tokenizer):
    engine = hf_engine(tiny_dir, tokenizer)
    with pytest.raises(KeyError, match="model.nope"):
        engine.load_weights([("model.nope", torch.zeros(1))])
    with pytest.raises(ValueError, match="model.norm.weight"):
        engine.load_weights([("model.norm.weight", torch.zeros(3))])


def test_bad_requests_are_refused_with_the_offending_field(tiny_dir, tokenizer, prompts):
    engine = hf_engine(tiny_dir, tokenizer)
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        engine.generate([prompts[0], []], SamplingConfig(n=1))
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(n=1, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        SamplingConfig(n=1, top_k=0)
    with pytest.raises(ValueError, match="unknown rollout engine"):
        make_engine("tgi", model_path=str(tiny_dir), model=None, tokenizer=tokenizer, dtype="float32",
                    device="cpu", seed=0)


def test_max_batch_sequences_splits_the_call_without_changing_the_result_shape(tiny_dir, tokenizer, prompts):
    engine = make_engine("hf", model_path=str(tiny_dir), model=None, tokenizer=tokenizer, dtype="float32",
                         device="cpu", seed=0, max_batch_sequences=2)
    out = engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=5, seed=0))
    assert [len(g) for g in out] == [2, 2, 2]



def _memory_for(model, sequences: int) -> None:
    """Make `model`'s forward passes fail in the host's allocator above `sequences` rows: the rows ask it
    for more than any host has (2**50 bytes each), as a generate call's KV cache grows with its batch."""
    def hook(_module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] > sequences:
            torch.empty((ids.shape[0] - sequences) << 50, dtype=torch.uint8)

    model.register_forward_pre_hook(hook, with_kwargs=True)


def test_a_batch_out_of_memory_is_generated_again_in_halves_and_stays_smaller(tiny_dir, tokenizer, prompts, caplog):
    engine = hf_engine(tiny_dir, tokenizer)
    four = [*prompts, prompts[0]]
    _memory_for(engine.model, 2)  # one prompt's 2 completions fit, two prompts' do not
    out = engine.generate(four, SamplingConfig(n=2, max_new_tokens=6, seed=0))
    assert [len(g) for g in out] == [2, 2, 2, 2]
    assert all(1 <= len(c.token_ids) <= 6 and len(c.logprobs) == len(c.token_ids) for g in out for c in g)
    assert engine.oom_retries == 2 and engine.max_batch_sequences == 2  # 8 -> 4 -> 2 sequences a call
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rollout: out of memory")]
    assert len(said) == 2 and said[0].startswith("rollout: out of memory generating 8 sequences at once "
                                                 "(RuntimeError: ") and "can't allocate memory" in said[0]
    assert said[1].endswith("generating 2 at once from now on"), said[1]
    # The next call starts at the smaller size: no retry.
    again = engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=6, seed=1))
    assert [len(g) for g in again] == [2, 2, 2] and engine.oom_retries == 2


def test_a_single_prompt_out_of_memory_is_raised(tiny_dir, tokenizer, prompts):
    engine = hf_engine(tiny_dir, tokenizer)
    _memory_for(engine.model, 1)  # not even one prompt's 2 completions fit
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        engine.generate(prompts, SamplingConfig(n=2, max_new_tokens=6, seed=0))
    assert engine.oom_retries == 1 and engine.max_batch_sequences == 2  # 3 prompts -> 1 a call, then raised
    single = hf_engine(tiny_dir, tokenizer)
    _memory_for(single.model, 1)
    with pytest.raises(RuntimeError, match="can't allocate memory"):  # one prompt: nothing smaller to try
        single.generate([prompts[0]], SamplingConfig(n=2, max_new_tokens=6, seed=0))
    assert single.oom_retries == 0 and single.max_batch_sequences is None


def _optimizer_step(model, prompt, completion, lr: float = 0.05) -> None:
    """One Adam step raising the completion's likelihood (what a training step does to the weights)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ids = torch.tensor([list(prompt) + list(completion)])
    model.train()
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    loss = torch.nn.functional.cross_entropy(logits, ids[0, len(prompt) :])
    loss.backward()
    opt.step()
    opt.zero_grad()


@pytest.mark.parametrize("knobs", [{}, {"temperature": 0.7, "top_p": 0.9, "top_k": 20}, {"temperature": 1.3, "top_k": 5}],
                         ids=["plain", "temperature, top-k and top-p", "temperature and top-k"])
def test_the_log_probs_are_those_of_generates_own_processed_scores(eos_dir, tokenizer, prompts, knobs) -> None:
    """The engine applies temperature, top-k and top-p itself with a recorder after them, where it asked
    generate for output_scores (every step's scores over the whole vocabulary, kept until generate
    returned: 1.5 GiB for 64 sequences of 128 tokens of SmolLM2's vocabulary). Same seed, same tokens,
    and the log-probs of generate's own processed scores."""
    from transformers import GenerationConfig

    from grpo_server.rollout.common import eos_token_ids

    engine = hf_engine(eos_dir, tokenizer)
    sampling = SamplingConfig(n=3, max_new_tokens=10, seed=7, **knobs)
    ours = [c for group in engine.generate(prompts, sampling) for c in group]
    with engine._sampling_mode(), engine._rng(sampling.seed):
        input_ids, attention_mask = engine._left_pad(prompts)
        result = engine.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=GenerationConfig(
            do_sample=True, num_return_sequences=sampling.n, max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature, top_p=sampling.top_p, top_k=max(sampling.top_k, 0),
            eos_token_id=list(eos_token_ids(tokenizer, engine.model.generation_config)), pad_token_id=engine.pad_token_id,
            use_cache=True, output_scores=True, return_dict_in_generate=True))
    new_tokens = result.sequences[:, input_ids.shape[1]:]
    assert any(c.finish_reason == "stop" for c in ours) and max(len(c.token_ids) for c in ours) >= 3
    for r, c in enumerate(ours):
        assert list(c.token_ids) == new_tokens[r, :len(c.token_ids)].tolist()
        expected = [torch.log_softmax(result.scores[t][r].float(), dim=-1)[token].item() for t, token in enumerate(c.token_ids)]
        assert list(c.logprobs) == pytest.approx(expected, abs=1e-6)
