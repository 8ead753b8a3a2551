"""`grpo-reward-format`: the format reward service.

    grpo-reward-format --listen 127.0.0.1:50064 --scoring partial --tag think
"""

from __future__ import annotations

import argparse

from grpo_rewards.common import base_arg_parser, configure_logging, serve_forever
from grpo_rewards.common.flags import positive_int

from .scorer import FormatConfig, FormatScorer, check_tag


def _tag_arg(value: str) -> str:
    try:
        return check_tag(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The service's flags: the harness's plus the format checker's own."""
    p = base_arg_parser("grpo-reward-format",
                        "Rewards the answer format: a <think>...</think> block, then a \\boxed{} answer.",
                        default_listen="127.0.0.1:50064")
    d = FormatConfig()
    g = p.add_argument_group("format")
    g.add_argument("--tag", type=_tag_arg, default=d.tag, help=f"the reasoning block's tag name (default {d.tag})")
    g.add_argument("--scoring", choices=["partial", "all_or_nothing"], default=d.scoring,
                   help="partial: mean of the think and boxed components; all_or_nothing: 1 only when both "
                        f"hold (default {d.scoring})")
    g.add_argument("--max-completion-chars", type=positive_int, default=d.max_completion_chars,
                   help=f"longer completions -> INVALID_INPUT (default {d.max_completion_chars})")
    g.add_argument("--opened-by-prompt", action="store_true",
                   help="the chat template opens the reasoning block in the prompt (DeepSeek-R1 distills, Qwen3 "
                        "thinking: the generation prompt ends with <think>): completions hold the reasoning, one "
                        "</think>, then the answer")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; 0 after a clean drain, 1 when it cannot start (address in
    use, unreadable TLS or token file), 2 (from argparse) for a bad flag value."""
    # Bad flag values are usage errors from parse_args (exit status 2), so the scorer cannot refuse them.
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    scorer = FormatScorer(FormatConfig(tag=args.tag, scoring=args.scoring,
                                       max_completion_chars=args.max_completion_chars,
                                       opened_by_prompt=args.opened_by_prompt))
    return serve_forever(scorer, args)


if __name__ == "__main__":
    raise SystemExit(main())
