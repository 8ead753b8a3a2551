"""The trainer's Prometheus metrics, served on `--metrics-listen`.

Names are prefixed `grpo_`, in base units (seconds, bytes, tokens), with low-cardinality labels only
(backend, code, state, phase, side, stat, kind, file). The Grafana dashboard in deploy/grafana/ reads these
names. Each TrainerMetrics owns its own CollectorRegistry so that several trainers (tests) can live in
one process.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import GaugeMetricFamily

from grpo_server import __version__
from grpo_server.store.space import volume_bytes
from grpo_server.types import StepReport, StepState

_PHASES = ("rollout", "reward", "logprob", "backward", "optimizer", "weight_sync")
_STEP_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
# Up to 30 min: a backend timeout may be set far above the default 30 s (a learned reward model on long
# completions), and a call past the largest bucket shows only as +Inf.
_REWARD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
RUN_STATES = ("starting", "idle", "training", "paused", "draining", "failed", "finished")
CIRCUIT_STATES = ("closed", "open", "half_open")
HEALTH_PATH = "/healthz"


def serve_health(httpd: Any, serving: Callable[[], bool]) -> None:
    """Answer `HEALTH_PATH` on the metrics server `httpd` (a wsgiref server, as `start_http_server` returns):
    200 `SERVING` while `serving()` is true, else 503 `NOT_SERVING`. Every other path serves the metrics as
    before. It is the gRPC health in plain HTTP, for probes that cannot speak the API's TLS (kubelet's
    `grpc:` probes); `serving` must be cheap (it runs on every probe, beside a busy training step).

    The reward services have a twin in services/grpo_rewards/common/metrics.py (the two packages deploy on
    their own and neither imports the other). Keep them in step."""
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


class _CircuitStates:
    """`grpo_reward_circuit_state`, read from the router's breakers at each scrape (a breaker turns
    half-open by the clock, with no event to set a gauge on)."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, str]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "grpo_reward_circuit_state",
            "1 for each reward backend's circuit breaker state (closed, open, half_open), 0 for the others; "
            "open and half_open: its calls fail at once.", labels=["backend", "state"])
        states = self.source() if self.source is not None else {}
        for backend, current in sorted(states.items()):
            for state in CIRCUIT_STATES:
                family.add_metric([backend, state], 1.0 if state == current else 0.0)
        yield family


class _StoreFiles:
    """`grpo_store_bytes`, the store's files as they are at each scrape (the database grows with every
    submission and step, the WAL between SQLite's checkpoints): what the store's volume must hold. And
    that volume's size and the bytes left on it for the trainer (statvfs of the store directory, which
    also holds the checkpoints): a full one fails the run, so alert before."""

    def __init__(self) -> None:
        self.files: Mapping[str, Path] = {}
        self.directory: Path | None = None  # the store directory: where the files are

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "grpo_store_bytes", "Size of the store's SQLite files: file=db the database, file=wal its "
            "write-ahead log.", labels=["file"])
        for label, path in self.files.items():
            with contextlib.suppress(OSError):  # not there (yet, or any more): no sample
                family.add_metric([label], float(path.stat().st_size))
        yield family
        available = GaugeMetricFamily(
            "grpo_store_volume_available_bytes", "Bytes the trainer may still write on the volume of its store "
            "directory (database and checkpoints).")
        size = GaugeMetricFamily("grpo_store_volume_size_bytes", "Size of the volume of the store directory.")
        if self.directory is not None:
            with contextlib.suppress(OSError):
                writable, total = volume_bytes(self.directory)
                available.add_metric([], float(writable))
                size.add_metric([], float(total))
        yield available
        yield size


class TrainerMetrics:
    """All trainer metrics. `observe_step` is called once per finished step; the router calls the
    RouterObserver methods; the API and the store call the counters directly."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.build_info = Info("grpo_build", "Build information of the trainer.", registry=r)
        self.build_info.info({"version": __version__})
        self.steps = Counter("grpo_steps", "Training steps by final state.", ["state"], registry=r)
        self.step_duration = Histogram(
            "grpo_step_duration_seconds", "Wall-clock time of a training step.", buckets=_STEP_BUCKETS, registry=r
        )
        self.step_phase = Gauge(
            "grpo_step_phase_seconds", "Seconds the latest step spent in each phase.", ["phase"], registry=r
        )
        self.latest_step = Gauge("grpo_latest_step", "Number of the latest finished step.", registry=r)
        self.reward_mean = Gauge("grpo_reward_mean", "Mean total reward of the latest step.", registry=r)
        self.reward_std = Gauge("grpo_reward_std", "Standard deviation of the latest step's rewards.", registry=r)
        self.backend_reward_mean = Gauge(
            "grpo_backend_reward_mean", "Mean score per reward backend in the latest step.", ["backend"], registry=r
        )
        self._backends_scored: set[str] = set()  # the labels backend_reward_mean has now
        self.kl = Gauge("grpo_kl", "Mean k3 KL to the reference of the latest step, nats per token.", registry=r)
        self.policy_loss = Gauge("grpo_policy_loss", "Policy loss of the latest step.", registry=r)
        self.entropy = Gauge("grpo_entropy", "Mean policy entropy of the latest step, nats per token.", registry=r)
        self.grad_norm = Gauge("grpo_grad_norm", "Gradient L2 norm before clipping, latest step.", registry=r)
        self.clip_fraction = Gauge(
            "grpo_clip_fraction", "Fraction of tokens clipped in the latest step.", ["side"], registry=r
        )
        self.completion_length = Gauge(
            "grpo_completion_length_tokens", "Completion lengths of the latest step.", ["stat"], registry=r
        )
        self.truncated_fraction = Gauge(
            "grpo_truncated_fraction", "Fraction of the latest step's completions cut at rollout.max_new_tokens "
            "(their rewards judge cut text).", registry=r,
        )
        self.micro_batch_size = Gauge(
            "grpo_training_micro_batch_size", "Sequences per forward and backward pass in the latest step: "
            "training.micro_batch_size, or less once the trainer has halved it on running out of memory.", registry=r,
        )
        self.oom_retries = Counter(
            "grpo_oom_retries", "Work run again in halves because memory ran out: phase=training (a training pass, "
            "in micro-batches of half the size, before its optimizer step), phase=rollout (an HF generate call, with "
            "half as many prompts).", ["phase"], registry=r,
        )
        self.zero_variance_groups = Gauge(
            "grpo_zero_variance_groups", "Groups with all-equal rewards in the latest step.", registry=r
        )
        self.masked_failures = Counter(
            "grpo_masked_reward_failures", "Completions masked out because no reward could be obtained.", registry=r
        )
        self.generated_tokens = Counter("grpo_generated_tokens", "Completion tokens generated.", registry=r)
        self.queue_depth = Gauge("grpo_queue_depth", "Prompts waiting in the queue.", registry=r)
        self.prompts_submitted = Counter("grpo_prompts_submitted", "Prompts accepted by SubmitPrompts.", registry=r)
        self.prompts_trained = Counter(
            "grpo_prompts_trained", "Prompts whose update is in a durable checkpoint.", registry=r
        )
        self.prompts_failed = Counter("grpo_prompts_failed", "Prompts given up on.", registry=r)
        self.prompts_cancelled = Counter(
            "grpo_prompts_cancelled", "Prompts taken out of the queue by CancelPrompts.", registry=r
        )
        self.reward_request_duration = Histogram(
            "grpo_reward_request_duration_seconds",
            "Duration of Score calls to reward backends.",
            ["backend"],
            buckets=_REWARD_BUCKETS,
            registry=r,
        )
        self.reward_request_failures = Counter(
            "grpo_reward_request_failures", "Failed Score calls and failed items by backend and code.",
            ["backend", "code"], registry=r,
        )
        self.checkpoints = Counter("grpo_checkpoints", "Checkpoints written, by kind.", ["kind"], registry=r)
        self.export_failures = Counter(
            "grpo_export_failures", "Exports that failed (GetExport and ListExports give the error), those a "
            "stopped trainer left unfinished included, counted when the next start finds them.", registry=r,
        )
        self.checkpoint_duration = Histogram(
            "grpo_checkpoint_duration_seconds", "Time to write a checkpoint, by kind.", ["kind"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=r,
        )
        self.run_state = Gauge("grpo_run_state", "1 for the run's current state, 0 for the others.", ["state"], registry=r)
        self.set_run_state("starting")
        self._circuits = _CircuitStates()
        r.register(self._circuits)
        self.store_pruned = Counter(
            "grpo_store_pruned", "What the store forgot under retention.*: kind=prompt_content (the content of "
            "finished prompts), prompt_rows (finished prompts' whole rows), request_ids, step_reports, export_records.",
            ["kind"],
            registry=r,
        )
        self._store_files = _StoreFiles()
        r.register(self._store_files)
        self.start_time = Gauge(
            "grpo_start_time_seconds", "When this trainer process started, seconds since the Unix epoch (the "
            "GrpoTrainingStalled alert waits an hour after it).", registry=r,
        )
        self.start_time.set(time.time())
        # Counters by label exist at 0 from the first scrape: one that appeared at 1 (a first step that ran
        # out of memory) would be no increase() to an alert.
        for state in (StepState.COMPLETED, StepState.SKIPPED, StepState.FAILED):
            self.steps.labels(state=state.value)
        for phase in ("training", "rollout"):
            self.oom_retries.labels(phase=phase)
        self._server: object | None = None

    def attach_circuit_states(self, source: Callable[[], Mapping[str, str]]) -> None:
        """Read `grpo_reward_circuit_state` from `source` (backend -> "closed" | "open" | "half_open")."""
        self._circuits.source = source

    def attach_store(self, files: Mapping[str, Path]) -> None:
        """Report `grpo_store_bytes` of the store's files (Store.files: label -> path)."""
        self._store_files.files = dict(files)
        self._store_files.directory = next(iter(files.values())).parent if files else None

    # -------------------------------------------------------------------------------------- serving

    def serve(self, listen: str, serving: Callable[[], bool] = lambda: False) -> int:
        """Serve /metrics on `listen` (HOST:PORT, an IPv6 host in brackets as in `[::]:9090`; port 0 picks
        one), and /healthz: 200 while `serving()` (the gRPC health is SERVING), 503 otherwise (see
        `serve_health`); returns the bound port."""
        host, _, port = listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # the socket API takes an IPv6 address bare
        server, _thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)
        serve_health(server, serving)
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        """Stop serving and close the port (a probe then gets "connection refused", not a hang)."""
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]
            self._server = None

    # -------------------------------------------------------------------------------------- updates

    def set_run_state(self, state: str) -> None:
        """Mark `state` (one of RUN_STATES) as the current run state."""
        for s in RUN_STATES:
            self.run_state.labels(state=s).set(1.0 if s == state else 0.0)

    def observe_step(self, report: StepReport) -> None:
        """Record a finished step's report."""
        self.steps.labels(state=report.state.value).inc()
        m: Mapping[str, float] = report.metrics
        # A skipped step generated its completions too, and each one's reward failed.
        self.masked_failures.inc(m.get("masked_reward_failures", 0))
        self.generated_tokens.inc(m.get("generated_tokens", 0))
        for phase in ("training", "rollout"):  # a skipped step's rollout may have halved too
            self.oom_retries.labels(phase=phase).inc(m.get(f"oom_retries/{phase}", 0))
        if report.state is not StepState.COMPLETED:
            return
        if "step_seconds" in m:
            self.step_duration.observe(m["step_seconds"])
        self.show_step(report)

    def show_step(self, report: StepReport) -> None:
        """Set the gauges of the latest completed step from its report (also at a restart, from the
        store: they read 0 until the next step otherwise)."""
        m: Mapping[str, float] = report.metrics
        if "micro_batch_size" in m:
            self.micro_batch_size.set(m["micro_batch_size"])
        self.latest_step.set(report.step)
        for phase in _PHASES:
            if f"{phase}_seconds" in m:
                self.step_phase.labels(phase=phase).set(m[f"{phase}_seconds"])
        simple = {
            "reward_mean": self.reward_mean, "reward_std": self.reward_std, "kl": self.kl,
            "policy_loss": self.policy_loss, "entropy": self.entropy, "grad_norm": self.grad_norm,
            "zero_variance_groups": self.zero_variance_groups, "truncated_fraction": self.truncated_fraction,
        }
        for key, gauge in simple.items():
            if key in m and math.isfinite(m[key]):
                gauge.set(m[key])
        for side in ("low", "high"):
            if f"clip_fraction_{side}" in m:
                self.clip_fraction.labels(side=side).set(m[f"clip_fraction_{side}"])
        for stat in ("mean", "min", "max"):
            if f"completion_length_{stat}" in m:
                self.completion_length.labels(stat=stat).set(m[f"completion_length_{stat}"])
        means = {key.split("/", 1)[1]: value for key, value in m.items()
                 if key.startswith("reward/") and math.isfinite(value)}
        if means:  # a step that scored: the backends it did not score (or that are gone) are not in it
            for backend in self._backends_scored - set(means):
                self.backend_reward_mean.remove(backend)
            for backend, value in means.items():
                self.backend_reward_mean.labels(backend=backend).set(value)
            self._backends_scored = set(means)

    # ------------------------------------------------------------------ the reward router's observer

    def on_request(self, backend: str, seconds: float, code: str) -> None:
        """One Score call finished (code "OK" or a gRPC status name)."""
        self.reward_request_duration.labels(backend=backend).observe(seconds)
        if code != "OK":
            self.reward_request_failures.labels(backend=backend, code=code).inc()

    def on_item_failure(self, backend: str, status: str) -> None:
        """One item could not be scored by `backend` (status: the RewardStatus value)."""
        self.reward_request_failures.labels(backend=backend, code=f"item_{status}").inc()
