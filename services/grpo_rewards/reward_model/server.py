"""`grpo-reward-rm`: a learned reward model as a reward service.

    grpo-reward-rm --model /models/my-rm --listen 127.0.0.1:50063 --device auto
"""

from __future__ import annotations

import argparse
import logging

from grpo_rewards.common import base_arg_parser, configure_logging, serve_forever

from .scorer import RewardModelScorer, RMConfig

log = logging.getLogger("grpo_rewards.reward_model")


def build_parser() -> argparse.ArgumentParser:
    """The service's flags: the harness's plus the model's."""
    p = base_arg_parser("grpo-reward-rm", "Scores completions with a learned reward model "
                        "(AutoModelForSequenceClassification, one label).", default_listen="127.0.0.1:50063")
    g = p.add_argument_group("reward model")
    g.add_argument("--model", required=True, help="local Hugging Face model directory (loaded offline)")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N (default auto)")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype; auto = bfloat16 on CUDA, float32 on CPU")
    g.add_argument("--max-length", type=int, default=None,
                   help="tokens per input; longer ones are truncated and flagged (default: the model's limit)")
    g.add_argument("--micro-batch", type=int, default=16, help="texts per forward pass at most (default 16)")
    g.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="how long a text waits for others to share its forward pass, ms (default 5)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed for weights missing from the checkpoint (a fresh classification head)")
    g.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads; 0 = torch's default, one per core (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Load the model, serve until SIGTERM/SIGINT; 0 after a clean drain, 1 when the model cannot load."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    if args.threads < 0 or args.micro_batch < 1 or args.batch_wait_ms < 0 or (args.max_length is not None and args.max_length < 1):
        raise SystemExit("--micro-batch and --max-length must be positive, --batch-wait-ms and --threads not negative")
    try:
        scorer = RewardModelScorer(RMConfig(model=args.model, device=args.device, dtype=args.dtype,
                                            max_length=args.max_length, micro_batch=args.micro_batch,
                                            batch_wait_ms=args.batch_wait_ms, seed=args.seed,
                                            threads=args.threads))
    except (OSError, ValueError) as exc:
        log.error("cannot load the reward model: %s", exc)
        return 1
    return serve_forever(scorer, args)


if __name__ == "__main__":
    raise SystemExit(main())
