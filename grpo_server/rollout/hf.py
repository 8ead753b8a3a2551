"""The HF rollout engine: transformers `generate` with sampling, the fallback when vLLM is not usable.

It can share the trainer's nn.Module (then the weights it samples from are always the trainer's current
ones and `load_weights` does nothing), or load a private copy from a directory (then `load_weights`
copies tensors in).

Log-probs it returns: the log-probability of each sampled token under the distribution it was actually
drawn from, i.e. log_softmax of the processed scores: logits / temperature, then top-k / top-p filtering
with the kept tokens renormalised. With top_k=-1 and top_p=1 (the defaults) that is exactly
log_softmax(logits / T), what the trainer computes; with filtering on it is larger by -log(kept mass).
vLLM's `processed_logprobs` mode returns the same quantity, so both engines agree.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from grpo_server.memory import out_of_memory, release
from grpo_server.rollout.base import SamplingConfig
from grpo_server.rollout.common import DTYPES, check_prompts, cut_at_stop, eos_token_ids
from grpo_server.types import Completion

log = logging.getLogger(__name__)


class HFEngine:
    """Rollouts with `model.generate`. Not thread-safe: one call at a time (it flips train/eval mode)."""

    name = "hf"

    def __init__(
        self,
        *,
        model_path: str,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
        dtype: str = "float32",
        device: str = "cpu",
        seed: int = 0,
        max_batch_sequences: int | None = None,
    ) -> None:
        """model_path: Hugging Face directory (weights when `model` is None; tokenizer when `tokenizer`
        is None). model: the trainer's module to share, or None. dtype: for a private copy ("auto" =
        float32). device: where a private copy lives (a shared model stays where it is). seed: unused
        for sampling (torch's global RNG is used unless SamplingConfig.seed is set); kept for the
        interface. max_batch_sequences: cap on prompts x n sequences per `generate` call (None = all
        prompts of a step at once); bounds memory on big steps, and is lowered on running out (generate)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if max_batch_sequences is not None and max_batch_sequences < 1:
            raise ValueError(f"max_batch_sequences must be >= 1 or None, got {max_batch_sequences}")
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_path)
        self.shared = model is not None
        if model is None:
            torch_dtype = DTYPES.get(dtype, torch.float32) if dtype != "auto" else torch.float32
            loaded: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype)
            model = loaded.to(device).eval()
        self.model: Any = model
        self.seed = seed
        self.max_batch_sequences = max_batch_sequences
        self.oom_retries = 0  # batches generated again in halves after running out of memory (generate)
        # Padding: the tokenizer's pad, else its eos, else the model's generation_config pad or first stop id.
        gen = getattr(model, "generation_config", None)
        candidates = [self.tokenizer.pad_token_id, self.tokenizer.eos_token_id,
                      getattr(gen, "pad_token_id", None), *eos_token_ids(self.tokenizer, gen)]
        pad = next((c for c in candidates if c is not None), None)
        if pad is None:
            raise ValueError(f"{model_path}: neither the tokenizer nor the model's generation_config names a pad or "
                             "eos token, which generation needs to pad prompts and end completions")
        self.pad_token_id = int(pad)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------ sampling

    def generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig) -> list[list[Completion]]:
        """n sampled completions per prompt (see RolloutEngine.generate). Prompts are left-padded into
        batches of at most max_batch_sequences // n prompts.

        A batch that runs out of memory is generated again in batches of half as many prompts (down to
        one), and `max_batch_sequences` stays at the smaller size for later calls; `oom_retries` counts
        these. The completions are samples of the same distribution, drawn in smaller batches."""
        check_prompts(prompts)
        stop_ids = eos_token_ids(self.tokenizer, getattr(self.model, "generation_config", None), sampling.stop_token_ids)
        per_call = len(prompts) or 1
        if self.max_batch_sequences is not None:
            per_call = max(1, self.max_batch_sequences // sampling.n)
        out: list[list[Completion]] = []
        with self._sampling_mode(), self._rng(sampling.seed):
            start = 0
            while start < len(prompts):
                batch = prompts[start : start + per_call]
                try:
                    out.extend(self._generate_batch(batch, sampling, stop_ids))
                    start += len(batch)
                    continue
                except Exception as exc:
                    if not (out_of_memory(exc) and len(batch) > 1):
                        raise
                    failure = f"{type(exc).__name__}: {exc}"
                # Out of the handler: the failed batch's tensors went with its traceback.
                per_call = len(batch) // 2
                self.max_batch_sequences = per_call * sampling.n
                self.oom_retries += 1
                release()
                log.warning("rollout: out of memory generating %d sequences at once (%s); generating %d at once "
                            "from now on", len(batch) * sampling.n, failure[:300], self.max_batch_sequences)
        return out

    def _generate_batch(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig, stop_ids: tuple[int, ...]
    ) -> list[list[Completion]]:
        from transformers import GenerationConfig, LogitsProcessorList

        input_ids, attention_mask = self._left_pad(prompts)
        # Temperature, top-k and top-p are applied by our own processors, in generate's own order, with the
        # recorder after them (generate puts processors it is given before the ones it makes): the
        # same distribution, and one float kept per sampled token instead of every step's scores over the
        # vocabulary (output_scores held 1.5 GiB for 64 sequences of 128 tokens of a 49k vocabulary).
        recorder = _SampledLogprobs()
        config = GenerationConfig(
            do_sample=True,
            num_return_sequences=sampling.n,
            max_new_tokens=sampling.max_new_tokens,
            temperature=1.0,
            top_p=1.0,
            top_k=0,  # 0 disables HF's own top-k (its default is 50)
            eos_token_id=list(stop_ids),
            pad_token_id=self.pad_token_id,
            use_cache=True,  # the trainer may have turned the cache off for training
            return_dict_in_generate=True,
        )
        result = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                     logits_processor=LogitsProcessorList([*_warpers(sampling), recorder]))
        new_tokens = result.sequences[:, input_ids.shape[1] :]  # [B*n, T]
        logprobs = recorder.finish(result.sequences, new_tokens.shape[1])  # [B*n, T]
        rows: list[list[Completion]] = []
        for i in range(len(prompts)):
            group = []
            for j in range(sampling.n):
                r = i * sampling.n + j  # generate repeats each prompt n times in place
                ids = new_tokens[r].tolist()
                length, stopped = cut_at_stop(ids, stop_ids)
                ids = ids[:length]
                group.append(
                    Completion(
                        token_ids=tuple(ids),
                        logprobs=tuple(float(x) for x in logprobs[r, :length].tolist()),
                        text=str(self.tokenizer.decode(ids, skip_special_tokens=True)),
                        finish_reason="stop" if stopped else "length",
                    )
                )
            rows.append(group)
        return rows

    def _left_pad(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, L] input ids and attention mask, left-padded so that every prompt ends at column L-1
        (generation appends on the right)."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            mask[i, width - len(p) :] = 1
        return ids.to(self.device), mask.to(self.device)

    @contextlib.contextmanager
    def _sampling_mode(self) -> Iterator[None]:
        """Eval mode (no dropout), no autograd, and a neutral generation_config while sampling: every
        knob `generate` leaves unset is otherwise filled from the model's generation_config.json
        (repetition penalty, min_p, ...), which would change the sampling distribution behind our back.
        Restores the module's train mode and its generation_config afterwards."""
        from transformers import GenerationConfig

        was_training = self.model.training
        saved = getattr(self.model, "generation_config", None)
        self.model.eval()
        self.model.generation_config = GenerationConfig()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.generation_config = saved
            self.model.train(was_training)

    @contextlib.contextmanager
    def _rng(self, seed: int | None) -> Iterator[None]:
        """With a seed, sample from a forked, seeded torch RNG (the caller's RNG stream is untouched);
        without, from torch's global RNG (the step loop seeds it per step)."""
        if seed is None:
            yield
            return
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # ------------------------------------------------------------------------------------ weights

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy the trainer's tensors (HF names) into the private copy. A no-op when the module is
        shared with the trainer: the engine already samples from the trainer's own parameters.
        Raises KeyError naming an unknown parameter, ValueError on a shape mismatch."""
        if self.shared:
            return
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        with torch.no_grad():
            for name, tensor in named_tensors:
                target = params.get(name)
                if target is None:
                    target = buffers.get(name)
                if target is None:
                    if name.endswith("lm_head.weight") and getattr(self.model.config, "tie_word_embeddings", False):
                        continue  # tied to the embedding, which comes under its own name
                    raise KeyError(f"load_weights: the rollout model has no parameter named {name!r}")
                if tuple(target.shape) != tuple(tensor.shape):
                    raise ValueError(
                        f"load_weights: {name} has shape {tuple(tensor.shape)}, the rollout model expects "
                        f"{tuple(target.shape)}"
                    )
                target.copy_(tensor.detach().to(device=target.device, dtype=target.dtype))

    # ------------------------------------------------------------------------------------ scoring

    def completion_logprobs(
        self, prompt: Sequence[int], completion: Sequence[int], temperature: float = 1.0
    ) -> list[float]:
        """log_softmax(logits / temperature) of each completion token given what precedes it (teacher
        forcing, one forward pass, fp32 softmax). Returns len(completion) floats (nats)."""
        if not prompt:
            raise ValueError("prompt is empty; a prompt needs at least one token")
        if not completion:
            return []
        ids = torch.tensor([list(prompt) + list(completion)], dtype=torch.long, device=self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(input_ids=ids, use_cache=False).logits[0]  # [P+C, vocab]
        finally:
            self.model.train(was_training)
        # position t predicts token t+1, so the completion tokens are predicted from P-1 .. P+C-2.
        pred = logits[len(prompt) - 1 : -1].float() / temperature
        target = ids[0, len(prompt) :].unsqueeze(-1)
        return torch.log_softmax(pred, dim=-1).gather(-1, target).squeeze(-1).tolist()

    def close(self) -> None:
        """Drop the reference to the model (a shared model stays alive with the trainer)."""
        self.model = None


def _warpers(sampling: SamplingConfig) -> list[Any]:
    """The processors `generate` makes for these sampling settings, in its order (temperature, top-k,
    top-p), for `_generate_batch` to put before its recorder."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers: list[Any] = []
    if sampling.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(sampling.temperature))
    if sampling.top_k > 0:
        warpers.append(TopKLogitsWarper(top_k=sampling.top_k, min_tokens_to_keep=1))
    if sampling.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=sampling.top_p, min_tokens_to_keep=1))
    return warpers


class _SampledLogprobs:
    """A logits processor, last in line, that keeps the log-probability of each sampled token under the
    processed scores it was drawn from: at each step it holds log_softmax of the scores, and at the next
    one (or at ``finish``) takes the entry of the token that was sampled, then lets the row go."""

    def __init__(self) -> None:
        self._kept: list[torch.Tensor] = []  # [B*n] per sampled token
        self._last: torch.Tensor | None = None  # log_softmax of the latest step's scores, [B*n, vocab]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._take(input_ids[:, -1:])
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        if self._last is not None:
            self._kept.append(self._last.gather(-1, tokens).squeeze(-1))
            self._last = None

    def finish(self, sequences: torch.Tensor, generated: int) -> torch.Tensor:
        """[B*n, generated] log-probs, once `generate` has returned ``sequences``."""
        if generated:
            self._take(sequences[:, -1:])
        if len(self._kept) != generated:
            raise RuntimeError(f"sampled {generated} tokens but recorded {len(self._kept)} log-probs")
        if not self._kept:
            return torch.zeros((sequences.shape[0], 0), dtype=torch.float32)
        return torch.stack(self._kept, dim=1)
