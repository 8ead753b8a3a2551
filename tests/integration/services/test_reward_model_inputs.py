"""grpo-reward-rm on the inputs and checkpoints a deployment meets: prompts its chat template refuses,
empty texts, checkpoints that are not one-label classifiers, and calls whose deadline passes while they
wait for the model. Real gRPC on loopback and tiny models built from a config."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from reward_service_kit import REPO, item, metric_value, reward_stub, scrape_metrics

from grpo.reward.v1 import reward_pb2
from grpo_rewards.reward_model.scorer import RewardModelScorer, RMConfig
from grpo_server.models.tiny import build_tiny_model

OK = reward_pb2.SCORE_STATUS_OK
INVALID_INPUT = reward_pb2.SCORE_STATUS_INVALID_INPUT
# Mistral-style: roles must alternate user/assistant, starting with user (no system message).
STRICT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
)


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("rm-inputs") / "rm", seed=0, classifier=True)


def variant(tiny_rm: Path, tmp_path: Path, name: str, template: str | None) -> Path:
    """A copy of the tiny classifier with another chat template (None: without one)."""
    path = tmp_path / name
    shutil.copytree(tiny_rm, path)
    if template is None:
        (path / "chat_template.jinja").unlink()
    else:
        (path / "chat_template.jinja").write_text(template)
    return path


def start_failure(model: Path) -> tuple[int, str]:
    """Start `grpo-reward-rm --model MODEL` and return (exit status, stderr) once it exits; a service that
    starts serving instead fails the test (it is killed at once)."""
    proc = subprocess.Popen([sys.executable, "-m", "grpo_rewards.reward_model.server", "--model", str(model),
                             "--listen", "127.0.0.1:0", "--device", "cpu"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            assert "listening on" not in line, "the service started serving:\n" + "".join(lines)
        return proc.wait(timeout=60), "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def score(channel, items, timeout: float = 60) -> list[reward_pb2.ScoreResult]:
    return list(reward_stub(channel).Score(reward_pb2.ScoreRequest(items=items), timeout=timeout).results)


def test_a_prompt_the_chat_template_refuses_fails_only_its_own_item(tiny_rm, tmp_path, serve, channel_to):
    scorer = RewardModelScorer(RMConfig(model=str(variant(tiny_rm, tmp_path, "strict", STRICT_TEMPLATE)),
                                        device="cpu"))
    ch = channel_to(serve(scorer).address)
    good = item("good", "4", prompt=[("user", "2+2?")])
    refused = item("system-first", "4", prompt=[("system", "Be brief."), ("user", "2+2?")])
    got_good, got_refused = score(ch, [good, refused])
    (alone,) = score(ch, [good])
    assert got_good.status == OK and abs(got_good.score - alone.score) < 1e-5
    assert got_refused.status == INVALID_INPUT
    assert got_refused.status_message.startswith("prompt: the model's chat template refused these messages")
    assert "Conversation roles must alternate" in got_refused.status_message


def test_a_chat_template_that_cannot_render_a_plain_exchange_is_a_start_error(tiny_rm, tmp_path):
    broken = variant(tiny_rm, tmp_path, "broken", "{{ raise_exception('this template is broken') }}")
    code, err = start_failure(broken)
    assert code == 1
    assert err.strip().splitlines()[-1].endswith(
        f"cannot load the reward model: --model {broken}: its chat template fails on a plain user/assistant "
        "exchange: TemplateError: this template is broken")
    assert "Traceback" not in err


def test_a_corrupt_weights_file_is_one_error_line_without_a_traceback(tiny_rm, tmp_path):
    """safetensors' SafetensorError derives from Exception alone: it escaped the load's except and the
    service died with a traceback instead of the documented one line."""
    corrupt = variant(tiny_rm, tmp_path, "corrupt", None)
    (corrupt / "model.safetensors").write_bytes(b"\xff" * 64)
    code, err = start_failure(corrupt)
    assert code == 1
    assert "cannot load the reward model: " in err.strip().splitlines()[-1], err
    assert "Traceback" not in err


def test_an_empty_text_is_invalid_input_alone_and_in_a_batch(tiny_rm, tmp_path, serve, channel_to):
    # No chat template and a tokenizer that adds no special tokens: an empty completion with no prompt
    # is zero tokens. Alone it used to crash the forward pass (INTERNAL, with a traceback in the log);
    # padded in a batch it scored 0.0 with status OK from an all-masked row.
    scorer = RewardModelScorer(RMConfig(model=str(variant(tiny_rm, tmp_path, "plain", None)), device="cpu",
                                        batch_wait_ms=50))
    assert not scorer.model.has_chat_template
    ch = channel_to(serve(scorer).address)
    (alone,) = score(ch, [item("empty", "")])
    assert alone.status == INVALID_INPUT and alone.status_message.startswith("completion: nothing to score")
    (other_alone,) = score(ch, [item("other", "what is the sum")])
    empty, other = score(ch, [item("empty", ""), item("other", "what is the sum")])
    assert empty.status == INVALID_INPUT
    assert other.status == OK and abs(other.score - other_alone.score) < 1e-5
    # An empty completion after a prompt still has tokens and scores.
    (with_prompt,) = score(ch, [item("p", "", prompt=[("user", "2+2?")])])
    assert with_prompt.status == OK and math.isfinite(with_prompt.score)


def test_a_causal_lm_checkpoint_is_refused_at_start(tmp_path):
    policy = build_tiny_model(tmp_path / "policy", seed=0)  # LlamaForCausalLM: no classification head
    code, err = start_failure(policy)
    assert code == 1
    assert err.strip().splitlines()[-1].endswith(
        f"cannot load the reward model: --model {policy}: the checkpoint is a LlamaForCausalLM, not a sequence "
        "classifier: it has no weights for score.weight, so every score would come from an untrained head. Give "
        "a reward model saved as *ForSequenceClassification with one label")
    assert "Traceback" not in err


def test_a_classifier_with_two_labels_is_refused_at_start(tmp_path):
    import torch
    from transformers import LlamaForSequenceClassification

    from grpo_server.models.tiny import build_tokenizer, tiny_llama_config

    tok = build_tokenizer()
    config = tiny_llama_config(len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                               num_labels=2)
    torch.manual_seed(0)
    path = tmp_path / "two-labels"
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    code, err = start_failure(path)
    assert code == 1
    assert err.strip().splitlines()[-1].endswith(
        f"cannot load the reward model: --model {path}: a sequence classifier with 2 labels (LABEL_0, LABEL_1); "
        "a reward model has exactly one label (num_labels 1: one score per text)")
    assert "Traceback" not in err


def test_a_call_past_its_deadline_stops_waiting_for_the_model_and_frees_its_slot(tiny_rm, serve, channel_to):
    # A long batch wait keeps texts queued: the first call's deadline passes before the model runs.
    scorer = RewardModelScorer(RMConfig(model=str(tiny_rm), device="cpu", batch_wait_ms=4000, micro_batch=64))
    running = serve(scorer, max_concurrency=1, metrics_listen="127.0.0.1:0")
    ch = channel_to(running.address)
    with pytest.raises(grpc.RpcError) as exc:
        score(ch, [item(f"late{i}", "4", prompt=[("user", "2+2?")]) for i in range(3)], timeout=0.3)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 1.5
    while running.servicer.active:
        assert time.monotonic() < deadline, "the abandoned call kept its slot, waiting for the model"
        time.sleep(0.02)
    # The only slot is free again, and the abandoned texts never reach the model.
    (next_result,) = score(ch, [item("next", "4", prompt=[("user", "2+2?")])], timeout=30)
    assert next_result.status == OK
    assert scorer.batcher.batch_sizes[-1] == 1
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_requests_total", 'code="DEADLINE_EXCEEDED"') == 1
    assert metric_value(text, "grpo_reward_requests_total", 'code="OK"') == 1
    assert metric_value(text, "grpo_reward_items_total", 'status="ok"') == 1


def test_a_score_that_overflows_to_nan_is_internal_not_ok(tmp_path, serve, channel_to):
    # A reward head whose logits run past float16's 65504 (fine in float32: about 2e5) served with
    # --dtype float16: the logit overflows and comes out nan. It used to be returned with status OK.
    from safetensors.torch import load_file, save_file

    path = build_tiny_model(tmp_path / "big-head", seed=0, classifier=True)
    weights = load_file(path / "model.safetensors")
    weights["score.weight"] *= 1e7
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    fp32 = RewardModelScorer(RMConfig(model=str(path), device="cpu", dtype="float32"))
    fp16 = RewardModelScorer(RMConfig(model=str(path), device="cpu", dtype="float16"))
    it = item("a", "hello there", prompt=[("user", "hi")])
    (ok,) = score(channel_to(serve(fp32).address), [it])
    assert ok.status == OK and math.isfinite(ok.score) and abs(ok.score) > 65504
    running = serve(fp16, metrics_listen="127.0.0.1:0")
    (bad,) = score(channel_to(running.address), [it])
    assert bad.status == reward_pb2.SCORE_STATUS_INTERNAL
    assert bad.status_message.startswith("model error: the model's score is not finite (nan) in float16; "
                                         "float16 overflows above 65504: try --dtype bfloat16 or float32")
    text = scrape_metrics(running.metrics_port)
    assert metric_value(text, "grpo_reward_items_total", 'status="internal"') == 1
    assert metric_value(text, "grpo_reward_items_total", 'status="ok"') == 0


def test_a_reasoning_models_completion_is_scored_by_its_answer(tiny_rm, serve, channel_to):
    prompt = [("user", "What is 2+2?")]
    reasoning = "<think>\nTwo and two: count them, one two three four. Could it be five? No.\n</think>\n\n"
    dropping = RewardModelScorer(RMConfig(model=str(tiny_rm), device="cpu"))
    assert dropping.text_of(item("r", reasoning + "The answer is 4.", prompt=prompt)) == dropping.text_of(
        item("a", "The answer is 4.", prompt=prompt))
    ch = channel_to(serve(dropping).address)
    with_reasoning, answer_only, other_reasoning, empty_answer, no_think = score(ch, [
        item("r", reasoning + "The answer is 4.", prompt=prompt),
        item("a", "The answer is 4.", prompt=prompt),
        item("o", "<think>a draft \\boxed{5}</think>\n\nThe answer is 4.", prompt=prompt),
        item("e", reasoning, prompt=prompt),
        item("n", "Two and two. </thin> The answer is 4.", prompt=prompt),
    ])
    (unclosed,) = score(ch, [item("u", "<think>\nTwo and two: one, two, three, four. The answer is", prompt=prompt)])
    assert with_reasoning.status == answer_only.status == other_reasoning.status == OK
    assert with_reasoning.score == pytest.approx(answer_only.score, abs=1e-5)
    assert other_reasoning.score == pytest.approx(answer_only.score, abs=1e-5)
    assert with_reasoning.components["tokens"] == answer_only.components["tokens"]
    assert empty_answer.status == OK and empty_answer.components["tokens"] < answer_only.components["tokens"]
    assert no_think.components["tokens"] > answer_only.components["tokens"], "no </think>: scored whole"
    # a <think> never closed (cut off) has no answer: scored as the empty one
    assert unclosed.status == OK and unclosed.components["tokens"] == empty_answer.components["tokens"]
    assert unclosed.score == pytest.approx(empty_answer.score, abs=1e-5)

    keeping = RewardModelScorer(RMConfig(model=str(tiny_rm), device="cpu", reasoning="keep"))
    kept, kept_answer = score(channel_to(serve(keeping).address), [
        item("r", reasoning + "The answer is 4.", prompt=prompt), item("a", "The answer is 4.", prompt=prompt)])
    assert kept_answer.score == pytest.approx(answer_only.score, abs=1e-5)
    assert kept.components["tokens"] == with_reasoning.components["tokens"] + 61, "the reasoning is scored too"
    assert keeping.text_of(item("r", reasoning + "The answer is 4.", prompt=prompt)).count("</think>") == 1


def test_the_reasoning_flag_takes_drop_or_keep(tiny_rm):
    from grpo_rewards.reward_model.server import build_parser

    assert build_parser().parse_args(["--model", str(tiny_rm)]).reasoning == "drop"
    assert build_parser().parse_args(["--model", str(tiny_rm), "--reasoning", "keep"]).reasoning == "keep"
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--model", str(tiny_rm), "--reasoning", "strip"])
    assert exc.value.code == 2
