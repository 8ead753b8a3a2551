"""grpo-reward-rm on inputs longer than --max-length: which end is cut (the completion's end is what a
reward model judges), and what a huge completion costs the model thread. Real gRPC on loopback, the tiny
Llama classifier built from a config, and the real all-MiniLM-L6-v2 tokenizer."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from reward_service_kit import item, metric_value, reward_stub, scrape_metrics
from test_reward_model import minilm_dir

from grpo.reward.v1 import reward_pb2
from grpo_rewards.reward_model.model import RewardModel
from grpo_rewards.reward_model.scorer import RewardModelScorer, RMConfig
from grpo_server.models.tiny import build_tiny_model

OK = reward_pb2.SCORE_STATUS_OK
MAX_LENGTH = 48
LONG_PROMPT = "Here is a long story about numbers. " * 20 + "What is the final result?"
LONG_REASONING = "first solve the problem step by step then check it " * 10


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("rm-truncation") / "rm", seed=0, classifier=True)


def score(channel, items) -> list[reward_pb2.ScoreResult]:
    return list(reward_stub(channel).Score(reward_pb2.ScoreRequest(items=items), timeout=60).results)


def score_ids(rm: RewardModel, ids: list[int]) -> float:
    """The model's score for exactly these token ids, by hand."""
    with torch.inference_mode():
        return float(rm.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                                                                     dtype=torch.long)).logits[0, 0])


def test_an_over_long_pair_keeps_the_end_of_the_completion(tiny_rm, serve, channel_to):
    scorer = RewardModelScorer(RMConfig(model=str(tiny_rm), device="cpu", max_length=MAX_LENGTH))
    rm = scorer.model
    ch = channel_to(serve(scorer).address)
    ending_12 = item("a", LONG_REASONING + "so the final result is 12", prompt=[("user", LONG_PROMPT)])
    got = score(ch, [ending_12])[0]
    full = rm.tokenizer(scorer.text_of(ending_12), add_special_tokens=False)["input_ids"]
    assert len(full) > 3 * MAX_LENGTH
    assert got.status == OK and got.components["truncated"] == 1.0 and got.components["tokens"] == MAX_LENGTH
    # The last MAX_LENGTH tokens are scored: the completion's end and the template's closing tokens.
    assert abs(got.score - score_ids(rm, full[-MAX_LENGTH:])) < 1e-5
    # So the final answer changes the score, and the start of the prompt does not.
    ending_13 = item("b", LONG_REASONING + "so the final result is 13", prompt=[("user", LONG_PROMPT)])
    other_start = item("c", ending_12.completion, prompt=[("user", "Another beginning. " + LONG_PROMPT)])
    got_13, got_other_start = score(ch, [ending_13, other_start])
    assert abs(got_13.score - got.score) > 1e-4
    assert abs(got_other_start.score - got.score) < 1e-5


def test_truncation_side_right_keeps_the_start(tiny_rm, serve, channel_to):
    scorer = RewardModelScorer(RMConfig(model=str(tiny_rm), device="cpu", max_length=MAX_LENGTH,
                                        truncation_side="right"))
    ch = channel_to(serve(scorer).address)
    it = item("a", LONG_REASONING + "so the final result is 12", prompt=[("user", LONG_PROMPT)])
    (got,) = score(ch, [it])
    full = scorer.model.tokenizer(scorer.text_of(it), add_special_tokens=False)["input_ids"]
    assert got.components["truncated"] == 1.0 and got.components["tokens"] == MAX_LENGTH
    assert abs(got.score - score_ids(scorer.model, full[:MAX_LENGTH])) < 1e-5


def test_truncated_items_are_counted_on_the_metrics_endpoint(tiny_rm, serve, channel_to):
    scorer = RewardModelScorer(RMConfig(model=str(tiny_rm), device="cpu", max_length=MAX_LENGTH))
    running = serve(scorer, metrics_listen="127.0.0.1:0")  # the harness registers the scorer's own metrics
    ch = channel_to(running.address)
    assert metric_value(scrape_metrics(running.metrics_port), "grpo_reward_truncated_items_total") == 0
    over_long = item("long", LONG_REASONING + "so the final result is 12", prompt=[("user", LONG_PROMPT)])
    short = item("short", "12", prompt=[("user", "What is 6+6?")])
    got_long, got_short = score(ch, [over_long, short])
    assert (got_long.components["truncated"], got_short.components["truncated"]) == (1.0, 0.0)
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_truncated_items_total") == 1
    assert metric_value(text, "grpo_reward_items_total", 'status="ok"') == 2
    score(ch, [short])
    score(ch, [over_long])
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_truncated_items_total") == 2
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (make sysdeps does)"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


class CountingTokenizer:
    """The model's real tokenizer, counting the characters it is asked to tokenize."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.chars = 0

    def __call__(self, text: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        self.chars += len(text) if isinstance(text, str) else sum(len(t) for t in text)
        return self.inner(text, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_huge_completion_costs_a_bounded_window_and_scores_as_if_tokenized_whole(tiny_rm):
    rm = RewardModel(tiny_rm, device="cpu", max_length=MAX_LENGTH)
    counting = CountingTokenizer(rm.tokenizer)
    rm.tokenizer = counting
    costs = {}
    for n in (20_000, 200_000, 2_000_000):
        text = rm.format([("user", "Say it many times.")], "plus minus times " * (n // 17))
        counting.chars = 0
        (got,) = rm.score_texts([text])
        costs[n] = counting.chars
    # The characters tokenized do not grow with the text (before: twice the whole text, 4 million here).
    assert costs[2_000_000] == costs[200_000] == costs[20_000] < 20_000
    # And the score is the one of the whole text tokenized, then cut on the left.
    full = counting.inner(text, add_special_tokens=False)["input_ids"]
    assert (got.truncated, got.tokens) == (True, MAX_LENGTH)
    assert abs(got.score - score_ids(rm, full[-MAX_LENGTH:])) < 1e-5


def test_a_long_text_within_the_limit_is_still_tokenized_whole():
    # BERT's tokenizer drops whitespace: a 100,000-character text can be 4 tokens. A window at its end holds
    # too few tokens to say it is over the limit, so the service widens it to the whole text: same ids.
    rm = RewardModel(minilm_dir(), device="cpu", seed=1234)
    text = "the answer\n" + " " * 100_000 + "is 42"
    (got,) = rm.score_texts([text])
    (short,) = rm.score_texts(["the answer is 42"])
    assert (got.truncated, got.tokens) == (False, short.tokens)
    assert abs(got.score - short.score) < 1e-6
