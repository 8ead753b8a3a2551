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

from grpo.reward.v1 import reward_pb2
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


@pytest.mark.parametrize("role", ["r", "é", "😀"], ids=["ascii", "two-byte", "four-byte"])
def test_many_bad_fields_echoing_non_ascii_text_stay_under_the_clients_soft_limit(api: Api, role: str) -> None:
    """Over gRPC's 8 KiB soft limit a client refuses trailers at random, as RESOURCE_EXHAUSTED with none of
    the server's answer. A bad role is echoed in each violation and in the message, which grpc-message
    percent-encodes (3 bytes per non-ASCII byte): 200 of them once made about 9 KB."""
    bad = [trainer_pb2.Prompt(id=f"p{i}", messages=[reward_pb2.Message(role=role * 400, content="x")], answer="4")
           for i in range(200)]
    for _ in range(20):
        with pytest.raises(grpc.RpcError) as err:
            api.stub.SubmitPrompts(submit(*bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    trailers = dict(err.value.trailing_metadata())
    message = err.value.details().encode()
    sent = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in message)
    size = sent + len("grpc-message") + len(trailers["grpc-status-details-bin"]) + len("grpc-status-details-bin")
    assert size + 3 * 32 + 20 < 8192, f"{size} bytes of status trailers"
    assert "200 bad fields" in err.value.details() and len(violations(err.value)) < 200
    assert api.store.list_prompts() == []
