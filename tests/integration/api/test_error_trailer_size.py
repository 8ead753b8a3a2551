"""A rejected request that echoes something long of its own (a metadata key far over its limit, an
unknown export id, a destination path) still gets its own status code and details: the status travels
in a trailer that gRPC clients refuse over 16 KiB, which a client would see as RESOURCE_EXHAUSTED
"received metadata size exceeds ..." with nothing of the server's answer."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from api_support import Api, details, prompt, submit, violations
from google.rpc import error_details_pb2

from grpo.trainer.v1 import trainer_pb2

LONG = 20_000  # characters: well past the 16 KiB a client accepts in a trailer


def test_a_metadata_key_far_over_its_limit_is_invalid_argument_naming_it(api: Api) -> None:
    p = prompt("k1")
    p.metadata["k" * LONG] = "v"
    with pytest.raises(grpc.RpcError) as err:
        api.stub.SubmitPrompts(submit(p))
    [(field, description)] = violations(err.value).items()
    assert field.startswith('prompts[0].metadata["kkk') and len(field) < 2000
    assert f"the key is {LONG} bytes; at most 1024" in description
    assert api.store.list_prompts() == []


def test_get_export_of_a_very_long_unknown_id_is_not_found(api: Api) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api.stub.GetExport(trainer_pb2.GetExportRequest(export_id="e" * LONG))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
    [info] = details(err.value, error_details_pb2.ResourceInfo)
    assert info.resource_type == "export" and info.resource_name.startswith("eee")


def test_an_export_to_a_path_too_long_to_create_is_failed_precondition(api: Api, tmp_path: Path) -> None:
    dest = str(tmp_path / ("d" * LONG))
    with pytest.raises(grpc.RpcError) as err:
        api.stub.ExportCheckpoint(trainer_pb2.ExportCheckpointRequest(destination=dest, wait=True))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value.details()
    [failure] = details(err.value, error_details_pb2.PreconditionFailure)
    assert failure.violations[0].type == "DESTINATION_UNWRITABLE"
    assert failure.violations[0].subject.startswith(str(tmp_path))
