"""`grpo-reward-math`: the math verifier service.

    grpo-reward-math --listen 127.0.0.1:50061 --metrics-listen 127.0.0.1:9461 --workers 2
"""

from __future__ import annotations

from grpo_rewards.common import base_arg_parser, configure_logging, serve_forever

from .scorer import MathConfig, MathVerifierScorer


def build_parser():
    """The service's flags: the harness's plus the verifier's own."""
    p = base_arg_parser("grpo-reward-math", "Scores math completions against gold answers with math-verify.",
                        default_listen="127.0.0.1:50061")
    d = MathConfig()
    g = p.add_argument_group("math verifier")
    g.add_argument("--workers", type=int, default=d.workers,
                   help=f"verifier processes (default {d.workers}); each checks one item at a time")
    g.add_argument("--item-timeout", type=float, default=d.item_timeout_s,
                   help=f"wall-clock seconds to verify one item; over it -> TIMEOUT and the worker is "
                        f"replaced (default {d.item_timeout_s:g})")
    g.add_argument("--max-completion-chars", type=int, default=d.max_completion_chars,
                   help=f"longer completions -> INVALID_INPUT (default {d.max_completion_chars})")
    g.add_argument("--max-answer-chars", type=int, default=d.max_answer_chars,
                   help=f"longer extracted or gold answers -> INVALID_INPUT, never parsed (default {d.max_answer_chars})")
    g.add_argument("--cache-size", type=int, default=d.cache_size,
                   help=f"verdicts remembered per (gold, answer) pair; 0 = off (default {d.cache_size})")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; 0 after a clean drain."""
    args = build_parser().parse_args(argv)
    if args.cache_size < 0:
        raise SystemExit("--cache-size must not be negative")
    if args.workers < 1 or args.item_timeout <= 0 or args.max_completion_chars < 1 or args.max_answer_chars < 1:
        raise SystemExit("--workers, --item-timeout, --max-completion-chars and --max-answer-chars must be positive")
    configure_logging(args.log_level)
    scorer = MathVerifierScorer(MathConfig(workers=args.workers, item_timeout_s=args.item_timeout,
                                           max_completion_chars=args.max_completion_chars,
                                           max_answer_chars=args.max_answer_chars,
                                           cache_size=args.cache_size))
    return serve_forever(scorer, args)


if __name__ == "__main__":
    raise SystemExit(main())
