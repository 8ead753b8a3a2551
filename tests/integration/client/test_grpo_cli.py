"""The `grpo` CLI against a real trainer API on loopback (the trainer's servicer, store and registry)."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from trainer_api import TrainerApi

from grpo.trainer.v1 import trainer_pb2
from grpo_client.cli import main
from grpo_server.types import ChatMessage, PromptRecord, RewardSpec, StepReport, StepState


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `grpo` in process; returns (exit code, stdout, stderr)."""
    out = io.StringIO()
    capsys.readouterr()
    code = main(list(argv), out=out)
    return code, out.getvalue(), capsys.readouterr().err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """Run `grpo --json ...`; stdout must be exactly one JSON document."""
    code, out, _ = cli(capsys, argv[0], argv[1], "--json", *argv[2:])
    return code, json.loads(out)


def prompt_lines(n: int, start: int = 0, **extra: Any) -> str:
    return "".join(
        json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": f"What is {i}+1?"}],
                    "answer": str(i + 1), **extra}) + "\n"
        for i in range(start, start + n)
    )


def test_submit_queues_the_file_in_batches_and_a_rerun_resubmits_nothing(
    api: TrainerApi, tmp_path: Path, capsys
) -> None:
    f = tmp_path / "prompts.jsonl"
    f.write_text(prompt_lines(5) + "\n")  # a blank line is skipped
    code, doc = cli_json(capsys, "--target", api.target, "submit", str(f), "--batch-size", "2")
    assert code == 0
    assert doc["accepted_ids"] == ["q0", "q1", "q2", "q3", "q4"]
    assert (doc["batches"], doc["duplicate_batches"], doc["queue_depth"]) == (3, 0, 5)

    code, doc = cli_json(capsys, "--target", api.target, "submit", str(f), "--batch-size", "2")
    assert code == 0 and doc["duplicate_batches"] == 3
    assert api.store.queue_depth() == 5  # nothing stored twice


def test_submit_human_output_reports_counts(api: TrainerApi, tmp_path: Path, capsys) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(prompt_lines(3))
    code, out, _ = cli(capsys, "--target", api.target, "submit", str(f), "--request-id", "run-7")
    assert code == 0
    assert "submitted 3 prompts in 1 batch; queue depth 3" in out
    # One of a thing is said in the singular, any other number in the plural.
    f.write_text(prompt_lines(1, start=3))
    code, out, _ = cli(capsys, "--target", api.target, "submit", str(f), "--request-id", "run-8")
    assert code == 0 and "submitted 1 prompt in 1 batch; queue depth 4" in out, out


def test_a_bad_prompt_file_names_line_and_field_and_sends_nothing(api: TrainerApi, tmp_path: Path, capsys) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(prompt_lines(1) + '{"id": "x", "messages": [{"role": "user", "content": 3}]}\n' + "{oops\n")
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f))
    assert code == 2 and out == ""
    assert f"{f}:2: messages[0].content: must be a string" in err
    assert f"{f}:3: not valid JSON" in err
    assert api.store.queue_depth() == 0


def test_server_field_violations_are_printed_with_exit_code_2(api: TrainerApi, tmp_path: Path, capsys) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(prompt_lines(1, rewards=[{"backend": "ghost"}]))
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f))
    assert code == 2
    assert "INVALID_ARGUMENT" in err and "prompts[0].rewards[0].backend" in err

    code, doc = cli_json(capsys, "--target", api.target, "submit", str(f))
    assert code == 2
    assert doc["error"]["code"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in doc["error"]["field_violations"]] == ["prompts[0].rewards[0].backend"]


def test_a_full_queue_reports_resource_exhausted_with_the_retry_delay(make_api, tmp_path: Path, capsys) -> None:
    from grpo_server.api.settings import ApiLimits

    api = make_api(limits=ApiLimits(max_queue_depth=2, retry_after_seconds=0.05))
    f = tmp_path / "p.jsonl"
    f.write_text(prompt_lines(3))
    # The first batch fits; the second is refused until the queue drains, retried, then reported.
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f), "--batch-size", "2")
    assert code == 1
    assert "RESOURCE_EXHAUSTED" in err and "retry after 0.05 s" in err
    assert api.store.queue_depth() == 2


def test_an_unreachable_trainer_fails_with_exit_code_1(capsys) -> None:
    code, out, err = cli(capsys, "--target", "127.0.0.1:1", "--timeout", "2", "status")
    assert code == 1 and "UNAVAILABLE" in err


def test_status_before_and_after_a_step(api: TrainerApi, capsys) -> None:
    code, out, _ = cli(capsys, "--target", api.target, "status")
    assert code == 0 and "run: idle" in out and "no step yet" in out

    api.finish_step(0.625)
    code, doc = cli_json(capsys, "--target", api.target, "status")
    assert code == 0
    assert doc["step"]["step"] == "1" and doc["step"]["state"] == "STEP_STATE_COMPLETED"  # int64 is a JSON string
    assert doc["step"]["metrics"]["reward_mean"] == 0.625 and doc["run"]["latest_step"] == "1"
    code, out, _ = cli(capsys, "--target", api.target, "status", "--step", "1")
    assert "step 1: completed" in out and "reward_mean: 0.625" in out

    code, out, err = cli(capsys, "--target", api.target, "status", "--step", "9")
    assert code == 1 and "NOT_FOUND" in err


def test_status_says_what_an_idle_run_waits_for(api: TrainerApi, capsys) -> None:
    api.control.set_waiting("reward backend 'math' is down: the next step starts", time.monotonic() + 30)
    code, out, _ = cli(capsys, "--target", api.target, "status")
    assert code == 0 and re.search(r"\nwaiting: reward backend 'math' is down: the next step starts in (29|30)\.\d s\n",
                                   out), out
    code, doc = cli_json(capsys, "--target", api.target, "status")
    assert re.fullmatch(r"reward backend 'math' is down: the next step starts in (29|30)\.\d s", doc["run"]["waiting_for"])

    api.control.set_waiting("")
    code, out, _ = cli(capsys, "--target", api.target, "status")
    assert code == 0 and "waiting" not in out, out


def test_watch_shows_the_backlog_then_live_steps(api: TrainerApi, capsys) -> None:
    api.finish_step(0.25)
    api.finish_step(0.0, state=StepState.SKIPPED)

    def later() -> None:
        time.sleep(0.5)
        api.finish_step(0.75)

    t = threading.Thread(target=later)
    t.start()
    code, out, _ = cli(capsys, "--target", api.target, "watch", "--max-steps", "3")
    t.join()
    assert code == 0
    rows = out.strip().splitlines()
    assert rows[0].split()[:3] == ["step", "state", "reward"]
    assert rows[1].split()[:3] == ["1", "completed", "0.250"]
    assert rows[2].split()[:2] == ["2", "skipped"] and "every reward failed" in rows[2]
    assert rows[3].split()[:3] == ["3", "completed", "0.750"]


def test_watch_json_prints_one_document_of_the_steps(api: TrainerApi, capsys) -> None:
    for r in (0.1, 0.2, 0.3):
        api.finish_step(r)
    code, doc = cli_json(capsys, "--target", api.target, "watch", "--after", "1", "--max-steps", "2")
    assert code == 0
    assert [s["step"]["step"] for s in doc["steps"]] == ["2", "3"]
    assert doc["steps"][1]["step"]["metrics"]["reward_mean"] == 0.3


def test_watch_starts_with_the_last_ten_steps_of_a_long_run_unless_told_otherwise(api: TrainerApi, capsys) -> None:
    for i in range(25):
        api.finish_step(i / 100)
    code, doc = cli_json(capsys, "--target", api.target, "watch", "--max-steps", "10")
    assert code == 0
    assert [s["step"]["step"] for s in doc["steps"]] == [str(i) for i in range(16, 26)]
    code, doc = cli_json(capsys, "--target", api.target, "watch", "--last", "3", "--max-steps", "3")
    assert [s["step"]["step"] for s in doc["steps"]] == ["23", "24", "25"]
    code, doc = cli_json(capsys, "--target", api.target, "watch", "--after", "0", "--max-steps", "2")
    assert [s["step"]["step"] for s in doc["steps"]] == ["1", "2"]  # the whole run, from the first
    code, doc = cli_json(capsys, "--target", api.target, "watch", "--last", "30", "--max-steps", "1")
    assert [s["step"]["step"] for s in doc["steps"]] == ["1"]

    # --last 0: only the steps from now on.
    threading.Timer(0.5, lambda: api.finish_step(0.9)).start()
    code, doc = cli_json(capsys, "--target", api.target, "watch", "--last", "0", "--follow", "--max-steps", "1")
    assert code == 0 and [s["step"]["step"] for s in doc["steps"]] == ["26"]

    code, out, err = cli(capsys, "--target", api.target, "watch", "--last", "3", "--after", "1")
    assert code == 2 and "not allowed with argument" in err, err


@pytest.mark.timeout(120)  # without the fix the --last 0 watch waits for ever
def test_watch_last_counts_finished_steps_while_one_is_running(api: TrainerApi, capsys) -> None:
    """A busy trainer is nearly always mid-step: --last 3 showed steps 4, 5 and the running 6 (two finished
    steps), and --last 0 never showed step 6 end (WatchSteps sends only the steps after where it starts)."""
    for i in range(5):
        api.finish_step(i / 10)
    api.step += 1  # step 6 starts, as the training loop records it
    running = StepReport(api.step, StepState.RUNNING, time.time(), None, {}, "hf", ())
    api.store.record_step(running)
    api.control.notify_step(running)

    def finish_step_6() -> None:
        done = StepReport(6, StepState.COMPLETED, running.started_at, time.time(), {"reward_mean": 0.6}, "hf", ())
        api.store.record_step(done)
        api.control.notify_step(done)

    code, doc = cli_json(capsys, "--target", api.target, "watch", "--last", "3", "--max-steps", "3")
    assert code == 0 and [s["step"]["step"] for s in doc["steps"]] == ["3", "4", "5"]
    threading.Timer(1.0, finish_step_6).start()
    code, doc = cli_json(capsys, "--target", api.target, "watch", "--last", "0", "--follow", "--max-steps", "1")
    assert code == 0 and [s["step"]["step"] for s in doc["steps"]] == ["6"]


def test_watch_follow_waits_for_a_trainer_not_up_yet_and_then_shows_its_whole_run(make_api, capsys) -> None:
    # The latest step cannot be asked for yet: once the trainer answers, every step it has is shown.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    def start_later() -> None:
        time.sleep(1.0)
        api = make_api(listen=target)
        for r in (0.1, 0.2, 0.3):
            api.finish_step(r)
    t = threading.Thread(target=start_later)
    t.start()
    code, out, err = cli(capsys, "--target", target, "--json", "watch", "--follow", "--max-steps", "3")
    t.join()
    assert code == 0, err
    assert [s["step"]["step"] for s in json.loads(out)["steps"]] == ["1", "2", "3"]
    assert "reconnecting" in err, err


def test_a_new_client_reaches_a_trainer_an_older_client_could_not_reach_before_it_came_up(make_api) -> None:
    from grpo_client import TrainerClient, TrainerError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{s.getsockname()[1]}"
    with TrainerClient(target, timeout=5) as early:
        with pytest.raises(TrainerError) as err:
            early.step_status()
        assert err.value.code is grpc.StatusCode.UNAVAILABLE
        make_api(listen=target)
        with TrainerClient(target, timeout=5) as late:  # while the early one is still open
            assert late.step_status().run.state == trainer_pb2.RUN_STATE_IDLE


def test_watch_follow_reads_the_same_steps(api: TrainerApi, capsys) -> None:
    # Across a restart: tests/integration/trainer/test_follow_steps.py (follow_steps, which --follow uses).
    for r in (0.1, 0.2):
        api.finish_step(r)
    code, doc = cli_json(capsys, "--target", api.target, "watch", "--follow", "--max-steps", "2")
    assert code == 0
    assert [(s["step"]["step"], s["step"]["metrics"]["reward_mean"]) for s in doc["steps"]] == [("1", 0.1), ("2", 0.2)]


def test_export_wait_writes_a_checkpoint_directory(api: TrainerApi, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "export"
    code, doc = cli_json(capsys, "--target", api.target, "export", str(dest), "--wait")
    assert code == 0
    assert doc["state"] == "EXPORT_STATE_DONE" and doc["destination"] == str(dest)
    assert (dest / "manifest.json").exists() and (dest / "config.json").exists()
    assert {f["path"] for f in doc["files"]} >= {"config.json"}

    code, out, err = cli(capsys, "--target", api.target, "export", str(dest))  # not empty any more
    assert code == 1 and "FAILED_PRECONDITION" in err and "precondition: DESTINATION_NOT_EMPTY" in err


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_ctrl_c_during_export_wait_names_the_export_that_goes_on(api: TrainerApi, tmp_path: Path,
                                                                 json_flag: list[str]) -> None:
    """Ctrl-C while `grpo export DEST --wait` polled printed only "interrupted": the export went on in the
    trainer and its id, which `grpo export-status` needs, was in neither output."""
    import signal
    import subprocess
    import sys

    real = api.exporter._run
    api.exporter._run = lambda job, weights: (time.sleep(4), real(job, weights))  # a larger model's export
    proc = subprocess.Popen([sys.executable, "-m", "grpo_client.cli", "--target", api.target, *json_flag, "export",
                             str(tmp_path / "out"), "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not api.exporter.page(None, 0, 10)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    [started] = api.exporter.page(None, 0, 10)[0]
    time.sleep(0.5)  # polling it now
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    if json_flag:
        assert json.loads(out)["error"]["export_id"] == started.export_id
    else:
        assert f"interrupted: export {started.export_id} (step 0 to {tmp_path / 'out'}) goes on in the trainer; " \
               f"grpo export-status {started.export_id} --wait follows it" in err, err


def test_backends_list_set_and_delete(api: TrainerApi, capsys) -> None:
    code, doc = cli_json(capsys, "--target", api.target, "backends", "list")
    assert code == 0 and [b["name"] for b in doc["backends"]] == ["math"]
    assert doc["backends"][0]["reference_kinds"] == ["REFERENCE_KIND_ANSWER"]
    assert doc["backends"][0]["description"]["name"] == "math-verifier"

    code, doc = cli_json(capsys, "--target", api.target, "backends", "set", "code", api.code_address,
                         "--timeout", "12", "--max-batch", "8", "--max-concurrency", "2")
    assert code == 0 and doc["registry_version"] == "2"
    assert doc["backend"]["source"] == "BACKEND_SOURCE_API" and doc["backend"]["timeout_seconds"] == 12
    entry = api.registry.snapshot().entries["code"]
    assert (entry.address, entry.max_batch_size, entry.max_concurrency) == (api.code_address, 8, 2)

    code, out, _ = cli(capsys, "--target", api.target, "backends", "list")
    line = next(row for row in out.splitlines() if row.startswith("code"))
    assert line.split()[:5] == ["code", api.code_address, "api", "closed", "code"]
    assert line.split()[6:] == ["8", "2"]
    # Without --max-batch the batch is the backend's own (its Describe says 64), not a "0" beside the
    # defaults the other columns show.
    math_row = next(row for row in out.splitlines() if row.startswith("math"))
    assert math_row.split()[5:] == ["30s", "64", "4"], math_row

    code, doc = cli_json(capsys, "--target", api.target, "backends", "delete", "code")
    assert code == 0 and doc == {"registry_version": "3"}  # a JSON string, as `set` and `list` print it
    code, out, err = cli(capsys, "--target", api.target, "backends", "delete", "code")
    assert code == 1 and "NOT_FOUND" in err


def test_backends_set_with_a_bad_address_names_the_field(api: TrainerApi, capsys) -> None:
    code, doc = cli_json(capsys, "--target", api.target, "backends", "set", "code", "no-port")
    assert code == 2
    assert any(v["field"].endswith("address") for v in doc["error"]["field_violations"])


def test_pause_and_resume(api: TrainerApi, capsys) -> None:
    code, doc = cli_json(capsys, "--target", api.target, "pause")
    assert code == 0 and doc["run"]["pause_requested"] is True
    code, out, _ = cli(capsys, "--target", api.target, "resume")
    assert code == 0 and "run: idle" in out and "pause requested" not in out


def test_plot_without_a_completed_step_fails_and_writes_nothing(api: TrainerApi, tmp_path: Path, capsys) -> None:
    api.finish_step(0.0, state=StepState.SKIPPED)
    out_png = tmp_path / "run.png"
    code, doc = cli_json(capsys, "--target", api.target, "plot", str(out_png))
    assert code == 1
    assert doc["error"]["code"] == "NO_COMPLETED_STEPS"
    assert "no completed step to plot yet (1 step finished otherwise)" in doc["error"]["message"]
    assert not out_png.exists()


def test_plot_writes_a_png_of_the_completed_steps(api: TrainerApi, tmp_path: Path, capsys) -> None:
    api.finish_step(0.2)
    api.finish_step(0.0, state=StepState.SKIPPED)
    api.finish_step(0.6)
    out_png = tmp_path / "run.png"
    code, doc = cli_json(capsys, "--target", api.target, "plot", str(out_png))
    assert code == 0 and doc == {"output": str(out_png), "steps": 2}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # What the PNG shows: the completed steps' reward (mean and ± std band), KL and step time.
    import matplotlib.pyplot as plt

    from grpo_client import TrainerClient
    from grpo_client.plot import steps_figure

    with TrainerClient(api.target) as client:
        reports = client.finished_steps()
    fig, shown = steps_figure(reports)
    try:
        done = [r for r in reports if r.metrics.reward_mean in (0.2, 0.6)]
        assert shown == 2 and len(done) == 2
        ax_r, ax_kl, ax_t = fig.axes
        assert [ax.get_ylabel() for ax in fig.axes] == ["reward", "KL (nats/token)", "step seconds"]
        steps = [float(r.step) for r in done]
        assert list(ax_r.lines[0].get_xdata()) == steps
        assert list(ax_r.lines[0].get_ydata()) == pytest.approx([0.2, 0.6])
        assert list(ax_kl.lines[0].get_ydata()) == pytest.approx([r.metrics.kl for r in done])
        assert list(ax_t.lines[0].get_ydata()) == pytest.approx([r.metrics.step_seconds for r in done])
        assert len(ax_r.collections) == 1  # the ± std band
    finally:
        plt.close(fig)


class _Terminal(io.StringIO):
    """A stand-in for a terminal's stderr: tqdm draws its bar only where isatty() is true."""

    def isatty(self) -> bool:
        return True


def test_submit_shows_a_progress_bar_on_a_terminal(api: TrainerApi, tmp_path: Path, monkeypatch) -> None:
    f = tmp_path / "prompts.jsonl"
    f.write_text(prompt_lines(6))
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    out = io.StringIO()
    assert main(["--target", api.target, "submit", str(f), "--batch-size", "2"], out=out) == 0
    bar = err.getvalue()
    assert "submit:" in bar and "6/6" in bar and "prompt" in bar, bar
    assert "submitted 6 prompts in 3 batches" in out.getvalue()
    # --json keeps stderr clean for scripts even on a terminal.
    err.truncate(0)
    err.seek(0)
    assert main(["--target", api.target, "--json", "submit", str(f), "--batch-size", "2"], out=io.StringIO()) == 0
    assert "submit:" not in err.getvalue()


def test_tokens_are_sent_and_a_missing_token_is_refused(make_api, tmp_path: Path, capsys) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  - {name: ops, token: 'secret-token-1', roles: [admin]}\n"
                      "  - {name: viewer, token: 'viewer-token-1', roles: [read]}\n")
    api = make_api(tokens_file=tokens)
    code, out, err = cli(capsys, "--target", api.target, "status")
    assert code == 1 and "UNAUTHENTICATED" in err
    token_file = tmp_path / "token"
    token_file.write_text("secret-token-1\n")
    code, out, _ = cli(capsys, "--target", api.target, "--token-file", str(token_file), "status")
    assert code == 0
    code, out, err = cli(capsys, "--target", api.target, "--token", "viewer-token-1", "pause")
    assert code == 1 and "PERMISSION_DENIED" in err


def test_target_and_token_come_from_the_environment_unless_a_flag_says_otherwise(
        make_api, tmp_path: Path, capsys, monkeypatch) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  - {name: ops, token: 'secret-token-1', roles: [admin]}\n"
                      "  - {name: viewer, token: 'viewer-token-1', roles: [read]}\n")
    api = make_api(tokens_file=tokens)
    monkeypatch.setenv("GRPO_TARGET", api.target)
    code, _, err = cli(capsys, "status")  # the trainer from $GRPO_TARGET, no token
    assert code == 1 and "UNAUTHENTICATED" in err
    monkeypatch.setenv("GRPO_TOKEN", "viewer-token-1")
    assert cli(capsys, "status")[0] == 0
    code, _, err = cli(capsys, "pause")  # the viewer's token: read only
    assert code == 1 and "PERMISSION_DENIED" in err
    assert cli(capsys, "--token", "secret-token-1", "pause")[0] == 0  # the flag wins
    admin_file = tmp_path / "admin-token"
    admin_file.write_text("secret-token-1\n")
    assert cli(capsys, "--token-file", str(admin_file), "resume")[0] == 0
    monkeypatch.delenv("GRPO_TOKEN")
    monkeypatch.setenv("GRPO_TOKEN_FILE", str(admin_file))
    assert cli(capsys, "pause")[0] == 0  # the token file from $GRPO_TOKEN_FILE
    monkeypatch.setenv("GRPO_TARGET", "127.0.0.1:1")
    code, _, err = cli(capsys, "--target", api.target, "resume")  # the flag wins over $GRPO_TARGET
    assert code == 0, err
    code, _, err = cli(capsys, "--timeout", "2", "status")
    assert code == 1 and "UNAVAILABLE" in err


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(api: TrainerApi) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "grpo_client.cli", "--target", api.target, "status"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `grpo status | head -0` would, long before the command has loaded
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert err == ""  # no "error: [Errno 32] Broken pipe", no "Exception ignored"


@pytest.mark.parametrize("argv", [
    ["status", "--step", "99999999999999999999"],
    ["watch", "--after", "-1"],
    ["backends", "set", "b", "127.0.0.1:1", "--max-batch", "99999999999"],
    ["backends", "set", "b", "127.0.0.1:1", "--timeout", "nan"],
    ["--timeout", "0", "status"],
    ["--timeout", "inf", "status"],
    ["--timeout", "-1", "status"],
    ["--timeout", "1e10", "status"],  # gRPC's deadline overflowed: every call failed at once
    ["prompts", "--state", "bogus"],
])
def test_out_of_range_flag_values_are_usage_errors_with_a_json_document_under_json(
    capsys, argv: list[str]
) -> None:
    out = io.StringIO()
    assert main(["--target", "127.0.0.1:1", *argv], out=out) == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err, err
    out = io.StringIO()
    assert main(["--json", "--target", "127.0.0.1:1", *argv], out=out) == 2
    doc = json.loads(out.getvalue())
    assert doc["error"]["code"] == "USAGE" and doc["error"]["message"].startswith("argument"), doc
    capsys.readouterr()


def test_a_token_no_header_can_carry_is_named_locally(make_api, tmp_path: Path, capsys, monkeypatch) -> None:
    api = make_api()
    code, _, err = cli(capsys, "--target", api.target, "--token", "t\u00f6k", "status")
    assert code == 2 and "--token: the token has 'ö', which an authorization header cannot carry" in err, err
    bad = tmp_path / "token"
    bad.write_text("line1\nline2\n")
    code, _, err = cli(capsys, "--target", api.target, "--token-file", str(bad), "status")
    assert code == 2 and f"--token-file {bad}: the token has '\\n'" in err, err
    bad.write_bytes(b"\xff\xfe")
    code, out, err = cli(capsys, "--json", "--target", api.target, "--token-file", str(bad), "status")
    assert code == 2 and json.loads(out)["error"] == {"code": "USAGE", "message": f"--token-file: {bad} is not UTF-8 text"}
    monkeypatch.setenv("GRPO_TOKEN", "has space")
    code, _, err = cli(capsys, "--target", api.target, "status")
    assert code == 2 and "$GRPO_TOKEN: the token has ' '" in err, err


def rec(pid: str) -> PromptRecord:
    return PromptRecord(id=pid, messages=(ChatMessage("user", f"{pid}: 1+1?"),), rewards=(RewardSpec("math", 1.0),),
                        answer="2")


def test_prompts_by_more_ids_than_one_request_takes(api: TrainerApi, capsys) -> None:
    """ListPrompts takes 1000 ids: `grpo prompts` with 1001 failed INVALID_ARGUMENT; it asks 1000 at a time."""
    api.store.submit([rec("late")], None, 10_000)
    ids = [f"none{i}" for i in range(1000)] + ["late"]
    code, out, _ = cli(capsys, "--target", api.target, "prompts", *ids)
    assert code == 0 and out.splitlines()[1].split()[:2] == ["late", "queued"], out
    assert out.splitlines()[-1].startswith("unknown: none0, none1, none10, "), out[-300:]
    code, doc = cli_json(capsys, "--target", api.target, "prompts", *ids)
    assert code == 0 and [p["id"] for p in doc["prompts"]] == ["late"]


def test_prompts_narrowed_to_nothing_say_so(api: TrainerApi, capsys) -> None:
    api.store.submit([rec("q0")], None, 10_000)
    code, out, _ = cli(capsys, "--target", api.target, "prompts", "--state", "failed", "q0")
    assert code == 0 and out.strip() == "no failed prompts", out


def test_cancel_of_an_empty_file_claims_no_queue_depth(api: TrainerApi, tmp_path, capsys) -> None:
    api.store.submit([rec("q0")], None, 10_000)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, doc = cli_json(capsys, "--target", api.target, "cancel", "--file", str(empty))
    assert code == 0 and doc["queue_depth"] is None and doc["cancelled_ids"] == [], doc
