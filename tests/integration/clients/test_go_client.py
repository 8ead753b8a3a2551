"""The Go client (clients/go), built with Debian's Go toolchain by clients/go/build.sh, and its example
command run against a live trainer. Skips only when the toolchain (go, protoc, grpc-go) is missing."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
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

GO = REPO / "clients" / "go"
GRPC_GO = Path("/usr/share/gocode/src/google.golang.org/grpc")


@pytest.fixture(scope="module")
def example() -> Path:
    """bin/grpo-go-example, built (with `go vet`) from the committed generated code."""
    require_tools("go", "protoc", hint="clients/setup.sh")
    if not GRPC_GO.is_dir():
        pytest.skip(f"{GRPC_GO} missing (Debian golang-google-grpc-dev); run `clients/setup.sh`")
    run_tool([str(GO / "build.sh"), "build"], cwd=GO, timeout=600)
    return GO / "bin" / "grpo-go-example"


def go_example(example: Path, live: LiveTrainer, *args: str, token: str | None = None, check: bool = True):
    cmd = [str(example), "-target", live.target]
    if token is not None:
        cmd += ["-token", token]
    return run_tool([*cmd, *args], cwd=GO, timeout=300, check=check)


def test_generated_go_code_matches_the_protos(example: Path) -> None:
    proc = run_tool([str(GO / "build.sh"), "check-gen"], cwd=GO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_go_error_decoding_unit_tests_pass(example: Path) -> None:
    proc = run_tool([str(GO / "build.sh"), "test"], cwd=GO, timeout=600)
    assert re.search(r"^ok\s+github.com/grpo-service/grpo/clients/go/grpoclient", proc.stdout, re.M), proc.stdout


def test_go_example_submits_and_reads_status(example: Path, live_trainer: LiveTrainer) -> None:
    sub = go_example(example, live_trainer, "submit", "-answer", "5", "What is 2 + 3?", token=live_trainer.admin_token)
    assert re.search(r"^accepted 1 prompt: go-example-[0-9a-f]{16}; queue depth \d+$", sub.stdout, re.M), sub.stdout

    st = go_example(example, live_trainer, "status", token=live_trainer.reader_token)
    assert re.search(r"^run state: RUN_STATE_[A-Z]+, latest step \d+, queue depth \d+", st.stdout, re.M), st.stdout


def test_go_example_shows_the_bad_request_field(example: Path, live_trainer: LiveTrainer) -> None:
    bad = go_example(example, live_trainer, "submit", "-bad", token=live_trainer.admin_token, check=False)
    # Exit status 2 for INVALID_ARGUMENT, as `grpo` exits (this command once exited 1: parity with the
    # Python CLI is the point, so the assertion changed with it).
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stderr.startswith("INVALID_ARGUMENT: "), bad.stderr
    assert re.search(r"^  prompts\[0\]\.messages\[0\]\.role: .*robot", bad.stderr, re.M), bad.stderr
    assert bad.stdout == ""


def test_go_example_reports_auth_failures(example: Path, live_trainer: LiveTrainer) -> None:
    anon = go_example(example, live_trainer, "status", check=False)
    assert anon.returncode == 1 and anon.stderr.startswith("UNAUTHENTICATED: "), anon.stderr
    reader = go_example(example, live_trainer, "submit", token=live_trainer.reader_token, check=False)
    assert reader.returncode == 1 and reader.stderr.startswith("PERMISSION_DENIED: "), reader.stderr


def test_go_example_watches_a_new_step_finish(example: Path, live_trainer: LiveTrainer) -> None:
    st = go_example(example, live_trainer, "status", token=live_trainer.admin_token)
    latest = int(re.search(r"latest step (\d+)", st.stdout).group(1))  # type: ignore[union-attr]
    for a, b in ((6, 1), (2, 2)):
        go_example(example, live_trainer, "submit", "-answer", str(a + b), f"What is {a} + {b}?",
                   token=live_trainer.admin_token)
    w = go_example(example, live_trainer, "watch", "-after", str(latest), "-n", "1", "-wait", "180s",
                   token=live_trainer.admin_token)
    m = re.search(r"^step (\d+) (STEP_STATE_\w+): reward mean [\d.]+, completions (\d+), .* engine hf$", w.stdout, re.M)
    assert m, w.stdout
    assert int(m.group(1)) > latest
    assert m.group(2) == "STEP_STATE_COMPLETED"
    assert m.group(3) == "4"
    # The step kept its 4 completions (training.samples_per_step's default) with the verifier's answer.
    st = go_example(example, live_trainer, "status", "-step", m.group(1), "-samples", token=live_trainer.reader_token)
    kept = re.findall(r"^sample \S+ #[01]: reward [\d.]+, \d+ tokens, (?:stop|length)\n  math ok [\d.]+: expected \d+",
                      st.stdout, re.M)
    assert len(kept) == 4, st.stdout


def test_go_example_lists_the_math_backend(example: Path, live_trainer: LiveTrainer) -> None:
    res = go_example(example, live_trainer, "backends", token=live_trainer.reader_token)
    assert re.search(rf"^math\t{re.escape(live_trainer.math_address)}\tBACKEND_SOURCE_FLAG\tCIRCUIT_STATE_", res.stdout,
                     re.M), res.stdout


def test_go_example_connects_with_tls_given_the_ca(example: Path, tls_trainer: TlsTrainer) -> None:
    ok = run_tool([str(example), "-target", tls_trainer.target, "-ca", str(tls_trainer.ca_file), "status"], cwd=GO,
                  timeout=120)
    assert ok.stdout.startswith("run state: RUN_STATE_"), ok.stdout
    # Plaintext against a TLS-only server never connects: Dial gives up after its timeout.
    plain = run_tool([str(example), "-target", tls_trainer.target, "status"], cwd=GO, timeout=120, check=False)
    assert plain.returncode == 1 and plain.stderr.startswith(f"cannot connect to {tls_trainer.target}"), plain.stderr


def python_cli(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`grpo --target TARGET ARGS` (no token)."""
    return run_tool([sys.executable, "-m", "grpo_client.cli", "--target", target, *args], cwd=REPO, timeout=120,
                    check=False)


def test_go_example_presents_a_client_certificate_and_checks_the_server_name(example: Path,
                                                                            mtls_trainer: MtlsTrainer) -> None:
    """-cert/-key and -server-name, as `grpo`'s --cert/--key and --server-name, against a trainer that
    requires a client certificate and whose certificate names only grpo-trainer.test: with both, status
    works; without the certificate, without -server-name (127.0.0.1 is checked) or with a wrong name it
    fails UNAVAILABLE, exit status 1, with -json the document `grpo --json` prints."""
    m = mtls_trainer
    ca, cert = ["-ca", str(m.pki.ca_cert)], ["-cert", str(m.pki.client_cert), "-key", str(m.pki.client_key)]
    name = ["-server-name", m.server_name]
    ok = run_tool([str(example), "-target", m.target, *ca, *cert, *name, "status"], cwd=GO, timeout=120)
    assert ok.stdout.startswith("run state: RUN_STATE_"), ok.stdout
    for flags in ([*ca, *name], [*ca, *cert], [*ca, *cert, "-server-name", "other.test"]):
        go = run_tool([str(example), "-target", m.target, *flags, "-timeout", "3s", "prompts", "-json"], cwd=GO,
                      timeout=120, check=False)
        py = python_cli(m.target, *[f"-{f}" if f.startswith("-") else f for f in flags], "--timeout", "3", "--json",
                        "prompts")
        assert assert_same_error(go, py, 1, same_message=False)["code"] == "UNAVAILABLE", flags


def test_go_example_refuses_bad_tls_flags_as_the_python_cli_does(example: Path, tmp_path: Path) -> None:
    """-cert without -key (and the reverse), a file without the PEM block it should hold, an encrypted key
    and an empty -server-name are USAGE (exit status 2), a file that cannot be read LOCAL (exit status 1),
    before any call (nothing listens on the target): `grpo`'s code, exit status and message, its flags
    written with one dash."""
    for flags, status in bad_tls_flag_cases(tmp_path):
        py = python_cli("127.0.0.1:1", *flags, "--json", "prompts")
        go = run_tool([str(example), "-target", "127.0.0.1:1", *[f[1:] if f.startswith("--") else f for f in flags],
                       "prompts", "-json"], cwd=GO, timeout=60, check=False)
        error = assert_same_error(go, py, status, same_message=False)
        assert error["code"] == ("USAGE" if status == 2 else "LOCAL"), (flags, error)
        # The same words, but -cert for --cert (and not in -----BEGIN CERTIFICATE-----).
        assert error["message"] == re.sub(r"(?<!-)--(?=[a-z])", "-", json.loads(py.stdout)["error"]["message"]), \
            (flags, go.stdout, py.stdout)
    go = run_tool([str(example), "-target", "127.0.0.1:1", "-server-name", " ", "prompts", "-json"], cwd=GO,
                  timeout=60, check=False)
    error = assert_same_error(go, python_cli("127.0.0.1:1", "--server-name", " ", "--json", "prompts"), 2,
                              same_message=False)
    assert error == {"code": "USAGE", "message": "-server-name: must not be empty"}, error


def test_go_follow_carries_on_across_a_trainer_kill_and_restart(example: Path, tmp_path: Path) -> None:
    """`follow` (FollowSteps) reconnects after SIGKILL and after a drain, gets the steps the restart ran
    again, and no report twice: see follow_restart.py."""
    run_restart_scenario(tmp_path, lambda target: [str(example), "-target", target, "follow", "-retry", "200ms",
                                                   "-give-up", "120s"], GO)


# ------------------------------------------------ backends set, prompts, cancel: as the Python CLI has them


def assert_same_json(go: subprocess.CompletedProcess[str], py: subprocess.CompletedProcess[str]) -> Any:
    """Both printed the same JSON document, keys in the same order; returns it."""
    go_doc, py_doc = json.loads(go.stdout), json.loads(py.stdout)
    assert go_doc == py_doc, (go.stdout, py.stdout)
    assert key_order(go_doc) == key_order(py_doc), (go.stdout, py.stdout)
    return go_doc


def test_go_example_sets_a_backend_as_the_python_cli_does(example: Path, live_trainer: LiveTrainer) -> None:
    """`backends set NAME HOST:PORT [flags]`: the same stored backend, line, -json document (key order
    included) and exit statuses as `grpo backends set`; flags may follow the arguments."""
    from grpo_client.client import TrainerClient

    admin = live_trainer.admin_token
    args = ["backends", "set", "cmp-go", live_trainer.math_address, "--timeout", "12.5", "--max-batch", "8",
            "--max-concurrency", "2"]
    try:
        # The registry version is the trainer's (setting the same backend again may or may not count).
        py = grpo_cli(live_trainer, *args, token=admin)
        go = go_example(example, live_trainer, *args, token=admin)
        assert re.fullmatch(rf"set cmp-go -> {re.escape(live_trainer.math_address)} \(registry version \d+\)\n",
                            go.stdout), go.stdout
        assert re.sub(r"\d+\)$", "V)", go.stdout) == re.sub(r"\d+\)$", "V)", py.stdout), (go.stdout, py.stdout)

        py = grpo_cli(live_trainer, *args, "--json", token=admin)
        go = go_example(example, live_trainer, *args, "--json", token=admin)
        assert py.returncode == go.returncode == 0, go.stderr
        go_doc, py_doc = json.loads(go.stdout), json.loads(py.stdout)
        assert int(go_doc.pop("registry_version")) >= int(py_doc.pop("registry_version"))
        assert go_doc == py_doc and key_order(go_doc) == key_order(py_doc), (go.stdout, py.stdout)
        stored = go_doc["backend"]
        assert (stored["timeout_seconds"], stored["max_batch_size"], stored["max_concurrency"]) == (12.5, 8, 2), stored
        assert stored["source"] == "BACKEND_SOURCE_API"

        # A name the trainer refuses: INVALID_ARGUMENT, exit status 2 as for `grpo`, the field named.
        bad = ["backends", "set", "Not A Name", live_trainer.math_address]
        go = go_example(example, live_trainer, *bad, token=admin, check=False)
        assert grpo_cli(live_trainer, *bad, token=admin).returncode == go.returncode == 2, go.stderr
        assert go.stderr.startswith("INVALID_ARGUMENT: ") and "backend.name" in go.stderr, go.stderr
        assert go.stdout == ""
        # A reader may not change the registry: exit status 1.
        go = go_example(example, live_trainer, *args, token=live_trainer.reader_token, check=False)
        assert grpo_cli(live_trainer, *args, token=live_trainer.reader_token).returncode == go.returncode == 1
        assert go.stderr.startswith("PERMISSION_DENIED: "), go.stderr
    finally:
        with TrainerClient(live_trainer.target, admin) as client:
            client.delete_backend("cmp-go")


def test_go_example_lists_and_cancels_prompts_as_the_python_cli_does(example: Path, paused_trainer: LiveTrainer,
                                                                      tmp_path: Path) -> None:
    """`prompts [ID ...] [--state S] [--limit N]` and `cancel [ID ...] [--file F]`: the same table, lines,
    -json documents (key order included) and exit statuses as `grpo prompts` and `grpo cancel`."""
    live, admin = paused_trainer, paused_trainer.admin_token
    tag = uuid.uuid4().hex[:8]
    first, second, unknown = f"go-cmp-{tag}-1", f"go-cmp-{tag}-2", f"go-never-{tag}"
    prompt_file = tmp_path / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"id": i, "messages": [{"role": "user", "content": "What is 1 + 1?"}],
                                               "answer": "2"}) + "\n" for i in (first, second)))
    assert grpo_cli(live, "submit", str(prompt_file), token=admin).returncode == 0

    def same(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        """Go and Python print the same for ARGS and exit with `code`."""
        py = grpo_cli(live, *args, token=admin)
        go = go_example(example, live, *args, token=admin, check=False)
        assert py.returncode == go.returncode == code, (go.returncode, go.stdout, go.stderr, py.stdout, py.stderr)
        if "--json" in args:
            assert_same_json(go, py)
        else:
            assert go.stdout == py.stdout, (go.stdout, py.stdout)
        return go

    # submit-file -json prints `grpo --json submit`'s document, keys in its order (here: both replays).
    py = grpo_cli(live, "--json", "submit", str(prompt_file), token=admin)
    go = go_example(example, live, "submit-file", "-json", str(prompt_file), token=admin)
    assert json.loads(go.stdout)["duplicate_batches"] == 1, go.stdout
    assert_same_json(go, py)

    listed = same("prompts", first, second, unknown)
    assert re.search(rf"^{first} +queued +- +- +0  $", listed.stdout, re.M), listed.stdout
    many = [f"go-none-{tag}-{i}" for i in range(1000)] + [second]  # more ids than one ListPrompts takes
    assert re.search(rf"^{second} +queued ", same("prompts", *many).stdout, re.M)
    assert [p["id"] for p in json.loads(same("prompts", *many, "--json").stdout)["prompts"]] == [second]
    same("prompts", *many, "--limit", "1")
    assert same("prompts", "--state", "failed", first).stdout == "no failed prompts\n"  # ids narrowed to nothing
    assert listed.stdout.endswith(f"unknown: {unknown} (never submitted, or deleted under retention.prompt_rows_seconds)\n"), listed.stdout
    doc = json.loads(same("prompts", first, second, "--json").stdout)
    assert [(p["id"], p["state"]) for p in doc["prompts"]] == [(first, "PROMPT_STATE_QUEUED"),
                                                              (second, "PROMPT_STATE_QUEUED")]
    same("prompts", "--state", "queued", "--limit", "1")
    same("prompts", "--state", "leased", "--limit", "3", "--json")

    # Go cancels the first; an id never submitted makes it exit 1, as `grpo cancel` does.
    go = go_example(example, live, "cancel", first, unknown, token=admin, check=False)
    assert go.returncode == 1, go.stderr
    assert re.fullmatch(rf"cancelled 1 queued prompt; queue depth \d+\nunknown: {unknown} \(never submitted, or deleted under retention\.prompt_rows_seconds\)\n", go.stdout), go.stdout
    out = same("cancel", first, unknown, code=1)
    assert f"not cancelled: {first}: cancelled (cancelled before)\n" in out.stdout, out.stdout
    same("cancel", first, "--json")  # cancelled before only: exit status 0

    # --file adds the file's ids (the second is still queued), flags before or after the command's.
    go = go_example(example, live, "cancel", "--file", str(prompt_file), "--json", token=admin, check=False)
    assert go.returncode == 0, go.stderr
    doc = json.loads(go.stdout)
    assert doc["cancelled_ids"] == [second] and [p["id"] for p in doc["not_cancelled"]] == [first], doc
    same("prompts", first, second)
    same("prompts", first, second, "--json")


def test_go_example_lists_exports_as_the_python_cli_does(example: Path, live_trainer: LiveTrainer,
                                                         tmp_path: Path) -> None:
    """`exports [--state S] [--limit N]`: the same table, sentence, -json document (key order included) and
    exit status as `grpo exports`, for two exports the test waits out."""
    from grpo.trainer.v1 import trainer_pb2
    from grpo_client.client import TrainerClient

    live, admin = live_trainer, live_trainer.admin_token

    def same(*args: str) -> subprocess.CompletedProcess[str]:
        """Go and Python print the same for ARGS and exit with status 0."""
        py = grpo_cli(live, *args, token=admin)
        go = go_example(example, live, *args, token=admin, check=False)
        assert py.returncode == go.returncode == 0, (go.returncode, go.stdout, go.stderr, py.stdout, py.stderr)
        if "--json" in args:
            assert_same_json(go, py)
        else:
            assert go.stdout == py.stdout, (go.stdout, py.stdout)
        return go

    same("exports")  # none yet, or those of an earlier test: the sentence or the table
    with TrainerClient(live.target, admin) as client:
        first, second = (client.export_checkpoint(str(tmp_path / name), wait=True, timeout=120)
                         for name in ("first", "second"))
    assert first.state == second.state == trainer_pb2.EXPORT_STATE_DONE, (first, second)

    listed = same("exports").stdout.splitlines()
    assert re.fullmatch(r"id +state +step +done  started \(UTC\) +destination", listed[0]), listed
    when = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert len(listed) >= 3, listed
    for line, e in zip(listed[1:3], (second, first), strict=True):  # the newest first
        assert re.fullmatch(rf"{e.export_id} +done +{e.step} +100%  {when}  {re.escape(e.destination)}", line), listed
    doc = json.loads(same("exports", "--json").stdout)
    assert [(e["export_id"], e["state"]) for e in doc["exports"][:2]] == [
        (second.export_id, "EXPORT_STATE_DONE"), (first.export_id, "EXPORT_STATE_DONE")], doc
    newest = same("exports", "--state", "done", "--limit", "1").stdout.splitlines()
    assert len(newest) == 2 and newest[1].startswith(f"{second.export_id} "), newest
    assert len(json.loads(same("exports", "--state", "done", "--limit", "1", "--json").stdout)["exports"]) == 1
    assert same("exports", "--state", "failed").stdout == "no failed exports\n"


# ------------------------------------------------ failures under -json: the Python CLI's error documents


def test_go_example_prints_a_call_refused_with_invalid_argument_as_the_python_cli_does(
        example: Path, live_trainer: LiveTrainer, tmp_path: Path) -> None:
    """A call the trainer refuses with INVALID_ARGUMENT (BadRequest field violations) is, with -json, the
    one document `grpo --json` prints on stdout, members in its order, exit status 2: for a backend name
    (TrainerError.to_dict) and for a refused batch of a prompt file (SubmitError.to_dict: each violation at
    its file line, and where the submission stopped)."""
    admin = live_trainer.admin_token
    bad = ["backends", "set", "Not A Name", live_trainer.math_address, "--json"]
    error = assert_same_error(go_example(example, live_trainer, *bad, token=admin, check=False),
                              grpo_cli(live_trainer, *bad, token=admin), 2)
    assert error["code"] == "INVALID_ARGUMENT" and error["field_violations"][0]["field"] == "backend.name", error

    tag = uuid.uuid4().hex[:8]
    path = tmp_path / "refused.jsonl"
    path.write_text("".join(json.dumps({"id": f"go-ref-{tag}-{i}", "messages": [{"role": role, "content": "2+2?"}],
                                        "answer": "4"}) + "\n" for i, role in enumerate(["user", "robot"])))
    # Python first: its first batch is queued, and answered to Go as a duplicate (the same request id).
    py = grpo_cli(live_trainer, "submit", "--batch-size", "1", str(path), "--json", token=admin)
    go = go_example(example, live_trainer, "submit-file", "-batch-size", "1", "-json", str(path), token=admin,
                    check=False)
    error = assert_same_error(go, py, 2)
    assert error["field_violations"][0]["line"] == 2 and error["submission"]["accepted_ids"] == [f"go-ref-{tag}-0"], error


def test_go_example_prints_not_found_as_the_python_cli_does(example: Path, live_trainer: LiveTrainer) -> None:
    """`backends delete NAME` of a backend that does not exist: NOT_FOUND with its ResourceInfo, exit status
    1; with -json the same document as `grpo --json backends delete`."""
    args = ["backends", "delete", f"ghost-{uuid.uuid4().hex[:8]}"]
    admin = live_trainer.admin_token
    error = assert_same_error(go_example(example, live_trainer, *args, "-json", token=admin, check=False),
                              grpo_cli(live_trainer, *args, "--json", token=admin), 1)
    assert error["code"] == "NOT_FOUND" and error["resource"] == {"type": "reward backend", "name": args[2]}, error
    go = go_example(example, live_trainer, *args, token=admin, check=False)
    assert go.returncode == 1 and go.stderr.startswith("NOT_FOUND: ") and go.stdout == "", go.stderr


@pytest.mark.parametrize("args", [
    ["prompts", "--limit", "x", "--json"],     # the flag package refuses it
    ["prompts", "--state", "done", "--json"],  # the command does
    ["bogus", "--json"],                       # no such command
])
def test_go_example_prints_a_bad_command_line_as_the_python_cli_does(example: Path, live_trainer: LiveTrainer,
                                                                    args: list[str]) -> None:
    """A bad command line with -json: the USAGE document on stdout (the problem still on stderr, as argparse
    prints it), exit status 2, before any call."""
    go = go_example(example, live_trainer, *args, token=live_trainer.admin_token, check=False)
    error = assert_same_error(go, grpo_cli(live_trainer, *args, token=live_trainer.admin_token), 2, same_message=False)
    assert error["code"] == "USAGE", error
    assert go.stderr, "the problem is on stderr as well"


def test_go_example_prints_an_unreachable_trainer_as_the_python_cli_does(example: Path) -> None:
    """Nothing listens on the target: what `grpo --json` prints for it (UNAVAILABLE), exit status 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    go = run_tool([str(example), "-target", target, "-timeout", "2s", "prompts", "-json"], cwd=GO, timeout=60,
                  check=False)
    py = run_tool([sys.executable, "-m", "grpo_client.cli", "--target", target, "--json", "prompts"], cwd=REPO,
                  timeout=60, check=False)
    assert assert_same_error(go, py, 1, same_message=False)["code"] == "UNAVAILABLE"


def test_go_example_prints_a_bad_prompt_file_as_the_python_cli_does(example: Path, live_trainer: LiveTrainer,
                                                                   tmp_path: Path) -> None:
    """A prompt file with problems (submit-file, cancel -file) is INVALID_ARGUMENT with one field violation
    "line N: field" per problem, exit status 2; one that cannot be read is LOCAL, exit status 1."""
    admin = live_trainer.admin_token
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "hi"}\n\n{"id": 5, "messages": []}\n')
    py = grpo_cli(live_trainer, "--json", "submit", str(bad), token=admin)
    for args in (["submit-file", "-json", str(bad)], ["cancel", "-file", str(bad), "-json"]):
        error = assert_same_error(go_example(example, live_trainer, *args, token=admin, check=False), py, 2)
        assert [v["field"] for v in error["field_violations"]][:2] == ["line 1: prompt", "line 1: messages"], error
    missing = str(tmp_path / "missing.jsonl")
    error = assert_same_error(go_example(example, live_trainer, "submit-file", "-json", missing, token=admin, check=False),
                              grpo_cli(live_trainer, "--json", "submit", missing, token=admin), 1, same_message=False)
    assert error["code"] == "LOCAL", error


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_go_example_ctrl_c_during_submit_file_says_what_was_accepted_as_the_python_cli_does(
        example: Path, make_held_trainer: Any, tmp_path: Path, as_json: bool) -> None:
    """Ctrl-C while the trainer holds the second batch of three: `grpo submit`'s INTERRUPTED error, which
    lists the prompts the trainer had accepted (the first batch) and how to carry on, exit status 130 (not
    a process killed by the signal)."""
    prompts = prompt_lines(tmp_path / "p.jsonl", ["i0", "i1", "i2"])
    go_trainer, py_trainer = make_held_trainer(free_submits=1), make_held_trainer(free_submits=1)
    go = run_interrupted([str(example), "-target", go_trainer.target, "submit-file", "-batch-size", "1",
                          *(["-json"] if as_json else []), str(prompts)], cwd=GO, ready=go_trainer.held.is_set)
    py = run_interrupted(python_cli_command(py_trainer.target, *(["--json"] if as_json else []), "submit",
                                            str(prompts), "--batch-size", "1"), cwd=REPO, ready=py_trainer.held.is_set)
    assert_interrupted_submit_as_grpo(go, py, as_json)


def test_go_example_ctrl_c_during_a_call_exits_130_as_the_python_cli_does(example: Path,
                                                                         make_held_trainer: Any) -> None:
    """Ctrl-C while the trainer holds the call: with -json the document {"error": {"code": "INTERRUPTED",
    "message": "interrupted"}} `grpo --json` prints, without it "interrupted" on stderr; exit status 130."""
    go_trainer, py_trainer = make_held_trainer(), make_held_trainer()
    go = run_interrupted([str(example), "-target", go_trainer.target, "prompts", "-json"], cwd=GO,
                         ready=go_trainer.held.is_set)
    py = run_interrupted(python_cli_command(py_trainer.target, "--json", "prompts"), cwd=REPO,
                         ready=py_trainer.held.is_set)
    assert assert_same_error(go, py, 130) == {"code": "INTERRUPTED", "message": "interrupted"}
    trainer = make_held_trainer()
    go = run_interrupted([str(example), "-target", trainer.target, "status"], cwd=GO, ready=trainer.held.is_set)
    assert (go.returncode, go.stdout, go.stderr) == (130, "", "interrupted\n"), go


def test_go_example_ctrl_c_while_waiting_for_the_trainer_exits_130(example: Path) -> None:
    """Nothing listens on the target yet: the wait for the connection (-timeout 60s) ends on Ctrl-C with the
    INTERRUPTED document, exit status 130, not when the minute is out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    go = run_interrupted([str(example), "-target", target, "-timeout", "60s", "prompts", "-json"], cwd=GO,
                         ready=lambda: True, settle=1.0, timeout=30)
    assert go.returncode == 130, go
    assert json.loads(go.stdout) == {"error": {"code": "INTERRUPTED", "message": "interrupted"}}, go.stdout


def test_go_example_ctrl_c_ends_watch_with_exit_0_as_the_python_cli_does(example: Path,
                                                                        make_held_trainer: Any) -> None:
    """Ctrl-C is how a watch is stopped (`grpo watch` exits 0 on it), not a failure."""
    trainer = make_held_trainer()
    go = run_interrupted([str(example), "-target", trainer.target, "watch"], cwd=GO,
                         ready=lambda: trainer.servicer._watch_streams > 0)
    assert (go.returncode, go.stderr) == (0, ""), go


def test_go_example_fails_at_once_on_a_tls_failure_no_retry_mends(example: Path, tls_trainer: TlsTrainer,
                                                                  tmp_path: Path) -> None:
    """A trainer certificate signed by a CA the command does not trust, or not for the name it checks:
    with -timeout 30s it fails within seconds (it used to retry the handshake until the 30 s were out),
    UNAVAILABLE and exit status 1 as `grpo --json` reports it, the message naming the x509 error."""
    untrusted_ca = write_client_pki(tmp_path).ca_cert  # a CA that did not sign the trainer's certificate
    for flags, why in (
        (["-ca", str(untrusted_ca)], "x509: certificate signed by unknown authority"),
        (["-ca", str(tls_trainer.ca_file), "-server-name", "other.test"],
         "x509: certificate is valid for localhost, not other.test"),
    ):
        start = time.monotonic()
        go = run_tool([str(example), "-target", tls_trainer.target, *flags, "-timeout", "30s", "prompts", "-json"],
                      cwd=GO, timeout=120, check=False)
        took = time.monotonic() - start
        py = python_cli(tls_trainer.target, *[f"-{f}" if f.startswith("-") else f for f in flags], "--json", "prompts")
        error = assert_same_error(go, py, 1, same_message=False)
        assert took < 10, (took, go.stdout)
        assert error["code"] == "UNAVAILABLE", error
        assert error["message"].startswith(f'cannot connect to {tls_trainer.target}: connection error: desc = "transport: '
                                           f'authentication handshake failed: {why}'), error


def test_go_example_fails_at_once_when_the_trainer_refuses_its_client_certificate(example: Path,
                                                                                 mtls_trainer: MtlsTrainer,
                                                                                 tmp_path: Path) -> None:
    """An mTLS trainer (gRPC core, TLS 1.3) checks the client certificate after the handshake and closes the
    connection without saying why: without a certificate, or with one of a CA it does not trust, the
    command with -timeout 30s fails within seconds (it used to wait the 30 s out), UNAVAILABLE, exit status
    1 as `grpo --json`, the message saying what the trainer refused."""
    m = mtls_trainer
    stranger = write_client_pki(tmp_path)  # a client certificate of a CA the trainer does not trust
    ca, name = ["-ca", str(m.pki.ca_cert)], ["-server-name", m.server_name]
    for cert, why in (
        ([], "it requires a client certificate and none was given"),
        (["-cert", str(stranger.client_cert), "-key", str(stranger.client_key)],
         "it did not accept the client certificate given"),
    ):
        start = time.monotonic()
        go = run_tool([str(example), "-target", m.target, *ca, *name, *cert, "-timeout", "30s", "prompts", "-json"],
                      cwd=GO, timeout=120, check=False)
        took = time.monotonic() - start
        py = python_cli(m.target, *[f"-{f}" if f.startswith("-") else f for f in [*ca, *name, *cert]], "--json",
                        "prompts")
        error = assert_same_error(go, py, 1, same_message=False)
        assert took < 10, (took, go.stdout)
        assert error["code"] == "UNAVAILABLE", error
        assert error["message"].startswith(f'cannot connect to {m.target}: connection error: desc = "transport: '
                                           'authentication handshake failed: the server closed the connection after '
                                           f'the TLS 1.3 handshake: {why}'), error


def test_go_example_over_tls_still_waits_for_a_trainer_that_refuses_connections(example: Path,
                                                                               tls_trainer: TlsTrainer) -> None:
    """A refused connection is a trainer not up yet: with TLS flags too it is retried until -timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    start = time.monotonic()
    go = run_tool([str(example), "-target", target, "-ca", str(tls_trainer.ca_file), "-timeout", "2s", "prompts",
                   "-json"], cwd=GO, timeout=60, check=False)
    took = time.monotonic() - start
    assert go.returncode == 1 and 1.9 <= took < 10, (took, go.returncode, go.stdout)
    assert "connection refused" in json.loads(go.stdout)["error"]["message"], go.stdout


def test_go_example_cancel_of_an_empty_prompt_file_needs_no_trainer(example: Path, tmp_path: Path) -> None:
    """As `grpo cancel --file` of a file without prompts: nothing sent, exit status 0, the same document,
    whose queue_depth is null (the trainer was not asked; "0" would claim an empty queue)."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    go = run_tool([str(example), "-target", "127.0.0.1:1", "cancel", "-file", str(empty), "-json"], cwd=GO, timeout=60,
                  check=False)
    py = run_tool([sys.executable, "-m", "grpo_client.cli", "--target", "127.0.0.1:1", "cancel", "--file", str(empty),
                   "--json"], cwd=REPO, timeout=60, check=False)
    assert go.returncode == py.returncode == 0, go.stderr
    assert go.stdout == py.stdout and json.loads(go.stdout)["queue_depth"] is None, (go.stdout, py.stdout)
