"""`grpo`: the command line of the trainer's API (DESIGN.md section 6). See docs/client.md.

    grpo --target HOST:PORT [--token T | --token-file F] [--tls] [--ca F] [--cert F --key F]
         [--server-name NAME] [--json] COMMAND ...

With --json every command prints exactly one JSON document on stdout (protobuf messages in their JSON
mapping with the proto field names), errors included. Errors print the status code and the server's
field violations; the exit code is 2 for INVALID_ARGUMENT (a bad prompt file, a bad flag), 1 for any
other failure, 130 for Ctrl-C (except in `watch`, which it ends: 0) and 141 when stdout's reader goes away.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2
from grpo_client.client import DEFAULT_TIMEOUT_SECONDS, TrainerClient, TrainerError, check_key_pair
from grpo_client.prompts import PromptFileError, load_prompt_file
from grpo_client.words import counted, short_reason, span

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2
EXIT_INTERRUPTED = 128 + 2  # as a process killed by SIGINT (Ctrl-C)
EXIT_BROKEN_PIPE = 128 + 13  # as a process killed by SIGPIPE
# An id the trainer does not know was never submitted, or its row went under the trainer's retention.
UNKNOWN_WHY = " (never submitted, or deleted under retention.prompt_rows_seconds)"
NO_PROMPTS = "no prompts (none submitted, or deleted under retention.prompt_rows_seconds)"
WATCH_LAST = 10  # steps `grpo watch` shows first, before the live ones
DEFAULT_TARGET = "localhost:50051"
SUBMIT_ATTEMPTS = 5  # tries of a batch the trainer refuses as full or unavailable (1 + 2 + 4 + 8 s apart)


def to_dict(message: Message) -> dict[str, Any]:
    """A protobuf message in its JSON mapping: proto field names, fields at their defaults included."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def _nonempty(text: str) -> str:
    """An argparse type: a string with something in it."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


INT64_MAX, INT32_MAX = 2**63 - 1, 2**31 - 1  # the proto fields' ranges


def _whole_number(minimum: int, maximum: int = INT64_MAX) -> Callable[[str], int]:
    """An argparse type: an integer from `minimum` to `maximum`."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give a whole number >= {minimum}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{n} is too small; give a whole number >= {minimum}")
        if n > maximum:
            raise argparse.ArgumentTypeError(f"{n} is too large; give a whole number <= {maximum}")
        return n

    return parse


# The longest --timeout: gRPC counts a deadline in nanoseconds of an int64, so from ~9.2e9 s on every call
# failed at once with DEADLINE_EXCEEDED.
MAX_TIMEOUT_SECONDS = 1e8  # over 3 years


def _seconds(minimum_exclusive: float | None, maximum: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, > `minimum_exclusive` (None: >= 0), at most `maximum`."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            x = math.nan
        ok = math.isfinite(x) and (x > minimum_exclusive if minimum_exclusive is not None else x >= 0)
        if not ok:
            bound = f"> {minimum_exclusive:g}" if minimum_exclusive is not None else ">= 0"
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds {bound}")
        if maximum is not None and x > maximum:
            raise argparse.ArgumentTypeError(f"{text!r}: at most {maximum:g} seconds")
        return x

    return parse


_count = _whole_number(0)
_positive = _whole_number(1)


class _ArgumentError(Exception):
    """A command line argparse refused: `parser` (the command's) and argparse's `message`."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser, self.message = parser, message


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused command line raises _ArgumentError instead of exiting, so that `main` can
    also answer it with a JSON document under --json (subcommand parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(self, message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `grpo` (its --help is the CLI reference)."""
    p = _Parser(
        prog="grpo",
        description="Drive a GRPO trainer over gRPC: submit prompts, watch steps, export checkpoints, "
        "control the run and its reward backends.",
    )
    now = (os.environ.get("GRPO_TARGET") or DEFAULT_TARGET).replace("%", "%%")
    p.add_argument("--target", metavar="HOST:PORT",
                   help=f"HOST:PORT of the trainer (default: $GRPO_TARGET, else {DEFAULT_TARGET}; now {now})")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", metavar="T", help="bearer token (default: $GRPO_TOKEN)")
    auth.add_argument("--token-file", type=Path, metavar="F",
                      help="file holding the bearer token (default: $GRPO_TOKEN_FILE)")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --ca)")
    p.add_argument("--ca", type=Path, metavar="F", help="PEM file of the CA to trust (implies --tls)")
    p.add_argument("--cert", type=Path, metavar="F",
                   help="PEM file of a client certificate, for a trainer that requires one (mTLS; with --key; "
                   "implies --tls)")
    p.add_argument("--key", type=Path, metavar="F", help="PEM file of the --cert certificate's private key")
    p.add_argument("--server-name", type=_nonempty, metavar="NAME",
                   help="the name the trainer's certificate must carry when it is not --target's host, e.g. "
                   "through kubectl port-forward (implies --tls)")
    p.add_argument("--timeout", type=_seconds(0.0, MAX_TIMEOUT_SECONDS), default=DEFAULT_TIMEOUT_SECONDS, metavar="S",
                   help="deadline of each call in seconds (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON document")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("submit", help="queue the prompts of a JSON Lines file")
    s.add_argument("file", type=Path, metavar="FILE.jsonl")
    s.add_argument("--request-id", type=_nonempty, metavar="ID",
                   help="idempotency key prefix; batch i is sent as ID-i (default: derived from the content)")
    s.add_argument("--batch-size", type=_positive, default=256, metavar="N",
                   help="prompts per request, at least 1 (default: %(default)s; fewer where the trainer's "
                        "message size or prompt count limit refuses a batch)")

    s = sub.add_parser("status", help="one step (the latest by default) and the run")
    s.add_argument("--step", type=_count, default=0, metavar="N", help="step number (default: the latest)")
    s.add_argument("--samples", action="store_true",
                   help="also show the completions the trainer kept of the step, with each reward backend's "
                        "score and feedback")

    s = sub.add_parser("watch", help="a live table of steps as they finish (Ctrl-C to stop)")
    start = s.add_mutually_exclusive_group()
    start.add_argument("--last", type=_count, default=None, metavar="N",
                       help=f"first show the last N steps (default: {WATCH_LAST}; 0: only the steps from now on)")
    start.add_argument("--after", type=_count, default=None, metavar="N",
                       help="first show the steps after step N instead (0: every step of the run)")
    s.add_argument("--include-running", action="store_true", help="also show steps when they start")
    s.add_argument("--max-steps", type=_count, default=0, metavar="N", help="stop after N reports (default: never)")
    s.add_argument("--follow", action="store_true",
                   help="keep watching across trainer restarts: reconnect when the stream ends or the trainer "
                        "is unavailable (gives up after 10 minutes without an answer), and show the steps a "
                        "restart runs again")

    s = sub.add_parser("export", help="export a Hugging Face checkpoint directory on the trainer")
    s.add_argument("destination", metavar="DEST", help="directory on the trainer's file system ('' = default)")
    s.add_argument("--wait", action="store_true", help="wait until the export is done, with a progress bar")
    s = sub.add_parser("export-status", help="an export's state and files, by the id `grpo export` printed (also "
                                             "one started before the trainer restarted)")
    s.add_argument("export_id", metavar="EXPORT_ID")
    s.add_argument("--wait", action="store_true", help="wait until the export is done, with a progress bar")

    s = sub.add_parser("exports", help="the exports the trainer knows of, the newest first (also those started "
                                       "before it restarted)")
    s.add_argument("--state", choices=["pending", "writing", "done", "failed"], help="only exports in this state")
    s.add_argument("--limit", type=_count, default=0, metavar="N", help="show at most N exports (default: 0, all)")

    b = sub.add_parser("backends", help="list, set or delete reward backends").add_subparsers(
        dest="backends_command", required=True, metavar="ACTION")
    b.add_parser("list", help="the reward backends in the registry")
    s = b.add_parser("set", help="add or replace a reward backend")
    s.add_argument("name", metavar="NAME")
    s.add_argument("address", metavar="HOST:PORT")
    s.add_argument("--timeout", dest="backend_timeout", type=_seconds(None), default=0.0, metavar="S",
                   help="Score deadline in seconds (default: the trainer's, 30)")
    s.add_argument("--max-batch", type=_whole_number(0, INT32_MAX), default=0, metavar="N",
                   help="items per call (default: the backend's)")
    s.add_argument("--max-concurrency", type=_whole_number(0, INT32_MAX), default=0, metavar="N",
                   help="calls in flight (default: 4)")
    s.add_argument("--backend-tls", action="store_true", help="the trainer connects to the backend with TLS")
    s.add_argument("--backend-token-file", default="", metavar="PATH",
                   help="token file on the trainer for the backend")
    s.add_argument("--backend-ca-file", default="", metavar="PATH",
                   help="with --backend-tls: PEM roots on the trainer that verify the backend (default: gRPC's)")
    s.add_argument("--backend-cert-file", default="", metavar="PATH",
                   help="with --backend-tls: the trainer's client certificate (PEM, on the trainer), for mTLS")
    s.add_argument("--backend-key-file", default="", metavar="PATH",
                   help="with --backend-tls: the private key of --backend-cert-file (PEM, on the trainer)")
    s = b.add_parser("delete", help="remove a reward backend")
    s.add_argument("name", metavar="NAME")

    s = sub.add_parser("prompts", help="submitted prompts and where each is (queued, leased, trained, failed and why, "
                       "cancelled)")
    s.add_argument("ids", nargs="*", metavar="ID", help="only these prompt ids (default: every prompt)")
    s.add_argument("--state", choices=["queued", "leased", "trained", "failed", "cancelled"],
                   help="only prompts in this state")
    s.add_argument("--limit", type=_count, default=0, metavar="N", help="show at most N prompts (default: 0, all)")

    s = sub.add_parser("cancel", help="take queued prompts out of the queue before a step trains on them")
    s.add_argument("ids", nargs="*", metavar="ID", help="ids of the prompts to cancel")
    s.add_argument("--file", type=Path, metavar="FILE.jsonl", help="also every prompt id of this prompt file")

    sub.add_parser("pause", help="pause training after the current step")
    sub.add_parser("resume", help="resume a paused run")

    s = sub.add_parser("plot", help="write a PNG of reward mean±std, KL and step seconds over the run")
    s.add_argument("output", type=Path, metavar="OUT.png")
    s.add_argument("--title", default="GRPO run", help="figure title")

    for command in _commands(p):  # `grpo status --json` as well as `grpo --json status`
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="print exactly one JSON document (as grpo --json)")
    return p


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of the commands that run (`status`, `backends list`, ...), not of their groups."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    return [leaf for g in groups for child in g.choices.values() for leaf in _commands(child)]


class Printer:
    """Human lines or one JSON document."""

    def __init__(self, as_json: bool, out: TextIO) -> None:
        self.json = as_json
        self.out = out

    def line(self, text: str = "") -> None:
        if not self.json:
            print(text, file=self.out, flush=True)

    def document(self, doc: Any) -> None:
        if self.json:
            json.dump(doc, self.out, indent=2, sort_keys=False)
            self.out.write("\n")
            self.out.flush()


# ------------------------------------------------------------------------------------------ commands


def cmd_submit(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    from tqdm import tqdm

    loaded = load_prompt_file(args.file)  # all of it first: a bad file sends nothing
    if not loaded.prompts:  # nothing is sent, so there is no queue depth to report
        pr.document({"accepted_ids": [], "queue_depth": None, "batches": 0, "duplicate_batches": 0,
                     "request_ids": [], "resized": [], "replayed_ids": []})
        pr.line(f"{loaded.source} holds no prompts: nothing submitted")
        return EXIT_OK
    accepted: list[str] = []

    def on_batch(n: int, response: trainer_pb2.SubmitPromptsResponse) -> None:
        bar.update(n)
        accepted.extend(response.accepted_ids)

    def on_retry(exc: TrainerError, wait: float, attempt: int) -> None:  # a wait must not look like a hang
        bar.write(retry_notice(exc, wait, attempt), file=sys.stderr)

    with tqdm(total=len(loaded.prompts), unit="prompt", desc="submit", disable=True if pr.json else None,
              file=sys.stderr) as bar:
        # A refused batch raises SubmitError: the file's lines, and what the batches before it queued.
        try:
            result = client.submit_file(loaded, batch_size=args.batch_size, request_id=args.request_id,
                                        on_batch=on_batch, on_retry=on_retry,
                                        max_attempts=SUBMIT_ATTEMPTS)
        except KeyboardInterrupt:
            message = (f"interrupted: the trainer had accepted {len(accepted)} of the "
                       f"{counted(len(loaded.prompts), 'prompt')}; the batch in flight may or may not have been "
                       "queued. To carry on, run the same command again (same batch size and request id): the "
                       "trainer answers the batches it already accepted as duplicates, by their request ids, and "
                       "queues nothing twice.")
            return _fail(pr, {"code": "INTERRUPTED", "message": message, "accepted_ids": accepted}, message,
                         EXIT_INTERRUPTED)
    pr.document({
        "accepted_ids": result.accepted_ids, "queue_depth": result.queue_depth, "batches": result.batches,
        "duplicate_batches": result.duplicate_batches, "request_ids": result.request_ids,
        "resized": result.resized, "replayed_ids": result.replayed_ids,
    })
    for note in result.resized:
        print(f"note: {note}", file=sys.stderr)
    n, dup = len(result.queued_ids), result.duplicate_batches
    batches, replayed = counted(result.batches, "batch"), counted(len(result.replayed_ids), "prompt")
    if dup and dup == result.batches:
        which = "the batch" if dup == 1 else f"all {batches}"  # not "all 1 batch"
        pr.line(f"nothing queued: {which} ({replayed}) had been submitted before under the same request ids, "
                "and the trainer answered with its first answers. To queue these prompts again (after they were "
                "trained, failed or cancelled), give --request-id a new value.")
    elif dup:
        pr.line(f"submitted {counted(n, 'new prompt')} in {batches} ({dup} of them, {replayed}, "
                f"already submitted before: not queued again); queue depth {result.queue_depth}")
    else:
        pr.line(f"submitted {counted(n, 'prompt')} in {batches}; queue depth {result.queue_depth}")
    return EXIT_OK


def retry_notice(exc: TrainerError, wait: float, attempt: int) -> str:
    """The line `grpo submit` prints before waiting to send a refused batch again: the trainer's own
    reason (its status message, on one line and at most 200 characters) when it gave one, else what the
    code means; the wait in seconds; and which retry of how many this is."""
    why = short_reason(exc.message) or (
        "its queue is full" if exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED else "it is unavailable")
    return (f"the trainer refused a batch ({exc.code.name}: {why}); sending it again in {wait:g} s "
            f"(retry {attempt} of {SUBMIT_ATTEMPTS - 1})")


def _run_line(run: trainer_pb2.RunStatus) -> str:
    state = _enum_name(trainer_pb2.RunState, run.state, "RUN_STATE_")
    extra = " (pause requested)" if run.pause_requested else ""
    err = f"\nerror: {run.error}" if run.error else ""
    waiting = f"\nwaiting: {run.waiting_for}" if run.waiting_for else ""
    return (f"run: {state}{extra}  latest step {run.latest_step}  checkpoint step {run.checkpoint_step}  "
            f"queue {run.queue_depth}  trained {run.prompts_trained}  failed {run.prompts_failed}{err}{waiting}")


# What a skipped or failed step's report measures, besides its phases' seconds.
_MEASURED_WITHOUT_UPDATE = frozenset({"prompts", "completions", "masked_reward_failures", "extra"})


def cmd_status(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    response = client.step_status(args.step, include_samples=args.samples)
    pr.document(to_dict(response))
    pr.line(_run_line(response.run))
    if not response.HasField("step"):
        pr.line("no step yet")
        return EXIT_OK
    s = response.step
    pr.line(f"step {s.step}: {_enum_name(trainer_pb2.StepState, s.state, 'STEP_STATE_')}  engine {s.rollout_engine}  "
            f"prompts {len(s.prompt_ids)}" + (f" ({len(s.dropped_prompt_ids)} dropped by dynamic sampling)"
                                              if s.dropped_prompt_ids else ""))
    if s.error:
        pr.line(f"  error: {s.error}")
    if s.state == trainer_pb2.STEP_STATE_RUNNING:  # its metrics are all zero until then, not measured zeros
        pr.line("  (running: its metrics come when the step finishes)")
        return EXIT_OK
    metrics = to_dict(s.metrics)
    if s.state in (trainer_pb2.STEP_STATE_SKIPPED, trainer_pb2.STEP_STATE_FAILED):
        # No update was made: only its counts, phase times and `extra` were measured; the other fields are
        # zeros nobody measured (a reward mean of 0, a truncated fraction of 0).
        metrics = {k: v for k, v in metrics.items() if k in _MEASURED_WITHOUT_UPDATE or k.endswith("_seconds")}
        pr.line("  (no update: only its counts and times were measured)")
    for key, value in metrics.items():
        if isinstance(value, dict):
            for k, v in sorted(value.items()):
                pr.line(f"  {key}.{k}: {v:.6g}")
        else:
            pr.line(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    if args.samples:
        _print_samples(response.samples, pr)
        if response.samples_left_out:
            pr.line(f"{response.samples_left_out} more sample(s) of this step left out to keep the response under "
                    "4 MiB (gRPC's default receive limit)")
    return EXIT_OK


def _print_samples(samples: Sequence[trainer_pb2.CompletionSample], pr: Printer) -> None:
    """The kept completions, each under a header line: prompt, place in the group, reward (per backend),
    how it ended; then its text, and each backend's feedback."""
    if not samples:
        pr.line("no samples kept of this step (training.samples_per_step is 0, or the step is older than "
                "training.samples_keep_steps)")
        return
    for c in samples:
        parts = [f"{b.backend} {b.score:.4g}" if b.scored else f"{b.backend} {b.status}" for b in c.scores]
        reward = f"{c.reward:.4g}" if c.reward_valid else "masked"
        pr.line(f"--- prompt {c.prompt_id} #{c.index}: reward {reward} ({', '.join(parts)})  "
                f"{c.finish_reason}, {c.completion_tokens} tokens{', text cut' if c.text_truncated else ''}")
        pr.line(c.text)
        for b in c.scores:
            why = b.feedback or b.message
            if why:
                pr.line(f"  [{b.backend}] {why}")


_WATCH_COLUMNS = ("step", "state", "reward", "±std", "kl", "loss", "masked", "tok/s", "step s")
_WATCH_FORMAT = "{:>6} {:<9} {:>8} {:>8} {:>9} {:>9} {:>6} {:>8} {:>7}"


def watch_row(s: trainer_pb2.StepReport) -> str:
    """One row of the `watch` table."""
    m = s.metrics
    state = _enum_name(trainer_pb2.StepState, s.state, "STEP_STATE_")
    if s.state != trainer_pb2.STEP_STATE_COMPLETED:
        return _WATCH_FORMAT.format(s.step, state, *["-"] * 7) + (f"  {s.error}" if s.error else "")
    return _WATCH_FORMAT.format(
        s.step, state, f"{m.reward_mean:.3f}", f"{m.reward_std:.3f}", f"{m.kl:.4f}", f"{m.loss:.4f}",
        m.masked_reward_failures, f"{m.tokens_per_second:.0f}", f"{m.step_seconds:.1f}",
    )


def _watch_start(client: TrainerClient, args: argparse.Namespace) -> int:
    """The step `grpo watch` starts after: --after, or the latest step less --last (a long run's whole
    history would scroll by first). Under --follow a trainer not reachable yet is waited for: then it
    shows the whole run it finds."""
    if args.after is not None:
        return int(args.after)
    last = WATCH_LAST if args.last is None else args.last
    try:
        status = client.step_status()
    except TrainerError as exc:
        if not (args.follow and exc.code is grpc.StatusCode.UNAVAILABLE):
            raise
        return 0
    latest = int(status.run.latest_step)
    # The latest step may be running: the last finished one is before it (counted as one of the last N, a
    # running step was shown in their place, and --last 0 never showed it end: WatchSteps sends only steps
    # after `after_step`).
    if status.HasField("step") and status.step.state == trainer_pb2.STEP_STATE_RUNNING:
        latest = int(status.step.step) - 1
    return max(0, latest - last)


def cmd_watch(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    seen: list[dict[str, Any]] = []
    count = 0
    pr.line(_WATCH_FORMAT.format(*_WATCH_COLUMNS))
    ended = False  # by the trainer (without --follow), not by --max-steps or Ctrl-C
    try:
        after = _watch_start(client, args)
        if args.follow:
            def reconnecting(reason: str) -> None:
                print(f"{reason}; reconnecting", file=sys.stderr, flush=True)

            stream = client.follow_steps(after, include_running=args.include_running, on_reconnect=reconnecting)
        else:
            stream = client.watch_steps(after, args.include_running)
        place = after  # the last finished step shown, as the stream counts its place
        for response in stream:
            count += 1
            if response.forgotten_through > place:
                print(f"{span('step', place + 1, response.forgotten_through)}: no longer kept "
                      "(retention.step_reports_seconds)", file=sys.stderr, flush=True)
            if response.step.state != trainer_pb2.STEP_STATE_RUNNING:
                place = int(response.step.step)
            if pr.json:
                seen.append(to_dict(response))
            pr.line(watch_row(response.step))
            if args.max_steps and count >= args.max_steps:
                break
        else:
            ended = not args.follow
    except KeyboardInterrupt:  # the usual way to stop watching
        pass
    except TrainerError as exc:  # the steps read before it stay in the one document
        if pr.json:
            pr.document({"steps": seen, "error": exc.to_dict()})
        else:
            print(f"error: {exc}", file=sys.stderr)
        return _exit_code(exc)
    if ended:
        print("the trainer ended the stream (it is shutting down); grpo watch --follow would reconnect",
              file=sys.stderr)
    pr.document({"steps": seen})
    return EXIT_OK


def cmd_export(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    return _show_export(client, client.export_checkpoint(args.destination, wait=False), args.wait, pr)


def cmd_export_status(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    return _show_export(client, client.get_export(args.export_id), args.wait, pr)


def _show_export(client: TrainerClient, export: trainer_pb2.Export, wait: bool, pr: Printer) -> int:
    """Print an export (after polling it to its end with `wait`); exit 1 when it failed."""
    if wait and export.state not in (trainer_pb2.EXPORT_STATE_DONE, trainer_pb2.EXPORT_STATE_FAILED):
        from tqdm import tqdm

        with tqdm(total=100, unit="%", desc="export", disable=True if pr.json else None, file=sys.stderr) as bar:
            def progress(e: trainer_pb2.Export) -> None:
                bar.update(max(0, round(e.progress * 100) - bar.n))

            try:
                export = client.wait_export(export.export_id, on_progress=progress)
            except KeyboardInterrupt:  # the export goes on in the trainer: say which, to follow it
                message = (f"interrupted: export {export.export_id} (step {export.step} to {export.destination}) "
                           f"goes on in the trainer; grpo export-status {export.export_id} --wait follows it")
                return _fail(pr, {"code": "INTERRUPTED", "message": message, "export_id": export.export_id},
                             message, EXIT_INTERRUPTED)
    pr.document(to_dict(export))
    state = _enum_name(trainer_pb2.ExportState, export.state, "EXPORT_STATE_")
    pr.line(f"export {export.export_id}: {state}  step {export.step}  {export.destination}")
    if export.state == trainer_pb2.EXPORT_STATE_DONE:
        pr.line(f"  {counted(len(export.files), 'file')}, manifest.json lists their sha256")
    if export.state == trainer_pb2.EXPORT_STATE_FAILED:
        if not pr.json:
            print(f"error: export failed: {export.error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


T = TypeVar("T")


def _first(items: Iterable[T], limit: int) -> list[T]:
    """The first `limit` items (0: all); a lazy listing reads no page past them."""
    return list(itertools.islice(items, limit or None))


def cmd_exports(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    state = trainer_pb2.ExportState.Value(f"EXPORT_STATE_{(args.state or 'unspecified').upper()}")
    found = _first(client.iter_exports(state, page_size=min(args.limit, 1000)), args.limit)
    pr.document({"exports": [to_dict(e) for e in found]})
    if not found:
        pr.line(f"no {args.state} exports" if args.state else "no exports (start one with `grpo export`)")
        return EXIT_OK
    fmt = "{:<16} {:<7} {:>6} {:>5}  {:<20}  {}"
    pr.line(fmt.format("id", "state", "step", "done", "started (UTC)", "destination"))
    for e in found:
        started = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.started_at.seconds))
                   if e.HasField("started_at") else "-")
        pr.line(fmt.format(e.export_id, _enum_name(trainer_pb2.ExportState, e.state, "EXPORT_STATE_"), e.step,
                           f"{e.progress:.0%}", started, e.destination + (f"  ({e.error})" if e.error else "")))
    return EXIT_OK


def _batch(b: trainer_pb2.RewardBackend) -> str:
    """The items per Score call: the entry's max_batch_size, else (0) the backend's own Describe value,
    else "-" (not described yet: unreachable)."""
    if b.max_batch_size:
        return str(b.max_batch_size)
    described = b.description.capabilities.max_batch_size
    return str(described) if described else "-"


def cmd_backends(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    if args.backends_command == "list":
        response = client.list_backends()
        pr.document(to_dict(response))
        pr.line(f"registry version {response.registry_version}")
        fmt = "{:<16} {:<24} {:<14} {:<10} {:<18} {:>8} {:>6} {:>5}"
        pr.line(fmt.format("name", "address", "source", "circuit", "kinds", "timeout", "batch", "conc"))
        for b in response.backends:
            kinds = ",".join(_enum_name(reward_pb2.ReferenceKind, k, "REFERENCE_KIND_") for k in b.reference_kinds)
            pr.line(fmt.format(
                b.name, b.address, _enum_name(trainer_pb2.BackendSource, b.source, "BACKEND_SOURCE_"),
                _enum_name(trainer_pb2.CircuitState, b.circuit, "CIRCUIT_STATE_"), kinds or "-",
                f"{b.timeout_seconds:g}s", _batch(b), b.max_concurrency,
            ))
        return EXIT_OK
    if args.backends_command == "set":
        stored = client.set_backend(
            args.name, args.address, timeout_seconds=args.backend_timeout, max_batch_size=args.max_batch,
            max_concurrency=args.max_concurrency, tls=args.backend_tls, token_file=args.backend_token_file,
            ca_file=args.backend_ca_file, cert_file=args.backend_cert_file, key_file=args.backend_key_file,
        )
        pr.document(to_dict(stored))
        pr.line(f"set {stored.backend.name} -> {stored.backend.address} (registry version {stored.registry_version})")
        return EXIT_OK
    version = client.delete_backend(args.name)
    pr.document({"registry_version": str(version)})  # as list and set print it: int64 is a JSON string
    pr.line(f"deleted {args.name} (registry version {version})")
    return EXIT_OK


def cmd_prompts(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    state = trainer_pb2.PromptState.Value(f"PROMPT_STATE_{(args.state or 'unspecified').upper()}")
    found = _first(client.iter_prompts(args.ids, state, page_size=min(args.limit, 1000)), args.limit)
    pr.document({"prompts": [to_dict(p) for p in found]})
    if not found and (not args.ids or args.state or args.limit):  # with ids and neither: `unknown:` says it
        pr.line(f"no {args.state} prompts" if args.state else NO_PROMPTS)
        return EXIT_OK
    fmt = "{:<24} {:<8} {:>6} {:>10} {:>8}  {}"
    pr.line(fmt.format("id", "state", "step", "checkpoint", "attempts", "reason"))
    for p in found:
        pr.line(fmt.format(p.id, _enum_name(trainer_pb2.PromptState, p.state, "PROMPT_STATE_"),
                           p.step or "-", p.checkpoint_step or "-", p.attempts, p.reason))
    missing = sorted(set(args.ids) - {p.id for p in found})
    if missing and not args.state and not args.limit:
        pr.line(f"unknown: {', '.join(missing)}{UNKNOWN_WHY}")
    return EXIT_OK


def cmd_cancel(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    ids = list(args.ids)
    if args.file is not None:
        ids += [p.id for p in load_prompt_file(args.file).prompts]
    ids = list(dict.fromkeys(ids))  # each once, in order
    if not ids:  # an empty prompt file: the trainer was not asked, so its queue depth is not known
        pr.document({**to_dict(trainer_pb2.CancelPromptsResponse()), "queue_depth": None})
        pr.line(f"{args.file} holds no prompts: nothing to cancel")
        return EXIT_OK
    response = client.cancel_all(ids)
    pr.document(to_dict(response))
    pr.line(f"cancelled {counted(len(response.cancelled_ids), 'queued prompt')}; queue depth {response.queue_depth}")
    for p in response.not_cancelled:
        state = _enum_name(trainer_pb2.PromptState, p.state, "PROMPT_STATE_")
        # A leased prompt stays held by its step until a checkpoint covers it, after the step too.
        why = {trainer_pb2.PROMPT_STATE_LEASED: f"held by step {p.step}: in training, or trained and not yet in a "
                                                "checkpoint",
               trainer_pb2.PROMPT_STATE_TRAINED: f"trained, in checkpoint {p.checkpoint_step}",
               trainer_pb2.PROMPT_STATE_FAILED: "failed", trainer_pb2.PROMPT_STATE_CANCELLED: "cancelled before"}
        pr.line(f"not cancelled: {p.id}: {state} ({why.get(p.state, 'not queued')})")
    if response.unknown_ids:
        pr.line(f"unknown: {', '.join(response.unknown_ids)}{UNKNOWN_WHY}")
    done = all(p.state == trainer_pb2.PROMPT_STATE_CANCELLED for p in response.not_cancelled)
    return EXIT_OK if done and not response.unknown_ids else EXIT_FAILURE


def cmd_pause(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    run = client.pause() if args.command == "pause" else client.resume()
    pr.document({"run": to_dict(run)})
    pr.line(_run_line(run))
    return EXIT_OK


def cmd_plot(client: TrainerClient, args: argparse.Namespace, pr: Printer) -> int:
    from grpo_client.plot import plot_steps

    reports = client.finished_steps()
    if not any(r.state == trainer_pb2.STEP_STATE_COMPLETED for r in reports):
        message = f"no completed step to plot yet ({counted(len(reports), 'step')} finished otherwise); {args.output} not written"
        return _fail(pr, {"code": "NO_COMPLETED_STEPS", "message": message}, f"error: {message}", EXIT_FAILURE)
    n = plot_steps(reports, args.output, title=args.title)
    pr.document({"output": str(args.output), "steps": n})
    pr.line(f"wrote {args.output} ({counted(n, 'completed step')})")
    return EXIT_OK


_COMMANDS = {
    "submit": cmd_submit, "status": cmd_status, "watch": cmd_watch, "export": cmd_export,
    "export-status": cmd_export_status, "exports": cmd_exports,
    "backends": cmd_backends, "prompts": cmd_prompts, "cancel": cmd_cancel, "pause": cmd_pause, "resume": cmd_pause, "plot": cmd_plot,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run `grpo` with `argv` (default: sys.argv[1:]); returns the exit code."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), out or sys.stdout)
    except BrokenPipeError:  # stdout's reader went away (`grpo prompts | head`): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return EXIT_BROKEN_PIPE


def _main(argv: list[str], out: TextIO) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "cancel" and not args.ids and args.file is None:
            parser.error("cancel: name the prompts to cancel: IDs, or --file FILE.jsonl")
    except _ArgumentError as exc:  # what argparse prints, and under --json the error document too
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
        if "--json" in argv:
            Printer(True, out).document({"error": {"code": "USAGE", "message": exc.message}})
        return EXIT_INVALID
    pr = Printer(args.json, out)
    try:
        target = _target(args)
        token = _token(args)
        _check_tls_files(args)
        with TrainerClient(target, token, tls=args.tls, ca=args.ca, cert=args.cert, key=args.key,
                           server_name=args.server_name, timeout=args.timeout) as client:
            return _COMMANDS[args.command](client, args, pr)
    except TrainerError as exc:
        return _fail(pr, exc.to_dict(), f"error: {exc}", _exit_code(exc))
    except PromptFileError as exc:
        violations = [{"field": f"line {e.line}" + (f": {e.field}" if e.field else ""), "description": e.message}
                      for e in exc.errors]
        doc = {"code": "INVALID_ARGUMENT", "message": f"bad prompt file {exc.source}", "field_violations": violations}
        return _fail(pr, doc, f"error: bad prompt file\n{exc}", EXIT_INVALID)
    except UsageError as exc:
        return _fail(pr, {"code": "USAGE", "message": str(exc)}, f"error: {exc}", EXIT_INVALID)
    except BrokenPipeError:
        raise  # main's, before OSError's below
    except (OSError, TimeoutError) as exc:
        return _fail(pr, {"code": "LOCAL", "message": str(exc)}, f"error: {exc}", EXIT_FAILURE)
    except KeyboardInterrupt:  # Ctrl-C during a call or a wait (watch handles its own: it is how it stops)
        return _fail(pr, {"code": "INTERRUPTED", "message": "interrupted"}, "interrupted", EXIT_INTERRUPTED)


def _exit_code(exc: TrainerError) -> int:
    return EXIT_INVALID if exc.code is grpc.StatusCode.INVALID_ARGUMENT else EXIT_FAILURE


_GRPC_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")  # gRPC's own target URIs
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]|[^\s:/\[\]@]+):(\d{1,5})")


def _target(args: argparse.Namespace) -> str:
    """The trainer's address: --target, else $GRPO_TARGET, else localhost:50051. Refuses what is not
    HOST:PORT (or one of gRPC's own target URIs): gRPC would dial port 443 for a missing port and wrap a
    port over 65535 round to another one."""
    target, where = (args.target, "--target") if args.target is not None else \
        (os.environ.get("GRPO_TARGET") or DEFAULT_TARGET, "$GRPO_TARGET")
    if target.startswith(_GRPC_SCHEMES):
        return str(target)
    m = _HOST_PORT.fullmatch(target)
    if m is not None and 1 <= int(m.group(1)) <= 65535:
        return str(target)
    why = ""
    if "://" in target:
        why = "; give HOST:PORT without a scheme (and --tls for TLS)"
    elif target.count(":") > 1 and not target.startswith("["):
        why = "; write an IPv6 address in brackets: [::1]:50051"
    elif target and ":" not in target:
        why = "; the port is missing"
    raise UsageError(f"{where}: {target!r} is not HOST:PORT (a host name or IP address and a port 1-65535, "
                     f"such as localhost:50051){why}")


def _check_tls_files(args: argparse.Namespace) -> None:
    """Refuse --ca, --cert and --key files gRPC cannot use, before gRPC logs its own errors and fails every
    connection; --cert without --key or the other way round; and a key that is not the certificate's."""
    if (args.cert is None) != (args.key is None):
        given, missing = ("--cert", "--key") if args.key is None else ("--key", "--cert")
        raise UsageError(f"{given} needs {missing}: a client certificate and its private key go together")
    for flag, path, marker, what in (
        ("--ca", args.ca, b"-----BEGIN CERTIFICATE-----", "a CA file holds -----BEGIN CERTIFICATE----- blocks"),
        ("--cert", args.cert, b"-----BEGIN CERTIFICATE-----", "a certificate file holds -----BEGIN CERTIFICATE----- "
         "blocks"),
        ("--key", args.key, b"PRIVATE KEY-----", "a key file holds a -----BEGIN PRIVATE KEY----- block, or an "
         "EC or RSA one, unencrypted"),
    ):
        if path is None:
            continue
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise OSError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
        if marker not in pem or (flag == "--key" and b"ENCRYPTED" in pem):
            raise UsageError(f"{flag} {path}: no {'unencrypted private key' if flag == '--key' else 'PEM certificate'} "
                             f"in it ({what})")
    if args.cert is not None and args.key is not None:
        try:
            check_key_pair(args.cert, args.key)
        except ValueError as exc:
            raise UsageError(f"--cert {args.cert}, --key {args.key}: {exc}") from None


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token: --token, --token-file, else $GRPO_TOKEN, else $GRPO_TOKEN_FILE (a flag wins
    over both variables); None when none is given."""
    if args.token is not None:
        if not args.token:
            raise UsageError("--token: the token is empty")
        return _sendable(str(args.token), "--token")
    token_file = args.token_file
    if token_file is None and not os.environ.get("GRPO_TOKEN") and os.environ.get("GRPO_TOKEN_FILE"):
        token_file = Path(os.environ["GRPO_TOKEN_FILE"])
    if token_file is not None:
        where = "--token-file" if args.token_file is not None else "$GRPO_TOKEN_FILE"
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise UsageError(f"{where}: {token_file} is not UTF-8 text") from None
        except OSError as exc:
            raise OSError(f"{where}: cannot read {token_file}: {exc.strerror or exc}") from None
        if not token:  # sent, it would read as no token at all ("missing bearer token")
            raise UsageError(f"{where} {token_file}: the file holds no token")
        return _sendable(token, f"{where} {token_file}")
    token = os.environ.get("GRPO_TOKEN") or None
    return None if token is None else _sendable(token, "$GRPO_TOKEN")


class UsageError(ValueError):
    """A bad flag value or environment setting found before any call (exit 2)."""


def _sendable(token: str, where: str) -> str:
    """`token` when it can travel in an `authorization` header: visible ASCII, no spaces or line breaks."""
    bad = next((c for c in token if not 0x21 <= ord(c) <= 0x7E), None)
    if bad is not None:
        raise UsageError(f"{where}: the token has {bad!r}, which an authorization header cannot carry; tokens are "
                         "printable ASCII without spaces")
    return token


def _fail(pr: Printer, doc: dict[str, Any], text: str, code: int) -> int:
    if pr.json:
        pr.document({"error": doc})
    else:
        print(text, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
