"""StepStatus and WatchSteps over a real server: what the loop records is what clients see."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

import grpc
import pytest
from api_support import Api, details, prompt, submit
from google.rpc import error_details_pb2

from grpo.trainer.v1 import trainer_pb2
from grpo_client.cli import main
from grpo_server.api.convert import sample_to_proto
from grpo_server.api.server import graceful_stop
from grpo_server.api.settings import ApiLimits
from grpo_server.types import StepReport, StepState


def publish(api: Api, report: StepReport) -> None:
    """What the training loop does with a report."""
    api.store.record_step(report)
    api.control.notify_step(report)


def running(step: int) -> StepReport:
    return StepReport(step, StepState.RUNNING, 1000.0 + step, None, {}, "hf", (f"p{step}",))


def done(step: int, **metrics: float) -> StepReport:
    return StepReport(step, StepState.COMPLETED, 1000.0 + step, 1000.5 + step, metrics or {"loss": 0.1 * step}, "hf",
                      (f"p{step}",))


def test_status_before_any_step_has_the_run_but_no_step(api: Api) -> None:
    api.stub.SubmitPrompts(submit(prompt("a"), prompt("b")))
    resp = api.stub.StepStatus(trainer_pb2.StepStatusRequest())
    assert not resp.HasField("step")
    assert resp.run.state == trainer_pb2.RUN_STATE_STARTING
    assert resp.run.queue_depth == 2 and resp.run.latest_step == 0 and resp.run.checkpoint_step == 0


def test_status_reports_metrics_by_name_backend_means_and_extras(api: Api) -> None:
    api.stub.SubmitPrompts(submit(prompt("p1")))
    api.store.lease(1, step=1)
    publish(api, done(1, reward_mean=0.5, reward_std=0.25, prompts=8, zero_variance_groups=2,
                      **{"reward/math": 0.75, "sdpo/distill_loss": 0.125}))
    api.store.commit_checkpoint(1, "/ckpt/1")
    api.control.set_state("idle")
    resp = api.stub.StepStatus(trainer_pb2.StepStatusRequest())
    s = resp.step
    assert s.step == 1 and s.state == trainer_pb2.STEP_STATE_COMPLETED and s.rollout_engine == "hf"
    assert list(s.prompt_ids) == ["p1"]
    assert s.started_at.seconds == 1001 and s.finished_at.ToNanoseconds() == 1001_500_000_000
    m = s.metrics
    assert (m.reward_mean, m.reward_std, m.prompts, m.zero_variance_groups) == (0.5, 0.25, 8, 2)
    assert dict(m.backend_reward_means) == {"math": 0.75}
    assert dict(m.extra) == {"sdpo/distill_loss": 0.125}
    r = resp.run
    assert r.state == trainer_pb2.RUN_STATE_IDLE
    assert (r.latest_step, r.checkpoint_step, r.prompts_trained, r.prompts_failed) == (1, 1, 1, 0)


def test_status_of_a_given_step_and_of_a_missing_one(api: Api) -> None:
    publish(api, done(1))
    publish(api, running(2))
    assert api.stub.StepStatus(trainer_pb2.StepStatusRequest(step=1)).step.state == trainer_pb2.STEP_STATE_COMPLETED
    latest = api.stub.StepStatus(trainer_pb2.StepStatusRequest()).step
    assert latest.step == 2 and latest.state == trainer_pb2.STEP_STATE_RUNNING and not latest.HasField("finished_at")
    with pytest.raises(grpc.RpcError) as e:
        api.stub.StepStatus(trainer_pb2.StepStatusRequest(step=9))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    [info] = details(e.value, error_details_pb2.ResourceInfo)
    assert info.resource_type == "step" and info.resource_name == "9"
    assert "latest step is 2" in e.value.details()


def _collect(stream, into: list, stop_after: int) -> threading.Thread:
    def run() -> None:
        try:
            for msg in stream:
                into.append((msg.step.step, msg.step.state))
                if len(into) >= stop_after:
                    stream.cancel()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                into.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_watch_sends_the_backlog_after_after_step_then_live_steps(api: Api) -> None:
    for s in (1, 2, 3):
        publish(api, done(s))
    got: list = []
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(after_step=1), timeout=30)
    t = _collect(stream, got, stop_after=3)
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    publish(api, running(4))  # not sent: include_running is off
    publish(api, done(4))
    t.join(15)
    assert got == [(2, trainer_pb2.STEP_STATE_COMPLETED), (3, trainer_pb2.STEP_STATE_COMPLETED),
                   (4, trainer_pb2.STEP_STATE_COMPLETED)]


def test_a_step_published_just_before_close_still_reaches_an_open_stream(api: Api) -> None:
    """The drain closes the streams right after the last step ends. A stream still building the previous
    report then (its store read waits for the loop's transaction) sends that last step before it ends."""
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=30)
    stream.initial_metadata()
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(r.step.step for r in stream))
    reader.start()
    time.sleep(0.3)
    with api.store._lock:  # the loop's transaction: the stream's read for step 1's answer waits for it
        publish(api, done(1))
        time.sleep(0.3)
        publish(api, done(2))
        api.control.close()
    reader.join(10)
    assert got == [1, 2] and stream.code() == grpc.StatusCode.OK


def test_watch_with_include_running_sends_starts_too_and_never_repeats(api: Api) -> None:
    publish(api, done(1))
    publish(api, running(2))  # in progress when the client connects: sent once, from the backlog
    got: list = []
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(include_running=True), timeout=30)
    t = _collect(stream, got, stop_after=5)
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    api.control.notify_step(running(2))  # a late duplicate notification must not be re-sent
    publish(api, done(2))
    publish(api, running(3))
    publish(api, StepReport(3, StepState.SKIPPED, 1003.0, 1003.2, {}, "hf", ("p3",), "every reward failed"))
    t.join(15)
    R, C, S = trainer_pb2.STEP_STATE_RUNNING, trainer_pb2.STEP_STATE_COMPLETED, trainer_pb2.STEP_STATE_SKIPPED
    assert got == [(1, C), (2, R), (2, C), (3, R), (3, S)]


def test_watch_catches_up_from_the_store_when_it_falls_behind_the_event_window(make_api) -> None:
    api: Api = make_api(event_history=1)  # the control keeps one event: a burst overflows it
    publish(api, done(1))
    got: list = []
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=30)
    t = _collect(stream, got, stop_after=8)
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    for s in range(2, 9):
        publish(api, done(s))
    t.join(15)
    assert got == [(s, trainer_pb2.STEP_STATE_COMPLETED) for s in range(1, 9)]


def _resumed(api: Api, checkpoint: int, steps: range) -> None:
    """What a restart does to the store: steps after the checkpoint turn FAILED (store.recover)."""
    api.store.commit_checkpoint(checkpoint, f"/ckpt/{checkpoint}")
    for s in steps:
        api.store.record_step(StepReport(s, StepState.FAILED, 1000.0 + s, 1000.5 + s, {}, "hf", (f"p{s}",),
                                         "lost: the process stopped before a checkpoint contained this step"))


def rerun(step: int) -> tuple[StepReport, StepReport]:
    """A step run again after a resume: same number, a later start."""
    return (StepReport(step, StepState.RUNNING, 2000.0 + step, None, {}, "hf", (f"p{step}",)),
            StepReport(step, StepState.COMPLETED, 2000.0 + step, 2000.5 + step, {"loss": 0.2}, "hf", (f"p{step}",)))


def test_watch_sends_steps_run_again_after_a_resume(api: Api) -> None:
    for s in (1, 2, 3):
        publish(api, done(s))
    _resumed(api, 1, range(2, 4))  # the trainer restarted from the checkpoint of step 1
    got: list = []
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(after_step=0, include_running=True), timeout=30)
    t = _collect(stream, got, stop_after=8)
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    for s in (2, 3, 4):
        for report in rerun(s):
            publish(api, report)
    t.join(15)
    R, C, F = trainer_pb2.STEP_STATE_RUNNING, trainer_pb2.STEP_STATE_COMPLETED, trainer_pb2.STEP_STATE_FAILED
    assert got == [(1, C), (2, F), (3, F), (2, R), (2, C), (3, R), (3, C), (4, R)]


def test_watch_catching_up_after_missed_events_sends_steps_run_again_once(make_api) -> None:
    api: Api = make_api(event_history=1)
    for s in (1, 2, 3):
        publish(api, done(s))
    _resumed(api, 1, range(2, 4))
    got: list = []
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=30)
    t = _collect(stream, got, stop_after=7)
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    reports = [r for s in (2, 3, 4, 5) for r in rerun(s)]
    for r in reports:
        api.store.record_step(r)
    with api.control._cond:  # a burst the stream cannot read between: only the last event stays
        for r in reports:
            api.control.notify_step(r)
    t.join(15)
    C, F = trainer_pb2.STEP_STATE_COMPLETED, trainer_pb2.STEP_STATE_FAILED
    assert got == [(1, C), (2, F), (3, F), (2, C), (3, C), (4, C), (5, C)]


def test_watch_never_sends_a_late_start_after_the_end_it_already_sent(api: Api) -> None:
    publish(api, done(1))
    got: list = []
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(include_running=True), timeout=30)
    t = _collect(stream, got, stop_after=3)
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    api.control.notify_step(running(1))  # step 1's start, published late: the stream sent its end
    publish(api, running(2))
    publish(api, done(2))
    t.join(15)
    R, C = trainer_pb2.STEP_STATE_RUNNING, trainer_pb2.STEP_STATE_COMPLETED
    assert got == [(1, C), (2, R), (2, C)]


def _watch_a_burst_after_step_5(make_api, reports: list[StepReport]) -> tuple[Api, list, threading.Thread]:
    """Steps 1-3 done and checkpoint 1; a stream asking for steps after 5 with their starts (it stops after
    two reports), then `reports` in a burst it cannot read between: it catches up from the store, from
    the checkpoint on."""
    api: Api = make_api(event_history=1)
    for s in (1, 2, 3):
        publish(api, done(s))
    api.store.commit_checkpoint(1, "/ckpt/1")
    got: list = []
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(after_step=5, include_running=True), timeout=30)
    t = _collect(stream, got, stop_after=2)
    time.sleep(0.5)
    for r in reports:
        api.store.record_step(r)
    with api.control._cond:
        for r in reports:
            api.control.notify_step(r)
    return api, got, t


def test_watch_after_a_step_still_to_come_sends_nothing_before_it_even_when_catching_up(make_api) -> None:
    api, got, t = _watch_a_burst_after_step_5(make_api, [running(4), done(4), running(5), done(5), running(6),
                                                          done(6)])
    publish(api, running(7))
    t.join(15)
    R, C = trainer_pb2.STEP_STATE_RUNNING, trainer_pb2.STEP_STATE_COMPLETED
    assert got == [(6, C), (7, R)]


def test_watch_catching_up_sends_no_start_of_a_step_at_or_before_after_step(make_api) -> None:
    """The catch-up from the checkpoint sent step 5's start to a stream asked for steps after 5, and
    then, rightly, not its end: a start that never ended."""
    api, got, t = _watch_a_burst_after_step_5(make_api, [running(4), done(4), running(5)])  # 5 running in the store
    time.sleep(0.5)
    publish(api, done(5))
    publish(api, running(6))
    publish(api, done(6))
    t.join(15)
    R, C = trainer_pb2.STEP_STATE_RUNNING, trainer_pb2.STEP_STATE_COMPLETED
    assert got == [(6, R), (6, C)]


def test_a_gap_left_by_retention_is_told_once_also_with_the_starts_of_steps(api: Api) -> None:
    """With include_running the gap was told on the start of the first step after it and again on its
    end (`grpo watch --include-running` said "no longer kept" twice)."""
    for s in range(1, 5):
        publish(api, done(s))
    api.store.commit_checkpoint(4, "/ckpt/4")
    publish(api, running(5))
    api.store.prune(content_before=None, requests_before=None, steps_before=time.time())
    assert api.store.forgotten_steps() == 4
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(include_running=True), timeout=30)
    got: list = []

    def read() -> None:
        try:
            for msg in stream:
                got.append((msg.step.step, msg.step.state, msg.forgotten_through))
                if len(got) == 3:
                    stream.cancel()
        except grpc.RpcError:
            pass

    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(0.5)
    publish(api, done(5))
    publish(api, running(6))
    t.join(15)
    R, C = trainer_pb2.STEP_STATE_RUNNING, trainer_pb2.STEP_STATE_COMPLETED
    assert got == [(5, R, 4), (5, C, 0), (6, R, 0)]


def test_watch_carries_the_run_status_with_each_step(api: Api) -> None:
    api.control.set_state("training")
    publish(api, done(1))
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=30)
    first = next(iter(stream))
    stream.cancel()
    assert first.step.step == 1 and first.run.latest_step == 1 and first.run.state == trainer_pb2.RUN_STATE_TRAINING


def test_watch_ends_when_the_server_shuts_down(api: Api) -> None:
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=60)
    got: list = []
    t = _collect(stream, got, stop_after=100)
    time.sleep(0.3)
    started = time.monotonic()
    graceful_stop(api.server, api.health, grace=2.0, control=api.control)
    t.join(10)
    assert not t.is_alive() and time.monotonic() - started < 5


def test_a_replay_reads_the_run_status_once_a_page_not_once_a_report(api: Api) -> None:
    """Each replayed report carries the run's status. It was read for every report, three store queries
    under the lock the training loop takes too: 0.32 ms a report, half a minute to replay a run of 100k
    steps. It is now read once per page of 500 stored reports; live reports still read it each."""
    for s in range(1, 1201):
        api.store.record_step(done(s))
    real = api.store.latest_step
    calls = []

    def counted():  # the real store's answer, counted
        calls.append(1)
        return real()

    api.store.latest_step = counted  # type: ignore[method-assign]
    stream = api.stub.WatchSteps(trainer_pb2.WatchStepsRequest(), timeout=30)
    got = []
    for response in stream:
        got.append(response)
        if len(got) == 1200:
            stream.cancel()
            break
    assert [r.step.step for r in got] == list(range(1, 1201))
    assert all(r.run.latest_step == 1200 for r in got)
    assert len(calls) <= 4, len(calls)  # 3 pages (500, 500, 200), not 1200 reads


def big_sample(n: int, backends: int) -> dict[str, object]:
    """A kept completion as large as the trainer keeps one: 8 KiB of text, 1 KiB of feedback and of
    message from each backend."""
    return {
        "prompt_id": f"p{n}", "index": n, "text": f"{n:03d}" + "x" * 8189, "text_truncated": True,
        "finish_reason": "length", "completion_tokens": 512, "reward": 0.5, "reward_valid": True,
        "scores": [{"backend": f"b{i}", "weight": 1.0, "score": 0.5, "scored": True, "status": "ok",
                    "feedback": "f" * 1024, "message": "m" * 1024} for i in range(backends)],
    }


@pytest.mark.parametrize(("max_message_mib", "backends", "fit"), [(1, 4, 63), (64, 40, 45)])
def test_samples_past_the_message_limit_are_left_out_and_counted(
    make_api: Callable[..., Api], max_message_mib: int, backends: int, fit: int
) -> None:
    # 64 samples with 4 backends' feedback weigh about 1.1 MiB: over a server limit of 1 MiB. With 40
    # backends, about 5.4 MiB: over gRPC clients' default receive limit of 4 MiB (this channel's).
    api = make_api(limits=ApiLimits(max_message_bytes=max_message_mib * 1024 * 1024))
    api.store.record_step(done(1), samples=[big_sample(n, backends) for n in range(64)], keep_sample_steps=10)
    resp = api.stub.StepStatus(trainer_pb2.StepStatusRequest(step=1, include_samples=True))
    limit = min(4, max_message_mib) * 1024 * 1024
    assert [s.prompt_id for s in resp.samples] == [f"p{n}" for n in range(fit)]  # the first ones, in order
    assert resp.samples_left_out == 64 - fit
    next_one = sample_to_proto(big_sample(fit, backends)).ByteSize()
    assert resp.ByteSize() <= limit < resp.ByteSize() + next_one  # as many as fit: one more would not
    assert resp.samples[-1].text.startswith(f"{fit - 1:03d}") and len(resp.samples[-1].scores) == backends
    assert api.stub.StepStatus(trainer_pb2.StepStatusRequest(step=1)).samples_left_out == 0  # not asked for
    out = io.StringIO()
    assert main(["--target", f"127.0.0.1:{api.port}", "status", "--step", "1", "--samples"], out=out) == 0
    text = out.getvalue()
    assert text.count("--- prompt ") == fit and f"{64 - fit} more sample(s) of this step left out" in text, text[-400:]


def test_samples_that_fit_are_all_sent(api: Api) -> None:
    api.store.record_step(done(1), samples=[big_sample(n, 1) for n in range(64)], keep_sample_steps=10)
    resp = api.stub.StepStatus(trainer_pb2.StepStatusRequest(step=1, include_samples=True))
    assert len(resp.samples) == 64 and resp.samples_left_out == 0
