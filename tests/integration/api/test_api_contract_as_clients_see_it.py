"""The API as a client in another language meets it: the role of every RPC as docs/api.md's table says,
tokens written the ways a tokens file holds them, and a slow or vanished WatchSteps reader."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml
from api_support import Api

from grpo.trainer.v1 import trainer_pb2
from grpo_server.api.auth import METHOD_ROLES, TokensFileError, TokenStore
from grpo_server.api.settings import ApiLimits, AuthSettings
from grpo_server.types import StepReport, StepState

REPO = Path(__file__).resolve().parents[3]
SERVICE = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]


def documented_roles() -> dict[str, str]:
    """RPC -> role, from the `| RPC | Role | ... |` table of docs/api.md."""
    text = (REPO / "docs" / "api.md").read_text()
    table = text[text.index("## RPCs"):text.index("### SubmitPrompts")]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", table, flags=re.MULTILINE)
    return dict(rows)


def test_every_rpc_of_the_service_has_the_role_docs_api_md_gives_it() -> None:
    documented = documented_roles()
    methods = {m.name for m in SERVICE.methods}
    assert set(documented) == methods, "docs/api.md's RPC table and the service differ"
    served = {k.rsplit("/", 1)[1]: role for k, role in METHOD_ROLES.items()}
    assert served == documented


def test_watch_steps_needs_the_read_role(make_api, tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n  - {name: s, token: submit-token-1, roles: [submit]}\n"
                    "  - {name: r, token: read-token-22, roles: [read]}\n")
    api = make_api(auth=AuthSettings(tokens_file=str(path), reload_interval_seconds=0))

    def first_code(token: str | None) -> grpc.StatusCode:
        md = [("authorization", f"Bearer {token}")] if token else []
        stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), metadata=md, timeout=2)
        try:
            next(stream)
        except grpc.RpcError as err:
            return err.code()
        return grpc.StatusCode.OK

    assert first_code(None) == grpc.StatusCode.UNAUTHENTICATED
    assert first_code("not-a-known-token") == grpc.StatusCode.UNAUTHENTICATED
    assert first_code("submit-token-1") == grpc.StatusCode.PERMISSION_DENIED
    assert first_code("read-token-22") == grpc.StatusCode.DEADLINE_EXCEEDED  # admitted; no step to send


@pytest.mark.parametrize("written", ["token: |\n      admin-token-1\n", 'token: "admin-token-1 "\n',
                                     'token: "\\tadmin-token-1\\n"\n'])
def test_a_plain_token_written_with_surrounding_whitespace_still_authenticates(
    make_api, tmp_path: Path, written: str
) -> None:
    # A YAML block scalar (what templating a Secret often writes) ends in a newline no client can send.
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens:\n  - name: ops\n    {written}    roles: [admin]\n")
    api = make_api(auth=AuthSettings(tokens_file=str(path), reload_interval_seconds=0))
    got = api.stub.StepStatus(trainer_pb2.StepStatusRequest(), metadata=[("authorization", "Bearer admin-token-1")])
    assert got.run.state == trainer_pb2.RUN_STATE_STARTING


@pytest.mark.parametrize("token", ["ünicode-token", "two\nline-token", "tab\tinside-token", "space inside-token"])
def test_a_token_no_client_can_send_is_refused_at_start_naming_it(tmp_path: Path, token: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": [{"name": "ops", "token": token, "roles": ["admin"]}]}))
    with pytest.raises(TokensFileError, match=r"tokens\[0\]\.token: only visible ASCII characters \(U\+0021 to U\+007E, no space\)"):
        TokenStore(path)


def test_a_reader_that_read_nothing_and_vanished_frees_its_stream_place(make_api) -> None:
    # Its handler is blocked sending (HTTP/2 flow control), not waiting for a step: the kill must still
    # end the stream, or each dead dashboard would hold one of the few places for good.
    api: Api = make_api(limits=ApiLimits(max_watch_streams=1))
    reader = subprocess.Popen([sys.executable, "-c", (
        "import time, grpc\n"
        "from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc\n"
        f"ch = grpc.insecure_channel('127.0.0.1:{api.port}')\n"
        "s = trainer_pb2_grpc.TrainerServiceStub(ch).WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=120)\n"
        "s.initial_metadata(); print('open', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
        ids = tuple(f"prompt-{i:05d}" for i in range(1500))  # ~ 20 KB a report, 6 MB in all: more than a window
        for n in range(1, 301):
            report = StepReport(n, StepState.COMPLETED, 1000.0 + n, 1000.5 + n, {"loss": 0.1}, "hf", ids)
            api.store.record_step(report)
            api.control.notify_step(report)
        with pytest.raises(grpc.RpcError) as full:
            next(api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(after_step=10**6), timeout=10))
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        reader.kill()
        reader.wait()
    deadline = time.monotonic() + 15
    while True:  # admitted: the backlog's first report comes; refused while the dead reader holds the place
        stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=30)
        try:
            assert next(stream).step.step == 1
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline, err
        time.sleep(0.3)
    stream.cancel()
