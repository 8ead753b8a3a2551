"""grpo-reward-rm when one text's forward pass fails: only that item gets the error, the texts batched
with it are scored. Real gRPC on loopback and the tiny Llama classifier built from a config, given a
tokenizer with one more token than the model has embeddings (a checkpoint whose tokenizer gained a
token without `resize_token_embeddings`): a text holding that token fails the embedding lookup for
real."""

from __future__ import annotations

from pathlib import Path

import pytest
from reward_service_kit import item, metric_value, reward_stub, scrape_metrics

from grpo.reward.v1 import reward_pb2
from grpo_rewards.reward_model.scorer import RewardModelScorer, RMConfig
from grpo_server.models.tiny import build_tiny_model

OK = reward_pb2.SCORE_STATUS_OK
INTERNAL = reward_pb2.SCORE_STATUS_INTERNAL
UNEMBEDDED = "zqzqzq"  # the token the model has no embedding for


@pytest.fixture(scope="module")
def rm_with_unembedded_token(tmp_path_factory) -> Path:
    from transformers import AutoConfig, AutoTokenizer

    path = build_tiny_model(tmp_path_factory.mktemp("rm-failures") / "rm", seed=0, classifier=True)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.add_tokens([UNEMBEDDED]) == 1
    tok.save_pretrained(path)
    assert len(tok) == AutoConfig.from_pretrained(path).vocab_size + 1
    return path


def score(channel, items) -> list[reward_pb2.ScoreResult]:
    return list(reward_stub(channel).Score(reward_pb2.ScoreRequest(items=items), timeout=60).results)


def test_one_failing_text_fails_only_its_own_item(rm_with_unembedded_token, serve, channel_to):
    scorer = RewardModelScorer(RMConfig(model=str(rm_with_unembedded_token), device="cpu", micro_batch=16,
                                        batch_wait_ms=50))
    running = serve(scorer, metrics_listen="127.0.0.1:0")
    ch = channel_to(running.address)
    good = [item(f"good{i}", completion, prompt=[("user", question)]) for i, (question, completion) in
            enumerate([("What is 2+2?", "4"), ("What is 17+25?", "The sum of 17 and 25 is 42."),
                       ("Solve it.", "first solve the problem then the final result is 12"), ("hi", ""),
                       ("What is 9+9?", "18")])]
    bad = item("bad", f"the answer is {UNEMBEDDED}", prompt=[("user", "What is 2+2?")])
    batch = good[:2] + [bad] + good[2:]

    results = score(ch, batch)
    assert scorer.batcher.batch_sizes == [len(batch)], "all six texts shared one forward pass"
    by_id = {r.id: r for r in results}
    assert by_id["bad"].status == INTERNAL
    assert by_id["bad"].status_message.startswith("model error: IndexError: index out of range")
    for it in good:
        (alone,) = score(ch, [it])
        assert alone.status == OK
        assert by_id[it.id].status == OK, by_id[it.id].status_message
        assert abs(by_id[it.id].score - alone.score) < 1e-5
        assert by_id[it.id].components["tokens"] == alone.components["tokens"]
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_items_total", 'status="internal"') == 1
    assert metric_value(text, "grpo_reward_items_total", 'status="ok"') == 2 * len(good)
