"""A real trainer API for the CLI and SDK tests: the trainer's own servicer (grpo_server.api), a real
SQLite store in a tmp dir, the real reward registry with a real RewardService on loopback, and a real
exporter over a tiny model. Only the training loop is played by the test: `finish_step` records a step
as the loop would (store + run control), so status/watch/plot have something to show.

(A plain module with a unique name so that test files can import it.)"""

from __future__ import annotations

import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc
from grpo_server.api.server import build_server
from grpo_server.api.servicer import TrainerServicer
from grpo_server.api.settings import ApiLimits, AuthSettings
from grpo_server.checkpoint import ExportManager, copy_weights
from grpo_server.control import RunControl
from grpo_server.rewards.registry import BackendEntry, RewardRegistry
from grpo_server.store import Store
from grpo_server.types import StepReport, StepState


class EchoRewardService(reward_pb2_grpc.RewardServiceServicer):
    """A RewardService that scores 1.0 when the completion equals the answer; declares `kinds`."""

    def __init__(self, name: str, kinds: list[reward_pb2.ReferenceKind.ValueType]):
        self.name, self.kinds = name, kinds

    def Score(self, request: reward_pb2.ScoreRequest, context: grpc.ServicerContext) -> reward_pb2.ScoreResponse:
        return reward_pb2.ScoreResponse(results=[
            reward_pb2.ScoreResult(id=i.id, score=float(i.completion == i.answer), status=reward_pb2.SCORE_STATUS_OK)
            for i in request.items
        ])

    def Describe(self, request: reward_pb2.DescribeRequest, context: grpc.ServicerContext) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name=self.name, version="1", capabilities=reward_pb2.Capabilities(max_batch_size=64, reference_kinds=self.kinds))


def start_reward_service(name: str, kinds: list[reward_pb2.ReferenceKind.ValueType]) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    reward_pb2_grpc.add_RewardServiceServicer_to_server(EchoRewardService(name, kinds), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@dataclass
class TinyModel:
    """The tiny model loaded once per test session: its config, tokenizer and weights."""

    config: Any
    tokenizer: Any
    model: Any


def load_tiny(directory: Path) -> TinyModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_server.models.tiny import build_tiny_model

    build_tiny_model(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    return TinyModel(model.config, AutoTokenizer.from_pretrained(directory), model)


class TrainerApi:
    """The running API. `target` is "127.0.0.1:PORT"; `math_address`/`code_address` are reward services."""

    def __init__(self, tmp: Path, tiny: TinyModel, *, limits: ApiLimits | None = None,
                 tokens_file: Path | None = None, tls: tuple[str, str, str | None] | None = None,
                 listen: str = "127.0.0.1:0"):
        """`tls`: (cert_file, key_file, client_ca_file or None), as build_server takes it; `listen`: the
        API's address (a free port by default)."""
        self._reward_servers = []
        s, self.math_address = start_reward_service("math-verifier", [reward_pb2.REFERENCE_KIND_ANSWER])
        self._reward_servers.append(s)
        s, self.code_address = start_reward_service("code-sandbox", [reward_pb2.REFERENCE_KIND_CODE])
        self._reward_servers.append(s)
        self.store = Store(tmp / "store")
        self.control = RunControl()
        self.registry = RewardRegistry([BackendEntry("math", self.math_address)])
        self.step = 0
        self.exporter = ExportManager(
            lambda: (self.step, copy_weights(tiny.model.named_parameters())),
            tiny.config, tiny.tokenizer, tmp / "exports",
        )
        self.servicer = servicer = TrainerServicer(
            store=self.store, control=self.control, registry=self.registry, exporter=self.exporter,
            limits=limits or ApiLimits(), default_rewards=[("math", 1.0)],
            tokenizer_getter=lambda: tiny.tokenizer,
        )
        auth = AuthSettings(tokens_file=str(tokens_file)) if tokens_file else None
        self.server, port, self.health = build_server(servicer, listen=listen, auth=auth, tls=tls,
                                                      max_message_bytes=(limits or ApiLimits()).max_message_bytes)
        self.health.set_serving(True)
        self.control.set_ready(True)
        self.control.set_state("idle")
        self.target = f"127.0.0.1:{port}"

    def finish_step(self, reward_mean: float, *, state: StepState = StepState.COMPLETED, **metrics: float) -> StepReport:
        """Record the next step as the training loop does (leasing what is queued)."""
        self.step += 1
        leased = self.store.lease(8, self.step)
        now = time.time()
        m = {"reward_mean": reward_mean, "reward_std": 0.1, "kl": 0.01 * self.step, "loss": 0.5,
             "step_seconds": 2.0 + self.step, "masked_reward_failures": 1.0, "tokens_per_second": 100.0, **metrics}
        report = StepReport(self.step, state, now - 1, now, m if state is StepState.COMPLETED else {}, "hf",
                            tuple(p.id for p in leased), "" if state is StepState.COMPLETED else "every reward failed")
        self.store.record_step(report)
        self.control.notify_step(report)
        return report

    def close(self) -> None:
        self.control.close()
        self.server.stop(grace=None)
        for s in self._reward_servers:
            s.stop(grace=None)
        self.registry.stop()
        self.store.close()
