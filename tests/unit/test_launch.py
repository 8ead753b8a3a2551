"""`python -m grpo_server.launch`: the LeaderWorkerSet environment becomes a torchrun command that
torchrun itself parses into the intended group (checked with torch.distributed.run's own parser)."""

from __future__ import annotations

import os
import sys

import pytest
from torch.distributed import run as torchrun

from grpo_server.cli import build_parser as server_parser
from grpo_server.launch import LaunchError, NodeGroup, build_parser, main, torchrun_argv

LWS = {"LWS_LEADER_ADDRESS": "grpo-trainer-0.grpo-trainer.ns", "LWS_GROUP_SIZE": "3", "LWS_WORKER_INDEX": "2"}
SERVER_ARGS = ["--config", "/etc/grpo/config.yaml", "--store-dir", "/var/lib/grpo"]


def _torchrun_config(argv: list[str], monkeypatch: pytest.MonkeyPatch):
    """What torchrun would launch for `argv` ([python, -m, torch.distributed.run, ...])."""
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun sets it for several local ranks otherwise
    return torchrun.config_from_args(torchrun.parse_args(argv[3:]))


def test_a_worker_pod_joins_the_leaders_rendezvous_as_its_node_rank(monkeypatch) -> None:
    group = NodeGroup.from_env(LWS)
    assert (group.leader_address, group.nnodes, group.node_rank, group.is_leader) == (
        "grpo-trainer-0.grpo-trainer.ns", 3, 2, False)
    argv = torchrun_argv(group, 8, 29500, SERVER_ARGS, python="/usr/bin/python3")
    config, cmd, cmd_args = _torchrun_config(argv, monkeypatch)
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (3, 3, 8)
    assert config.rdzv_backend == "static"
    assert config.rdzv_endpoint == "grpo-trainer-0.grpo-trainer.ns:29500"
    assert config.rdzv_configs["rank"] == 2
    # Every rank runs grpo-server's own entry point with the same arguments.
    assert cmd == sys.executable and cmd_args[-len(SERVER_ARGS) - 2:] == ["-m", "grpo_server.cli", *SERVER_ARGS]
    assert server_parser().parse_args(SERVER_ARGS).store_dir.as_posix() == "/var/lib/grpo"


def test_the_leader_is_node_zero_and_hosts_rank_zero(monkeypatch) -> None:
    group = NodeGroup.from_env({**LWS, "LWS_WORKER_INDEX": "0"})
    assert group.is_leader
    config, _, _ = _torchrun_config(torchrun_argv(group, 2, 23456, SERVER_ARGS), monkeypatch)
    assert config.rdzv_configs["rank"] == 0 and config.rdzv_endpoint.endswith(":23456")


@pytest.mark.parametrize(("env", "message"), [
    ({}, "LWS_LEADER_ADDRESS is not set"),
    ({**LWS, "LWS_GROUP_SIZE": "two"}, "LWS_GROUP_SIZE='two'"),
    ({**LWS, "LWS_GROUP_SIZE": "0"}, "LWS_GROUP_SIZE=0: must be >= 1"),
    ({**LWS, "LWS_WORKER_INDEX": "3"}, "LWS_WORKER_INDEX=3: must be below LWS_GROUP_SIZE=3"),
    ({**LWS, "LWS_WORKER_INDEX": "-1"}, "LWS_WORKER_INDEX=-1: must be >= 0"),
])
def test_a_bad_group_environment_names_the_variable(env, message) -> None:
    with pytest.raises(LaunchError, match=message.replace("(", r"\(")):
        NodeGroup.from_env(env)


def test_bad_flags_are_refused() -> None:
    group = NodeGroup.from_env(LWS)
    with pytest.raises(LaunchError, match="--nproc-per-node=0"):
        torchrun_argv(group, 0, 29500, [])
    with pytest.raises(LaunchError, match="--rendezvous-port=70000"):
        torchrun_argv(group, 1, 70000, [])


def test_main_exits_2_without_a_group_and_starts_nothing(capsys) -> None:
    assert main(["--nproc-per-node", "1", "--", *SERVER_ARGS], env={}) == 2
    assert "LWS_LEADER_ADDRESS is not set" in capsys.readouterr().err


def test_arguments_after_the_separator_belong_to_grpo_server() -> None:
    args = build_parser().parse_args(["--nproc-per-node", "4", "--rendezvous-port", "1234", "--", *SERVER_ARGS])
    assert (args.nproc_per_node, args.rendezvous_port) == (4, 1234)
    assert args.server_args == ["--", *SERVER_ARGS]


def test_rank_zero_is_found_among_torchruns_children_by_its_environment() -> None:
    import subprocess
    import time

    from grpo_server.launch import find_rank0

    # A stand-in for torchrun: a process with two children, RANK=1 and RANK=0 (LOCAL_RANK=0 on both).
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'],\n"
        "        env={**os.environ, 'RANK': r, 'LOCAL_RANK': '0'}) for r in ('1', '0')]\n"
        "print(' '.join(str(k.pid) for k in kids), flush=True)\n"
        "time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    kids: list[int] = []
    try:
        assert parent.stdout is not None
        kids = [int(p) for p in parent.stdout.readline().split()]
        rank1, rank0 = kids
        deadline = time.monotonic() + 10
        while find_rank0(parent.pid) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert find_rank0(parent.pid) == rank0 != rank1
    finally:
        for pid in kids:
            os.kill(pid, 9)
        parent.kill()
        parent.wait()
