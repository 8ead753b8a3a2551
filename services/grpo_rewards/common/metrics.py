"""Prometheus metrics of one reward service, served on `--metrics-listen` (with `/healthz`, see
`serve_health`).

Each server gets its own registry, so several servers in one process (tests) never collide. Names are
prefixed `grpo_reward_`, use base units, and keep labels low-cardinality (`status`, `code`, and the
build identity), as `promtool check metrics` expects.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from grpo.reward.v1 import reward_pb2

# Score latency: from ~1 ms (a cached math answer) to minutes (a slow sandbox batch).
LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                           30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
HEALTH_PATH = "/healthz"


def serve_health(httpd: Any, serving: Callable[[], bool]) -> None:
    """Answer `HEALTH_PATH` on the metrics server `httpd` (a wsgiref server, as `start_http_server` returns):
    200 `SERVING` while `serving()` is true, else 503 `NOT_SERVING`. Every other path serves the metrics as
    before. It is the gRPC health in plain HTTP, for probes that cannot speak the service's TLS (kubelet's
    `grpc:` probes); `serving` must be cheap.

    The trainer has a twin in grpo_server/metrics.py (the two packages deploy on their own and neither
    imports the other). Keep them in step."""
    metrics_app = httpd.get_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEALTH_PATH:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        ok = serving()
        body = b"SERVING\n" if ok else b"NOT_SERVING\n"
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                        ("Cache-Control", "no-store")])
        return [body]

    httpd.set_app(app)


def status_label(status: int) -> str:
    """`SCORE_STATUS_TIMEOUT` -> `"timeout"`: the label value for a ScoreStatus."""
    try:
        name = reward_pb2.ScoreStatus.Name(status)  # type: ignore[arg-type]
    except ValueError:
        return "unknown"
    return name.removeprefix("SCORE_STATUS_").lower()


@dataclass
class ServiceMetrics:
    """The metric objects of one server, registered in `registry`."""

    registry: CollectorRegistry
    items: Counter
    requests: Counter
    latency: Histogram
    batch_items: Histogram
    in_flight: Gauge
    build_info: Gauge

    @classmethod
    def create(cls, service: str, version: str) -> ServiceMetrics:
        """Fresh metrics in a fresh registry, with process metrics and `build_info{service,version}` = 1."""
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        m = cls(
            registry=registry,
            items=Counter("grpo_reward_items", "Items scored, by result status.", ["status"],
                          registry=registry),
            requests=Counter("grpo_reward_requests", "Score calls finished, by gRPC status code.", ["code"],
                             registry=registry),
            latency=Histogram("grpo_reward_score_duration_seconds",
                              "Time to answer one Score call, validation included, in seconds.",
                              buckets=LATENCY_BUCKETS_SECONDS, registry=registry),
            batch_items=Histogram("grpo_reward_batch_items", "Items per accepted Score call.",
                                  buckets=BATCH_BUCKETS, registry=registry),
            in_flight=Gauge("grpo_reward_in_flight_requests", "Score calls being scored right now.",
                            registry=registry),
            build_info=Gauge("grpo_reward_build_info", "Always 1; labels identify the running backend.",
                             ["service", "version", "python"], registry=registry),
        )
        m.build_info.labels(service=service, version=version, python=platform.python_version()).set(1)
        for code in ("OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "UNAUTHENTICATED",
                     "DEADLINE_EXCEEDED", "CANCELLED"):
            m.requests.labels(code=code)  # export zeros so rate() works from the first scrape
        for status in (reward_pb2.SCORE_STATUS_OK, reward_pb2.SCORE_STATUS_INVALID_INPUT,
                       reward_pb2.SCORE_STATUS_TIMEOUT, reward_pb2.SCORE_STATUS_RESOURCE_EXHAUSTED,
                       reward_pb2.SCORE_STATUS_INTERNAL):
            m.items.labels(status=status_label(status))
        return m


@runtime_checkable
class RegistersMetrics(Protocol):
    """A backend (`Scorer`) with metrics of its own. The harness calls `register_metrics` once per server
    with the server's registry, right after creating it, so that they are served on `--metrics-listen`
    beside the harness's. Registering the same registry again must do nothing."""

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Create this backend's metrics in `registry`."""
        ...


def truncated_items_counter(registry: CollectorRegistry) -> Counter:
    """`grpo_reward_truncated_items_total`: items whose input was longer than the backend's limit and was cut
    to fit before scoring (the reward model's `--max-length`; the item's `truncated` component is 1)."""
    return Counter("grpo_reward_truncated_items",
                   "Items whose input was over the length limit and was cut to fit before scoring.",
                   registry=registry)
