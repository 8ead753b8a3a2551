"""Rank 0 drives, the other ranks follow: the command channel of a several-rank training engine.

Only rank 0 runs the service (gRPC API, store, rollouts, step loop). Every other rank builds the same
engine and then sits in `worker_loop(engine)`, which receives one command at a time from rank 0 and runs
its own share of it (its micro-batches, its part of a ZeRO-3 gather, its checkpoint shard):

    rank 0:   engine.train_step(...)  ─► send(Command("train_step", args)) ─► its own share ─► result
    rank r>0: worker_loop(engine)     ─► receive() ─► engine.follow(command) ─► its own share ─► ...

Commands travel with torch.distributed.broadcast_object_list over a gloo group (CPU, so it works beside
NCCL too). Arguments are pickled: loss functions must be module-level functions or functools.partial of
them. Any exception on a worker ends that worker's process: the launcher (deepspeed or torchrun) then
stops every rank rather than leaving rank 0 waiting in a collective forever.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch.distributed as dist

log = logging.getLogger(__name__)

STOP = "stop"
# Rank 0's word at the load gate (open_load_gate): its model and settings loaded, build the engine.
GO = "go"


@dataclass(frozen=True)
class Command:
    """One instruction from rank 0: `name` is the engine operation, `args` its pickled arguments."""

    name: str
    args: tuple[Any, ...] = ()


class Follower(Protocol):
    """An engine the workers can drive: runs its share of the named operation."""

    rank: int

    def follow(self, command: Command) -> None:
        """Run this rank's share of `command` (never called with STOP)."""
        ...


class CommandChannel:
    """Broadcasts commands from rank 0 and gathers small Python objects back to it, over gloo.

    Must be created on every rank at the same point (creating a group is collective)."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise RuntimeError("the command channel needs an initialised torch.distributed process group")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        # Objects (commands, metrics, log-prob rows) are CPU data: with NCCL as the main backend they
        # would need a CUDA round trip, so they go over a gloo group of their own.
        self.group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def send(self, command: Command) -> None:
        """Rank 0: deliver `command` to every other rank."""
        assert self.rank == 0, "only rank 0 sends commands"
        dist.broadcast_object_list([command], src=0, group=self.group)

    def receive(self) -> Command:
        """Ranks > 0: wait for the next command from rank 0."""
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        command = box[0]
        if not isinstance(command, Command):
            raise TypeError(f"expected a Command from rank 0, got {type(command).__name__}")
        return command

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank contributes `obj`; rank 0 gets them in rank order, the others None."""
        out: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def any_true(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank (a collective agreement, e.g. on a bad loss)."""
        flags: list[Any] = [None] * self.world_size
        dist.all_gather_object(flags, bool(flag), group=self.group)
        return any(flags)


def worker_loop(engine: Any) -> None:
    """Ranks > 0: follow rank 0's commands until it sends STOP (rank 0's `engine.close()`).

    The service's entry point calls this right after building the engine on a rank other than 0:
    `if engine.rank != 0: worker_loop(engine); return`.
    """
    channel: CommandChannel = engine.channel
    if channel.rank == 0:
        raise RuntimeError("worker_loop runs on ranks > 0; rank 0 drives the engine directly")
    log.info("rank %d: following rank 0", channel.rank)
    while True:
        command = channel.receive()
        if command.name == STOP:
            log.info("rank %d: stop", channel.rank)
            return
        try:
            engine.follow(command)
        except Exception:
            log.exception("rank %d: command %r failed; this rank exits", channel.rank, command.name)
            raise


def init_process_group() -> None:
    """Join the launch's process group (DeepSpeed's way: gloo on CPU, the accelerator's backend else);
    nothing when already joined."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    deepspeed.init_distributed(dist_backend="gloo" if get_accelerator().device_name() == "cpu" else None)


def open_load_gate() -> CommandChannel | None:
    """Several ranks (WORLD_SIZE > 1): join the process group before the engine is built and return a
    channel on which rank 0 says whether its load went well, GO (build the engine) or STOP (it failed:
    the other ranks leave, and rank 0 keeps serving its FAILED run). Without it the other ranks waited in
    the engine's set-up for a rank 0 that never came, timed out (10 minutes) and took rank 0 down with
    them, blamed for the failure. None with one rank. Every rank calls it, rank 0 first thing in its
    load, the others once their model is built."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    init_process_group()
    return CommandChannel()


def leave_after_failed_load(gate: CommandChannel) -> None:
    """Both sides of a STOP at the load gate: tear the process group down without waiting for the other
    ranks (rank 0 stays up for hours serving its FAILED run; a barrier would time out)."""
    if gate.rank == 0:
        gate.send(Command(STOP))
    dist.destroy_process_group()


def finish() -> None:
    """Every rank, as its last step: wait for the others, then tear the process group down.

    A rank that leaves its interpreter with the group still up can abort in the C++ destructors of the
    communication threads ("terminate called without an active exception", SIGABRT), and the launcher
    then kills the ranks still finishing their work. Ranks > 0 leave worker_loop before rank 0 is done
    (rank 0 still writes its last files), so both sides meet here first. Does nothing without a group
    of several ranks (a one-rank group stays up for whatever else the process does).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    dist.barrier()
    dist.destroy_process_group()
