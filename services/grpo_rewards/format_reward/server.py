"""`grpo-reward-format`: the format reward service.

    grpo-reward-format --listen 127.0.0.1:50064 --scoring partial --tag think
"""

from __future__ import annotations

import argparse

from grpo_rewards.common import base_arg_parser, configure_logging, serve_forever

from .scorer import FormatConfig, FormatScorer


def build_parser() -> argparse.ArgumentParser:
    """The service's flags: the harness's plus the format checker's own."""
    p = base_arg_parser("grpo-reward-format",
                        "Rewards the answer format: a <think>...</think> block, then a \\boxed{} answer.",
                        default_listen="127.0.0.1:50064")
    d = FormatConfig()
    g = p.add_argument_group("format")
    g.add_argument("--tag", default=d.tag, help=f"the reasoning block's tag name (default {d.tag})")
    g.add_argument("--scoring", choices=["partial", "all_or_nothing"], default=d.scoring,
                   help="partial: mean of the think and boxed components; all_or_nothing: 1 only when both "
                        f"hold (default {d.scoring})")
    g.add_argument("--max-completion-chars", type=int, default=d.max_completion_chars,
                   help=f"longer completions -> INVALID_INPUT (default {d.max_completion_chars})")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; 0 after a clean drain."""
    args = build_parser().parse_args(argv)
    if args.max_completion_chars < 1:
        raise SystemExit("--max-completion-chars must be positive")
    configure_logging(args.log_level)
    try:
        scorer = FormatScorer(FormatConfig(tag=args.tag, scoring=args.scoring,
                                           max_completion_chars=args.max_completion_chars))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return serve_forever(scorer, args)


if __name__ == "__main__":
    raise SystemExit(main())
