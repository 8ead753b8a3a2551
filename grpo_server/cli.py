"""`grpo-server`: the trainer's command line.

    grpo-server --config FILE [--listen HOST:PORT] [--metrics-listen HOST:PORT] [--store-dir DIR]
                [--reward-backend NAME=HOST:PORT ...] [--log-level LEVEL]
    grpo-server --compact-store [--config FILE] [--store-dir DIR]

Flags override the config file. A setting it cannot start with (a bad value, an address in use, an
unreadable tokens or TLS file) exits with status 2 and one line naming the field or flag, before the
store directory is created or locked. SIGTERM or SIGINT drains: health goes NOT_SERVING, the current step
finishes, a checkpoint is written, and the process exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from grpo_server import __version__
from grpo_server.config import Config, ConfigError, listen_address_problem, load_config


def _backend(value: str) -> tuple[str, str]:
    """NAME=HOST:PORT, held to the registry's rules (validate_entry) for a name and an address."""
    from grpo_server.rewards.registry import BackendEntry, validate_entry

    name, sep, address = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=HOST:PORT, e.g. math=127.0.0.1:50061")
    problems = validate_entry(BackendEntry(name=name, address=address, source="flag"))
    if problems:
        detail = "; ".join(f"{v.field}: {v.description}" for v in problems)
        raise argparse.ArgumentTypeError(f"{value!r}: {detail} (expected NAME=HOST:PORT, e.g. math=127.0.0.1:50061)")
    return name, address


# The flags that override config fields, by field (argparse dest).
_FLAG_OF_FIELD = {"server.listen": "listen", "server.metrics_listen": "metrics_listen", "store_dir": "store_dir"}


def _setting_name(field: str, args: argparse.Namespace) -> str:
    """How to name a setting in an error: `--listen` when that flag set it, else the config field."""
    dest = _FLAG_OF_FIELD.get(field)
    return "--" + dest.replace("_", "-") if dest and getattr(args, dest) else field


def _directory(value: str) -> Path:
    """An argparse type: a directory path, not empty (an empty one would quietly mean the working directory)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("'' is not a directory path")
    return Path(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render --help in the docs)."""
    p = argparse.ArgumentParser(
        prog="grpo-server",
        description="GRPO trainer served over gRPC (grpo.trainer.v1.TrainerService).",
    )
    p.add_argument("--config", type=Path, help="YAML config file (see examples/); defaults apply without one")
    p.add_argument("--listen", help="gRPC listen address HOST:PORT (overrides server.listen)")
    p.add_argument("--metrics-listen", help="listen address HOST:PORT of Prometheus /metrics and the HTTP "
                   "/healthz probe (overrides server.metrics_listen)")
    p.add_argument("--store-dir", type=_directory, help="directory of the SQLite store, checkpoints and exports (overrides "
                   "store_dir); one trainer at a time: a second one on it exits with status 2")
    p.add_argument(
        "--reward-backend", type=_backend, action="append", default=[], metavar="NAME=HOST:PORT",
        help="add or replace a reward backend of the registry (repeatable)",
    )
    # Passed by the deepspeed launcher to every rank; the rank itself is read from RANK.
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="least severe level logged to stderr (default INFO)")
    p.add_argument("--compact-store", action="store_true",
                   help="apply retention.* to the store, rewrite its database to the size of what it holds "
                   "(SQLite VACUUM: needs free space for a copy), print the sizes and exit; the trainer must "
                   "be stopped")
    p.add_argument("--version", action="version", version=f"grpo-server {__version__}")
    return p


def compact_store(store_dir: Path, cfg: Config) -> int:
    """--compact-store: prune as the trainer would at start (retention.*), VACUUM, one line on stdout.
    No store there is nothing to do (status 0). Exit status 2 when a trainer holds it or it cannot be
    opened, 1 when SQLite fails (no space for the copy, say: the file is left as it was)."""
    import sqlite3

    from grpo_server.store import Store, StoreError, StoreInUse, lock_store
    from grpo_server.store.sqlite_store import FILENAME

    if not (store_dir / FILENAME).is_file():  # a first start (the chart's init container): nothing to do
        print(f"grpo-server compacted nothing: no store in {store_dir} (no {FILENAME})", flush=True)
        return 0
    with contextlib.ExitStack() as held:
        try:
            lock = lock_store(store_dir)
            if lock is not None:
                held.callback(lock.close)
            store = held.enter_context(contextlib.closing(Store(store_dir)))
        except (StoreInUse, StoreError) as err:  # a trainer holds it, or it cannot be opened
            print(f"grpo-server: {err}", file=sys.stderr)
            return 2
        except OSError as err:  # the lock file cannot be made (a full disk, permissions)
            print(f"grpo-server: cannot use the store directory {store_dir}: {err.strerror or err}", file=sys.stderr)
            return 2
        try:
            pruned = store.prune(**cfg.retention.cutoffs(time.time()))
            before, after = store.compact()
        except sqlite3.Error as err:
            room = ""
            if getattr(err, "sqlite_errorname", "") == "SQLITE_FULL":
                room = (f"; VACUUM needs room for a copy of the database ({store.file_bytes()} bytes) both in the "
                        "temporary directory (SQLITE_TMPDIR, else /var/tmp or /tmp) and on the store's volume")
            print(f"grpo-server: --compact-store: {err}{room} (nothing is lost: each part is one transaction, and "
                  "VACUUM replaces the file only once its copy is whole)", file=sys.stderr)
            return 1
    print(f"grpo-server compacted {store_dir}: {before} -> {after} bytes (dropped the content of "
          f"{pruned.prompt_contents} finished prompts, {pruned.prompt_rows} finished prompts' rows, "
          f"{pruned.request_ids} request ids, {pruned.step_reports} step reports and {pruned.export_records} export "
          "records)", flush=True)
    return 0


def library_output_to_stderr() -> None:
    """Keep stdout for the one line scripts read (`grpo-server listening on port ...`): libraries that log
    to stdout are pointed at stderr before they load. vLLM reads VLLM_LOGGING_STREAM (set in
    grpo_server/__init__.py). DeepSpeed, which transformers imports through accelerate whenever it is
    installed, gives its logger a handler on stdout when first imported (and warns then, on a machine
    without CUDA, "Setting accelerator to CPU ..."): imported here with stdout pointed at stderr, that
    handler writes to stderr for the rest of the process. A reader that stops after the listening line
    would otherwise leave the pipe to fill and the trainer to block on its next log line."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            import deepspeed  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed or broken here: the deepspeed engine says so when chosen
        pass


def _one_rank_environment() -> None:
    """The variables a launcher would set for a single rank, with a free loopback port for the process
    group's store; those already set are kept."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port))):
        os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> int:
    """Run the trainer until SIGTERM/SIGINT; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for flag, value in (("--listen", args.listen), ("--metrics-listen", args.metrics_listen)):
        problem = listen_address_problem(value) if value else None
        if problem:
            print(f"grpo-server: {flag}: {problem}", file=sys.stderr)
            return 2
    if args.listen and args.listen == args.metrics_listen and not args.listen.endswith(":0"):
        print(f"grpo-server: --listen and --metrics-listen are both {args.listen}: the gRPC API and the metrics "
              "endpoint need ports of their own", file=sys.stderr)
        return 2
    # Flags go into the config before it is checked: a flag replaces the file's value even when it is bad.
    overrides: dict[str, Any] = {}
    server = {k: v for k, v in (("listen", args.listen), ("metrics_listen", args.metrics_listen)) if v}
    if server:
        overrides["server"] = server
    if args.store_dir:
        overrides["store_dir"] = str(args.store_dir)
    try:  # --reward-backend replaces the config's entry of that name whole (in the registry's layer of flags)
        cfg = load_config(args.config, flag_backends={name for name, _ in args.reward_backend}, **overrides)
    except ConfigError as err:
        print(f"grpo-server: {err}", file=sys.stderr)
        return 2
    store_dir = Path(cfg.store_dir).expanduser()
    if args.compact_store:
        return compact_store(store_dir, cfg)

    library_output_to_stderr()
    from grpo_server.app import StartupError, TrainerApp, run_worker_rank

    # Under a DeepSpeed launch (`deepspeed --num_gpus N $(which grpo-server) ...` or torchrun) every rank
    # runs this command; rank 0 serves the API and drives the loop, the others follow it.
    if cfg.training.engine == "deepspeed" and "WORLD_SIZE" not in os.environ:
        _one_rank_environment()  # started without a launcher: one rank (DeepSpeed looked for MPI: mpi4py)
    world = os.environ.get("WORLD_SIZE", "1")
    if cfg.training.engine != "deepspeed" and world.isdigit() and int(world) > 1:
        # Each rank started a whole trainer of its own: one served, the others failed on its store.
        print(f"grpo-server: training.engine {cfg.training.engine!r} runs in one process, but this is one of "
              f"WORLD_SIZE={world} ranks: set training.engine: deepspeed (or start one process)", file=sys.stderr)
        return 2
    if cfg.training.engine == "deepspeed" and world.isdigit() and int(world) > 1 and cfg.rollout.engine == "vllm":
        from grpo_server.app import VLLM_BESIDE_RANKS

        print(f"grpo-server: rollout.engine 'vllm' cannot run beside DeepSpeed's WORLD_SIZE={world} ranks: "
              f"{VLLM_BESIDE_RANKS}; set rollout.engine: hf (auto picks hf here)", file=sys.stderr)
        return 2
    if cfg.training.engine == "deepspeed" and int(os.environ.get("RANK", "0")) != 0:
        # A launcher forwards SIGTERM to every rank; workers must outlive rank 0's drain (its final
        # checkpoint is collective) and exit when rank 0 tells them to stop.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run_worker_rank(cfg, store_dir)
        return 0

    app = TrainerApp(cfg, store_dir, backend_overrides=list(args.reward_backend), config_file=args.config)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():  # a second signal during the drain: the operator wants out now, as with Ctrl-C twice
            logging.getLogger("grpo_server.cli").warning(
                "received %s again: exiting without finishing the drain (nothing after the last checkpoint is "
                "kept; its prompts go back to the queue at the next start)", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(128 + signum)
        logging.getLogger("grpo_server.cli").info("received %s", signal.Signals(signum).name)
        stop.set()

    # SIGHUP (the terminal closed, or `kill -HUP`) drains too: its default action would end the process
    # mid-step without a checkpoint.
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    from grpo_server.rewards.registry import RegistryError
    from grpo_server.store import StoreFull, StoreInUse

    try:
        app.start()
    except RegistryError as err:  # the registry file (or config) names a backend the rules reject
        print(f"grpo-server: reward registry: {err}", file=sys.stderr)
        return 2
    except StoreInUse as err:  # before anything in the store was touched
        print(f"grpo-server: {err}", file=sys.stderr)
        return 2
    except StartupError as err:  # a file, address or directory it cannot use; the store is untouched
        print(f"grpo-server: {_setting_name(err.field, args)}: {err.problem}", file=sys.stderr)
        return 2
    except StoreFull as err:  # putting the leased prompts back (or another start-up write) did not fit
        print(f"grpo-server: {_setting_name('store_dir', args)}: {err}", file=sys.stderr)
        return 2
    # One line tools and tests can parse to find the bound ports (port 0 picks free ones).
    print(f"grpo-server listening on port {app.api_port} metrics {app.metrics_port or '-'} pid {os.getpid()}", flush=True)
    while not stop.wait(0.5):
        pass
    app.shutdown()
    # A run that had failed (a step raised, the model did not load, the drain's checkpoint failed) ends
    # with status 1, so that systemd, Kubernetes and scripts see it; a clean drain with 0.
    return 1 if app.control.state.value == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
