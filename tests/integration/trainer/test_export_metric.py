"""`grpo_checkpoints_total{kind="export"}` counts the exports that were written and
`grpo_export_failures_total` those that failed: an export that fails while writing (here the disk fills
up under the weights file) adds one to the second, a finished one to the first. The trainer runs in this process (real gRPC API and /metrics on loopback) so the disk can fill on cue."""

from __future__ import annotations

import errno
import re
import urllib.request
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient


def counted(metrics_port: int) -> tuple[float, float]:
    """(grpo_checkpoints_total{kind="export"}, grpo_export_failures_total) as the trainer's /metrics shows
    them (0 before the first)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    done = re.search(r'^grpo_checkpoints_total\{kind="export"\} (\S+)$', text, re.MULTILINE)
    failed = re.search(r"^grpo_export_failures_total (\S+)$", text, re.MULTILINE)
    return (float(done.group(1)) if done else 0.0), (float(failed.group(1)) if failed else 0.0)


def test_a_failed_export_is_counted_as_a_failure_not_as_a_checkpoint(
    start_trainer: Any, toy_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scorer, backend = toy_backend("toy", 0.5)
    app = start_trainer(tmp_path / "store", [("toy", backend.address)],
                        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"})
    client = TrainerClient(f"127.0.0.1:{app.api_port}")
    try:
        def disk_full(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(huggingface_hub, "save_torch_state_dict", disk_full)
            failed = client.export_checkpoint(str(tmp_path / "full"), wait=True, timeout=120)
        assert failed.state == trainer_pb2.EXPORT_STATE_FAILED, failed
        assert "No space left on device" in failed.error
        assert counted(app.metrics_port) == (0.0, 1.0)  # not a checkpoint; a failure

        done = client.export_checkpoint(str(tmp_path / "export"), wait=True, timeout=120)
        assert done.state == trainer_pb2.EXPORT_STATE_DONE, done
        assert counted(app.metrics_port) == (1.0, 1.0)
    finally:
        client.close()
