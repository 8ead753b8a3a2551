"""The training engine interface: what the step loop asks of whatever holds the weights and the optimizer.

    micro-batches + loss_fn + normalizer ─► TrainingEngine.train_step ─► one optimizer step, its metrics

Two engines implement it: `TorchEngine` (one process, the default on CPU) and `DeepSpeedEngine` (ZeRO
stages 1-3 over several ranks; rank 0 drives the others through grpo_server.training.distributed).

The contract on losses: the loss of each micro-batch is already divided by the GLOBAL normalizer (the same
number for every micro-batch and rank of one optimizer step), so the SUM of the micro-batch gradients is
the full-batch gradient. Engines never rescale: no 1/accumulation_steps, and across ranks they undo
DeepSpeed's averaging. Accumulating over 4 micro-batches therefore gives the same update as one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from grpo_server.types import TrainBatch

LR_SCHEDULES = ("constant", "linear", "cosine")
ENGINE_KINDS = ("torch", "deepspeed")

LossFn = Callable[[torch.nn.Module, TrainBatch, float], tuple[torch.Tensor, dict[str, float]]]
"""(model, micro_batch, normalizer) -> (scalar loss already divided by normalizer, metrics).

Must pickle (a module-level function or a functools.partial of one): other ranks receive it."""

NormalizerFn = Callable[[Sequence[TrainBatch]], float]
"""Computes the global normalizer of one optimizer step from all its micro-batches."""

ComputeFn = Callable[[torch.nn.Module, TrainBatch], torch.Tensor]
"""(model, batch) -> [N, L] log-probs (nats); used without gradient for old and reference log-probs."""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, gradient clipping, the learning-rate schedule and the micro-batch size.

    learning_rate: peak learning rate. weight_decay: decoupled (AdamW) decay, applied to matrices and
    embeddings only (parameters with 2 or more dimensions), not to norms and biases.
    max_grad_norm: clip the global L2 norm of the gradient to this (0 or less: no clipping).
    warmup_steps: linear warm-up from 0 over this many optimizer steps (the transformers convention: the
    first step runs at lr 0 when warmup_steps > 0).
    lr_schedule: "constant", "linear" (to 0 at total_steps) or "cosine" (to 0 at total_steps); the last
    two need total_steps > 0. micro_batch_size: sequences per forward/backward pass.
    """

    learning_rate: float = 1e-6
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    total_steps: int = 0
    micro_batch_size: int = 8

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            problems.append(f"learning_rate must be a finite number >= 0, got {self.learning_rate}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):  # NaN passes a plain `< 0`
            problems.append(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            problems.append(f"eps must be a finite number > 0, got {self.eps}")
        if math.isnan(self.max_grad_norm):
            problems.append(f"max_grad_norm must be a number (0 or less: no clipping), got {self.max_grad_norm}")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        elif self.lr_schedule != "constant" and self.total_steps <= 0:
            problems.append(
                f"lr_schedule {self.lr_schedule!r} needs total_steps > 0 (the step where lr reaches 0)"
            )
        if self.total_steps < 0:
            problems.append(f"total_steps must be >= 0, got {self.total_steps}")
        if self.micro_batch_size < 1:
            problems.append(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if problems:
            raise ValueError("invalid optimizer config: " + "; ".join(problems))


@runtime_checkable
class TrainingEngine(Protocol):
    """Holds the policy's weights and optimizer; does optimizer steps. On several ranks, only rank 0's
    methods are called by the loop; the other ranks follow in `distributed.worker_loop`."""

    model: torch.nn.Module  # the HF causal LM (unwrapped), rank-local
    world_size: int
    rank: int
    step: int  # optimizer steps taken (restored by load_state)

    def train_step(
        self, micro_batches: Sequence[TrainBatch], loss_fn: LossFn, normalizer: float
    ) -> dict[str, float]:
        """One optimizer step over all micro-batches (summed gradients). Returns grad_norm (global L2,
        before clipping), learning_rate (the one this step used), optimizer_seconds (clip + step), and the
        loss function's metrics combined by `MetricAverager` (loss shares summed, the rest averaged
        weighted by loss tokens)."""
        ...

    def forward_logprobs(self, batch: TrainBatch, temperature: float, compute: ComputeFn) -> torch.Tensor:
        """[N, L] log-probs from `compute(model, batch)` without gradient (old/reference log-probs).
        `compute` applies the temperature itself; `temperature` is passed for engines that log it."""
        ...

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF parameter name, full tensor) for every parameter, on rank 0; for weight sync and export."""
        ...

    def save_state(self, directory: Path) -> None:
        """Write model, optimizer, scheduler, RNG states (torch, numpy, python) and the step counter."""
        ...

    def load_state(self, directory: Path) -> None:
        """Restore what save_state wrote, so the next step equals the one a run without a stop takes."""
        ...

    def close(self) -> None:
        """Release the engine (on rank 0 of several: tell the other ranks to stop)."""
        ...


def make_engine(
    kind: str,
    model: torch.nn.Module,
    optim: OptimConfig,
    *,
    zero_stage: int = 2,
    dtype: torch.dtype | None = None,
    deepspeed_config: Mapping[str, Any] | None = None,
) -> TrainingEngine:
    """Build the training engine named `kind` ("torch" or "deepspeed") around `model`.

    dtype: the dtype of the model's weights (None: keep the model's own). Both engines keep fp32 master
    weights and fp32 optimizer state when it is bfloat16 (mixed precision: an update far below bf16's
    resolution, as lr 1e-6 gives, still accumulates). float16 only with "deepspeed" (loss scaling).
    zero_stage (1, 2 or 3) and
    deepspeed_config (merged over the generated DeepSpeed config) apply to "deepspeed" only, which must
    be called on every rank of an initialised (or launcher-prepared) process group.
    """
    if kind == "torch":
        from grpo_server.training.torch_engine import TorchEngine

        return TorchEngine(model, optim, dtype=dtype)
    if kind == "deepspeed":
        from grpo_server.training.deepspeed_engine import DeepSpeedEngine

        return DeepSpeedEngine(
            model, optim, zero_stage=zero_stage, dtype=dtype, extra_config=deepspeed_config
        )
    raise ValueError(f"unknown training engine {kind!r}: use one of {', '.join(ENGINE_KINDS)}")


# ------------------------------------------------------------------ pieces both engines share


def param_groups(
    params: torch.nn.Module | Iterable[torch.Tensor], weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW parameter groups: decay on tensors of 2+ dimensions (matrices, embeddings), none on norms
    and biases (the convention of HF Trainer, TRL and nanoGPT). Frozen parameters are left out."""
    tensors = list(params.parameters() if isinstance(params, torch.nn.Module) else params)
    decay = [p for p in tensors if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in tensors if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(params: torch.nn.Module | Iterable[torch.Tensor], optim: OptimConfig) -> torch.optim.AdamW:
    """torch AdamW over `param_groups(params)`. The single-tensor (for-loop) implementation on CPU: foreach
    and fused kernels buy nothing there and the same arithmetic runs under DeepSpeed's flat partitions."""
    groups = param_groups(params, optim.weight_decay)
    on_cpu = all(p.device.type == "cpu" for g in groups for p in g["params"])
    return torch.optim.AdamW(
        groups,
        lr=optim.learning_rate,
        betas=optim.betas,
        eps=optim.eps,
        foreach=False if on_cpu else None,
        fused=False if on_cpu else None,
    )


def configured_hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's hyperparameters as the config made them (call right after building the
    optimizer and its schedule): for `keep_configured` after a checkpoint is loaded."""
    return [{"initial_lr": g["initial_lr"], "weight_decay": g["weight_decay"], "betas": g["betas"], "eps": g["eps"]}
            for g in optimizer.param_groups]


def keep_configured(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                    configured: Sequence[Mapping[str, Any]]) -> None:
    """After a checkpoint's optimizer and scheduler state were loaded: the config's hyperparameters in
    force again (a restart may change learning_rate, weight_decay, adam_betas, or the schedule's length),
    and the learning rate its schedule gives at the restored step. Loading put back the checkpoint's own
    values in every group and the old base rate in the schedule: the new settings were silently ignored,
    and an extended schedule ran its next step at the old rate."""
    groups = optimizer.param_groups
    if len(groups) != len(configured):
        raise ValueError(f"the checkpoint's optimizer has {len(groups)} parameter groups, this one {len(configured)}")
    for group, conf in zip(groups, configured, strict=True):
        group.update(conf)
    scheduler.base_lrs = [conf["initial_lr"] for conf in configured]
    for group, base, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]  # what get_last_lr() reports


def make_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule as a LambdaLR (transformers' schedule functions: warm-up, then constant,
    linear to 0 or cosine to 0 at total_steps). Stepped once per optimizer step."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if optim.lr_schedule == "constant" else optim.lr_schedule
    total = optim.total_steps if optim.lr_schedule != "constant" else None
    return get_scheduler(name, optimizer, num_warmup_steps=optim.warmup_steps, num_training_steps=total)


def to_device(batch: TrainBatch, device: torch.device | str) -> TrainBatch:
    """The batch with every tensor on `device` (no copy when already there)."""
    moved = {
        name: (value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value)
        for name, value in vars(batch).items()
    }
    return TrainBatch(**moved)


def loss_tokens(batch: TrainBatch) -> float:
    """How many tokens of `batch` count in the loss (the weight of its metrics)."""
    return float(batch.completion_mask.sum())


def all_masked_like(batch: TrainBatch) -> TrainBatch:
    """A copy of `batch` that carries no gradient and no loss token (completion mask and advantages
    zero), as a micro-batch whose completions all failed looks."""
    return replace(
        batch,
        completion_mask=torch.zeros_like(batch.completion_mask),
        advantages=torch.zeros_like(batch.advantages),
    )


def rank_share(
    micro_batches: Sequence[TrainBatch], rank: int, world_size: int
) -> list[tuple[TrainBatch, bool]]:
    """The passes rank `rank` runs: micro_batches[rank::world_size], padded up to ceil(len / world_size)
    so every rank makes the same number of passes. Each entry is (batch, counts); a pass that does not
    count has its loss multiplied by 0.

    Under ZeRO-3 the ranks gather parameters and reduce gradients in lockstep, so every pass must walk
    the same modules in the same order. A filler pass therefore reruns a micro-batch that has loss
    tokens (weight 0) rather than an empty one: a loss function may skip work, and return a constant,
    for a batch without loss tokens. For the same reason a micro-batch without loss tokens (its
    completions all masked; it adds nothing) is replaced by that stand-in, unless no micro-batch of the
    step has any loss token, in which case every pass is alike anyway.
    """
    if not micro_batches:
        raise ValueError("train_step needs at least one micro-batch")
    passes = -(-len(micro_batches) // world_size)
    with_tokens = [mb for mb in micro_batches if loss_tokens(mb) > 0]
    stand_in = with_tokens[-1] if with_tokens else micro_batches[-1]
    mine: list[tuple[TrainBatch, bool]] = [
        (mb, True) if loss_tokens(mb) > 0 or not with_tokens else (stand_in, False)
        for mb in micro_batches[rank::world_size]
    ]
    mine += [(stand_in, False)] * (passes - len(mine))
    return mine


# Metrics other than losses that a micro-batch reports as its share of the step's value (divided by the
# step's normalizer, as the loss is): a mean over tokens that only some micro-batches hold (SDPO's
# distilled ones) would be weighted by every loss token otherwise.
STEP_SHARES = frozenset({"sdpo/teacher_logp_gap"})


def is_loss_share(key: str) -> bool:
    """True for a metric that is a micro-batch's share of the step's value (`loss`, `*_loss`, STEP_SHARES):
    like the loss itself it is already divided by the global normalizer, so the step's value is the sum."""
    return key == "loss" or key.endswith("_loss") or key in STEP_SHARES


# A micro-batch's metrics may carry, under WEIGHT_OF + NAME, the weight of metric NAME when it is a mean
# over something other than the loss tokens (a fraction of sequences: tis/clipped_fraction at sequence
# level); MetricAverager takes it as that metric's weight and reports no such key.
WEIGHT_OF = "weight_of:"


class MetricAverager:
    """Combines the loss metrics of micro-batches (and ranks) into the step's.

    Loss shares (`is_loss_share`: `loss`, `policy_loss`, ...) are summed, which gives the full batch's
    loss. Every other metric (clip fractions, KL, entropy: means over a micro-batch's tokens) is averaged
    weighted by the micro-batches' loss tokens, or by the weight given with it (WEIGHT_OF), so that the
    step's value is the full batch's however it is split; one that only fully-masked micro-batches
    reported falls back to their plain mean."""

    def __init__(self) -> None:
        self.weighted: dict[str, float] = {}
        self.weights: dict[str, float] = {}
        self.plain: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: Mapping[str, float], weight: float) -> None:
        """Record one micro-batch's metrics with `weight` (its loss-token count; a metric given its own
        weight under WEIGHT_OF + its name takes that one)."""
        for key, value in metrics.items():
            if key.startswith(WEIGHT_OF):
                continue
            v = float(value)
            w = float(metrics.get(WEIGHT_OF + key, weight))
            self.weighted[key] = self.weighted.get(key, 0.0) + w * v
            self.weights[key] = self.weights.get(key, 0.0) + w
            self.plain[key] = self.plain.get(key, 0.0) + v
            self.counts[key] = self.counts.get(key, 0) + 1

    def merge(self, other: MetricAverager) -> None:
        """Fold in another averager's sums (from another rank)."""
        for name in ("weighted", "weights", "plain", "counts"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value

    def result(self) -> dict[str, float]:
        """The averaged metrics."""
        out = {}
        for key, count in self.counts.items():
            w = self.weights[key]
            if is_loss_share(key):
                out[key] = self.plain[key]
            else:
                out[key] = self.weighted[key] / w if w > 0 else self.plain[key] / count
        return out


def check_finite_loss(loss: torch.Tensor, index: int) -> None:
    """Fail loudly on a NaN/inf loss instead of stepping the optimizer with poisoned gradients."""
    if not bool(torch.isfinite(loss.detach()).all()):
        raise FloatingPointError(f"loss of micro-batch {index} is not finite ({float(loss.detach())})")


def rng_state() -> dict[str, Any]:
    """This process's random-number-generator states (python, numpy, torch CPU and CUDA) as plain
    Python values and tensors, so that `torch.load(weights_only=True)` reads them back."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    import random

    import numpy as np

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
