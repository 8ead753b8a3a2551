"""`grpo-reward-code`: the code sandbox reward service (RewardService over gRPC).

    grpo-reward-code --listen 127.0.0.1:50062 --workers 2 --scoring fraction

Needs bubblewrap (`apt-get install bubblewrap`) and a Python at `--python` (default /usr/bin/python3).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from grpo_rewards.common import base_arg_parser, configure_logging, serve_forever
from grpo_rewards.common.flags import finite_float, positive_int

from .config import FLOOD_OUTPUT_FACTOR, SandboxConfig
from .scorer import CodeSandboxScorer

log = logging.getLogger("grpo_rewards.code_sandbox")


# The shared flag types (grpo_rewards.common.flags): a bad value, nan and inf included, is a usage error.
_positive_float = finite_float(minimum=0.0, inclusive=False)


def build_parser() -> argparse.ArgumentParser:
    """The harness's flags plus the sandbox's own."""
    parser = base_arg_parser("grpo-reward-code",
                             "Scores Python completions by running their tests in a bubblewrap sandbox.",
                             default_listen="127.0.0.1:50062")
    d = SandboxConfig()
    g = parser.add_argument_group("sandbox")
    g.add_argument("--workers", type=positive_int, default=d.workers,
                   help="programs run at once (default %(default)s)")
    g.add_argument("--scoring", choices=["fraction", "all_or_nothing"], default=d.scoring,
                   help="score = fraction of tests passed, or 1 only when all pass (default %(default)s)")
    g.add_argument("--default-timeout", type=_positive_float, default=d.default_timeout_s,
                   help="seconds for all tests of an item that sets no timeout (default %(default)s)")
    g.add_argument("--max-timeout", type=_positive_float, default=d.max_timeout_s,
                   help="larger per-item timeouts are clamped to this, seconds (default %(default)s)")
    g.add_argument("--memory-mb", type=positive_int, default=d.memory_mib,
                   help="address-space limit of each sandboxed process, MiB (default %(default)s)")
    g.add_argument("--max-output-bytes", type=positive_int, default=d.max_output_bytes,
                   help=f"stdout/stderr kept of a run; the rest is dropped, and a run writing {FLOOD_OUTPUT_FACTOR} "
                   "times as much is stopped (an io case's program at the cap itself: its stdout is judged) "
                   "(default %(default)s)")
    g.add_argument("--python", default=d.python,
                   help="interpreter inside the sandbox, under /usr (default %(default)s)")
    g.add_argument("--tmp-mb", type=positive_int, default=d.tmp_mib,
                   help="size of the sandbox's tmpfs work dir, MiB (default %(default)s)")
    g.add_argument("--max-processes", type=positive_int, default=d.max_processes,
                   help="processes and threads one run may have at once (default %(default)s)")
    g.add_argument("--max-code-bytes", type=positive_int, default=d.max_code_bytes,
                   help="largest tests of one item, UTF-8 bytes of test_code plus every io case; larger "
                        "items are INVALID_INPUT (default %(default)s)")
    g.add_argument("--no-proc", dest="mount_proc", action="store_false",
                   help="mount no /proc in the sandbox: for containers whose /proc is masked (Kubernetes' "
                        "default procMount), where the kernel refuses an unprivileged proc mount")
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """The sandbox settings the flags ask for (validated)."""
    config = SandboxConfig(
        workers=args.workers, scoring=args.scoring, default_timeout_s=args.default_timeout,
        max_timeout_s=args.max_timeout, memory_mib=args.memory_mb, max_output_bytes=args.max_output_bytes,
        python=args.python, tmp_mib=args.tmp_mb, max_processes=args.max_processes, mount_proc=args.mount_proc,
        max_code_bytes=args.max_code_bytes)
    config.validate()
    return config


def main(argv: list[str] | None = None) -> int:
    """Parse flags, start the sandbox service and serve until SIGTERM/SIGINT. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    # Parsing completions (to find the program, extract.py) compiles arbitrary text in this process, and
    # Python prints a SyntaxWarning line ("<unknown>:1: SyntaxWarning: invalid decimal literal") for each
    # such text, without time or level: one per junk completion, not deduplicated. They say nothing
    # about the service. (warnings.catch_warnings around the parse is not thread-safe in Python 3.11.)
    warnings.filterwarnings("ignore", category=SyntaxWarning)
    try:
        scorer = CodeSandboxScorer(config_from_args(args), max_batch=args.max_batch)
    except (ValueError, RuntimeError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    return serve_forever(scorer, args)


if __name__ == "__main__":
    sys.exit(main())
