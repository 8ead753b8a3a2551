"""Real RewardService servers on loopback with scripted behaviour, and helpers to build rollout groups.

(A plain module rather than conftest.py so that test files can import its helpers by a unique name.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc
from grpo_server.types import ChatMessage, CodeReference, Completion, PromptRecord, RewardSpec, RolloutGroup

Scorer = Callable[[reward_pb2.ScoreItem], reward_pb2.ScoreResult]


class ScriptedBackend(reward_pb2_grpc.RewardServiceServicer):
    """A RewardService whose Score answers come from `scorer` per item, with optional scripted faults.

    fail_first: abort the first N calls with `fail_code`; fail_always: abort every call with it.
    delay_s: sleep before answering. mangle: rewrite the whole response (wrong counts, dropped ids).
    Records every request, its metadata and the most calls in flight at once."""

    def __init__(
        self,
        scorer: Scorer,
        *,
        name: str = "scripted",
        max_batch_size: int = 0,
        reference_kinds: Sequence[reward_pb2.ReferenceKind.ValueType] = (reward_pb2.REFERENCE_KIND_ANSWER,),
        delay_s: float = 0.0,
        fail_first: int = 0,
        fail_always: bool = False,
        fail_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        mangle: Callable[[reward_pb2.ScoreResponse], reward_pb2.ScoreResponse] | None = None,
    ):
        self.scorer = scorer
        self.name = name
        self.max_batch_size = max_batch_size
        self.reference_kinds = list(reference_kinds)
        self.delay_s = delay_s
        self.fail_first = fail_first
        self.fail_always = fail_always
        self.fail_code = fail_code
        self.mangle = mangle
        self.requests: list[reward_pb2.ScoreRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._release = threading.Event()

    def Score(self, request: reward_pb2.ScoreRequest, context: grpc.ServicerContext) -> reward_pb2.ScoreResponse:
        with self._lock:
            self.requests.append(request)
            self.metadata.append(dict(context.invocation_metadata()))
            n = len(self.requests)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                self._release.wait(self.delay_s)
            if self.fail_always or n <= self.fail_first:
                context.abort(self.fail_code, f"scripted {self.fail_code.name}")
            response = reward_pb2.ScoreResponse(results=[self.scorer(item) for item in request.items])
            return self.mangle(response) if self.mangle else response
        finally:
            with self._lock:
                self.in_flight -= 1

    def Describe(self, request: reward_pb2.DescribeRequest, context: grpc.ServicerContext) -> reward_pb2.DescribeResponse:
        return reward_pb2.DescribeResponse(
            name=self.name, version="test",
            capabilities=reward_pb2.Capabilities(max_batch_size=self.max_batch_size, reference_kinds=self.reference_kinds),
        )

    @property
    def items_seen(self) -> int:
        return sum(len(r.items) for r in self.requests)


class Servers:
    """Starts ScriptedBackends on 127.0.0.1 (port 0 unless given) and stops them at the end of the test."""

    def __init__(self) -> None:
        self._servers: list[grpc.Server] = []

    def start(self, backend: reward_pb2_grpc.RewardServiceServicer, address: str = "127.0.0.1:0",
              options: Sequence[tuple[str, int]] = ()) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=list(options))
        reward_pb2_grpc.add_RewardServiceServicer_to_server(backend, server)
        port = server.add_insecure_port(address)
        server.start()
        self._servers.append(server)
        return f"127.0.0.1:{port}"

    def stop_all(self) -> None:
        for s in self._servers:
            s.stop(grace=None)


def ok(score: float, feedback: str = "") -> Callable[[reward_pb2.ScoreItem], reward_pb2.ScoreResult]:
    """A scorer giving every item `score`."""
    return lambda item: reward_pb2.ScoreResult(id=item.id, score=score, status=reward_pb2.SCORE_STATUS_OK,
                                               feedback=feedback)


def length_scorer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
    """Score = the completion's length in characters."""
    return reward_pb2.ScoreResult(id=item.id, score=float(len(item.completion)), status=reward_pb2.SCORE_STATUS_OK)


def group(
    prompt_id: str,
    texts: Sequence[str],
    rewards: Sequence[tuple[str, float]] = (("a", 1.0),),
    *,
    answer: str | None = "42",
    code: CodeReference | None = None,
    metadata: dict[str, str] | None = None,
) -> RolloutGroup:
    """A rollout group of `texts` for a prompt asking for 6*7."""
    prompt = PromptRecord(
        id=prompt_id,
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "What is 6*7?")),
        rewards=tuple(RewardSpec(b, w) for b, w in rewards),
        answer=None if code is not None else answer,
        code=code,
        metadata=metadata or {},
    )
    completions = tuple(Completion((1, 2), (-0.1, -0.2), t, "stop") for t in texts)
    return RolloutGroup(prompt, (5, 6, 7), completions)


class RecordingObserver:
    """A RouterObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.item_failures: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def on_request(self, backend: str, seconds: float, code: str) -> None:
        assert seconds >= 0
        with self._lock:
            self.requests.append((backend, code))

    def on_item_failure(self, backend: str, status: str) -> None:
        with self._lock:
            self.item_failures.append((backend, status))
