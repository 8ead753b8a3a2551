"""`grpo-reward-rm`: a learned reward model as a reward service.

    grpo-reward-rm --model /models/my-rm --listen 127.0.0.1:50063 --device auto
"""

from __future__ import annotations

import argparse
import logging
import re

from grpo_rewards.common import base_arg_parser, configure_logging, serve_forever
from grpo_rewards.common.flags import finite_float, int_in_range, positive_int

from .model import TRUNCATION_SIDES
from .scorer import REASONING_CHOICES, RewardModelScorer, RMConfig

log = logging.getLogger("grpo_rewards.reward_model")

_DEVICE = re.compile(r"auto|cpu|cuda(?::\d+)?")
# A minute: a text waiting longer for company is a misconfiguration, and huge waits overflow Python's timers.
MAX_BATCH_WAIT_MS = 60_000.0
MAX_THREADS = 1024


def _device_arg(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's can run to many), or its type's name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    """The service's flags: the harness's plus the model's."""
    p = base_arg_parser("grpo-reward-rm", "Scores completions with a learned reward model "
                        "(AutoModelForSequenceClassification, one label).", default_listen="127.0.0.1:50063")
    g = p.add_argument_group("reward model")
    g.add_argument("--model", required=True, help="local Hugging Face model directory (loaded offline)")
    g.add_argument("--device", type=_device_arg, default="auto",
                   help="auto (CUDA when available), cpu, cuda, cuda:N (default auto)")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype; auto = bfloat16 on CUDA, float32 on CPU")
    g.add_argument("--max-length", type=positive_int, default=None,
                   help="tokens per input; longer ones are truncated, flagged (component truncated = 1) and counted "
                        "in grpo_reward_truncated_items_total (default: the model's limit)")
    g.add_argument("--truncation-side", choices=TRUNCATION_SIDES, default="left",
                   help="which end of an input over --max-length is cut: left drops the start of the prompt "
                        "first and keeps the end of the completion (its final answer); right cuts the end of "
                        "the completion (default left)")
    g.add_argument("--reasoning", choices=REASONING_CHOICES, default="drop",
                   help="drop: a completion holding </think> (a reasoning model's) is scored by the text after "
                        "the last one, its answer; keep: the whole completion, reasoning included (default drop)")
    g.add_argument("--micro-batch", type=positive_int, default=16, help="texts per forward pass at most (default 16)")
    g.add_argument("--batch-wait-ms", type=finite_float(minimum=0.0, maximum=MAX_BATCH_WAIT_MS), default=5.0,
                   help=f"how long a text waits for others to share its forward pass, ms, 0 to {MAX_BATCH_WAIT_MS:g} "
                        "(default 5)")
    g.add_argument("--seed", type=int_in_range(0, 2**63 - 1), default=0,
                   help="seed for weights missing from the checkpoint (a fresh classification head)")
    g.add_argument("--threads", type=int_in_range(0, MAX_THREADS), default=0,
                   help=f"torch CPU threads, 0 to {MAX_THREADS}; 0 = torch's default, one per core (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Load the model, serve until SIGTERM/SIGINT; 0 after a clean drain, 1 when the model cannot load
    or the server cannot start, 2 (from argparse) for a bad flag value."""
    # Bad flag values are usage errors from parse_args (exit status 2); see grpo_rewards.common.flags.
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        scorer = RewardModelScorer(RMConfig(model=args.model, device=args.device, dtype=args.dtype,
                                            max_length=args.max_length, truncation_side=args.truncation_side,
                                            micro_batch=args.micro_batch,
                                            batch_wait_ms=args.batch_wait_ms, seed=args.seed,
                                            threads=args.threads, reasoning=args.reasoning))
    except Exception as exc:  # noqa: BLE001 - any failure to load is the same one line and exit status 1
        # Besides OSError and ValueError: torch's RuntimeErrors while loading or moving the weights (an
        # unusable CUDA device, out of memory, a checkpoint that does not fit the config) and safetensors'
        # SafetensorError (a corrupt or truncated weights file), which derives from Exception alone. One
        # line; the traceback only at DEBUG.
        log.error("cannot load the reward model: %s", _one_line(exc))
        log.debug("model load failure", exc_info=True)
        return 1
    return serve_forever(scorer, args)


if __name__ == "__main__":
    raise SystemExit(main())
