"""`grpo` when things go wrong around a command, as a user meets them: Ctrl-C during a call, a reader
that goes away while an error document is printed, a trainer that goes away under `watch --json`, a
--target that is not HOST:PORT, an empty token, a step that is still running, an empty prompt file.
Each command runs against a real trainer API on loopback or, for a trainer that accepts connections and
never answers, a real listening socket."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from trainer_api import TrainerApi

from grpo_client.cli import main
from grpo_server.types import StepReport, StepState


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `grpo` in process; returns (exit code, stdout, stderr)."""
    out = io.StringIO()
    capsys.readouterr()
    code = main(list(argv), out=out)
    return code, out.getvalue(), capsys.readouterr().err


class _Silent:
    """A TCP listener that accepts connections and never answers: a trainer that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.target = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for c in self._conns:
            c.close()


@pytest.fixture
def silent() -> Iterator[_Silent]:
    s = _Silent()
    yield s
    s.close()


def _interrupt(argv: list[str], silent: _Silent) -> tuple[int, str, str]:
    """Run `grpo ARGV` as a process, press Ctrl-C (SIGINT) once it is waiting on the trainer; returns
    (exit status, stdout, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpo_client.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # A shell that starts jobs in the background ignores SIGINT in them; a terminal's Ctrl-C does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert silent.accepted.wait(60), "the command never connected"
        time.sleep(0.5)  # into the call
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("command", [["status"], ["submit", "FILE"], ["export", "/tmp/x", "--wait"]],
                         ids=["status", "submit", "export"])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_ctrl_c_during_a_call_exits_130_without_a_traceback(silent: _Silent, tmp_path: Path, command: list[str],
                                                            as_json: bool) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "q0", "messages": [{"role": "user", "content": "1+1?"}], "answer": "2"}) + "\n")
    argv = ["--target", silent.target, "--timeout", "120", *(["--json"] if as_json else []),
            *[str(f) if a == "FILE" else a for a in command]]
    code, out, err = _interrupt(argv, silent)
    assert code == 130, (code, out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    if as_json:
        doc = json.loads(out)  # exactly one document
        assert doc["error"]["code"] == "INTERRUPTED", doc
    else:
        assert out == "" and "interrupted" in err, (out, err)
    if command[0] == "submit":  # what became of the submission, and how to carry on
        assert "run the same command again" in (out if as_json else err), (out, err)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_ctrl_c_ends_watch_with_what_it_has_shown_and_exit_0(silent: _Silent, as_json: bool) -> None:
    # Ctrl-C is how a watch is stopped (docs/client.md), not a failure: exit 0, and under --json the document.
    code, out, err = _interrupt(["--target", silent.target, *(["--json"] if as_json else []), "watch"], silent)
    assert code == 0 and "Traceback" not in err, (code, out, err)
    if as_json:
        assert json.loads(out) == {"steps": []}
    else:
        assert out.split()[:2] == ["step", "state"]


@pytest.mark.parametrize("argv", [
    ["--json", "--target", "127.0.0.1:1", "--timeout", "5", "status"],  # an error document
    ["--json", "status", "--step", "-1"],  # a usage error document
])
def test_a_reader_that_goes_away_during_an_error_document_ends_quietly_with_141(argv: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "grpo_client.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `grpo --json ... | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert "Traceback" not in err and "Broken pipe" not in err, err


def test_watch_json_keeps_the_steps_it_read_when_the_trainer_goes_away(api: TrainerApi) -> None:
    api.finish_step(0.25)
    api.finish_step(0.5)
    out = io.StringIO()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(main(["--target", api.target, "--json", "watch"], out=out)))
    t.start()
    deadline = time.monotonic() + 30
    while api.servicer._watch_streams == 0 and time.monotonic() < deadline:  # the stream is open
        time.sleep(0.05)
    time.sleep(0.5)  # the backlog is read in milliseconds; the stream then waits for the next step
    api.server.stop(grace=None)  # the trainer goes away: UNAVAILABLE on the open stream
    t.join(30)
    assert result == [1]
    doc = json.loads(out.getvalue())
    assert doc["error"]["code"] == "UNAVAILABLE", doc
    assert [s["step"]["metrics"]["reward_mean"] for s in doc["steps"]] == [0.25, 0.5]


def test_watch_says_on_stderr_when_the_trainer_ends_the_stream(api: TrainerApi, capsys) -> None:
    api.finish_step(0.25)
    threading.Timer(1.0, api.control.close).start()  # the trainer drains: it ends every stream
    code, out, err = cli(capsys, "--target", api.target, "watch")
    assert code == 0
    assert out.splitlines()[1].split()[:3] == ["1", "completed", "0.250"]
    assert "the trainer ended the stream" in err, err


@pytest.mark.parametrize("target,words", [
    ("localhost", "the port is missing"),  # gRPC would quietly use port 443
    ("127.0.0.1:99999", "port 1-65535"),  # gRPC would quietly use port 34463
    ("127.0.0.1:0", "port 1-65535"),
    ("", "is not HOST:PORT"),
    ("http://127.0.0.1:50051", "without a scheme"),
    ("::1:50051", "in brackets"),
])
def test_a_target_that_is_not_host_port_is_a_usage_error_naming_the_flag(capsys, monkeypatch, target: str,
                                                                        words: str) -> None:
    code, out, err = cli(capsys, "--target", target, "status")
    assert code == 2 and out == "", (out, err)
    assert f"error: --target: {target!r} is not HOST:PORT" in err and words in err, err
    assert "Traceback" not in err and "dns_resolver" not in err
    code, out, _ = cli(capsys, "--json", "--target", target, "status")
    assert code == 2 and json.loads(out)["error"]["code"] == "USAGE"
    if not target:
        return  # an empty $GRPO_TARGET is an unset one: the default, localhost:50051
    monkeypatch.setenv("GRPO_TARGET", target)
    code, _, err = cli(capsys, "status")
    assert code == 2 and f"error: $GRPO_TARGET: {target!r} is not HOST:PORT" in err, err


@pytest.mark.parametrize("target", ["[::1]:1", "dns:///localhost:1", "ipv4:127.0.0.1:1", "unix:/nonexistent/sock"])
def test_host_port_and_grpc_uri_targets_are_used_as_given(capsys, target: str) -> None:
    code, _, err = cli(capsys, "--target", target, "--timeout", "5", "status")
    assert code == 1 and "UNAVAILABLE" in err, err  # tried, and nobody there


def test_an_empty_token_is_named_locally_instead_of_sent_as_none(make_api, tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  - {name: ops, token: 'secret-token-1', roles: [admin]}\n")
    api = make_api(tokens_file=tokens)
    code, _, err = cli(capsys, "--target", api.target, "--token", "", "status")
    assert code == 2 and "--token: the token is empty" in err, err
    empty = tmp_path / "token"
    empty.write_text("\n")  # a Secret mounted before it was filled in
    code, out, err = cli(capsys, "--json", "--target", api.target, "--token-file", str(empty), "status")
    assert code == 2 and json.loads(out)["error"] == {
        "code": "USAGE", "message": f"--token-file {empty}: the file holds no token"}
    monkeypatch.setenv("GRPO_TOKEN_FILE", str(empty))
    code, _, err = cli(capsys, "--target", api.target, "status")
    assert code == 2 and f"$GRPO_TOKEN_FILE {empty}: the file holds no token" in err, err
    missing = tmp_path / "missing"
    code, _, err = cli(capsys, "--target", api.target, "--token-file", str(missing), "status")
    assert code == 1 and f"error: --token-file: cannot read {missing}: No such file or directory" in err, err


def test_status_of_a_running_step_shows_no_metrics_it_does_not_have(api: TrainerApi, capsys) -> None:
    now = time.time()
    api.store.record_step(StepReport(1, StepState.RUNNING, now, None, {}, "hf", ("q0",), ""))
    code, out, _ = cli(capsys, "--target", api.target, "status")
    assert code == 0 and "step 1: running" in out, out
    assert "reward_mean" not in out and "metrics come when the step finishes" in out, out


@pytest.mark.parametrize("state", [StepState.SKIPPED, StepState.FAILED])
def test_status_of_a_step_without_an_update_shows_only_what_it_measured(api: TrainerApi, capsys,
                                                                        state: StepState) -> None:
    """A skipped or failed step measured its counts, times and `extra`; its reward mean, loss, KL,
    learning rate and truncated fraction were printed as 0 though nothing measured them."""
    now = time.time()
    metrics = {"prompts": 2.0, "completions": 8.0, "masked_reward_failures": 8.0, "rollout_seconds": 1.5,
               "step_seconds": 2.0, "generated_tokens": 64.0}
    api.store.record_step(StepReport(1, state, now - 2, now, metrics, "hf", ("q0", "q1"), "no reward"))
    code, out, _ = cli(capsys, "--target", api.target, "status")
    assert code == 0 and "only its counts and times were measured" in out, out
    for measured in ("prompts: 2", "completions: 8", "masked_reward_failures: 8", "rollout_seconds: 1.5",
                     "step_seconds: 2", "extra.generated_tokens: 64"):
        assert f"  {measured}\n" in out, (measured, out)
    for unmeasured in ("reward_mean", "kl:", "loss:", "learning_rate", "truncated_fraction", "completion_length"):
        assert unmeasured not in out, (unmeasured, out)


def test_submitting_an_empty_file_says_so_and_claims_no_queue_depth(api: TrainerApi, tmp_path: Path,
                                                                    capsys) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"id": "q0", "messages": [{"role": "user", "content": "1+1?"}], "answer": "2"}) + "\n")
    assert cli(capsys, "--target", api.target, "submit", str(q))[0] == 0  # the queue holds 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    code, out, _ = cli(capsys, "--target", api.target, "submit", str(empty))
    assert code == 0 and out == f"{empty} holds no prompts: nothing submitted\n", out
    code, out, _ = cli(capsys, "--target", api.target, "--json", "submit", str(empty))
    doc = json.loads(out)
    assert code == 0 and doc["accepted_ids"] == [] and doc["batches"] == 0
    assert doc["queue_depth"] is None  # not 0: nothing was sent, so the trainer was not asked


def test_a_ca_file_that_holds_no_certificate_is_named_locally(api: TrainerApi, tmp_path: Path, capsys) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    code, _, err = cli(capsys, "--target", api.target, "--ca", str(junk), "status")
    assert code == 2 and f"error: --ca {junk}: no PEM certificate in it" in err, err
    assert "ssl_transport_security" not in err  # gRPC's own log lines: it never got that far
    code, _, err = cli(capsys, "--target", api.target, "--ca", str(tmp_path / "nope.pem"), "status")
    assert code == 1 and f"error: --ca: cannot read {tmp_path / 'nope.pem'}: No such file or directory" in err, err


def test_not_found_and_full_queue_details_are_decoded_not_named_by_type(make_api, tmp_path: Path, capsys) -> None:
    from grpo_server.api.settings import ApiLimits

    api = make_api(limits=ApiLimits(max_queue_depth=1, retry_after_seconds=0.05))
    code, out, err = cli(capsys, "--target", api.target, "status", "--step", "9")
    assert code == 1 and err == "error: NOT_FOUND: step 9 has not run; the latest step is 0\n", err
    code, out, _ = cli(capsys, "--target", api.target, "--json", "status", "--step", "9")
    assert json.loads(out)["error"] == {"code": "NOT_FOUND", "message": "step 9 has not run; the latest step is 0",
                                        "resource": {"type": "step", "name": "9"}}
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": "1+1?"}],
                                     "answer": "2"}) + "\n" for i in range(2)))
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f), "--batch-size", "1")  # q1: queue full
    assert code == 1 and "RESOURCE_EXHAUSTED" in err and "google.rpc" not in err, err
    code, out, _ = cli(capsys, "--target", api.target, "--json", "submit", str(f), "--batch-size", "1")
    error = json.loads(out)["error"]
    assert error["quota_subjects"] == ["queue"] and "details" not in error, error


@pytest.mark.parametrize("argv", [["status", "--json"], ["backends", "list", "--json"], ["pause", "--json"]])
def test_json_may_follow_the_command(api: TrainerApi, capsys, argv: list[str]) -> None:
    code, out, err = cli(capsys, "--target", api.target, *argv)
    assert code == 0, err
    assert isinstance(json.loads(out), dict)
