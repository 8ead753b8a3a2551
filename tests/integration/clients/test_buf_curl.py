"""The "any language" path of docs/clients.md: `buf curl` (npm @bufbuild/buf, repo root) against the
trainer's server reflection, with a bearer token, JSON in and out."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO, LiveTrainer, run_tool

BUF = REPO / "node_modules" / ".bin" / "buf"


@pytest.fixture(scope="module")
def buf() -> Path:
    if not BUF.exists():
        pytest.skip("node_modules/.bin/buf missing; run `npm ci` in the repository root")
    return BUF


def curl(buf: Path, live: LiveTrainer, *args: str, token: str | None = None, check: bool = True):
    cmd = [str(buf), "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    return run_tool([*cmd, *args], cwd=REPO, timeout=120, check=check)


def test_reflection_lists_the_trainer_methods(buf: Path, live_trainer: LiveTrainer) -> None:
    # Reflection is open: no token needed to discover the API.
    out = curl(buf, live_trainer, "--list-methods", f"http://{live_trainer.target}").stdout.split()
    assert "grpo.trainer.v1.TrainerService/SubmitPrompts" in out
    assert "grpo.trainer.v1.TrainerService/WatchSteps" in out
    assert "grpc.health.v1.Health/Check" in out


def test_submit_and_status_as_json(buf: Path, live_trainer: LiveTrainer) -> None:
    pid = f"buf-{uuid.uuid4().hex}"
    body = {"prompts": [{"id": pid, "messages": [{"role": "user", "content": "What is 9 + 1?"}], "answer": "10"}]}
    url = f"http://{live_trainer.target}/grpo.trainer.v1.TrainerService"
    res = json.loads(curl(buf, live_trainer, "--data", json.dumps(body), f"{url}/SubmitPrompts",
                          token=live_trainer.admin_token).stdout)
    assert res["acceptedIds"] == [pid]
    status = json.loads(curl(buf, live_trainer, "--data", "{}", f"{url}/StepStatus",
                             token=live_trainer.reader_token).stdout)
    assert status["run"]["state"].startswith("RUN_STATE_")


def test_errors_show_code_message_and_the_detail_type(buf: Path, live_trainer: LiveTrainer) -> None:
    body = {"prompts": [{"id": "buf-bad", "messages": [{"role": "robot", "content": "hi"}], "answer": "1"}]}
    url = f"http://{live_trainer.target}/grpo.trainer.v1.TrainerService/SubmitPrompts"
    proc = curl(buf, live_trainer, "--data", json.dumps(body), url, token=live_trainer.admin_token, check=False)
    assert proc.returncode != 0
    err = json.loads(proc.stderr)
    assert err["code"] == "invalid_argument"
    assert "prompts[0].messages[0].role" in err["message"]
    assert [d["type"] for d in err["details"]] == ["google.rpc.BadRequest"]

    denied = curl(buf, live_trainer, "--data", "{}", url.replace("SubmitPrompts", "StepStatus"), check=False)
    assert json.loads(denied.stderr)["code"] == "unauthenticated"


def test_watch_steps_streams_finished_steps(buf: Path, live_trainer: LiveTrainer) -> None:
    url = f"http://{live_trainer.target}/grpo.trainer.v1.TrainerService"
    for a in (3, 4):
        body = {"prompts": [{"id": f"buf-{uuid.uuid4().hex}", "messages": [{"role": "user", "content": f"What is {a} + 1?"}],
                             "answer": str(a + 1)}]}
        curl(buf, live_trainer, "--data", json.dumps(body), f"{url}/SubmitPrompts", token=live_trainer.admin_token)
    deadline = time.monotonic() + 180
    while True:
        status = json.loads(curl(buf, live_trainer, "--data", "{}", f"{url}/StepStatus", token=live_trainer.reader_token).stdout)
        if status.get("step", {}).get("state") in ("STEP_STATE_COMPLETED", "STEP_STATE_SKIPPED", "STEP_STATE_FAILED"):
            break
        assert time.monotonic() < deadline, f"no step finished in 180 s: {status}"
        time.sleep(1)
    # The stream first replays finished steps, then waits for live ones: --timeout ends it.
    proc = curl(buf, live_trainer, "--timeout", "5s", "--data", '{"afterStep":"0"}', f"{url}/WatchSteps",
                token=live_trainer.reader_token, check=False)
    assert '"state": "STEP_STATE_COMPLETED"' in proc.stdout, proc.stdout + proc.stderr
    assert '"step": "1"' in proc.stdout, proc.stdout
