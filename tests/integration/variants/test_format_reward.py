"""The format reward backend: the check's arithmetic, the service over real gRPC, and combination with a
correctness backend by weights in the trainer's reward router."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest

from grpo.reward.v1 import reward_pb2
from grpo_rewards.format_reward.check import boxed_contents, check_format
from grpo_rewards.format_reward.scorer import FormatConfig, FormatScorer
from grpo_server.types import ChatMessage, Completion, PromptRecord, RewardSpec, RolloutGroup

GOOD = "<think>2 + 2 is 4.</think> The answer is \\boxed{4}."


@pytest.mark.parametrize(
    ("text", "think", "boxed", "problem"),
    [
        (GOOD, 1.0, 1.0, None),
        ("  \n<think>nested {braces}</think>\\boxed{\\frac{1}{2}}", 1.0, 1.0, None),
        ("The answer is \\boxed{4}.", 0.0, 1.0, "must start with <think>"),
        ("<think>hmm</think> The answer is 4.", 1.0, 0.0, "no \\boxed{...} answer after </think>"),
        # never closed: all of it is reasoning, and a box inside the reasoning is no answer (as the math
        # verifier reads it: grpo_rewards/common/reasoning.py)
        ("<think>hmm The answer is \\boxed{4}", 0.0, 0.0, "never closed"),
        ("<think>hmm The answer is \\boxed{4}", 0.0, 0.0, "no \\boxed{...} answer after </think>"),
        ("<think> </think>\\boxed{4}", 0.0, 1.0, "block is empty"),
        ("<think>a</think><think>b</think>\\boxed{4}", 0.0, 1.0, "exactly one"),
        ("<think>a</think>\\boxed{4} or \\boxed{5}", 1.0, 0.0, "2 \\boxed{} answers"),
        # the same answer boxed in a summary and again at the end is one answer
        ("<think>a</think>So \\boxed{4}.\n\n**Final Answer**\n\\[\\boxed{ 4 }\\]", 1.0, 1.0, None),
        ("<think>a</think>\\boxed{4}, \\boxed{4} and \\boxed{5}", 1.0, 0.0, "3 \\boxed{} answers that differ"),
        ("<think>a</think>\\boxed{ }", 1.0, 0.0, "answer is empty"),
        ("<think>a</think>\\boxed{4", 1.0, 0.0, "no \\boxed"),
    ],
)
def test_format_components_and_feedback(text: str, think: float, boxed: float, problem: str | None) -> None:
    verdict = check_format(text)
    assert verdict.components == {"think": think, "boxed": boxed}
    assert verdict.score == pytest.approx((think + boxed) / 2)
    assert check_format(text, scoring="all_or_nothing").score == float(think == boxed == 1.0)
    if problem is None:
        assert verdict.problems == [] and verdict.feedback.startswith("format OK")
    else:
        assert any(problem in p for p in verdict.problems), verdict.problems


def test_boxed_contents_balances_braces() -> None:
    assert boxed_contents("\\boxed{a{b}c} and \\boxed{d}") == ["a{b}c", "d"]
    assert boxed_contents("\\boxed{open") == []
    # TeX skips white space before the brace; the math verifier reads `\boxed {5}` as the box, so does this.
    assert boxed_contents("\\boxed {5} and \\boxed\n{6}") == ["5", "6"]
    assert check_format("<think>2+3</think>\nThe answer is \\boxed {5}.").components["boxed"] == 1.0


def _boxed_contents_by_rescanning(text: str) -> list[str]:
    """The definition boxed_contents must keep: each \\boxed{ (white space allowed before the brace)
    scanned for its closing brace, an unclosed one skipped with the search going on inside it (quadratic;
    only for small texts)."""
    box = re.compile(r"\\boxed\s*\{")
    out, found = [], box.search(text)
    while found is not None:
        depth, i = 1, found.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[found.end(): i - 1])
        found = box.search(text, i if depth == 0 else found.end())
    return out


def test_boxed_contents_agrees_with_the_rescanning_definition_on_random_texts() -> None:
    rng = random.Random(7)
    pieces = ["\\boxed{", "\\boxed", "{", "}", "}}", "a", " ", "\n", "ed{", "\\"]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert boxed_contents(text) == _boxed_contents_by_rescanning(text), text
    assert boxed_contents("\\boxed{x \\boxed{5}") == ["5"]  # unclosed outer: the inner one counts
    assert boxed_contents("\\boxed{\\boxed{5}}") == ["\\boxed{5}"]  # top level only


# The unbalanced-brace input that made the check quadratic (8000 repeats took ~30 s; 28000 would take
# minutes). The timeout is a hang guard, not a benchmark: the linear check needs milliseconds.
REPEATS = 28_000


@pytest.mark.timeout(120)
def test_unclosed_boxed_repeated_is_checked_correctly() -> None:
    flood = "\\boxed{" * REPEATS
    assert boxed_contents(flood) == []
    assert check_format(flood).components == {"think": 0.0, "boxed": 0.0}
    assert boxed_contents(flood + "\\boxed{5}") == ["5"]
    assert boxed_contents(flood + "5}") == ["5"]  # the last \\boxed{ is the one closed
    verdict = check_format("<think>r</think>" + flood + "5}")
    assert verdict.components == {"think": 1.0, "boxed": 1.0} and verdict.score == 1.0


@pytest.mark.timeout(120)
def test_service_answers_a_flood_of_unclosed_boxed_at_the_default_size_limit(serve) -> None:
    import grpc

    from grpo.reward.v1 import reward_pb2_grpc

    flood = "<think>r</think>" + "\\boxed{" * REPEATS
    assert len(flood) <= FormatConfig().max_completion_chars
    address = serve(FormatScorer())
    with grpc.insecure_channel(address) as channel:
        reply = reward_pb2_grpc.RewardServiceStub(channel).Score(reward_pb2.ScoreRequest(items=[
            reward_pb2.ScoreItem(id="flood", completion=flood),
            reward_pb2.ScoreItem(id="good", completion=GOOD),
        ]), timeout=100)
    flooded, good = reply.results
    assert (flooded.status, flooded.score, dict(flooded.components)) == (
        reward_pb2.SCORE_STATUS_OK, 0.5, {"think": 1.0, "boxed": 0.0})
    assert "no \\boxed{...} answer after </think>" in flooded.feedback
    assert (good.status, good.score) == (reward_pb2.SCORE_STATUS_OK, 1.0)


# DeepSeek-R1 distills and Qwen3 (thinking) end the generation prompt with "<think>\n": the completion starts
# inside the block. (completion, think, boxed, problem) with opened_by_prompt.
R1_STYLE = "2 + 2 is 4.\n</think>\n\nThe answer is \\boxed{4}."


@pytest.mark.parametrize(
    ("text", "think", "boxed", "problem"),
    [
        (R1_STYLE, 1.0, 1.0, None),
        ("2 + 2 is 4. The answer is \\boxed{4}.", 0.0, 0.0, "never closed with </think> (the prompt opens <think>)"),
        ("\n \n</think>\\boxed{4}", 0.0, 1.0, "reasoning before </think> is empty"),
        ("<think>again</think>\\boxed{4}", 0.0, 1.0, "exactly one </think> and no <think>"),
        ("a</think>b</think>\\boxed{4}", 0.0, 1.0, "exactly one </think>"),
        ("a</think>The answer is 4.", 1.0, 0.0, "no \\boxed{...} answer after </think>"),
        ("a \\boxed{3}</think>The answer is 4.", 1.0, 0.0, "no \\boxed{...} answer after </think>"),
    ],
)
def test_a_block_the_prompt_opened(text: str, think: float, boxed: float, problem: str | None) -> None:
    verdict = check_format(text, opened_by_prompt=True)
    assert verdict.components == {"think": think, "boxed": boxed}, verdict.problems
    if problem is None:
        assert verdict.problems == []
    else:
        assert any(problem in p for p in verdict.problems), verdict.problems
    assert check_format(R1_STYLE).components["think"] == 0.0  # without the option the block must open here


def test_the_service_scores_a_block_the_prompt_opened(serve) -> None:
    import grpc

    from grpo.reward.v1 import reward_pb2_grpc
    from grpo_rewards.format_reward.server import build_parser

    assert build_parser().parse_args(["--opened-by-prompt"]).opened_by_prompt is True
    assert build_parser().parse_args([]).opened_by_prompt is False
    item = reward_pb2.ScoreItem(id="a", completion=R1_STYLE, prompt=[reward_pb2.Message(role="user", content="q")])
    scores = []
    for config in (FormatConfig(opened_by_prompt=True), FormatConfig()):
        with grpc.insecure_channel(serve(FormatScorer(config))) as channel:
            result = reward_pb2_grpc.RewardServiceStub(channel).Score(reward_pb2.ScoreRequest(items=[item])).results[0]
        scores.append((result.score, result.feedback))
    assert scores[0] == (1.0, "format OK: a <think> block, then a \\boxed{} answer"), scores
    assert scores[1][0] == 0.5 and "must start with <think>" in scores[1][1], scores


def test_custom_tag() -> None:
    assert check_format("<reason>x</reason>\\boxed{1}", tag="reason").score == 1.0
    with pytest.raises(ValueError, match="--tag"):
        FormatScorer(FormatConfig(tag="a b"))


def test_service_scores_over_grpc_and_rejects_oversized_completions(serve) -> None:
    import grpc

    from grpo.reward.v1 import reward_pb2_grpc

    address = serve(FormatScorer(FormatConfig(scoring="all_or_nothing", max_completion_chars=100)))
    with grpc.insecure_channel(address) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        assert stub.Describe(reward_pb2.DescribeRequest()).name == "format"
        reply = stub.Score(reward_pb2.ScoreRequest(items=[
            reward_pb2.ScoreItem(id="a", completion=GOOD, prompt=[reward_pb2.Message(role="user", content="q")]),
            reward_pb2.ScoreItem(id="b", completion="4", prompt=[reward_pb2.Message(role="user", content="q")],
                                 answer="4"),
            reward_pb2.ScoreItem(id="c", completion="x" * 101, prompt=[reward_pb2.Message(role="user", content="q")]),
        ]))
    a, b, c = reply.results
    assert (a.id, a.score, a.status) == ("a", 1.0, reward_pb2.SCORE_STATUS_OK)
    assert b.score == 0.0 and "must start with <think>" in b.feedback and dict(b.components) == {"think": 0.0, "boxed": 0.0}
    assert c.status == reward_pb2.SCORE_STATUS_INVALID_INPUT


def test_format_and_correctness_combine_by_weights_in_the_router(serve) -> None:
    from variant_support import router_for

    from grpo_rewards.math_verifier.scorer import MathConfig, MathVerifierScorer

    router, snapshot = router_for({"format": serve(FormatScorer()), "math": serve(MathVerifierScorer(MathConfig(workers=1)))})
    prompt = PromptRecord("p", (ChatMessage("user", "2+2?"),), (RewardSpec("math", 1.0), RewardSpec("format", 0.25)),
                          answer="4")
    texts = [GOOD, "<think>hm</think> \\boxed{5}", "4", "no idea"]
    group = RolloutGroup(prompt, (1, 2), tuple(Completion((3,), (-1.0,), t, "stop") for t in texts))
    (scored,) = router.score([group], snapshot)
    by_backend = [{s.backend: s.score for s in c.scores} for c in scored.completions]
    assert [b["format"] for b in by_backend] == [1.0, 1.0, 0.0, 0.0]
    assert [b["math"] for b in by_backend] == [1.0, 0.0, 1.0, 0.0]
    assert scored.rewards == pytest.approx([1.25, 0.25, 1.0, 0.0])
    assert "must start with <think>" in scored.completions[2].feedback


@pytest.mark.parametrize(("argv", "message"), [
    (["--tag", ""], "argument --tag: must be a plain tag name (letters, digits, - and _), got ''"),
    (["--tag", "a b"], "argument --tag: must be a plain tag name"),
    (["--max-completion-chars", "0"], "argument --max-completion-chars: must be at least 1, got 0"),
    (["--max-completion-chars", "many"], "argument --max-completion-chars: expected an integer, got 'many'"),
], ids=["empty tag", "tag with a space", "zero chars", "not a number"])
def test_bad_flag_values_are_usage_errors(argv, message, capsys) -> None:
    from grpo_rewards.format_reward.server import main

    with pytest.raises(SystemExit) as exc:
        main(["--listen", "127.0.0.1:0", *argv])
    assert exc.value.code == 2
    assert f"grpo-reward-format: error: {message}" in capsys.readouterr().err


def test_entry_point_refuses_a_bad_tag_with_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "grpo_rewards.format_reward.server", "--listen", "127.0.0.1:0",
                           "--tag", ""], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("grpo-reward-format: error: argument --tag: ")
    assert "Traceback" not in proc.stderr


def test_server_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "grpo_rewards.format_reward.server", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--scoring {partial,all_or_nothing}" in out and "--tag" in out and "--listen" in out
