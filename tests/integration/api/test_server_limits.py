"""RunStatus.limits: a client learns what the trainer accepts (its `limits` config) from StepStatus,
WatchSteps and the pause/resume answers, and a request sized by them is accepted while one past them
is refused naming the field."""

from __future__ import annotations

import grpc
import pytest
from api_support import prompt

from grpo.trainer.v1 import trainer_pb2
from grpo_server.api.settings import ApiLimits


def test_step_status_reports_the_configured_limits(make_api) -> None:
    limits = ApiLimits(max_prompts_per_request=3, max_queue_depth=7, max_id_bytes=40, max_watch_streams=5,
                       max_prompt_tokens=0)
    api = make_api(limits=limits)
    run = api.stub.StepStatus(trainer_pb2.StepStatusRequest(), timeout=10).run
    reported = run.limits
    for field in trainer_pb2.ServerLimits.DESCRIPTOR.fields:
        assert getattr(reported, field.name) == getattr(limits, field.name), field.name
    assert (reported.max_prompts_per_request, reported.max_queue_depth, reported.max_id_bytes) == (3, 7, 40)
    assert reported.max_message_bytes == ApiLimits().max_message_bytes  # the default, reported too

    # Sized by the report: accepted. One over: refused, naming the field.
    ok = api.stub.SubmitPrompts(trainer_pb2.SubmitPromptsRequest(
        prompts=[prompt(f"p{i}") for i in range(reported.max_prompts_per_request)]), timeout=10)
    assert list(ok.accepted_ids) == ["p0", "p1", "p2"]
    with pytest.raises(grpc.RpcError) as err:
        api.stub.SubmitPrompts(trainer_pb2.SubmitPromptsRequest(
            prompts=[prompt(f"q{i}") for i in range(reported.max_prompts_per_request + 1)]), timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "prompts" in err.value.details()


def test_watch_and_pause_answers_carry_the_limits_too(make_api) -> None:
    api = make_api(limits=ApiLimits(max_queue_depth=11, max_prompt_tokens=0))
    paused = api.stub.PauseTraining(trainer_pb2.PauseTrainingRequest(), timeout=10)
    assert paused.run.limits.max_queue_depth == 11
    resumed = api.stub.ResumeTraining(trainer_pb2.ResumeTrainingRequest(), timeout=10)
    assert resumed.run.limits.max_queue_depth == 11


def test_the_python_client_reads_the_limits(make_api) -> None:
    from grpo_client import TrainerClient

    api = make_api(limits=ApiLimits(max_prompts_per_request=5, max_prompt_tokens=0))
    client = TrainerClient(f"127.0.0.1:{api.port}")
    try:
        limits = client.limits()
        assert limits.max_prompts_per_request == 5 and limits.max_queue_depth == ApiLimits().max_queue_depth
    finally:
        client.close()
