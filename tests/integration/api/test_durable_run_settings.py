"""What the API tells the run and the run must keep across a restart: a pause (PauseTraining until
ResumeTraining) and the API layer of the reward registry (SetRewardBackend, DeleteRewardBackend).

Each "trainer" here is the real servicer, server bootstrap, RunControl, RewardRegistry and SQLite store
on loopback, built the way grpo-server builds them; a restart stops all of it, closes the store and
builds everything again on the same store directory with the config, registry file and flags given.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from api_support import FileExporter, prompt, submit

from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from grpo_server.api.server import build_server
from grpo_server.api.servicer import TrainerServicer
from grpo_server.api.settings import ApiLimits
from grpo_server.control import RunControl
from grpo_server.rewards.registry import BackendEntry, RewardRegistry
from grpo_server.store import Store

API = trainer_pb2.BACKEND_SOURCE_API
CONFIG = trainer_pb2.BACKEND_SOURCE_CONFIG
FILE = trainer_pb2.BACKEND_SOURCE_REGISTRY_FILE
FLAG = trainer_pb2.BACKEND_SOURCE_FLAG

# Loopback ports nothing listens on: Describe fails at once (connection refused), which is all a
# listing needs here; nothing is scored in these tests.
A, B, C, D, E, F = (f"127.0.0.1:{port}" for port in range(1101, 1107))


@dataclass
class Trainer:
    """One start of the trainer's API parts on a store directory."""

    store: Store
    control: RunControl
    registry: RewardRegistry
    server: grpc.Server
    channel: grpc.Channel
    stub: trainer_pb2_grpc.TrainerServiceStub
    stopped: bool = False

    def backends(self) -> dict[str, tuple[str, int]]:
        """name -> (address, source) as ListRewardBackends answers."""
        listing = self.stub.ListRewardBackends(trainer_pb2.ListRewardBackendsRequest())
        return {b.name: (b.address, b.source) for b in listing.backends}

    def run(self) -> trainer_pb2.RunStatus:
        return self.stub.StepStatus(trainer_pb2.StepStatusRequest()).run

    def stop(self) -> None:
        """Stop everything and close the store (what a drained process leaves); idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self.channel.close()
        self.server.stop(0).wait()
        self.registry.stop()
        self.control.close()
        self.store.close()


@pytest.fixture
def trainers() -> Iterator[list[Trainer]]:
    """The trainers a test started (see `start`); each is stopped at the end."""
    started: list[Trainer] = []
    yield started
    for t in started:
        t.stop()


def start(trainers: list[Trainer], store_dir: Path, *, config: Sequence[BackendEntry] = (),
          registry_file: Path | None = None, flags: Sequence[BackendEntry] = ()) -> Trainer:
    """Build and start the API parts on `store_dir` in grpo-server's order: the registry (checked before
    the store is opened), the store, the registry's API layer from the store, the run control on the
    store, then the server."""
    registry = RewardRegistry(config, registry_file=registry_file, overrides=flags)
    store = Store(store_dir)
    registry.attach_store(store)
    control = RunControl(store=store)
    servicer = TrainerServicer(
        store=store, control=control, registry=registry, exporter=FileExporter(store_dir / "exports"),
        limits=ApiLimits(max_prompt_tokens=0), default_rewards=[],
    )
    server, port, _health = build_server(servicer, listen="127.0.0.1:0", max_workers=4)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    t = Trainer(store, control, registry, server, channel, trainer_pb2_grpc.TrainerServiceStub(channel))
    trainers.append(t)
    return t


def set_backend(t: Trainer, name: str, address: str, **fields: object) -> trainer_pb2.SetRewardBackendResponse:
    return t.stub.SetRewardBackend(trainer_pb2.SetRewardBackendRequest(
        backend=trainer_pb2.RewardBackend(name=name, address=address, **fields)))


def delete_backend(t: Trainer, name: str) -> None:
    t.stub.DeleteRewardBackend(trainer_pb2.DeleteRewardBackendRequest(name=name))


def write_registry(path: Path, backends: dict[str, str]) -> Path:
    path.write_text("backends:\n" + "".join(f"  {n}: {{address: '{a}'}}\n" for n, a in backends.items())
                    if backends else "")
    return path


# ------------------------------------------------------------------------------------------- pause


def test_a_paused_run_comes_back_paused_after_a_restart_until_it_is_resumed(trainers, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    first = start(trainers, store_dir)
    first.control.set_state("training")
    assert first.stub.PauseTraining(trainer_pb2.PauseTrainingRequest()).run.pause_requested
    first.stop()

    second = start(trainers, store_dir)
    assert second.control.pause_requested  # before anything else: the loop starts no step
    assert second.control.wait_while_paused(timeout=0.2) is True
    assert second.run().pause_requested
    second.control.set_state("paused")  # what the loop does when it sees the request
    assert second.run().state == trainer_pb2.RUN_STATE_PAUSED

    resumed = second.stub.ResumeTraining(trainer_pb2.ResumeTrainingRequest()).run
    assert not resumed.pause_requested
    second.stop()

    third = start(trainers, store_dir)
    assert not third.control.pause_requested and not third.run().pause_requested


def test_a_refused_pause_is_not_remembered(trainers, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    first = start(trainers, store_dir)
    first.control.set_state("finished")
    with pytest.raises(grpc.RpcError) as refused:
        first.stub.PauseTraining(trainer_pb2.PauseTrainingRequest())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    first.stop()
    assert not start(trainers, store_dir).control.pause_requested


# ----------------------------------------------------------------------------------- backends


def test_backends_set_and_deleted_through_the_api_are_the_same_after_a_restart(trainers, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    config = [BackendEntry("math", A), BackendEntry("rm", B)]
    first = start(trainers, store_dir, config=config)
    token = tmp_path / "code2-token"
    token.write_text("code2-secret\n")
    stored = set_backend(first, "code2", C, timeout_seconds=12.5, max_batch_size=16, max_concurrency=2,
                         tls=True, token_file=str(token)).backend
    set_backend(first, "math", D)  # replaces a config backend
    delete_backend(first, "rm")  # removes a config backend
    before = first.stub.ListRewardBackends(trainer_pb2.ListRewardBackendsRequest())
    first.stop()

    second = start(trainers, store_dir, config=config)
    after = second.stub.ListRewardBackends(trainer_pb2.ListRewardBackendsRequest())
    assert second.backends() == {"code2": (C, API), "math": (D, API)}  # rm stays deleted
    [code2] = [b for b in after.backends if b.name == "code2"]
    assert (code2.timeout_seconds, code2.max_batch_size, code2.max_concurrency, code2.tls, code2.token_file) == (
        12.5, 16, 2, True, str(token)) == (stored.timeout_seconds, stored.max_batch_size,
                                                   stored.max_concurrency, stored.tls, stored.token_file)
    assert [(b.name, b.address, b.source) for b in after.backends] == [
        (b.name, b.address, b.source) for b in before.backends]

    # A prompt naming the restored backend is accepted; one naming the deleted one is not.
    named = prompt("c0")
    named.rewards.add(backend="code2", weight=1.0)
    assert list(second.stub.SubmitPrompts(submit(named)).accepted_ids) == ["c0"]
    gone = prompt("r0")
    gone.rewards.add(backend="rm", weight=1.0)
    with pytest.raises(grpc.RpcError) as refused:
        second.stub.SubmitPrompts(submit(gone))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Deleting the API's own backend after the restart sticks too.
    delete_backend(second, "code2")
    second.stop()
    assert start(trainers, store_dir, config=config).backends() == {"math": (D, API)}


def test_after_a_restart_a_name_the_config_file_or_flags_changed_meanwhile_takes_their_word(
    trainers, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    registry = write_registry(tmp_path / "registry.yaml", {"math": A, "code": B})
    config = [BackendEntry("rm", C)]
    first = start(trainers, store_dir, config=config, registry_file=registry)
    set_backend(first, "math", D)
    set_backend(first, "code", E)
    delete_backend(first, "rm")
    set_backend(first, "extra", F)
    first.stop()

    # While the trainer is down the file changes `math` (not `code`), and a flag now names `extra`.
    write_registry(registry, {"math": B, "code": B})
    second = start(trainers, store_dir, config=config, registry_file=registry, flags=[BackendEntry("extra", A)])
    assert second.backends() == {"math": (B, FILE), "code": (E, API), "extra": (A, FLAG)}  # rm: still deleted
    second.stop()

    # The config changes `rm`: its word is newer than the API's delete.
    third = start(trainers, store_dir, config=[BackendEntry("rm", D)], registry_file=registry,
                  flags=[BackendEntry("extra", A)])
    assert third.backends() == {"math": (B, FILE), "code": (E, API), "extra": (A, FLAG), "rm": (D, CONFIG)}


def test_a_file_edit_that_overruled_the_api_while_running_still_holds_after_a_restart(
    trainers, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    registry = write_registry(tmp_path / "registry.yaml", {"math": A})
    first = start(trainers, store_dir, registry_file=registry)
    set_backend(first, "math", D)
    write_registry(registry, {"math": B})
    assert first.registry.reload_if_changed()
    write_registry(registry, {"math": A})  # back to what it said when the API change was made
    assert first.registry.reload_if_changed()
    assert first.backends() == {"math": (A, FILE)}
    first.stop()

    assert start(trainers, store_dir, registry_file=registry).backends() == {"math": (A, FILE)}


def test_an_api_change_the_store_could_not_record_is_refused_and_not_applied(trainers, tmp_path: Path) -> None:
    first = start(trainers, tmp_path / "store", config=[BackendEntry("math", A)])
    first.store.close()  # the store is gone (the trainer is shutting down): nothing may change unrecorded
    with pytest.raises(grpc.RpcError) as refused:
        set_backend(first, "math", D)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert first.registry.snapshot().entries["math"].address == A
    with pytest.raises(grpc.RpcError) as refused:
        first.stub.PauseTraining(trainer_pb2.PauseTrainingRequest())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not first.control.pause_requested


def test_registry_versions_go_on_increasing_across_restarts(trainers, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    config = [BackendEntry("math", A)]
    first = start(trainers, store_dir, config=config)
    seen = [first.stub.ListRewardBackends(trainer_pb2.ListRewardBackendsRequest()).registry_version]
    seen.append(set_backend(first, "extra", B).registry_version)
    seen.append(set_backend(first, "extra", C).registry_version)
    first.stop()

    second = start(trainers, store_dir, config=config)  # the same entries as before the restart
    seen.append(second.stub.ListRewardBackends(trainer_pb2.ListRewardBackendsRequest()).registry_version)
    assert second.backends() == {"math": (A, CONFIG), "extra": (C, API)}
    seen.append(second.stub.DeleteRewardBackend(trainer_pb2.DeleteRewardBackendRequest(name="extra")).registry_version)
    second.stop()

    third = start(trainers, store_dir, config=config)
    seen.append(third.stub.ListRewardBackends(trainer_pb2.ListRewardBackendsRequest()).registry_version)
    assert seen == sorted(set(seen)), seen  # strictly increasing: no number names two registry states
    assert seen[3] == seen[2] + 1 and seen[5] == seen[4] + 1  # a restart is one step past the last
