"""The plain torch training engine: one process, AdamW, gradient accumulation, clipping, an LR schedule.

The default on CPU and the reference the DeepSpeed engine is tested against. Deterministic: the same
weights, micro-batches and RNG state give bitwise the same step.

State on disk (save_state): model.safetensors (the weights, tied tensors stored once) and
trainer_state.pt (optimizer, scheduler, RNG states, step counter, fp32 masters of bf16 weights; loadable
with weights_only=True).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from grpo_server.malloc import trim
from grpo_server.training.engine import (
    ComputeFn,
    LossFn,
    MetricAverager,
    OptimConfig,
    check_finite_loss,
    configured_hyperparameters,
    keep_configured,
    loss_tokens,
    make_optimizer,
    make_scheduler,
    rng_state,
    set_rng_state,
    to_device,
)
from grpo_server.types import TrainBatch

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"


class TorchEngine:
    """A TrainingEngine in one process (world_size 1, rank 0).

    With fp32 weights the optimizer updates them directly. With bf16 weights it keeps fp32 master copies
    (and fp32 Adam state): gradients are computed in bf16, copied into the masters, clipped and applied
    there, and the masters are rounded back into the model after each step.
    """

    world_size = 1
    rank = 0

    def __init__(
        self, model: torch.nn.Module, optim: OptimConfig, *, dtype: torch.dtype | None = None
    ) -> None:
        if dtype is not None:
            model = model.to(dtype)
        dtypes = {p.dtype for p in model.parameters()}
        if not dtypes <= {torch.float32, torch.bfloat16}:
            raise ValueError(
                f"the torch engine trains float32 or bfloat16 weights, got {sorted(map(str, dtypes))}: "
                "float16 needs loss scaling (use bfloat16, or the deepspeed engine)"
            )
        self.model = model
        self.model.train()
        self.optim = optim
        trainable = [p for p in model.parameters() if p.requires_grad]
        # (model parameter, fp32 master) pairs; the master is the parameter itself when it is fp32.
        self._pairs = [
            (p, p if p.dtype == torch.float32 else p.detach().float().clone().requires_grad_(True))
            for p in trainable
        ]
        self._mixed = any(p is not m for p, m in self._pairs)
        self.optimizer = make_optimizer([m for _, m in self._pairs], optim)
        self.scheduler = make_scheduler(self.optimizer, optim)
        self._configured = configured_hyperparameters(self.optimizer)  # a resumed run keeps these
        self.step = 0
        # Gradients are released once the optimizer has used them, so they do not sit beside the weight
        # sync's copy of the weights (the step's peak otherwise). Tests set this to inspect them.
        self.keep_grads = False
        # True while the optimizer changes the weights and its state. An error raised while it is False
        # (in a forward or backward pass, or clipping) left the weights and the optimizer as they were,
        # so the step's training pass may be run again (StepRunner does, with smaller micro-batches,
        # when memory ran out).
        self.optimizer_stepping = False

    # ---------------------------------------------------------------------------------- training

    def train_step(
        self, micro_batches: Sequence[TrainBatch], loss_fn: LossFn, normalizer: float
    ) -> dict[str, float]:
        """One optimizer step: the gradients of all micro-batch losses summed (each loss is already
        divided by `normalizer`), clipped to max_grad_norm, then AdamW and the schedule.

        Returns grad_norm (before clipping), learning_rate (used by this step), optimizer_seconds, and
        the loss metrics combined over micro-batches (engine.MetricAverager: loss shares summed, the
        rest averaged weighted by loss tokens).
        """
        if not micro_batches:
            raise ValueError("train_step needs at least one micro-batch")
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        self.optimizer.zero_grad(set_to_none=True)
        averager = MetricAverager()
        device = self._device()
        for i, mb in enumerate(micro_batches):
            trim()  # hand the previous micro-batch's (or the rollout's) freed heap pages back first
            loss, metrics = loss_fn(self.model, to_device(mb, device), normalizer)
            check_finite_loss(loss, i)
            if loss.requires_grad:  # a micro-batch with no loss token may return a constant
                loss.backward()
            averager.add(metrics, loss_tokens(mb))
        started = time.monotonic()
        for p, m in self._pairs:
            if p is not m:
                m.grad = None if p.grad is None else p.grad.float()
            if m.grad is None:
                # No micro-batch had a loss token: step with a zero gradient (momentum and decay still
                # apply), as DeepSpeed does, rather than skipping these parameters.
                m.grad = torch.zeros_like(m)
        grad_norm = self._clip()
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer_stepping = True
        self.optimizer.step()
        self.scheduler.step()
        self._masters_to_model()
        self.optimizer_stepping = False
        if not self.keep_grads:
            self.model.zero_grad(set_to_none=True)
            self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {
            **averager.result(),
            "grad_norm": grad_norm,
            "learning_rate": lr,
            "optimizer_seconds": time.monotonic() - started,
        }

    def _clip(self) -> float:
        """Clip the global gradient norm (of the fp32 gradients); returns the norm before clipping."""
        max_norm = self.optim.max_grad_norm if self.optim.max_grad_norm > 0 else float("inf")
        with_grad = [m for _, m in self._pairs if m.grad is not None]
        if not with_grad:
            return 0.0
        return float(torch.nn.utils.clip_grad_norm_(with_grad, max_norm))

    def _masters_to_model(self) -> None:
        if self._mixed:
            with torch.no_grad():
                for p, m in self._pairs:
                    if p is not m:
                        p.copy_(m)

    def forward_logprobs(self, batch: TrainBatch, temperature: float, compute: ComputeFn) -> torch.Tensor:
        """[N, L] = compute(model, batch) without gradient, in the model's current (training) mode so that
        the result matches the log-probs the loss sees. `compute` applies `temperature`."""
        with torch.no_grad():
            return compute(self.model, to_device(batch, self._device())).detach()

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---------------------------------------------------------------------------------- weights

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, tensor) per parameter, tied parameters once. The tensors are detached views of the
        live weights: copy them before the next train_step if they must outlive it."""
        for name, param in self.model.named_parameters():
            yield name, param.detach()

    # ---------------------------------------------------------------------------------- state

    def save_state(self, directory: Path) -> None:
        """Write model.safetensors and trainer_state.pt into `directory` (created if missing). Each file
        is written under a temporary name and renamed, so a crash leaves the old file or the new one."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (MODEL_FILE + ".tmp")
        save_model(self.model, str(tmp))
        os.replace(tmp, directory / MODEL_FILE)
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            # The fp32 masters of bf16 weights: the bf16 model file alone would lose their low bits.
            "masters": [m.detach() for p, m in self._pairs if p is not m],
        }
        tmp = directory / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, directory / STATE_FILE)

    def load_state(self, directory: Path) -> None:
        """Restore the weights, optimizer, scheduler, RNG states and step counter from `directory`."""
        from safetensors.torch import load_model

        directory = Path(directory)
        missing, unexpected = load_model(self.model, str(directory / MODEL_FILE), strict=True)
        if missing or unexpected:  # pragma: no cover - strict=True raises first
            raise RuntimeError(f"weights do not match the model: missing {missing}, unexpected {unexpected}")
        state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
        masters = [m for p, m in self._pairs if p is not m]
        if len(state["masters"]) != len(masters):
            raise ValueError(
                f"{directory} holds {len(state['masters'])} fp32 master tensors, this engine has {len(masters)}: "
                "it was saved with a different weight dtype"
            )
        with torch.no_grad():
            for m, saved in zip(masters, state["masters"], strict=True):
                m.copy_(saved)
        self._masters_to_model()
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        keep_configured(self.optimizer, self.scheduler, self._configured)
        set_rng_state(state["rng"])
        self.step = int(state["step"])

    def close(self) -> None:
        """Nothing to release in one process."""
