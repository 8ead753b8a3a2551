"""The DeepSpeed training engine: ZeRO stage 1, 2 or 3 over several data-parallel ranks.

Rank 0 drives (see grpo_server.training.distributed): each TrainingEngine method on rank 0 first sends a
command to the other ranks, then runs rank 0's own share. Ranks > 0 run `worker_loop(engine)`.

Equal to the torch engine on the same batch: the micro-batches are dealt round-robin to the ranks
(rank r takes micro_batches[r::world], padded with all-masked passes so every rank makes the same
number of passes), each loss is already divided by the global normalizer, and DeepSpeed's gradient
averaging over ranks is undone by scaling each loss by world_size before backward. Gradient accumulation
is unmanaged (`managed_gradient_accumulation: false`): backward only accumulates, step() reduces, clips
(`gradient_clipping`), runs AdamW and the schedule, whatever the number of passes.

On CPU (this machine, tests): DeepSpeed's CPU accelerator and the gloo backend; launch with
`deepspeed --num_gpus 2 script.py ...` or `torchrun --nproc_per_node 2 script.py ...`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from grpo_server.training.distributed import STOP, Command, CommandChannel, init_process_group
from grpo_server.training.engine import (
    ComputeFn,
    LossFn,
    MetricAverager,
    OptimConfig,
    configured_hyperparameters,
    keep_configured,
    loss_tokens,
    make_optimizer,
    make_scheduler,
    rank_share,
    rng_state,
    set_rng_state,
    to_device,
)
from grpo_server.types import TrainBatch

CHECKPOINT_TAG = "engine"


class _LossModule(torch.nn.Module):
    """What DeepSpeed wraps: runs a loss or log-prob function on the HF model inside one forward, so
    ZeRO-3 gathers every parameter the function touches (the LM head is used outside its own
    forward by the chunked log-prob code) and partitions them again afterwards."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Any, batch: TrainBatch, *args: Any) -> Any:
        out = fn(self.model, batch, *args)
        if self.training and torch.is_grad_enabled() and isinstance(out, tuple):
            loss, metrics = out
            if not loss.requires_grad:
                # No micro-batch of the step has a loss token (rank_share makes every pass alike then):
                # every rank still has to run the same gradient hooks, because ranks reduce gradients
                # in lockstep. Tie the loss to the whole model with weight 0.
                probe = self.model(input_ids=batch.input_ids[:1, :1]).logits
                out = (loss + 0.0 * probe.sum(), metrics)
        return out


def deepspeed_config(
    optim: OptimConfig, zero_stage: int, dtype: torch.dtype, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The DeepSpeed config for `optim`: ZeRO `zero_stage`, fp32 or bf16/fp16 mixed precision (fp32
    master weights), clipping, unmanaged gradient
    accumulation (the engine decides the number of passes per step). `extra` is merged on top (one
    level deep for dict values, e.g. {"zero_optimization": {"stage3_param_persistence_threshold": 0}})."""
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": optim.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": optim.max_grad_norm if optim.max_grad_norm > 0 else 0.0,
        "zero_optimization": {"stage": zero_stage, "overlap_comm": False},
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},  # with DeepSpeed's dynamic loss scaling
        "zero_allow_untested_optimizer": True,  # torch's AdamW: the same arithmetic as the torch engine
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


class DeepSpeedEngine:
    """A TrainingEngine over every rank of the process group. Build it on every rank with the same
    model weights; call its methods on rank 0 only, and `worker_loop(engine)` on the others."""

    def __init__(
        self,
        model: torch.nn.Module,
        optim: OptimConfig,
        *,
        zero_stage: int = 2,
        dtype: torch.dtype | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        import deepspeed

        if zero_stage not in (1, 2, 3):
            raise ValueError(f"zero_stage must be 1, 2 or 3, got {zero_stage}")
        if dtype is None:
            dtype = next(model.parameters()).dtype
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
        init_process_group()
        self.channel = CommandChannel()
        self.rank = self.channel.rank
        self.world_size = self.channel.world_size
        self.zero_stage = zero_stage
        self.optim = optim
        self.model = model
        self.model.train()
        wrapper = _LossModule(model)
        optimizer = make_optimizer(model, optim)
        scheduler = make_scheduler(optimizer, optim)
        self._configured = configured_hyperparameters(optimizer)  # a resumed run keeps these
        self.config = deepspeed_config(optim, zero_stage, dtype, extra_config)
        self.ds, _, _, _ = deepspeed.initialize(
            model=wrapper, optimizer=optimizer, lr_scheduler=scheduler, config=self.config
        )
        if zero_stage == 3:
            head = model.get_output_embeddings()  # type: ignore[operator]
            if head is not None:
                deepspeed.zero.register_external_parameter(wrapper, head.weight)
        self.step = 0
        self._closed = False

    # ------------------------------------------------------------------------------ rank 0: API

    def train_step(
        self, micro_batches: Sequence[TrainBatch], loss_fn: LossFn, normalizer: float
    ) -> dict[str, float]:
        """One optimizer step over all micro-batches on all ranks (summed gradients, as the torch
        engine). Returns grad_norm (before clipping), learning_rate, optimizer_seconds and the loss
        metrics of every rank's micro-batches combined by engine.MetricAverager."""
        self._send("train_step", list(micro_batches), loss_fn, float(normalizer))
        result = self._train_share(list(micro_batches), loss_fn, float(normalizer))
        assert result is not None
        return result

    def forward_logprobs(self, batch: TrainBatch, temperature: float, compute: ComputeFn) -> torch.Tensor:
        """[N, L] = compute(model, batch) without gradient. ZeRO 1/2: rank 0 alone (it holds all the
        weights). ZeRO-3: every rank computes a slice of the rows (the weights are gathered
        collectively) and rank 0 concatenates them."""
        if self.zero_stage < 3:
            with torch.no_grad():
                return compute(self.model, to_device(batch, self.ds.device)).detach().cpu()
        self._send("forward_logprobs", batch, compute)
        out = self._forward_share(batch, compute)
        assert out is not None
        return out

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, full tensor) per parameter on rank 0. ZeRO 1/2: views of rank 0's replica (copy
        them if they must outlive the next step). ZeRO-3: gathered one parameter at a time from all
        ranks and copied to CPU; stopping the iteration early still completes the gathers the other
        ranks are waiting in."""
        if self.zero_stage < 3:
            for name, param in self.model.named_parameters():
                yield name, param.detach()
            return
        self._send("named_weights")
        yield from self._gather_share()

    def save_state(self, directory: Path) -> None:
        """Every rank writes its shard of model and optimizer state (DeepSpeed checkpoint, tag
        "engine", scheduler included) plus its RNG states to `directory` (a path all ranks see)."""
        self._send("save_state", str(directory))
        self._save_share(str(directory))

    def load_state(self, directory: Path) -> None:
        """Every rank restores its shard, the scheduler, its RNG states and the step counter."""
        self._send("load_state", str(directory))
        self._load_share(str(directory))

    def close(self) -> None:
        """Rank 0: release the other ranks from worker_loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.rank == 0 and self.world_size > 1:
            self.channel.send(Command(STOP))

    # ------------------------------------------------------------------------------ ranks > 0

    def follow(self, command: Command) -> None:
        """Run this rank's share of a command from rank 0 (called by worker_loop)."""
        handlers: dict[str, Callable[..., Any]] = {
            "train_step": self._train_share,
            "forward_logprobs": self._forward_share,
            "named_weights": lambda: list(self._gather_share()),
            "save_state": self._save_share,
            "load_state": self._load_share,
        }
        if command.name not in handlers:
            raise ValueError(f"unknown engine command {command.name!r}")
        handlers[command.name](*command.args)

    # ------------------------------------------------------------------------------ every rank

    def _send(self, name: str, *args: Any) -> None:
        if self.rank != 0:
            raise RuntimeError("only rank 0 calls the engine's methods; other ranks run worker_loop(engine)")
        if self._closed:
            raise RuntimeError("the engine is closed")
        if self.world_size > 1:
            self.channel.send(Command(name, args))

    def _train_share(
        self, micro_batches: list[TrainBatch], loss_fn: LossFn, normalizer: float
    ) -> dict[str, float] | None:
        self.ds.train()
        averager = MetricAverager()
        for i, (mb, real) in enumerate(rank_share(micro_batches, self.rank, self.world_size)):
            # Agree across ranks before any backward: a rank that raised alone (an out-of-memory in its
            # forward, most likely on rank 0, which also holds the rollout engine and the reference model)
            # would leave the others waiting in a collective, and the engine's close() never returned.
            failure: Exception | None = None
            try:
                loss, metrics = self.ds(loss_fn, to_device(mb, self.ds.device), normalizer)
                bad = not bool(torch.isfinite(loss.detach()).all())
            except Exception as exc:  # noqa: BLE001 - raised again below, on every rank together
                failure, bad = exc, True
            if self.channel.any_true(bad):
                if failure is not None:
                    raise failure
                raise FloatingPointError(
                    f"pass {i} failed on some rank (a loss that is not finite, or an error in its forward); the "
                    "engine's accumulated gradients are invalid now: restart from the last checkpoint"
                )
            if not real:
                loss = loss * 0.0  # a filler pass: the same modules and collectives, no gradient
            # DeepSpeed averages gradients over ranks; the loss contract wants their sum.
            self.ds.backward(loss * self.world_size, scale_wrt_gas=False)
            if real:
                averager.add(metrics, loss_tokens(mb))
        lr = float(self.ds.get_lr()[0])
        started = time.monotonic()
        self.ds.step()
        optimizer_seconds = time.monotonic() - started
        norm = self.ds.get_global_grad_norm()
        self.step += 1
        gathered = self.channel.gather(averager) if self.world_size > 1 else [averager]
        if gathered is None:
            return None
        total = MetricAverager()
        for part in gathered:
            total.merge(part)
        return {
            **total.result(),
            "grad_norm": float(norm) if norm is not None else float("nan"),
            "learning_rate": lr,
            "optimizer_seconds": optimizer_seconds,
        }

    def _forward_share(self, batch: TrainBatch, compute: ComputeFn) -> torch.Tensor | None:
        rows = torch.arange(batch.num_sequences).tensor_split(self.world_size)[self.rank]
        # Every rank must run a forward (the gathers are collective): one with no rows of its own
        # runs row 0 and drops the result.
        mine = rows if len(rows) else torch.tensor([0])
        part = _select_rows(batch, mine)
        with torch.no_grad():
            out = self.ds(_detached(compute), to_device(part, self.ds.device)).cpu()
        gathered = self.channel.gather(out if len(rows) else out[:0])
        if gathered is None:
            return None
        return torch.cat(gathered, dim=0)

    def _gather_share(self) -> Iterator[tuple[str, torch.Tensor]]:
        import deepspeed

        params = list(self.model.named_parameters())
        consumer_gone = False
        for name, param in params:
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                full = param.detach().to("cpu", copy=True) if self.rank == 0 else None
            if self.rank == 0 and not consumer_gone:
                try:
                    assert full is not None
                    yield name, full
                except GeneratorExit:
                    # The caller stopped early; the other ranks still wait in the remaining gathers.
                    consumer_gone = True
        if consumer_gone:
            return

    def _save_share(self, directory: str) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.ds.save_checkpoint(str(path), tag=CHECKPOINT_TAG, client_state={"step": self.step})
        torch.save(rng_state(), path / f"rng_rank{self.rank}.pt")
        torch.distributed.barrier(group=self.channel.group)

    def _load_share(self, directory: str) -> None:
        path = Path(directory)
        loaded, client_state = self.ds.load_checkpoint(
            str(path), tag=CHECKPOINT_TAG, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if loaded is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint with tag {CHECKPOINT_TAG!r} in {path}")
        keep_configured(self.ds.optimizer, self.ds.lr_scheduler, self._configured)
        self.step = int((client_state or {}).get("step", 0))
        set_rng_state(torch.load(path / f"rng_rank{self.rank}.pt", map_location="cpu", weights_only=True))


def _select_rows(batch: TrainBatch, rows: torch.Tensor) -> TrainBatch:
    """The batch restricted to `rows` (index tensor)."""
    return TrainBatch(
        **{
            name: (value.index_select(0, rows) if isinstance(value, torch.Tensor) else value)
            for name, value in vars(batch).items()
        }
    )


def _detached(compute: ComputeFn) -> Any:
    """compute(model, batch) with the result detached (what _LossModule runs for log-probs)."""
    return functools.partial(_run_detached, compute)


def _run_detached(compute: ComputeFn, model: torch.nn.Module, batch: TrainBatch) -> torch.Tensor:
    return compute(model, batch).detach()
