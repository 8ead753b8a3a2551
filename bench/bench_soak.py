"""Soak: resource growth of a trainer that runs many steps, for leaks a long production run would suffer.

Starts the real services as subprocesses: the math verifier, the format reward and the code sandbox
(each with its metrics port), and `grpo-server` (tiny model, HF rollouts on CPU, a checkpoint every
--checkpoint-every steps keeping --keep, SQLite store in a temp dir) with all three registered. Math
prompts are scored by math + format, one prompt in --code-every by code + format. A client keeps the
queue a few steps ahead (fresh prompt ids, a request id per SubmitPrompts as `grpo submit` sends), polls
StepStatus, holds one WatchSteps stream open for the whole run, and at every sample opens --churn new
channels, each with a StepStatus and a short WatchSteps stream, and closes them (the connection churn
many clients cause).

Every --sample-every steps it reads from /proc: the trainer's RSS, open file descriptors, threads and
child processes; the store's file sizes (grpo.sqlite, -wal, -shm); the checkpoint directory's count and
size; the number of series each /metrics exports; and each reward service's RSS and fds (the process and
its children summed: the verifier's worker pool, the sandbox's runners); and over the interval since the
last sample, the wall time and the trainer's CPU time per step and the median StepStatus latency. At the
end it times a new WatchSteps from step 0 (`grpo watch`'s default: it replays the run's history) and
prints the growth per 100 steps of each column: the slope of a least-squares line over the second half
of the samples (the first half is warm-up: allocator arenas, caches, the first checkpoints).

    .venv/bin/python -m bench.bench_soak [--steps 3000] [--sample-every 100] [--json out.json] [--keep-dir DIR]
        [--metadata-bytes N] [--retention-seconds S] [--history-retention-seconds S]

Nothing is asserted: a slope that does not level off is a finding to read in the code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench import (
    BIN,
    exit_on_sigterm,
    load_average,
    machine_info,
    start_service,
    stop_process,
    wait_for_grpc,
    write_json,
)

_LISTENING = re.compile(r"grpo-server listening on port (\d+) metrics (\S+)")

# A function the code sandbox can test; the tiny model's completions never pass it (they are random
# text): the sandbox still extracts, runs or refuses each one, which is what the soak exercises.
_CODE_TESTS = "def check(f):\n    assert f(1, 2) == 3\n"


def trainer_config(args: argparse.Namespace) -> dict[str, Any]:
    """The trainer's config as data: tiny model, one torch thread, partial steps after 1 s of no submits."""
    return {
        "model": {"source": "tiny"},
        "rollout": {"engine": "hf", "max_new_tokens": args.max_new_tokens, "temperature": 1.0},
        "algorithm": {"prompts_per_step": args.prompts_per_step, "group_size": args.group_size, "beta": 0.04},
        "training": {"learning_rate": 1e-3, "threads": 1, "partial_step_after_seconds": 1.0},
        "checkpoint": {"every_steps": args.checkpoint_every, "keep": args.keep},
        "rewards": {"default": [{"backend": "math", "weight": 1.0}]},
        "retention": {
            **({"prompt_content_seconds": args.retention_seconds, "request_ids_seconds": args.retention_seconds}
               if args.retention_seconds is not None else {}),
            **({"prompt_rows_seconds": args.history_retention_seconds,
                "step_reports_seconds": args.history_retention_seconds}
               if args.history_retention_seconds is not None else {}),
        },
    }


def padding(n: int) -> dict[str, str]:
    """`n` bytes of metadata in values of at most 1 KiB (limits.max_metadata_bytes): what a prompt
    carries besides its text, stored with it but never tokenized."""
    return {f"pad{k}": "x" * min(1024, n - 1024 * k) for k in range((n + 1023) // 1024)}


# ------------------------------------------------------------------------------------------ processes




def start_trainer(workdir: Path, args: argparse.Namespace,
                  backends: dict[str, str]) -> tuple[subprocess.Popen[str], str, int]:
    """`grpo-server` on loopback port 0 with metrics; returns (process, address, metrics port) once SERVING."""
    config = workdir / "trainer.yaml"
    config.write_text(yaml.safe_dump(trainer_config(args), sort_keys=False))
    cmd = [str(BIN / "grpo-server"), "--config", str(config), "--store-dir", str(workdir / "store"),
           "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-level", "INFO"]
    for name, address in backends.items():
        cmd += ["--reward-backend", f"{name}={address}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(workdir / "trainer.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = _LISTENING.search(line)
    if not m or m.group(2) == "-":
        stop_process(proc)
        raise RuntimeError(f"grpo-server did not start: {line!r}; see {workdir / 'trainer.log'}")
    address = f"127.0.0.1:{m.group(1)}"
    wait_for_grpc(address, timeout_s=300)
    return proc, address, int(m.group(2))


# --------------------------------------------------------------------------------------- observation


def proc_status(pid: int) -> dict[str, int]:
    """RSS (bytes), threads and open fds of one process from /proc/<pid>; zeros when it is gone."""
    out = {"rss": 0, "threads": 0, "fds": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far, seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


def tree(pid: int) -> dict[str, int]:
    """proc_status summed over a process and its descendants, plus their count (`procs`)."""
    import psutil

    try:
        pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return {"rss": 0, "threads": 0, "fds": 0, "procs": 0}
    total = {"rss": 0, "threads": 0, "fds": 0, "procs": len(pids)}
    for p in pids:
        for k, v in proc_status(p).items():
            total[k] += v
    return total


def series(metrics_port: int) -> dict[str, int]:
    """Number of exported series per metric family on http://127.0.0.1:<port>/metrics ({} when it fails)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            out[name] = out.get(name, 0) + 1
    return out


def dir_size(path: Path) -> tuple[int, int]:
    """(total bytes of the files under `path`, number of entries directly in it)."""
    if not path.is_dir():
        return 0, 0
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, f))
    return total, len(os.listdir(path))


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# ------------------------------------------------------------------------------------------- clients


class Client:
    """The load: one channel submits prompts and polls StepStatus; one WatchSteps stream stays open."""

    def __init__(self, address: str, args: argparse.Namespace) -> None:
        import grpc

        from grpo.trainer.v1 import trainer_pb2_grpc

        self.address = address
        self.args = args
        self.channel = grpc.insecure_channel(address)
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)
        self.next_id = 0
        self.submitted = 0
        self.errors = 0
        self.watched = 0
        self.latencies: list[float] = []  # StepStatus seconds since the last sample
        self._watch_call: Any = None
        self._watcher = threading.Thread(target=self._watch, name="watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        from grpo.trainer.v1 import trainer_pb2

        try:
            self._watch_call = self.stub.WatchSteps(trainer_pb2.WatchStepsRequest(include_running=True))
            for _ in self._watch_call:
                self.watched += 1
        except Exception:  # noqa: BLE001 - cancelled at the end, or the trainer went away
            pass

    def prompts(self, n: int) -> list[Any]:
        from grpo.reward.v1 import reward_pb2
        from grpo.trainer.v1 import trainer_pb2

        out = []
        for _ in range(n):
            i = self.next_id
            self.next_id += 1
            if self.args.code_every and i % self.args.code_every == 0:
                out.append(trainer_pb2.Prompt(
                    id=f"soak-{i}",
                    messages=[reward_pb2.Message(role="user", content=f"Write add(a, b) returning a+b. ({i})")],
                    code=reward_pb2.CodeTests(test_code=_CODE_TESTS, entry_point="add"),
                    rewards=[trainer_pb2.RewardSpec(backend="code", weight=1.0),
                             trainer_pb2.RewardSpec(backend="format", weight=0.2)]))
            else:
                a, b = i % 97 + 1, (7 * i) % 89 + 1
                out.append(trainer_pb2.Prompt(
                    id=f"soak-{i}",
                    messages=[reward_pb2.Message(role="user", content=f"What is {a}+{b}? Answer with just the number.")],
                    answer=str(a + b),
                    rewards=[trainer_pb2.RewardSpec(backend="math", weight=1.0),
                             trainer_pb2.RewardSpec(backend="format", weight=0.2)],
                    metadata={"source": "soak", **padding(self.args.metadata_bytes)}))
        return out

    def status(self) -> Any:
        """StepStatus; its latency is kept for the sample's median."""
        from grpo.trainer.v1 import trainer_pb2

        t0 = time.perf_counter()
        r = self.stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=30)
        self.latencies.append(time.perf_counter() - t0)
        return r

    def top_up(self, queue_depth: int) -> None:
        """Keep about three steps' prompts queued."""
        from grpo.trainer.v1 import trainer_pb2

        want = 3 * self.args.prompts_per_step - queue_depth
        if want <= 0:
            return
        batch = self.prompts(want)
        request_id = f"soak-req-{batch[0].id}" if self.args.request_ids else ""
        try:
            r = self.stub.SubmitPrompts(trainer_pb2.SubmitPromptsRequest(prompts=batch, request_id=request_id),
                                        timeout=30)
            self.submitted += len(r.accepted_ids)
        except Exception:  # noqa: BLE001 - counted, the soak goes on
            self.errors += 1

    def churn(self, latest_step: int) -> None:
        """A new connection: StepStatus, a WatchSteps stream read for one report and cancelled, closed."""
        import grpc

        from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc

        try:
            with grpc.insecure_channel(self.address) as ch:
                stub = trainer_pb2_grpc.TrainerServiceStub(ch)
                stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=30)
                call = stub.WatchSteps(trainer_pb2.WatchStepsRequest(after_step=max(0, latest_step - 1)), timeout=30)
                next(call)
                call.cancel()
        except Exception:  # noqa: BLE001
            self.errors += 1

    def replay(self, up_to: int) -> tuple[int, float]:
        """A new WatchSteps from the first step (what `grpo watch` does by default), read until it reaches
        step `up_to`: (reports received, seconds). The backlog it replays grows with the run."""
        import grpc

        from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc

        n = 0
        t0 = time.perf_counter()
        with grpc.insecure_channel(self.address) as ch:
            call = trainer_pb2_grpc.TrainerServiceStub(ch).WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=600)
            for r in call:
                n += 1
                if r.step.step >= up_to:
                    break
            call.cancel()
        return n, time.perf_counter() - t0

    def close(self) -> None:
        if self._watch_call is not None:
            self._watch_call.cancel()
        self.channel.close()
        self._watcher.join(5)


# ---------------------------------------------------------------------------------------------- run

COLUMNS = [
    # (key, header, scale, format)
    ("step", "step", 1, "{:6.0f}"),
    ("elapsed_s", "t_s", 1, "{:6.0f}"),
    ("s_per_step", "s/step", 1, "{:6.3f}"),
    ("cpu_ms_per_step", "cpu_ms", 1, "{:6.0f}"),
    ("status_p50_ms", "st_ms", 1, "{:5.1f}"),
    ("trainer_rss", "tr_MiB", 2**-20, "{:7.1f}"),
    ("trainer_fds", "tr_fd", 1, "{:5.0f}"),
    ("trainer_threads", "tr_thr", 1, "{:6.0f}"),
    ("trainer_procs", "tr_prc", 1, "{:6.0f}"),
    ("db", "db_KiB", 2**-10, "{:8.0f}"),
    ("wal", "wal_KiB", 2**-10, "{:8.0f}"),
    ("checkpoints", "ckpt_n", 1, "{:6.0f}"),
    ("checkpoint_bytes", "ckpt_MiB", 2**-20, "{:8.1f}"),
    ("store_bytes", "store_MiB", 2**-20, "{:9.1f}"),
    ("trainer_series", "tr_ser", 1, "{:6.0f}"),
    ("math_rss", "math_MiB", 2**-20, "{:8.1f}"),
    ("math_fds", "m_fd", 1, "{:4.0f}"),
    ("format_rss", "fmt_MiB", 2**-20, "{:7.1f}"),
    ("format_fds", "f_fd", 1, "{:4.0f}"),
    ("code_rss", "code_MiB", 2**-20, "{:8.1f}"),
    ("code_fds", "c_fd", 1, "{:4.0f}"),
    ("code_procs", "c_prc", 1, "{:5.0f}"),
    ("reward_series", "rw_ser", 1, "{:6.0f}"),
]


def sample(step: int, t0: float, trainer: subprocess.Popen[str], store: Path, tmetrics: int,
           rewards: dict[str, tuple[subprocess.Popen[bytes], int]]) -> tuple[dict[str, float], dict[str, int]]:
    """One row of the table, and the trainer's series per metric family."""
    tr = tree(trainer.pid)
    own = proc_status(trainer.pid)
    ckpt_bytes, ckpt_n = dir_size(store / "checkpoints")
    store_bytes, _ = dir_size(store)
    tseries = series(tmetrics)
    row: dict[str, float] = {
        "step": step, "elapsed_s": time.monotonic() - t0,
        "trainer_rss": own["rss"], "trainer_fds": own["fds"], "trainer_threads": own["threads"],
        "trainer_procs": tr["procs"] - 1, "trainer_cpu_s": cpu_seconds(trainer.pid),
        "db": file_size(store / "grpo.sqlite"), "wal": file_size(store / "grpo.sqlite-wal"),
        "shm": file_size(store / "grpo.sqlite-shm"),
        "checkpoints": ckpt_n, "checkpoint_bytes": ckpt_bytes, "store_bytes": store_bytes,
        "trainer_series": sum(tseries.values()), "reward_series": 0,
    }
    for name, (proc, mport) in rewards.items():
        t = tree(proc.pid)
        row[f"{name}_rss"], row[f"{name}_fds"] = t["rss"], t["fds"]
        row[f"{name}_threads"], row[f"{name}_procs"] = t["threads"], t["procs"]
        row["reward_series"] += sum(series(mport).values())
    return row, tseries


def slope_per_100(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs, times 100 (growth per 100 steps)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return 0.0 if sxx == 0 else 100 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def print_row(row: dict[str, float]) -> None:
    print(" ".join(fmt.format(row.get(k, 0) * scale) for k, _, scale, fmt in COLUMNS), flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the services and the trainer, drive --steps steps, sample, stop everything."""
    workdir = Path(tempfile.mkdtemp(prefix="grpo-bench-soak-")) if args.keep_dir is None else args.keep_dir
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "store"
    procs: list[subprocess.Popen[Any]] = []
    rewards: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    rows: list[dict[str, float]] = []
    first_series: dict[str, int] = {}
    last_series: dict[str, int] = {}
    client: Client | None = None
    trainer: subprocess.Popen[str] | None = None
    try:
        backends: dict[str, str] = {}
        specs = [("math", "grpo-reward-math", ["--workers", "1"]), ("format", "grpo-reward-format", [])]
        if args.code_every:
            specs.append(("code", "grpo-reward-code", ["--workers", "1"]))
        for name, entry, extra in specs:
            proc, address, mport = start_service(entry, *extra, log=workdir / f"{name}.log", metrics=True)
            procs.append(proc)
            rewards[name] = (proc, mport)
            backends[name] = address
        trainer, address, tmetrics = start_trainer(workdir, args, backends)
        print(f"trainer pid {trainer.pid} at {address}, metrics {tmetrics}; workdir {workdir}", flush=True)
        client = Client(address, args)
        print(" ".join(f"{h:>{len(fmt.format(0))}}" for _, h, _, fmt in COLUMNS), flush=True)
        t0 = time.monotonic()
        next_sample = 0
        step = 0
        stop = False
        while not stop:
            st = client.status()
            step = int(st.run.latest_step)
            if st.run.error:
                raise RuntimeError(f"the run failed: {st.run.error}; see {workdir / 'trainer.log'}")
            stop = step >= args.steps or time.monotonic() - t0 > args.max_minutes * 60
            if not stop:
                client.top_up(int(st.run.queue_depth))
            if step >= next_sample or stop:
                for _ in range(args.churn):
                    client.churn(step)
                row, tseries = sample(step, t0, trainer, store, tmetrics, rewards)
                if rows and step > rows[-1]["step"]:
                    dn = step - rows[-1]["step"]
                    row["s_per_step"] = (row["elapsed_s"] - rows[-1]["elapsed_s"]) / dn
                    row["cpu_ms_per_step"] = 1000 * (row["trainer_cpu_s"] - rows[-1]["trainer_cpu_s"]) / dn
                if client.latencies:
                    row["status_p50_ms"] = 1000 * sorted(client.latencies)[len(client.latencies) // 2]
                    client.latencies.clear()
                if not rows:
                    first_series = tseries
                last_series = tseries
                rows.append(row)
                print_row(row)
                next_sample = step + args.sample_every
            if stop and step < args.steps:
                print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached", flush=True)
            time.sleep(0 if stop else args.poll_seconds)
        wall = time.monotonic() - t0
        replayed, replay_s = client.replay(step)
    finally:
        if client is not None:
            client.close()
        if trainer is not None:
            stop_process(trainer)
        for p in procs:
            stop_process(p)
    half = rows[len(rows) // 2:]
    xs = [r["step"] for r in half]
    slopes = {k: slope_per_100(xs, [r.get(k, 0.0) for r in half]) for k, *_ in COLUMNS if k not in ("step", "elapsed_s")}
    for k in ("trainer_rss", "math_rss", "format_rss", "code_rss"):
        if k in slopes:
            slopes[k] /= 2**20  # MiB per 100 steps
    for k in ("db", "wal"):
        slopes[k] /= 2**10  # KiB per 100 steps
    for k in ("checkpoint_bytes", "store_bytes"):
        slopes[k] /= 2**20
    steps_done = rows[-1]["step"] if rows else 0
    print(f"\n{steps_done:.0f} steps in {wall:.0f} s ({wall / max(steps_done, 1):.2f} s/step), "
          f"{client.submitted if client else 0} prompts submitted, {client.watched if client else 0} watch reports, "
          f"{client.errors if client else 0} client errors, load {load_average()}", flush=True)
    print(f"a new WatchSteps from step 0 (grpo watch's default) replayed {replayed} reports in {replay_s:.2f} s "
          f"({1000 * replay_s / max(replayed, 1):.2f} ms each)", flush=True)
    print(f"growth per 100 steps (least-squares slope over the last {len(half)} samples, steps "
          f"{xs[0] if xs else 0:.0f}..{xs[-1] if xs else 0:.0f}):", flush=True)
    units = {"trainer_rss": "MiB", "math_rss": "MiB", "format_rss": "MiB", "code_rss": "MiB", "db": "KiB",
             "wal": "KiB", "checkpoint_bytes": "MiB", "store_bytes": "MiB"}
    for k, v in slopes.items():
        print(f"  {k:18s} {v:+10.2f} {units.get(k, '')}", flush=True)
    grown = {k: (first_series.get(k, 0), v) for k, v in last_series.items() if v != first_series.get(k, 0)}
    print(f"trainer /metrics: {sum(first_series.values())} series at the first sample, "
          f"{sum(last_series.values())} at the last; families that changed: "
          + (", ".join(f"{k} {a}->{b}" for k, (a, b) in sorted(grown.items())) or "none"), flush=True)
    if args.keep_dir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"rows": rows, "slopes_per_100_steps": slopes, "steps": steps_done, "wall_s": wall,
            "prompts_submitted": client.submitted if client else 0, "replay_reports": replayed,
            "replay_s": replay_s,
            "series_first": first_series, "series_last": last_series, "config": trainer_config(args)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="completed steps to run (default 3000: ~10 min on 2 cores)")
    p.add_argument("--max-minutes", type=float, default=14.0, help="stop sampling after this long whatever the step")
    p.add_argument("--sample-every", type=int, default=100, help="steps between samples")
    p.add_argument("--poll-seconds", type=float, default=0.25, help="StepStatus polling interval")
    p.add_argument("--churn", type=int, default=5,
                   help="new connections (StepStatus + a short WatchSteps, then closed) at each sample")
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--checkpoint-every", type=int, default=5, help="checkpoint.every_steps")
    p.add_argument("--keep", type=int, default=2, help="checkpoint.keep")
    p.add_argument("--code-every", type=int, default=4,
                   help="one prompt in this many is a code prompt for the sandbox (0: no sandbox)")
    p.add_argument("--no-request-ids", dest="request_ids", action="store_false",
                   help="submit without request ids (by default each SubmitPrompts has one, as `grpo submit` sends)")
    p.add_argument("--metadata-bytes", type=int, default=0,
                   help="bytes of metadata each math prompt carries (the store keeps them; default 0)")
    p.add_argument("--retention-seconds", type=float, default=None,
                   help="retention.prompt_content_seconds and retention.request_ids_seconds (default: the "
                   "trainer's, 7 days)")
    p.add_argument("--history-retention-seconds", type=float, default=None,
                   help="retention.prompt_rows_seconds and retention.step_reports_seconds (default: the "
                   "trainer's, kept for ever)")
    p.add_argument("--keep-dir", type=Path, default=None, help="work here and keep the store and logs")
    p.add_argument("--json", type=Path, default=None, help="also write the samples and slopes here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    print(f"soak benchmark; machine {machine_info()}", flush=True)
    results = run(args)
    results["machine"] = machine_info()
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
