"""The TypeScript client (clients/typescript), compiled with tsc and run with Node's test runner against
a live trainer. Skips only when Node/npm are missing or its npm packages cannot be installed."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    REPO,
    LiveTrainer,
    MtlsTrainer,
    TlsTrainer,
    assert_interrupted_submit_as_grpo,
    assert_same_error,
    bad_tls_flag_cases,
    grpo_cli,
    key_order,
    prompt_lines,
    python_cli_command,
    require_tools,
    run_interrupted,
    run_tool,
    write_client_pki,
)
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
    assert re.search(r"^# pass 11$", proc.stdout, re.M), proc.stdout  # every test in errors.test.ts


@pytest.mark.parametrize(("name", "tests"), [("prompts", 3), ("submit", 6), ("wording", 4)])
def test_the_clients_own_unit_tests_pass_without_a_server(built_client: Path, name: str, tests: int) -> None:
    """The TypeScript tests of the prompt file reader, submitFile's retries and the shared wording: they ran
    only under `npm test`, never in the suite."""
    proc = run_tool(["node", "--test", str(built_client / "test" / f"{name}.test.js")], cwd=TS, timeout=120,
                    check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(rf"^# pass {tests}$", proc.stdout, re.M), proc.stdout  # every test in {name}.test.ts


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


def python_cli(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`grpo --target TARGET ARGS` (no token)."""
    return run_tool([sys.executable, "-m", "grpo_client.cli", "--target", target, *args], cwd=REPO, timeout=120,
                    check=False)


def test_examples_present_a_client_certificate_and_check_the_server_name(built_client: Path,
                                                                         mtls_trainer: MtlsTrainer) -> None:
    """--cert/--key and --server-name, as `grpo`'s, against a trainer that requires a client certificate and
    whose certificate names only grpo-trainer.test: with both, prompts.js prints `grpo prompts`'s document;
    without the certificate, without --server-name (127.0.0.1 is checked) or with a wrong name it fails
    UNAVAILABLE, exit status 1, with --json the document `grpo --json` prints."""
    m = mtls_trainer
    ca, cert = ["--ca", str(m.pki.ca_cert)], ["--cert", str(m.pki.client_cert), "--key", str(m.pki.client_key)]
    name = ["--server-name", m.server_name]
    prompts = ["node", str(built_client / "examples" / "prompts.js"), "--target", m.target]
    ts = run_tool([*prompts, *ca, *cert, *name, "--json"], cwd=TS, timeout=120, check=False)
    py = python_cli(m.target, *ca, *cert, *name, "--json", "prompts")
    assert ts.returncode == py.returncode == 0, (ts.stdout, ts.stderr, py.stdout, py.stderr)
    assert json.loads(ts.stdout) == json.loads(py.stdout) == {"prompts": []}, (ts.stdout, py.stdout)
    for flags in ([*ca, *name], [*ca, *cert], [*ca, *cert, "--server-name", "other.test"]):
        ts = run_tool([*prompts, *flags, "--json"], cwd=TS, timeout=120, check=False)
        py = python_cli(m.target, *flags, "--timeout", "5", "--json", "prompts")
        assert assert_same_error(ts, py, 1, same_message=False)["code"] == "UNAVAILABLE", flags


def test_examples_name_a_client_certificate_the_trainer_refuses(built_client: Path, mtls_trainer: MtlsTrainer,
                                                                tmp_path: Path) -> None:
    """A trainer (gRPC core, TLS 1.3) refuses a missing client certificate, or one of a CA it does not trust, by
    closing the connection right after the handshake, and grpc-js said only "Failed to connect": the examples'
    message now ends with what `grpo`'s ends with, saying what was refused, with `grpo --json`'s code, document
    and exit status; submit.js --file and follow.js, which wait for a trainer that is down, stop at once."""
    m = mtls_trainer
    stranger = write_client_pki(tmp_path)  # a client certificate of a CA the trainer does not trust
    base = ["--ca", str(m.pki.ca_cert), "--server-name", m.server_name]
    closed = "(the trainer closed the connection right after the TLS 1.3 handshake: {})"
    none_given = closed.format("it requires a client certificate and none was given")
    examples = built_client / "examples"
    for cert, explanation in (
        ([], none_given),
        (["--cert", str(stranger.client_cert), "--key", str(stranger.client_key)],
         closed.format(f"it did not accept the client certificate {stranger.client_cert} (is it signed by a CA the "
                       "trainer trusts for clients?)")),
    ):
        ts = run_tool(["node", str(examples / "prompts.js"), "--target", m.target, *base, *cert, "--json"], cwd=TS,
                      timeout=60, check=False)
        py = python_cli(m.target, *base, *cert, "--json", "prompts")
        error = assert_same_error(ts, py, 1, same_message=False)
        assert error["code"] == "UNAVAILABLE" and error["message"].endswith(explanation), error
        assert "Failed to connect" in error["message"], error  # grpc-js' words for it, which the check is made for
        assert json.loads(py.stdout)["error"]["message"].endswith(explanation), py.stdout
    prompts = prompt_lines(tmp_path / "prompts.jsonl", ["c1"])
    ts = run_tool(["node", str(examples / "submit.js"), "--target", m.target, *base, "--file", str(prompts), "--json"],
                  cwd=TS, timeout=60, check=False)
    error = assert_same_error(ts, python_cli(m.target, *base, "--json", "submit", str(prompts)), 1,
                              same_message=False)
    assert error["message"].endswith(none_given), error
    assert "sending it again" not in ts.stderr, ts.stderr  # refused at once, not waited on as a trainer that is down
    follow = run_tool(["node", str(examples / "follow.js"), "--target", m.target, *base, "--retry-ms", "100"], cwd=TS,
                      timeout=60, check=False)
    assert follow.returncode == 1, (follow.returncode, follow.stderr)
    assert follow.stderr.startswith("UNAVAILABLE: ") and follow.stderr.rstrip().endswith(none_given), follow.stderr
    assert "reconnecting" not in follow.stderr, follow.stderr


def test_client_certificate_refusal_check_against_node_tls_servers(built_client: Path) -> None:
    """clientCertificateRefusal and TrainerClient against Node TLS servers that close after the handshake, send
    an alert, answer or stay silent, a TLS 1.2 one, no TLS server and no server (test/tlscheck.test.ts)."""
    require_tools("openssl", hint="apt-get install openssl")
    proc = run_tool(["node", "--test", str(built_client / "test" / "tlscheck.test.js")], cwd=TS, timeout=120,
                    check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# pass 8$", proc.stdout, re.M), proc.stdout  # every test in tlscheck.test.ts
    assert re.search(r"^# skipped 0$", proc.stdout, re.M), proc.stdout


def test_examples_refuse_bad_tls_flags_as_the_python_cli_does(built_client: Path, tmp_path: Path) -> None:
    """--cert without --key (and the reverse), a file without the PEM block it should hold, an encrypted key
    and an empty --server-name are USAGE (exit status 2), a file that cannot be read LOCAL (exit status 1),
    before any call (nothing listens on the target): `grpo`'s document, message included, and exit status;
    follow.js (no --json) prints the same line and exit status."""
    for flags, status in bad_tls_flag_cases(tmp_path):
        py = python_cli("127.0.0.1:1", *flags, "--json", "prompts")
        ts = run_tool(["node", str(built_client / "examples" / "prompts.js"), "--target", "127.0.0.1:1", *flags,
                       "--json"], cwd=TS, timeout=60, check=False)
        assert assert_same_error(ts, py, status)["code"] == ("USAGE" if status == 2 else "LOCAL"), flags
        follow = run_tool(["node", str(built_client / "examples" / "follow.js"), "--target", "127.0.0.1:1", *flags],
                          cwd=TS, timeout=60, check=False)
        assert follow.returncode == status, (flags, follow.stderr)
        assert follow.stderr == f"error: {json.loads(py.stdout)['error']['message']}\n", (flags, follow.stderr)
    ts = run_tool(["node", str(built_client / "examples" / "prompts.js"), "--target", "127.0.0.1:1", "--server-name",
                   " ", "--json"], cwd=TS, timeout=60, check=False)
    error = assert_same_error(ts, python_cli("127.0.0.1:1", "--server-name", " ", "--json", "prompts"), 2,
                              same_message=False)
    assert error == {"code": "USAGE", "message": "--server-name: must not be empty"}, error


def test_examples_refuse_a_bad_target_and_an_empty_token_as_the_python_cli_does(built_client: Path) -> None:
    """A target without a port dialled port 443, one with a scheme or a port over 65535 failed UNAVAILABLE,
    and an empty --token was sent as no token (UNAUTHENTICATED): each exit status 1 after a call, where
    `grpo` refuses them before any (USAGE, exit status 2)."""
    for target, flags in (("127.0.0.1", []), ("127.0.0.1:99999", []), ("http://127.0.0.1:50051", []), ("::1:50051", []),
                          ("127.0.0.1:1", ["--token", ""])):
        py = run_tool([sys.executable, "-m", "grpo_client.cli", "--target", target, *flags, "--json", "prompts"],
                      cwd=REPO, timeout=120, check=False)
        ts = run_tool(["node", str(built_client / "examples" / "prompts.js"), "--target", target, *flags, "--json"],
                      cwd=TS, timeout=60, check=False)
        assert assert_same_error(ts, py, 2)["code"] == "USAGE", (target, flags)


def test_unary_calls_without_a_server(built_client: Path) -> None:
    """listPrompts/allPrompts paging, cancelPrompts, exportCheckpoint's own deadline, step numbers checked
    before they are sent, followSteps' retryMs/giveUpMs and tokens checked at once, against an in-process
    TrainerService (test/calls.test.ts)."""
    proc = run_tool(["node", "--test", str(built_client / "test" / "calls.test.js")], cwd=TS, timeout=120,
                    check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# pass 11$", proc.stdout, re.M), proc.stdout  # every test in calls.test.ts


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
    assert "accepted 1 prompt: " in proc.stdout, proc.stdout  # not "1 prompt(s)"
    assert "run state: RUN_STATE_" in proc.stdout, proc.stdout
    bad = run_tool(["node", str(built_client / "examples" / "submit.js"), "--target", live_trainer.target,
                    "--token", live_trainer.admin_token, "--bad"], cwd=TS, timeout=120, check=False)
    # Exit status 2 for INVALID_ARGUMENT, as `grpo` exits (this example once exited 1: parity with the
    # Python CLI is the point, so the assertion changed with it).
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "INVALID_ARGUMENT" in bad.stderr and "prompts[0].messages[0].role" in bad.stderr, bad.stderr


def test_follow_state_and_retry_loop_without_a_server(built_client: Path) -> None:
    """FollowState (where to resume, which reports to skip, which retention gaps to pass on), followSteps' retry, give-up and close
    against a port nothing listens on, its give-up count across an idle in-process trainer, and the
    capped reconnect backoff, and waiting out a trainer with no room for another stream (test/follow.test.ts)."""
    proc = run_tool(["node", "--test", str(built_client / "test" / "follow.test.js")], cwd=TS, timeout=120,
                    check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^# pass 16$", proc.stdout, re.M), proc.stdout  # every test in follow.test.ts


def test_example_follow_carries_on_across_a_trainer_kill_and_restart(built_client: Path, tmp_path: Path) -> None:
    """examples/follow.ts (followSteps) reconnects after SIGKILL and after a drain, gets the steps the
    restart ran again, and no report twice: see follow_restart.py."""
    run_restart_scenario(tmp_path, lambda target: ["node", str(built_client / "examples" / "follow.js"), "--target",
                                                   target, "--retry-ms", "200", "--give-up-ms", "120000"], TS)


# ----------------------------------------- backends set, prompts, cancel, exports: as the Python CLI has them


def ts_example(dist: Path, live: LiveTrainer, command: str, *args: str, token: str) -> subprocess.CompletedProcess[str]:
    """examples/COMMAND.ts (backends, prompts, cancel, exports) with the arguments `grpo COMMAND ARGS` takes."""
    return run_tool(["node", str(dist / "examples" / f"{command}.js"), "--target", live.target,
                     "--token", token, *args], cwd=TS, timeout=120, check=False)


@pytest.mark.parametrize("example,args,message", [
    ("backends", ["list"], "error: 'list' is not an action; give set NAME HOST:PORT"),
    ("backends", ["set", "math"], "error: set: give NAME and HOST:PORT (got 1 argument)"),
    ("backends", ["set", "math", "h:1", "--timeout", "NaN"], "error: --timeout: 'NaN' is not a finite number"),
    ("backends", ["set", "math", "h:1", "--max-batch", "2147483648"],
     "error: --max-batch: '2147483648' is not a whole number from 0 to 2147483647"),
    ("prompts", ["--state", "done"], "error: --state: 'done' is not a prompt state; give one of queued, leased,"),
    ("prompts", ["--limit=-1"], "error: --limit: '-1' is not a whole number from 0"),
    ("exports", ["--state", "queued"], "error: --state: 'queued' is not an export state; give one of pending,"),
    ("exports", ["--limit", "x"], "error: --limit: 'x' is not a whole number from 0"),
    ("cancel", [], "error: name the prompts to cancel: IDs, or --file FILE.jsonl"),
    ("cancel", ["--file", "/nonexistent/prompts.jsonl"], "error: ENOENT"),
])
def test_admin_examples_refuse_bad_command_lines_before_any_call(built_client: Path, example: str, args: list[str],
                                                                 message: str) -> None:
    """backends.ts, prompts.ts, cancel.ts and exports.ts check their flags (and cancel's --file) before any
    call: one "error: ..." line, exit status 2 (1 for an unreadable file, as `grpo`), nothing on stdout."""
    proc = run_tool(["node", str(built_client / "examples" / f"{example}.js"), "--target", "127.0.0.1:1", *args],
                    cwd=TS, timeout=60, check=False)
    assert proc.returncode == (1 if "ENOENT" in message else 2), proc.stdout + proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    assert "    at " not in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_example_cancel_of_an_empty_prompt_file_needs_no_trainer(built_client: Path, tmp_path: Path) -> None:
    """As `grpo cancel --file` of a file without prompts: nothing to send, exit status 0, the same document."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    ts = run_tool(["node", str(built_client / "examples" / "cancel.js"), "--target", "127.0.0.1:1", "--file",
                   str(empty), "--json"], cwd=TS, timeout=60, check=False)
    py = run_tool([sys.executable, "-m", "grpo_client.cli", "--target", "127.0.0.1:1", "cancel", "--file", str(empty),
                   "--json"], cwd=REPO, timeout=60, check=False)
    assert ts.returncode == py.returncode == 0, ts.stderr
    assert json.loads(ts.stdout) == json.loads(py.stdout) and ts.stdout == py.stdout, (ts.stdout, py.stdout)


def test_example_sets_a_backend_as_the_python_cli_does(built_client: Path, live_trainer: LiveTrainer) -> None:
    """backends.ts `set NAME HOST:PORT [flags]`: the same stored backend, line, --json document (key order
    included) and exit statuses as `grpo backends set`."""
    from grpo_client.client import TrainerClient

    admin = live_trainer.admin_token
    args = ["set", "cmp-ts", live_trainer.math_address, "--timeout", "12.5", "--max-batch", "8",
            "--max-concurrency", "2"]
    try:
        # The registry version is the trainer's (setting the same backend again may or may not count).
        py = grpo_cli(live_trainer, "backends", *args, token=admin)
        ts = ts_example(built_client, live_trainer, "backends", *args, token=admin)
        assert py.returncode == ts.returncode == 0, ts.stderr
        assert re.fullmatch(rf"set cmp-ts -> {re.escape(live_trainer.math_address)} \(registry version \d+\)\n",
                            ts.stdout), ts.stdout
        assert re.sub(r"\d+\)$", "V)", ts.stdout) == re.sub(r"\d+\)$", "V)", py.stdout), (ts.stdout, py.stdout)

        py = grpo_cli(live_trainer, "backends", *args, "--json", token=admin)
        ts = ts_example(built_client, live_trainer, "backends", *args, "--json", token=admin)
        assert py.returncode == ts.returncode == 0, ts.stderr
        ts_doc, py_doc = json.loads(ts.stdout), json.loads(py.stdout)
        assert int(ts_doc.pop("registry_version")) >= int(py_doc.pop("registry_version"))
        assert ts_doc == py_doc and key_order(ts_doc) == key_order(py_doc), (ts.stdout, py.stdout)
        stored = ts_doc["backend"]
        assert (stored["timeout_seconds"], stored["max_batch_size"], stored["max_concurrency"]) == (12.5, 8, 2), stored

        # A name the trainer refuses: INVALID_ARGUMENT, exit status 2 as for `grpo`, the field named.
        bad = ["set", "Not A Name", live_trainer.math_address]
        ts = ts_example(built_client, live_trainer, "backends", *bad, token=admin)
        assert grpo_cli(live_trainer, "backends", *bad, token=admin).returncode == ts.returncode == 2, ts.stderr
        assert ts.stderr.startswith("INVALID_ARGUMENT: ") and "backend.name" in ts.stderr, ts.stderr
        assert ts.stdout == ""
        # A reader may not change the registry: exit status 1.
        reader = live_trainer.reader_token
        ts = ts_example(built_client, live_trainer, "backends", *args, token=reader)
        assert grpo_cli(live_trainer, "backends", *args, token=reader).returncode == ts.returncode == 1
        assert ts.stderr.startswith("PERMISSION_DENIED: "), ts.stderr
    finally:
        with TrainerClient(live_trainer.target, admin) as client:
            client.delete_backend("cmp-ts")


def same_as_grpo(built_client: Path, live: LiveTrainer, token: str, command: str, *args: str,
                 code: int = 0) -> subprocess.CompletedProcess[str]:
    """The example and Python print the same for `grpo COMMAND ARGS` and exit with `code` (for --json, the
    same document with its keys in the same order); the example's run."""
    py = grpo_cli(live, command, *args, token=token)
    ts = ts_example(built_client, live, command, *args, token=token)
    assert py.returncode == ts.returncode == code, (ts.returncode, ts.stdout, ts.stderr, py.stdout, py.stderr)
    if "--json" in args:
        ts_doc, py_doc = json.loads(ts.stdout), json.loads(py.stdout)
        assert ts_doc == py_doc and key_order(ts_doc) == key_order(py_doc), (ts.stdout, py.stdout)
    else:
        assert ts.stdout == py.stdout, (ts.stdout, py.stdout)
    return ts


def test_examples_list_and_cancel_prompts_as_the_python_cli_does(built_client: Path, paused_trainer: LiveTrainer,
                                                                 tmp_path: Path) -> None:
    """prompts.ts `[ID ...] [--state S] [--limit N]` and cancel.ts `[ID ...] [--file F]`: the same table,
    lines, --json documents (key order included) and exit statuses as `grpo prompts` and `grpo cancel`."""
    live, admin = paused_trainer, paused_trainer.admin_token
    tag = uuid.uuid4().hex[:8]
    first, second, unknown = f"ts-cmp-{tag}-1", f"ts-cmp-{tag}-2", f"ts-never-{tag}"
    prompt_file = tmp_path / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"id": i, "messages": [{"role": "user", "content": "What is 1 + 1?"}],
                                               "answer": "2"}) + "\n" for i in (first, second)))
    assert grpo_cli(live, "submit", str(prompt_file), token=admin).returncode == 0

    same = functools.partial(same_as_grpo, built_client, live, admin)
    listed = same("prompts", first, second, unknown)
    assert re.search(rf"^{first} +queued +- +- +0  $", listed.stdout, re.M), listed.stdout
    many = [f"ts-none-{tag}-{i}" for i in range(1000)] + [second]  # more ids than one ListPrompts takes
    assert re.search(rf"^{second} +queued ", same("prompts", *many).stdout, re.M)
    assert [p["id"] for p in json.loads(same("prompts", *many, "--json").stdout)["prompts"]] == [second]
    same("prompts", *many, "--limit", "1")
    assert listed.stdout.endswith(f"unknown: {unknown} (never submitted, or deleted under retention.prompt_rows_seconds)\n"), listed.stdout
    doc = json.loads(same("prompts", first, second, "--json").stdout)
    assert [(p["id"], p["state"]) for p in doc["prompts"]] == [(first, "PROMPT_STATE_QUEUED"),
                                                              (second, "PROMPT_STATE_QUEUED")]
    same("prompts", "--state", "queued", "--limit", "1")
    same("prompts", "--state", "leased", "--limit", "3", "--json")

    # The example cancels the first; an id never submitted makes it exit 1, as `grpo cancel` does.
    ts = ts_example(built_client, live, "cancel", first, unknown, token=admin)
    assert ts.returncode == 1, ts.stderr
    assert re.fullmatch(rf"cancelled 1 queued prompt; queue depth \d+\nunknown: {unknown} \(never submitted, or deleted under retention\.prompt_rows_seconds\)\n", ts.stdout), ts.stdout
    out = same("cancel", first, unknown, code=1)
    assert f"not cancelled: {first}: cancelled (cancelled before)\n" in out.stdout, out.stdout
    same("cancel", first, "--json")  # cancelled before only: exit status 0

    # --file adds the file's ids (the second is still queued).
    ts = ts_example(built_client, live, "cancel", "--file", str(prompt_file), "--json", token=admin)
    assert ts.returncode == 0, ts.stderr
    doc = json.loads(ts.stdout)
    assert doc["cancelled_ids"] == [second] and [p["id"] for p in doc["not_cancelled"]] == [first], doc
    same("prompts", first, second)
    same("prompts", first, second, "--json")


def test_example_lists_exports_as_the_python_cli_does(built_client: Path, live_trainer: LiveTrainer,
                                                      tmp_path: Path) -> None:
    """exports.ts `[--state S] [--limit N]`: the same table, sentence, --json document (key order included)
    and exit status as `grpo exports`, for two exports the test waits out."""
    from grpo.trainer.v1 import trainer_pb2
    from grpo_client.client import TrainerClient

    live, admin = live_trainer, live_trainer.admin_token

    def same(*args: str) -> subprocess.CompletedProcess[str]:
        return same_as_grpo(built_client, live, admin, "exports", *args)

    same()  # none yet, or those of an earlier test: the sentence or the table
    with TrainerClient(live.target, admin) as client:
        first, second = (client.export_checkpoint(str(tmp_path / name), wait=True, timeout=120)
                         for name in ("first", "second"))
    assert first.state == second.state == trainer_pb2.EXPORT_STATE_DONE, (first, second)

    listed = same().stdout.splitlines()
    assert re.fullmatch(r"id +state +step +done  started \(UTC\) +destination", listed[0]), listed
    when = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert len(listed) >= 3, listed
    for line, e in zip(listed[1:3], (second, first), strict=True):  # the newest first
        assert re.fullmatch(rf"{e.export_id} +done +{e.step} +100%  {when}  {re.escape(e.destination)}", line), listed
    doc = json.loads(same("--json").stdout)
    assert [(e["export_id"], e["state"]) for e in doc["exports"][:2]] == [
        (second.export_id, "EXPORT_STATE_DONE"), (first.export_id, "EXPORT_STATE_DONE")], doc
    newest = same("--state", "done", "--limit", "1").stdout.splitlines()
    assert len(newest) == 2 and newest[1].startswith(f"{second.export_id} "), newest
    assert len(json.loads(same("--state", "done", "--limit", "1", "--json").stdout)["exports"]) == 1
    assert same("--state", "failed").stdout == "no failed exports\n"


# ------------------------------------------------ failures under --json: the Python CLI's error documents


def test_examples_print_a_call_refused_with_invalid_argument_as_the_python_cli_does(
        built_client: Path, live_trainer: LiveTrainer, tmp_path: Path) -> None:
    """A call the trainer refuses with INVALID_ARGUMENT (BadRequest field violations) is, with --json, the
    one document `grpo --json` prints on stdout, members in its order, exit status 2: for a backend name
    (TrainerError.to_dict, GrpoError.toJSON) and for a refused batch of a prompt file (SubmitError.to_dict:
    each violation at its file line, and where the submission stopped)."""
    admin = live_trainer.admin_token
    bad = ["set", "Not A Name", live_trainer.math_address, "--json"]
    error = assert_same_error(ts_example(built_client, live_trainer, "backends", *bad, token=admin),
                              grpo_cli(live_trainer, "backends", *bad, token=admin), 2)
    assert error["code"] == "INVALID_ARGUMENT" and error["field_violations"][0]["field"] == "backend.name", error

    tag = uuid.uuid4().hex[:8]
    path = tmp_path / "refused.jsonl"
    path.write_text("".join(json.dumps({"id": f"ts-ref-{tag}-{i}", "messages": [{"role": role, "content": "2+2?"}],
                                        "answer": "4"}) + "\n" for i, role in enumerate(["user", "robot"])))
    # Python first: its first batch is queued, and answered to the example as a duplicate (same request id).
    py = grpo_cli(live_trainer, "submit", "--batch-size", "1", str(path), "--json", token=admin)
    ts = ts_example(built_client, live_trainer, "submit", "--file", str(path), "--batch-size", "1", "--json", token=admin)
    error = assert_same_error(ts, py, 2)
    assert error["field_violations"][0]["line"] == 2 and error["submission"]["accepted_ids"] == [f"ts-ref-{tag}-0"], error


def test_example_prints_not_found_as_the_python_cli_does(built_client: Path, live_trainer: LiveTrainer) -> None:
    """backends.ts `delete NAME` of a backend that does not exist: NOT_FOUND with its ResourceInfo, exit
    status 1; with --json the same document as `grpo --json backends delete`."""
    name = f"ghost-{uuid.uuid4().hex[:8]}"
    admin = live_trainer.admin_token
    error = assert_same_error(ts_example(built_client, live_trainer, "backends", "delete", name, "--json", token=admin),
                              grpo_cli(live_trainer, "backends", "delete", name, "--json", token=admin), 1)
    assert error["code"] == "NOT_FOUND" and error["resource"] == {"type": "reward backend", "name": name}, error
    ts = ts_example(built_client, live_trainer, "backends", "delete", name, token=admin)
    assert ts.returncode == 1 and ts.stderr.startswith("NOT_FOUND: ") and ts.stdout == "", ts.stderr


@pytest.mark.parametrize("command,args", [
    ("prompts", ["--limit", "x", "--json"]),
    ("prompts", ["--state", "done", "--json"]),
    ("prompts", ["--bogus", "--json"]),          # parseArgs refuses it
    ("submit", ["--batch-size", "0", "--json"]),
])
def test_examples_print_a_bad_command_line_as_the_python_cli_does(built_client: Path, live_trainer: LiveTrainer,
                                                                 command: str, args: list[str]) -> None:
    """A bad command line with --json: the USAGE document on stdout (the problem still on stderr, as
    argparse prints it), exit status 2, before any call."""
    admin = live_trainer.admin_token
    py_args = [*args, "x.jsonl"] if command == "submit" else args
    ts = ts_example(built_client, live_trainer, command, *(["--file", "x.jsonl"] if command == "submit" else []), *args,
                    token=admin)
    error = assert_same_error(ts, grpo_cli(live_trainer, command, *py_args, token=admin), 2, same_message=False)
    assert error["code"] == "USAGE", error
    assert ts.stderr.startswith("error: "), ts.stderr


def test_example_prints_an_unreachable_trainer_as_the_python_cli_does(built_client: Path) -> None:
    """Nothing listens on the target: what `grpo --json` prints for it (UNAVAILABLE), exit status 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    ts = run_tool(["node", str(built_client / "examples" / "prompts.js"), "--target", target, "--json"], cwd=TS,
                  timeout=60, check=False)
    py = run_tool([sys.executable, "-m", "grpo_client.cli", "--target", target, "--json", "prompts"], cwd=REPO,
                  timeout=60, check=False)
    assert assert_same_error(ts, py, 1, same_message=False)["code"] == "UNAVAILABLE"


def test_examples_print_a_bad_prompt_file_as_the_python_cli_does(built_client: Path, live_trainer: LiveTrainer,
                                                                tmp_path: Path) -> None:
    """A prompt file with problems (submit.ts --file, cancel.ts --file) is INVALID_ARGUMENT with one field
    violation "line N: field" per problem, exit status 2; one that cannot be read is LOCAL, exit status 1."""
    admin = live_trainer.admin_token
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "hi"}\n\n{"id": 5, "messages": []}\n')
    py = grpo_cli(live_trainer, "--json", "submit", str(bad), token=admin)
    for command in ("submit", "cancel"):
        ts = ts_example(built_client, live_trainer, command, "--file", str(bad), "--json", token=admin)
        error = assert_same_error(ts, py, 2)
        assert [v["field"] for v in error["field_violations"]][:2] == ["line 1: prompt", "line 1: messages"], error
    missing = str(tmp_path / "missing.jsonl")
    error = assert_same_error(ts_example(built_client, live_trainer, "submit", "--file", missing, "--json", token=admin),
                              grpo_cli(live_trainer, "--json", "submit", missing, token=admin), 1, same_message=False)
    assert error["code"] == "LOCAL", error


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_submit_example_ctrl_c_during_a_file_says_what_was_accepted_as_the_python_cli_does(
        built_client: Path, make_held_trainer: Any, tmp_path: Path, as_json: bool) -> None:
    """Ctrl-C while the trainer holds the second batch of three (submit.ts --file): `grpo submit`'s
    INTERRUPTED error, which lists the prompts the trainer had accepted and how to carry on, exit status 130
    (not a process killed by the signal)."""
    prompts = prompt_lines(tmp_path / "p.jsonl", ["i0", "i1", "i2"])
    ts_trainer, py_trainer = make_held_trainer(free_submits=1), make_held_trainer(free_submits=1)
    json_flag = ["--json"] if as_json else []
    ts = run_interrupted(["node", str(built_client / "examples" / "submit.js"), "--target", ts_trainer.target,
                          "--file", str(prompts), "--batch-size", "1", *json_flag], cwd=TS, ready=ts_trainer.held.is_set)
    py = run_interrupted(python_cli_command(py_trainer.target, *json_flag, "submit", str(prompts), "--batch-size", "1"),
                         cwd=REPO, ready=py_trainer.held.is_set)
    assert_interrupted_submit_as_grpo(ts, py, as_json)


def test_examples_ctrl_c_during_a_call_exits_130_as_the_python_cli_does(built_client: Path,
                                                                       make_held_trainer: Any) -> None:
    """Ctrl-C while the trainer holds the call (prompts.ts): with --json the document {"error": {"code":
    "INTERRUPTED", "message": "interrupted"}} `grpo --json` prints, without it "interrupted" on stderr; exit
    status 130."""
    for json_flag in (["--json"], []):
        ts_trainer, py_trainer = make_held_trainer(), make_held_trainer()
        ts = run_interrupted(["node", str(built_client / "examples" / "prompts.js"), "--target", ts_trainer.target,
                              *json_flag], cwd=TS, ready=ts_trainer.held.is_set)
        py = run_interrupted(python_cli_command(py_trainer.target, *json_flag, "prompts"), cwd=REPO,
                             ready=py_trainer.held.is_set)
        if json_flag:
            assert assert_same_error(ts, py, 130) == {"code": "INTERRUPTED", "message": "interrupted"}
        else:
            assert (ts.returncode, ts.stdout, ts.stderr) == (py.returncode, py.stdout, py.stderr) == \
                (130, "", "interrupted\n"), (ts, py)
