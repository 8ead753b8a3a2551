"""Escape attempts through the trainer path (issue 8): the policy itself writes hostile programs, the
trainer rolls them out and sends them to the real code sandbox through its reward router, and a
training step runs on the result.

The parts are all real: the tiny Llama, taught beforehand with plain supervised steps to answer six
prompts with six fixed programs (escape_kit.teach); `grpo-server` as its own process with HF rollouts
at top_k=1, so it samples exactly those programs; `grpo-reward-code` (bubblewrap, seccomp, rlimits) as
its own process, registered as the `code` backend; prompts submitted over gRPC. The programs try to
write marker files on the host (the test's folder, the trainer's store, the repository, /), read
/etc/shadow and read and overwrite the trainer's SQLite store, connect to every TCP port of 127.0.0.1
(the trainer's gRPC port and a sentinel listener of this test among them), fork without end, and
allocate without end; a sixth, harmless program is the control.

Each program is scored by a test that passes only if the program reports its attack worked, so a
contained attack scores 0 (status OK; TIMEOUT for the fork bomb and RESOURCE_EXHAUSTED for the memory
bomb, which the router keeps for code: the program's own limits, its unfinished tests failed), and the
control scores 1. Asserted: the step completes; the policy really generated the programs (the trainer's
completion lengths are theirs); no marker exists, the store is intact and holds every prompt TRAINED,
nothing connected to the sentinel, no sandbox process is left, and the trainer and the sandbox service
still serve; the sandbox's metrics show each item's status; StepStatus and the Prometheus metrics count
no masked item and a code reward mean of 2/12.
The first test shows that the same programs, run bare, do what they try: a 0 means contained.

The sandbox is started as `python -m grpo_rewards.code_sandbox.server` (what `grpo-reward-code` runs),
as the sandbox battery starts it.
"""

from __future__ import annotations

import re
import shutil
import socket
import sqlite3
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from escape_kit import (
    ENTRY_POINT,
    TEST_CODE,
    attacks,
    completion_ids,
    greedy_completions,
    sandbox_processes_left,
    teach,
)
from grpc_health.v1 import health_pb2

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration" / "trainer"))
sys.path.insert(0, str(REPO / "tests" / "integration" / "services"))

from live_trainer import TrainerProcess, config_data, prompt_accounting, write_yaml  # noqa: E402
from reward_service_kit import EntryPoint, metric_value, scrape_metrics  # noqa: E402

from grpo.reward.v1 import reward_pb2  # noqa: E402
from grpo.trainer.v1 import trainer_pb2  # noqa: E402
from grpo_server.models.tiny import build_tiny_model  # noqa: E402
from grpo_server.store.sqlite_store import FILENAME  # noqa: E402
from grpo_server.types import PromptState  # noqa: E402

GROUP_SIZE = 2


def test_the_attack_programs_escape_when_nothing_contains_them(tmp_path: Path) -> None:
    """Without the sandbox the programs do what they try (so a 0 in the trainer test means contained):
    run bare as this test's user, the marker writer creates its markers, the store attacker overwrites
    a SQLite file, and the port scanner connects (its range cut down to a listener of this test, so that
    nothing else on the machine is touched). The fork and memory bombs are only ever run sandboxed."""
    import subprocess

    db = tmp_path / "store" / FILENAME
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    markers = [tmp_path / "marker-a", tmp_path / "marker-b"]
    by_name = {a.name: a for a in attacks(markers=markers, store_db=db)}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        scan = by_name["connect_everywhere"].program
        assert "range(1, 65536)" in scan
        by_name["connect_everywhere"] = replace(by_name["connect_everywhere"],
                                                program=scan.replace("range(1, 65536)", f"range({port}, {port + 1})"))
        for name in ("write_marker", "read_secrets", "connect_everywhere", "control"):
            run = subprocess.run([sys.executable, "-c", by_name[name].program + "\nprint(f())\n"], capture_output=True,
                                 text=True, timeout=60)
            assert run.stdout.strip() == "escaped", (name, run.stdout, run.stderr)
        listener.settimeout(5)
        listener.accept()[0].close()  # the scanner's connection arrived
    assert all(m.exists() for m in markers)
    assert db.read_bytes()[:4096] == bytes(4096)  # the header is gone: the store would be destroyed


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")
def test_escape_attempts_written_by_the_policy_are_contained_and_scored_as_failures(tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine: the teaching must not take both
    store_dir = tmp_path / "store"
    tag = uuid.uuid4().hex[:8]
    markers = [tmp_path / "escape-marker", store_dir / "escape-marker", REPO / f"escape-marker-{tag}",
               Path(f"/escape-marker-{tag}")]
    plan = attacks(markers=markers, store_db=store_dir / FILENAME)
    sentinel = socket.socket()
    sentinel.bind(("127.0.0.1", 0))
    sentinel.listen()
    sentinel.setblocking(False)
    sandbox: EntryPoint | None = None
    trainer: TrainerProcess | None = None
    try:
        # 1. A policy that writes the attacks: taught, saved, and checked with the trainer's own engine.
        model_dir = build_tiny_model(tmp_path / "model", max_position_embeddings=1024)  # long paths in programs
        taught = teach(model_dir, [(a.prompt, a.program) for a in plan])
        print(f"taught in {taught.steps} steps, {taught.seconds:.1f} s, smallest margin {taught.min_margin:.2f}")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        lengths = [len(completion_ids(tokenizer, a.program)) for a in plan]  # tokens, end-of-turn included
        max_new_tokens = max(lengths) + 16
        generated = greedy_completions(model_dir, [a.prompt for a in plan], GROUP_SIZE, max_new_tokens)
        assert generated == [[a.program] * GROUP_SIZE for a in plan], "the policy does not write the attacks"

        # 2. The real code sandbox and the real trainer, the sandbox as the trainer's `code` backend.
        sandbox = EntryPoint("grpo_rewards.code_sandbox.server", "--listen", "127.0.0.1:0", "--workers", "2",
                             "--metrics-listen", "127.0.0.1:0")
        sandbox_metrics = int(re.search(r"metrics on 127\.0\.0\.1:(\d+)", "".join(sandbox.output)).group(1))  # type: ignore[union-attr]
        config = write_yaml(tmp_path / "trainer.yaml", config_data(
            model={"source": "path", "path": str(model_dir)},
            rollout={"engine": "hf", "max_new_tokens": max_new_tokens, "top_k": 1},
            algorithm={"prompts_per_step": len(plan), "group_size": GROUP_SIZE, "beta": 0.0},
            training={"learning_rate": 1e-6, "threads": 1, "micro_batch_size": len(plan) * GROUP_SIZE},
            checkpoint={"every_steps": 1},
            rewards={"default": [{"backend": "code"}],
                     "backends": {"code": {"address": sandbox.address, "timeout_seconds": 120.0}}},
        ))
        trainer = TrainerProcess(config, store_dir, log_path=tmp_path / "trainer.log", metrics=True)
        trainer.wait_ready()

        # 3. The prompts, over gRPC; one step trains on all of them.
        prompts = [trainer_pb2.Prompt(
            id=a.name, messages=[reward_pb2.Message(role="user", content=a.prompt)],
            code=reward_pb2.CodeTests(test_code=TEST_CODE, entry_point=ENTRY_POINT, timeout_seconds=a.timeout_s),
        ) for a in plan]
        accepted = trainer.client.submit_prompts(prompts, request_id="escape")
        assert list(accepted.accepted_ids) == [a.name for a in plan]
        report = next(r for r in trainer.client.iter_steps(timeout=300) if r.step == 1)
        assert report.state == trainer_pb2.STEP_STATE_COMPLETED, (report, trainer.log_tail())
        # Every prompt trained in step 1: each completion was scored, the bombs' included (the program's
        # own limits: its unfinished tests count as failed).
        assert sorted(report.prompt_ids) == sorted(a.name for a in plan), (report, trainer.log_tail())

        # 4. The policy generated the attacks inside the trainer too: its completions have their lengths.
        m = report.metrics
        print(f"step 1: {m.step_seconds:.1f} s, rollout {m.rollout_seconds:.1f} s, rewards {m.reward_seconds:.1f} s, "
              f"{m.completions} completions of {m.completion_length_min:.0f}-{m.completion_length_max:.0f} tokens")
        assert (m.prompts, m.completions) == (len(plan), len(plan) * GROUP_SIZE)
        assert m.completion_length_min == min(lengths) and m.completion_length_max == max(lengths)
        assert m.completion_length_mean == pytest.approx(sum(lengths) / len(lengths))
        assert m.truncated_fraction == 0.0

        # 5. Nothing escaped: no marker, the store intact, nothing connected, no sandbox process left,
        #    both servers alive and serving.
        assert [p for p in markers if p.exists()] == []
        db = store_dir / FILENAME
        assert db.read_bytes()[:16] == b"SQLite format 3\x00"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        with pytest.raises(BlockingIOError):
            sentinel.accept()
        assert sandbox_processes_left() == []
        assert trainer.proc.poll() is None and sandbox.proc.poll() is None
        assert trainer.health() == health_pb2.HealthCheckResponse.SERVING
        status = trainer.client.step_status()
        assert status.run.checkpoint_step == 1 and status.run.prompts_trained == len(plan)
        assert status.run.queue_depth == 0

        # 6. The scores: the sandbox reported each item's status (OK; TIMEOUT for the fork bomb,
        #    RESOURCE_EXHAUSTED for the memory bomb), every attack failed its test (0), the control
        #    passed (1), and nothing was masked: the code backend's mean over the 12 items is 2/12.
        sandbox_text = scrape_metrics(sandbox_metrics)
        for label in {a.sandbox_status for a in plan}:
            expected_items = GROUP_SIZE * sum(a.sandbox_status == label for a in plan)
            assert metric_value(sandbox_text, "grpo_reward_items_total", f'status="{label}"') == expected_items, label
        expected_mean = sum(a.passes for a in plan) / len(plan)
        assert m.masked_reward_failures == 0
        assert m.backend_reward_means["code"] == pytest.approx(expected_mean) and expected_mean == pytest.approx(1 / 6)
        assert m.reward_mean == pytest.approx(expected_mean)
        assert trainer.metrics_port is not None
        text = scrape_metrics(trainer.metrics_port)
        assert metric_value(text, "grpo_masked_reward_failures_total") == 0
        failures = [line for line in text.splitlines()
                    if line.startswith("grpo_reward_request_failures_total{") and not line.endswith(" 0.0")]
        assert failures == []  # no failed call or item
        assert metric_value(text, "grpo_steps_total", 'state="completed"') == 1

        # 7. A clean drain; the store accounts for every prompt: trained in step 1, no failed attempt.
        trainer.terminate()
        assert trainer.wait(120) == 0
        assert prompt_accounting(store_dir) == {a.name: (PromptState.TRAINED, 1) for a in plan}
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            attempts = dict(conn.execute("SELECT id, attempts FROM prompts"))
        assert attempts == {a.name: 0 for a in plan}
        assert sandbox.terminate() == 0
    finally:
        sentinel.close()
        if trainer is not None and trainer.proc.poll() is None:
            trainer.kill()
        if sandbox is not None:
            sandbox.kill()
        for p in markers[2:]:  # outside tmp_path: never leave one behind, even when the test failed
            p.unlink(missing_ok=True)
