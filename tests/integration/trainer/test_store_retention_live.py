"""retention.* through the real trainer: the content of trained prompts and old request ids leave the
store when the trainer starts and at each checkpoint; the run's accounting stays whole."""

from __future__ import annotations

import sqlite3
import urllib.request
from pathlib import Path

from live_trainer import prompts, wait_for
from prometheus_client.parser import text_string_to_metric_families

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient
from grpo_server.store.sqlite_store import FILENAME


def kept_contents(store_dir: Path) -> dict[str, int]:
    """id -> how many of its submissions still hold their content, read from the store's file."""
    with sqlite3.connect(store_dir / FILENAME) as c:
        return dict(c.execute("SELECT id, sum(data <> '') FROM prompts GROUP BY id").fetchall())


def metric_samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, labels) -> value of every sample the trainer's /metrics exports."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def pruned_counts(port: int) -> dict[str, float]:
    """kind -> grpo_store_pruned_total, as the trainer's /metrics exports it."""
    return {dict(labels)["kind"]: value for (name, labels), value in metric_samples(port).items()
            if name == "grpo_store_pruned_total"}


def test_trained_prompts_lose_their_content_and_old_request_ids_are_forgotten(
    toy_backend, start_trainer, tmp_path: Path
) -> None:
    _, backend = toy_backend("toy", 0.5)
    store_dir = tmp_path / "store"
    app = start_trainer(store_dir, [("toy", backend.address)], training={"max_steps": 2})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    assert not client.submit_prompts(prompts(4), request_id="req-1").duplicate
    wait_for(lambda: client.step_status().run.prompts_trained == 4 or None, 120, "4 prompts were not trained")
    assert client.submit_prompts(prompts(4), request_id="req-1").duplicate  # remembered
    app.shutdown()
    assert kept_contents(store_dir) == {"p0": 1, "p1": 1, "p2": 1, "p3": 1}  # 7 days by default: all kept

    # Restarted with a retention shorter than the time since: the start forgets both, and /metrics says so.
    app = start_trainer(store_dir, [("toy", backend.address)], training={"max_steps": 4},
                        retention={"prompt_content_seconds": 0.001, "request_ids_seconds": 0.001},
                        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    wait_for(lambda: kept_contents(store_dir) == {"p0": 0, "p1": 0, "p2": 0, "p3": 0} or None, 60,
             lambda: f"the trained prompts kept their content: {kept_contents(store_dir)}")
    # The counters go up once the whole pruning is done, after the store's transactions.
    expected = {"prompt_content": 4, "request_ids": 1, "prompt_rows": 0, "step_reports": 0, "export_records": 0}
    wait_for(lambda: pruned_counts(app.metrics_port) == expected, 30,
             lambda: f"grpo_store_pruned_total: {pruned_counts(app.metrics_port)}")
    samples = metric_samples(app.metrics_port)
    assert samples[("grpo_store_bytes", (("file", "db"),))] > 0, samples
    assert ("grpo_store_bytes", (("file", "wal"),)) in samples
    again = client.submit_prompts(prompts(4), request_id="req-1")
    assert not again.duplicate and list(again.accepted_ids) == ["p0", "p1", "p2", "p3"]  # a new submission

    # Trained a second time from their new content. Step 3's prompts are dropped at step 4's checkpoint;
    # step 4's finished as that checkpoint pruned (not yet older than the retention, or just so).
    wait_for(lambda: client.step_status().run.prompts_trained == 8 or None, 120, "the resubmitted prompts were not "
             "trained")
    wait_for(lambda: (kept_contents(store_dir)["p0"], kept_contents(store_dir)["p1"]) == (0, 0) or None, 60,
             lambda: f"the checkpoint dropped no content: {kept_contents(store_dir)}")
    app.shutdown()
    # The finished run's next start drops the rest.
    app = start_trainer(store_dir, [("toy", backend.address)], training={"max_steps": 4},
                        retention={"prompt_content_seconds": 0.001, "request_ids_seconds": 0.001})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    wait_for(lambda: kept_contents(store_dir) == {"p0": 0, "p1": 0, "p2": 0, "p3": 0} or None, 60,
             lambda: f"the start dropped no content: {kept_contents(store_dir)}")
    run = client.step_status().run
    assert (run.prompts_trained, run.prompts_failed, run.queue_depth, run.checkpoint_step) == (8, 0, 0, 4)
    listed = client.list_prompts()
    assert [(p.id, p.state) for p in listed.prompts] == [
        (f"p{i}", trainer_pb2.PROMPT_STATE_TRAINED) for i in (0, 1, 2, 3, 0, 1, 2, 3)]
    assert [p.checkpoint_step for p in listed.prompts] == [1, 1, 2, 2, 3, 3, 4, 4]
