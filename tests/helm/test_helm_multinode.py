"""The trainer over several nodes (trainer.multiNode): the LeaderWorkerSet the chart renders, checked
against what `python -m grpo_server.launch` reads and what torchrun then starts.

The LeaderWorkerSet controller is not here: its environment (LWS_LEADER_ADDRESS, LWS_GROUP_SIZE,
LWS_WORKER_INDEX) is written out below as the controller documents it, and fed to the launcher."""

from __future__ import annotations

import pytest
from helm_support import DEEPSPEED, NAMESPACE, TRAINER, container, mount, render, render_error, volume
from torch.distributed import run as torchrun

from grpo_server.cli import build_parser as server_parser
from grpo_server.launch import NodeGroup, torchrun_argv
from grpo_server.launch import build_parser as launch_parser

GROUP = f"{TRAINER}-group"
LAUNCHER = ["python", "-m", "grpo_server.launch"]
LWS_ENV = ("LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX")


def _templates(rendered):
    lwt = rendered.get("LeaderWorkerSet", GROUP)["spec"]["leaderWorkerTemplate"]
    return lwt, lwt["leaderTemplate"], lwt["workerTemplate"]


def _lws_env(rendered, index: int) -> dict[str, str]:
    """The variables the LWS controller gives pod `index` of group 0 (leader DNS name under the
    headless Service it names after the LeaderWorkerSet)."""
    lwt, _, _ = _templates(rendered)
    return {"LWS_LEADER_ADDRESS": f"{GROUP}-0.{GROUP}.{NAMESPACE}", "LWS_GROUP_SIZE": str(lwt["size"]),
            "LWS_WORKER_INDEX": str(index)}


def _launch(command: list[str], env: dict[str, str], monkeypatch):
    """What the pod's command starts: the launcher's flags, then torchrun's parsed configuration."""
    assert command[:3] == LAUNCHER
    args = launch_parser().parse_args(command[3:])
    server_args = args.server_args[1:] if args.server_args[:1] == ["--"] else args.server_args
    argv = torchrun_argv(NodeGroup.from_env(env), args.nproc_per_node, args.rendezvous_port, server_args)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config, _, cmd_args = torchrun.config_from_args(torchrun.parse_args(argv[3:]))
    return args, server_args, config, cmd_args


def test_leader_and_workers_run_the_same_launcher_command(multinode_render) -> None:
    _, leader, worker = _templates(multinode_render)
    assert container(leader, "trainer")["command"] == container(worker, "trainer")["command"]
    assert container(leader, "trainer")["command"][:3] == LAUNCHER


@pytest.mark.parametrize("index", [0, 1])
def test_every_pod_starts_torchrun_across_the_group_with_its_gpus(multinode_render, index, monkeypatch) -> None:
    _, leader, worker = _templates(multinode_render)
    pod = leader if index == 0 else worker
    c = container(pod, "trainer")
    # The chart must not set what LWS injects: a value there would shadow the controller's.
    assert not {e["name"] for e in c.get("env", [])} & set(LWS_ENV)
    args, server_args, config, cmd_args = _launch(c["command"], _lws_env(multinode_render, index), monkeypatch)
    assert (config.min_nodes, config.max_nodes) == (2, 2)
    assert config.rdzv_configs["rank"] == index
    # One rank per GPU the pod asks for; rendezvous on the leader at the chart's port.
    assert config.nproc_per_node == c["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert config.rdzv_endpoint == f"{GROUP}-0.{GROUP}.{NAMESPACE}:29500"
    assert cmd_args[-len(server_args) - 2:-len(server_args)] == ["-m", "grpo_server.cli"]
    server = server_parser().parse_args(server_args)
    assert (str(server.config), str(server.store_dir), server.listen) == (
        "/etc/grpo/config.yaml", "/var/lib/grpo", "0.0.0.0:50051")


def test_the_leader_alone_serves_the_api_and_opens_the_rendezvous_port(multinode_render) -> None:
    _, leader, worker = _templates(multinode_render)
    lc, wc = container(leader, "trainer"), container(worker, "trainer")
    assert {p["name"]: p["containerPort"] for p in lc["ports"]} == {"grpc": 50051, "metrics": 9090, "rendezvous": 29500}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert lc[probe]["grpc"] == {"port": 50051}
        assert probe not in wc  # workers have no API and no fixed port to probe
    assert "ports" not in wc
    svc = multinode_render.get("Service", TRAINER)
    assert svc["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


def test_no_chart_service_takes_the_name_the_lws_controller_gives_its_headless_service(multinode_render) -> None:
    # The controller creates a headless Service named after the LeaderWorkerSet (the pods' DNS,
    # LWS_LEADER_ADDRESS) and skips it when a Service of that name already exists.
    assert GROUP not in {s["metadata"]["name"] for s in multinode_render.of_kind("Service")}


def test_the_group_restarts_together_and_workers_start_with_the_leader_pod(multinode_render) -> None:
    lws = multinode_render.get("LeaderWorkerSet", GROUP)
    assert lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    # LeaderReady would deadlock: the leader turns ready only after every rank has joined.
    assert lws["spec"]["startupPolicy"] == "LeaderCreated"


def test_the_leader_owns_the_store_and_every_pod_shares_the_checkpoints(multinode_render) -> None:
    _, leader, worker = _templates(multinode_render)
    assert volume(leader, "store")["persistentVolumeClaim"]["claimName"] == f"{TRAINER}-store"
    assert "emptyDir" in volume(worker, "store")
    claim = f"{TRAINER}-checkpoints"
    for pod in (leader, worker):
        assert volume(pod, "checkpoints")["persistentVolumeClaim"]["claimName"] == claim
        assert mount(container(pod, "trainer"), "checkpoints")["mountPath"] == "/var/lib/grpo/checkpoints"
    pvc = multinode_render.get("PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert volume(leader, "shm")["emptyDir"]["medium"] == "Memory"


def test_an_existing_checkpoints_claim_is_used_and_none_is_created() -> None:
    rendered = render({"trainer": {**DEEPSPEED, "multiNode": {"enabled": True, "checkpoints": {"existingClaim": "shared-ckpt"}}}})
    _, leader, worker = _templates(rendered)
    for pod in (leader, worker):
        assert volume(pod, "checkpoints")["persistentVolumeClaim"]["claimName"] == "shared-ckpt"
    assert not rendered.has("PersistentVolumeClaim", f"{TRAINER}-checkpoints")


def test_cpu_only_pods_run_one_rank_and_nproc_can_be_set(monkeypatch) -> None:
    for values, expected in (({"gpu": {"count": 0}}, 1), ({"multiNode": {"nprocPerNode": 4}}, 4)):
        trainer = {**DEEPSPEED, "multiNode": {"enabled": True}, **values}
        if "multiNode" in values:
            trainer["multiNode"] = {"enabled": True, **values["multiNode"]}
        rendered = render({"trainer": trainer})
        _, leader, _ = _templates(rendered)
        _, _, config, _ = _launch(container(leader, "trainer")["command"], _lws_env(rendered, 0), monkeypatch)
        assert config.nproc_per_node == expected


def test_the_group_size_is_the_torchrun_node_count(monkeypatch) -> None:
    rendered = render({"trainer": {**DEEPSPEED, "multiNode": {"enabled": True, "size": 4, "rendezvousPort": 31000}}})
    _, _, worker = _templates(rendered)
    _, _, config, _ = _launch(container(worker, "trainer")["command"], _lws_env(rendered, 3), monkeypatch)
    assert (config.max_nodes, config.rdzv_configs["rank"]) == (4, 3)
    assert config.rdzv_endpoint.endswith(":31000")


def test_checkpoints_that_not_every_node_can_write_are_refused() -> None:
    message = render_error({"trainer": {**DEEPSPEED, "multiNode": {"enabled": True, "checkpoints": {
        "accessModes": ["ReadWriteOnce"]}}}})
    assert "accessModes" in message


def test_notes_wait_for_the_leaderworkerset_by_its_name(multinode_render) -> None:
    # `kubectl rollout status` knows no LeaderWorkerSet; its Available condition does the same job.
    assert f"wait --for=condition=Available leaderworkerset/{GROUP}" in multinode_render.notes


def test_compact_store_on_start_runs_on_the_leader_only(multinode_render) -> None:
    _, leader, worker = _templates(multinode_render)  # ci/multinode-values.yaml turns it on
    assert [c["name"] for c in leader["spec"]["initContainers"]] == ["compact-store"]  # the store is the leader's
    assert "initContainers" not in worker["spec"]


def test_deepspeed_on_one_pod_runs_a_rank_per_gpu_through_the_launcher(gpu_render, monkeypatch) -> None:
    """ci/gpu-values.yaml (ZeRO-2 on 8 GPUs, one pod) ran bare `grpo-server`: one process, which DeepSpeed
    cannot start without torchrun's environment (it fell back to MPI discovery and the run failed)."""
    pod = gpu_render.get("StatefulSet", TRAINER)["spec"]["template"]
    c = container(pod, "trainer")
    env = {e["name"]: e["value"] for e in c["env"] if e["name"] in LWS_ENV}
    assert env == {"LWS_LEADER_ADDRESS": "127.0.0.1", "LWS_GROUP_SIZE": "1", "LWS_WORKER_INDEX": "0"}
    args, server_args, config, cmd_args = _launch(c["command"], env, monkeypatch)
    assert (config.min_nodes, config.max_nodes, config.rdzv_configs["rank"]) == (1, 1, 0)
    assert config.nproc_per_node == c["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert config.rdzv_endpoint == "127.0.0.1:29500"
    server = server_parser().parse_args(server_args)
    assert (str(server.config), str(server.store_dir), server.listen) == (
        "/etc/grpo/config.yaml", "/var/lib/grpo", "0.0.0.0:50051")
    assert {p["name"] for p in c["ports"]} == {"grpc", "metrics"}  # the rendezvous stays inside the pod


def test_the_torch_engine_on_one_pod_runs_grpo_server_itself(default_render) -> None:
    c = container(default_render.get("StatefulSet", TRAINER)["spec"]["template"], "trainer")
    assert c["command"][0] == "grpo-server"
    assert not {e["name"] for e in c["env"]} & set(LWS_ENV)


def test_several_nodes_without_deepspeed_are_refused() -> None:
    """With the torch engine every rank starts a trainer of its own (rank 1 failed binding the API's port
    and the group crash-looped)."""
    message = render_error({"trainer": {"multiNode": {"enabled": True}}})
    assert "trainer.multiNode.enabled needs trainer.config.training.engine: deepspeed" in message, message
    assert "torch" in message
