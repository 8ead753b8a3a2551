"""The Go client (clients/go), built with Debian's Go toolchain by clients/go/build.sh, and its example
command run against a live trainer. Skips only when the toolchain (go, protoc, grpc-go) is missing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO, LiveTrainer, TlsTrainer, require_tools, run_tool
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
    assert re.search(r"^accepted 1 prompt\(s\): go-example-[0-9a-f]{16}; queue depth \d+$", sub.stdout, re.M), sub.stdout

    st = go_example(example, live_trainer, "status", token=live_trainer.reader_token)
    assert re.search(r"^run state: RUN_STATE_[A-Z]+, latest step \d+, queue depth \d+", st.stdout, re.M), st.stdout


def test_go_example_shows_the_bad_request_field(example: Path, live_trainer: LiveTrainer) -> None:
    bad = go_example(example, live_trainer, "submit", "-bad", token=live_trainer.admin_token, check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
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


def test_go_follow_carries_on_across_a_trainer_kill_and_restart(example: Path, tmp_path: Path) -> None:
    """`follow` (FollowSteps) reconnects after SIGKILL and after a drain, gets the steps the restart ran
    again, and no report twice: see follow_restart.py."""
    run_restart_scenario(tmp_path, lambda target: [str(example), "-target", target, "follow", "-retry", "200ms",
                                                   "-give-up", "120s"], GO)
