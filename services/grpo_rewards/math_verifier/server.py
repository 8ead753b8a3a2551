"""`grpo-reward-math`: the math verifier service.

    grpo-reward-math --listen 127.0.0.1:50061 --metrics-listen 127.0.0.1:9461 --workers 2
"""

from __future__ import annotations

from grpo_rewards.common import base_arg_parser, configure_logging, serve_forever
from grpo_rewards.common.flags import finite_float, non_negative_int, positive_int

from .scorer import MathConfig, MathVerifierScorer

# An hour: far beyond any real verification, and far below what Python's timers can hold (~9.2e9 s).
MAX_ITEM_TIMEOUT_S = 3600.0


def build_parser():
    """The service's flags: the harness's plus the verifier's own."""
    p = base_arg_parser("grpo-reward-math", "Scores math completions against gold answers with math-verify.",
                        default_listen="127.0.0.1:50061")
    d = MathConfig()
    g = p.add_argument_group("math verifier")
    g.add_argument("--workers", type=positive_int, default=d.workers,
                   help=f"verifier processes (default {d.workers}); each checks one item at a time")
    g.add_argument("--item-timeout", type=finite_float(minimum=0.0, inclusive=False, maximum=MAX_ITEM_TIMEOUT_S),
                   default=d.item_timeout_s,
                   help=f"wall-clock seconds to verify one item, > 0 and at most {MAX_ITEM_TIMEOUT_S:g}; over it "
                        f"-> TIMEOUT and the worker is replaced (default {d.item_timeout_s:g})")
    g.add_argument("--max-completion-chars", type=positive_int, default=d.max_completion_chars,
                   help=f"longer completions -> INVALID_INPUT (default {d.max_completion_chars})")
    g.add_argument("--max-answer-chars", type=positive_int, default=d.max_answer_chars,
                   help=f"longer extracted or gold answers -> INVALID_INPUT, never parsed (default {d.max_answer_chars})")
    g.add_argument("--cache-size", type=non_negative_int, default=d.cache_size,
                   help=f"verdicts remembered per (gold, answer) pair; 0 = off (default {d.cache_size})")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; 0 after a clean drain, 1 when it cannot start (address in
    use, unreadable TLS or token file), 2 (from argparse) for a bad flag value."""
    # Bad flag values are usage errors from parse_args (exit status 2); see grpo_rewards.common.flags.
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    scorer = MathVerifierScorer(MathConfig(workers=args.workers, item_timeout_s=args.item_timeout,
                                           max_completion_chars=args.max_completion_chars,
                                           max_answer_chars=args.max_answer_chars,
                                           cache_size=args.cache_size))
    return serve_forever(scorer, args)


if __name__ == "__main__":
    raise SystemExit(main())
