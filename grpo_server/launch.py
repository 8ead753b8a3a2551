"""`python -m grpo_server.launch`: start the trainer's ranks on one node of a several-node group.

    python -m grpo_server.launch [--nproc-per-node N] [--rendezvous-port PORT] [-- GRPO-SERVER ARGS...]

Every node of a group (a LeaderWorkerSet group on Kubernetes: one leader pod, `size - 1` worker pods)
runs this same command. It reads the group from the environment LeaderWorkerSet injects into every pod:

    LWS_LEADER_ADDRESS   the leader pod's address (the rendezvous host)
    LWS_GROUP_SIZE       pods in the group (= nodes)
    LWS_WORKER_INDEX     this pod's index; 0 is the leader

and runs torchrun (`torch.distributed.run`, static rendezvous on the leader) with `--nproc-per-node`
ranks on this node, each running `grpo-server ARGS` (`python -m grpo_server.cli`). Global rank 0 is
local rank 0 on the leader: it serves the API; every other rank follows it (see
`grpo_server/training/distributed.py`).

Signals. Kubernetes sends SIGTERM only to a container's first process, this launcher; torchrun,
signalled itself, would forward the signal and then SIGKILL the ranks after its own short shutdown
timeout (30 s), cutting the drain, and exit non-zero. So torchrun runs in its own session and never sees
the signal:
- on the leader, SIGTERM/SIGINT/SIGHUP go to global rank 0 only (a second one makes it exit at once,
  as grpo-server does): it drains (finishes its step, writes the last
  checkpoint with every rank), then stops every rank; the ranks exit 0, torchrun too, and so does this;
- on a worker, they are ignored: the worker's ranks must stay for rank 0's last collective checkpoint
  and exit when rank 0 stops them.
The launcher's exit status is torchrun's.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

log = logging.getLogger("grpo_server.launch")

DEFAULT_RENDEZVOUS_PORT = 29500


class LaunchError(ValueError):
    """The environment or the flags do not describe a group this launcher can start."""


@dataclass(frozen=True)
class NodeGroup:
    """This node's place in the group: `node_rank` of `nnodes`, rendezvous at `leader_address`."""

    leader_address: str
    nnodes: int
    node_rank: int

    @property
    def is_leader(self) -> bool:
        """Node 0 hosts the rendezvous and global rank 0 (the API)."""
        return self.node_rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NodeGroup:
        """Read LWS_LEADER_ADDRESS, LWS_GROUP_SIZE and LWS_WORKER_INDEX; raise LaunchError naming every
        missing or invalid variable."""
        errors: list[str] = []
        address = env.get("LWS_LEADER_ADDRESS", "").strip()
        if not address:
            errors.append("LWS_LEADER_ADDRESS is not set (the leader pod's address)")

        def integer(name: str, minimum: int) -> int:
            raw = env.get(name, "").strip()
            try:
                value = int(raw)
            except ValueError:
                errors.append(f"{name}={raw!r}: expected an integer >= {minimum}")
                return minimum
            if value < minimum:
                errors.append(f"{name}={value}: must be >= {minimum}")
            return value

        nnodes = integer("LWS_GROUP_SIZE", 1)
        node_rank = integer("LWS_WORKER_INDEX", 0)
        if not errors and node_rank >= nnodes:
            errors.append(f"LWS_WORKER_INDEX={node_rank}: must be below LWS_GROUP_SIZE={nnodes}")
        if errors:
            raise LaunchError("; ".join(errors))
        return cls(address, nnodes, node_rank)


def torchrun_argv(group: NodeGroup, nproc_per_node: int, rendezvous_port: int,
                  server_args: Sequence[str], python: str = sys.executable) -> list[str]:
    """The torchrun command line for this node: `nproc_per_node` ranks, each `grpo-server server_args`.

    Static rendezvous: the leader's torchrun hosts the store on `leader_address:rendezvous_port`; global
    ranks are `node_rank * nproc_per_node + local_rank`, so rank 0 is on the leader.
    """
    if nproc_per_node < 1:
        raise LaunchError(f"--nproc-per-node={nproc_per_node}: must be >= 1")
    if not 0 < rendezvous_port < 65536:
        raise LaunchError(f"--rendezvous-port={rendezvous_port}: must be a TCP port (1-65535)")
    return [
        python, "-m", "torch.distributed.run",
        "--nnodes", str(group.nnodes), "--node_rank", str(group.node_rank),
        "--master_addr", group.leader_address, "--master_port", str(rendezvous_port),
        "--nproc_per_node", str(nproc_per_node),
        "-m", "grpo_server.cli", *server_args,
    ]  # fmt: skip


def default_nproc_per_node() -> int:
    """One rank per visible CUDA device, or 1 without any (CPU)."""
    try:
        import torch

        return max(torch.cuda.device_count(), 1)
    except Exception:  # noqa: BLE001 - no usable torch/CUDA means one CPU rank
        return 1


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def find_rank0(torchrun_pid: int) -> int | None:
    """The pid of global rank 0 among torchrun's children (its environment has RANK=0), or None while
    torchrun has not started it."""
    for pid in _children(torchrun_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"RANK=0" in environ:
            return pid
    return None


def build_parser() -> argparse.ArgumentParser:
    """Flags of `python -m grpo_server.launch` (the group itself comes from the LWS_* environment)."""
    p = argparse.ArgumentParser(
        prog="python -m grpo_server.launch",
        description="Start this node's trainer ranks (torchrun) in a LeaderWorkerSet group; "
                    "arguments after -- go to every grpo-server rank.",
    )
    p.add_argument("--nproc-per-node", type=int, default=None,
                   help="ranks on this node (default: visible CUDA devices, or 1)")
    p.add_argument("--rendezvous-port", type=int, default=DEFAULT_RENDEZVOUS_PORT,
                   help=f"TCP port of the rendezvous store on the leader (default {DEFAULT_RENDEZVOUS_PORT})")
    p.add_argument("server_args", nargs=argparse.REMAINDER, help="-- then grpo-server's arguments")
    return p


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run torchrun for this node until it ends; returns its exit status (2 for a bad environment)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args = build_parser().parse_args(argv)
    server_args = list(args.server_args)
    if server_args[:1] == ["--"]:
        server_args = server_args[1:]
    try:
        group = NodeGroup.from_env(os.environ if env is None else env)
        nproc = args.nproc_per_node if args.nproc_per_node is not None else default_nproc_per_node()
        cmd = torchrun_argv(group, nproc, args.rendezvous_port, server_args)
    except LaunchError as err:
        print(f"grpo_server.launch: {err}", file=sys.stderr)
        return 2
    log.info("node %d of %d (%s), %d rank(s): %s", group.node_rank, group.nnodes,
             "leader" if group.is_leader else "worker", nproc, " ".join(cmd))
    started: list[subprocess.Popen[bytes]] = []
    stop_requested = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        name = signal.Signals(signum).name
        if not group.is_leader:
            log.info("%s on a worker node: ignored; rank 0 on the leader ends the group", name)
            return
        stop_requested = True
        if not started:
            return  # torchrun is about to start; it is stopped right after
        rank0 = find_rank0(started[0].pid)
        if rank0 is None:  # no rank yet, so nothing to drain: stop the whole node
            log.info("%s before rank 0 started: stopping torchrun", name)
            started[0].send_signal(signal.SIGTERM)
            return
        log.info("%s: asking rank 0 (pid %d) to drain", name, rank0)
        os.kill(rank0, signal.SIGTERM)

    # Handlers first: a signal between the start and the handlers would kill only this process.
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP's default would kill only this process
        signal.signal(s, on_signal)
    # Its own session: a terminal's Ctrl-C or a signal to this process group must not reach torchrun. And
    # SIGTERM when this process dies (kill -9 of the launcher left torchrun and the ranks running, holding
    # the store, outside a pod where the launcher is PID 1).
    torchrun = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_terminate_with_parent)
    started.append(torchrun)
    if stop_requested:
        torchrun.send_signal(signal.SIGTERM)
    code = torchrun.wait()
    log.info("torchrun exited with %d", code)
    return code if code >= 0 else 128 - code


def _terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM to it when the launcher dies (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


if __name__ == "__main__":
    sys.exit(main())
