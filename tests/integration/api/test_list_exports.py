"""ListExports over a real server: the exports the exporter knows of, the newest first, a page at a time,
filtered by state; bad requests are INVALID_ARGUMENT naming the field, and a page token is only good for
the listing it came from (the read role it needs: test_auth.py). The exporter here is the API tests'
FileExporter; the trainer's own (ExportManager over the store) is covered by test_export_records.py and,
across a restart, test_export_records_live.py."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import grpc
import pytest
from api_support import Api, prompt, submit, violations

from grpo.trainer.v1 import trainer_pb2
from grpo_client import TrainerClient, cli

DONE, WRITING = trainer_pb2.EXPORT_STATE_DONE, trainer_pb2.EXPORT_STATE_WRITING


def listed(api: Api, **kw: object) -> trainer_pb2.ListExportsResponse:
    return api.stub.ListExports(trainer_pb2.ListExportsRequest(**kw))  # type: ignore[arg-type]


def export(api: Api, dest: Path, wait: bool = True) -> str:
    req = trainer_pb2.ExportCheckpointRequest(destination=str(dest), wait=wait)
    return api.stub.ExportCheckpoint(req).export.export_id


def test_no_exports_is_an_empty_list(api: Api) -> None:
    got = listed(api)
    assert list(got.exports) == [] and got.next_page_token == ""


def test_exports_are_listed_newest_first_a_page_at_a_time(api: Api, tmp_path: Path) -> None:
    ids = [export(api, tmp_path / f"e{i}") for i in range(5)]
    everything = listed(api)
    assert [e.export_id for e in everything.exports] == ids[::-1] and everything.next_page_token == ""
    assert all(e.state == DONE and e.files for e in everything.exports)
    assert all(0 < e.started_at.ToNanoseconds() <= e.finished_at.ToNanoseconds() for e in everything.exports)
    assert everything.exports[0].destination == str(tmp_path / "e4")

    seen, token, sizes = [], "", [2, 1, 3]
    for n in range(10):
        page = listed(api, page_size=sizes[n % 3], page_token=token)
        assert len(page.exports) <= sizes[n % 3]
        seen += [e.export_id for e in page.exports]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    assert n == 2  # 2 + 1 + 2: the page size may change from page to page


def test_filtered_by_state(api: Api, tmp_path: Path) -> None:
    done = export(api, tmp_path / "done")
    api.exporter.gate = threading.Event()
    try:
        writing = export(api, tmp_path / "writing", wait=False)
        for _ in range(100):
            if api.stub.GetExport(trainer_pb2.GetExportRequest(export_id=writing)).export.state == WRITING:
                break
            threading.Event().wait(0.05)
        assert [e.export_id for e in listed(api, state=WRITING).exports] == [writing]
        assert [e.export_id for e in listed(api, state=DONE).exports] == [done]
        assert listed(api, state=trainer_pb2.EXPORT_STATE_FAILED).exports == []
        assert [e.export_id for e in listed(api).exports] == [writing, done]
    finally:
        api.exporter.gate.set()


@pytest.mark.parametrize(("request_kw", "field"), [
    ({"state": 9}, "state"),
    ({"state": -1}, "state"),
    ({"page_size": -1}, "page_size"),
    ({"page_size": 1001}, "page_size"),
    ({"page_token": "not-a-token"}, "page_token"),
    ({"page_token": "YWZ0ZXI6LTE="}, "page_token"),  # base64 of "after:-1"
])
def test_bad_requests_name_the_field(api: Api, request_kw: dict, field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        listed(api, **request_kw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(err.value)) == [field]


def test_a_page_token_is_only_good_for_the_listing_it_came_from(api: Api, tmp_path: Path) -> None:
    for i in range(3):
        export(api, tmp_path / f"e{i}")
    token = listed(api, page_size=1).next_page_token
    assert token
    with pytest.raises(grpc.RpcError) as err:
        listed(api, page_token=token, state=DONE)
    found = violations(err.value)
    assert list(found) == ["page_token"] and "different listing" in found["page_token"], found

    api.stub.SubmitPrompts(submit(prompt("a"), prompt("b"), prompt("c")))
    prompts_token = api.stub.ListPrompts(trainer_pb2.ListPromptsRequest(page_size=1)).next_page_token
    assert prompts_token
    with pytest.raises(grpc.RpcError) as err:
        listed(api, page_token=prompts_token)
    assert "ListPrompts" in violations(err.value)["page_token"]
    with pytest.raises(grpc.RpcError) as err:
        api.stub.ListPrompts(trainer_pb2.ListPromptsRequest(page_token=token))
    assert "different filter" in violations(err.value)["page_token"]


def test_the_python_client_reads_every_page(api: Api, tmp_path: Path) -> None:
    ids = [export(api, tmp_path / f"e{i}") for i in range(3)]
    client = TrainerClient(api.target)
    try:
        assert [e.export_id for e in client.iter_exports(page_size=1)] == ids[::-1]
        assert [e.export_id for e in client.iter_exports(DONE)] == ids[::-1]
        assert list(client.iter_exports(trainer_pb2.EXPORT_STATE_FAILED)) == []
        page = client.list_exports(page_size=2)
        assert len(page.exports) == 2 and page.next_page_token
    finally:
        client.close()


def test_grpo_exports_lists_them_newest_first(api: Api, tmp_path: Path) -> None:
    out = io.StringIO()
    assert cli.main(["--target", api.target, "exports"], out=out) == 0
    assert out.getvalue() == "no exports (start one with `grpo export`)\n"
    out = io.StringIO()
    assert cli.main(["--target", api.target, "exports", "--state", "failed"], out=out) == 0
    assert out.getvalue() == "no failed exports\n"

    ids = [export(api, tmp_path / f"e{i}") for i in range(3)]
    out = io.StringIO()
    assert cli.main(["--target", api.target, "exports"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["id", "state", "step", "done", "started", "(UTC)", "destination"]
    rows = [line.split() for line in lines[1:]]
    assert [row[:4] + row[5:] for row in rows] == [[i, "done", "3", "100%", str(tmp_path / f"e{n}")]
                                                   for n, i in reversed(list(enumerate(ids)))]
    started = [api.stub.GetExport(trainer_pb2.GetExportRequest(export_id=i)).export.started_at.seconds for i in ids]
    assert [row[4] for row in rows] == [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s)) for s in started[::-1]]

    out = io.StringIO()
    assert cli.main(["--target", api.target, "--json", "exports", "--state", "done", "--limit", "2"], out=out) == 0
    doc = json.loads(out.getvalue())
    assert [(e["export_id"], e["state"]) for e in doc["exports"]] == [(ids[2], "EXPORT_STATE_DONE"),
                                                                      (ids[1], "EXPORT_STATE_DONE")]
