"""The TypeScript client (clients/typescript), compiled with tsc and run with Node's test runner against
a live trainer. Skips only when Node/npm are missing or its npm packages cannot be installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, LiveTrainer, TlsTrainer, require_tools, run_tool
from follow_restart import run_restart_scenario

TS = REPO / "clients" / "typescript"


@pytest.fixture(scope="module")
def built_client() -> Path:
    """clients/typescript compiled to dist/ (after `npm ci` when node_modules is missing)."""
    require_tools("node", "npm", hint="clients/setup.sh")
    if not (TS / "node_modules" / ".bin" / "tsc").exists():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TS, capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"`npm ci` in clients/typescript failed (no registry access?): {proc.stderr[-2000:]}")
    run_tool(["node_modules/.bin/tsc", "-p", "tsconfig.json"], cwd=TS, timeout=300)
    return TS / "dist"


def test_generated_types_match_the_protos(built_client: Path) -> None:
    """src/generated and proto/ are what `npm run gen` produces from protos/ today."""
    proc = run_tool(["node", "scripts/gen-types.js", "--check"], cwd=TS, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_status_details_decode_without_a_server(built_client: Path) -> None:
    proc = run_tool(["node", "--test", str(built_client / "test" / "errors.test.js")], cwd=TS, timeout=120,
                    check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# pass 6$", proc.stdout, re.M), proc.stdout  # every test in errors.test.ts


def test_typescript_client_against_live_trainer(built_client: Path, live_trainer: LiveTrainer) -> None:
    """submit (+ idempotent replay), watch a step, status, BadRequest field paths, auth, backends,
    cancel and list prompts, pause/resume, export: see clients/typescript/test/client.test.ts."""
    env = {**os.environ, "GRPO_TARGET": live_trainer.target, "GRPO_ADMIN_TOKEN": live_trainer.admin_token,
           "GRPO_READER_TOKEN": live_trainer.reader_token, "GRPO_MATH_ADDRESS": live_trainer.math_address}
    proc = run_tool(["node", "--test", str(built_client / "test" / "client.test.js")], cwd=TS, env=env,
                    timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every test ran: none was skipped (the suite skips itself when GRPO_TARGET is missing).
    assert re.search(r"^# pass 10$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^# skipped 0$", proc.stdout, re.M), proc.stdout


def test_typescript_client_tls_option(built_client: Path, tls_trainer: TlsTrainer) -> None:
    """TLS with the trainer's CA works; plaintext and untrusted TLS fail UNAVAILABLE (test/tls.test.ts)."""
    env = {**os.environ, "GRPO_TLS_TARGET": tls_trainer.target, "GRPO_TLS_CA": str(tls_trainer.ca_file)}
    proc = run_tool(["node", "--test", str(built_client / "test" / "tls.test.js")], cwd=TS, env=env, timeout=120,
                    check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# pass 2$", proc.stdout, re.M), proc.stdout


def test_unary_calls_without_a_server(built_client: Path) -> None:
    """listPrompts/allPrompts paging, cancelPrompts, exportCheckpoint's own deadline, step numbers checked
    before they are sent, followSteps' retryMs/giveUpMs and tokens checked at once, against an in-process
    TrainerService (test/calls.test.ts)."""
    proc = run_tool(["node", "--test", str(built_client / "test" / "calls.test.js")], cwd=TS, timeout=120,
                    check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# pass 6$", proc.stdout, re.M), proc.stdout  # every test in calls.test.ts


@pytest.mark.parametrize("example,args,message", [
    ("follow", ["--after", "abc"], "error: --after: 'abc' is not a whole number >= 0"),
    ("follow", ["--retry-ms", "soon"], "error: --retry-ms: 'soon' is not a whole number >= 0"),
    ("follow", ["--give-up-ms", "1e400x"], "error: --give-up-ms: '1e400x' is not a whole number >= 0 (or Infinity)"),
    ("follow", ["-n", "1.5"], "error: -n: '1.5' is not a whole number >= 0"),
    ("follow", ["--bogus"], "error: Unknown option '--bogus'"),
    ("follow", ["--token", "line\n"], "error: TrainerClient: options.token has U+000A at character 5 of 5"),
    ("submit", ["--bogus"], "error: Unknown option '--bogus'"),
    ("submit", ["--token", "s p"], "error: TrainerClient: options.token has U+0020 at character 2 of 3"),
])
def test_examples_refuse_bad_flags_with_one_line_and_exit_2(built_client: Path, example: str, args: list[str],
                                                            message: str) -> None:
    """A bad flag or value is one "error: ..." line and exit status 2 before any call (follow.ts once sent
    --after abc as step 0 and retried NaN ms apart without end; both printed a stack trace for an unknown
    flag)."""
    proc = run_tool(["node", str(built_client / "examples" / f"{example}.js"), "--target", "127.0.0.1:1", *args],
                    cwd=TS, timeout=60, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    assert "    at " not in proc.stderr, proc.stderr  # no stack trace
    assert proc.stdout == ""


def test_example_submits_and_reads_status(built_client: Path, live_trainer: LiveTrainer) -> None:
    """examples/submit.ts, as docs/clients.md runs it."""
    proc = run_tool(["node", str(built_client / "examples" / "submit.js"), "--target", live_trainer.target,
                     "--token", live_trainer.admin_token], cwd=TS, timeout=120)
    assert "accepted 1 prompt" in proc.stdout, proc.stdout
    assert "run state: RUN_STATE_" in proc.stdout, proc.stdout
    bad = run_tool(["node", str(built_client / "examples" / "submit.js"), "--target", live_trainer.target,
                    "--token", live_trainer.admin_token, "--bad"], cwd=TS, timeout=120, check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "INVALID_ARGUMENT" in bad.stderr and "prompts[0].messages[0].role" in bad.stderr, bad.stderr


def test_follow_state_and_retry_loop_without_a_server(built_client: Path) -> None:
    """FollowState (where to resume, which reports to skip), followSteps' retry, give-up and close
    against a port nothing listens on, its give-up count across an idle in-process trainer, and the
    capped reconnect backoff, and waiting out a trainer with no room for another stream (test/follow.test.ts)."""
    proc = run_tool(["node", "--test", str(built_client / "test" / "follow.test.js")], cwd=TS, timeout=120,
                    check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# pass 10$", proc.stdout, re.M), proc.stdout  # every test in follow.test.ts


def test_example_follow_carries_on_across_a_trainer_kill_and_restart(built_client: Path, tmp_path: Path) -> None:
    """examples/follow.ts (followSteps) reconnects after SIGKILL and after a drain, gets the steps the
    restart ran again, and no report twice: see follow_restart.py."""
    run_restart_scenario(tmp_path, lambda target: ["node", str(built_client / "examples" / "follow.js"), "--target",
                                                   target, "--retry-ms", "200", "--give-up-ms", "120000"], TS)
