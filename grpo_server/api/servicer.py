"""TrainerService: validates each request, converts it, calls the store, the run control, the reward
registry or the exporter, and converts the answer. No training logic lives here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from grpo.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from grpo_server.api import convert, errors
from grpo_server.api.auth import stream_refused
from grpo_server.api.errors import unary
from grpo_server.api.ports import BackendRegistry, Exporter, WeightsUnsafe, default_reward_pairs
from grpo_server.api.settings import ApiLimits
from grpo_server.api.validation import (
    PromptRoom,
    TokenCounter,
    ValidationFailed,
    Violation,
    exports_page_token,
    page_token,
    replayable_request_id,
    sent_digest,
    validate_backend,
    validate_backend_name,
    validate_cancel_prompts,
    validate_destination,
    validate_export_id,
    validate_list_exports,
    validate_list_prompts,
    validate_step_number,
    validate_submit,
)
from grpo_server.chat import prompt_token_counter
from grpo_server.control import ControlError, RunControl, RunState
from grpo_server.store import DuplicatePromptError, QueueFullError, RequestIdReusedError, Store
from grpo_server.types import PromptState, StepReport, StepState

log = logging.getLogger(__name__)

# What a StepStatus with samples may weigh: gRPC clients receive at most 4 MiB by default (grpcio,
# grpc-go, grpc-js), and a caller in another language has no reason to raise it for a status call.
SAMPLES_RESPONSE_BYTES = 4 * 1024 * 1024

WATCH_POLL_SECONDS = 1.0  # how often a stream checks that its client is still there
WATCH_RETRY_SECONDS = 5.0  # the retry delay of a WatchSteps refused for too many open streams


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """The trainer's gRPC API over its parts.

    store: the durable store; control: the run's shared state; registry: the reward-backend registry;
    exporter: writes HF checkpoint directories; limits: ApiLimits; default_rewards: (backend, weight)
    pairs for prompts that name none; tokenizer_getter: returns the model's tokenizer, or None while it
    loads (SubmitPrompts then answers UNAVAILABLE when prompt tokens are limited); metrics: optional,
    with `prompts_submitted` (Counter) and `queue_depth` (Gauge); chat_template_kwargs: the chat template's
    extra variables (model.chat_template_kwargs), for counting prompt tokens as the rollouts render them.
    """

    def __init__(
        self,
        *,
        store: Store,
        control: RunControl,
        registry: BackendRegistry,
        exporter: Exporter,
        limits: ApiLimits | None = None,
        default_rewards: Sequence[Any] = (),
        tokenizer_getter: Callable[[], Any] | None = None,
        metrics: Any = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        room_getter: Callable[[], PromptRoom | None] | None = None,
    ) -> None:
        self.store = store
        self.control = control
        self.registry = registry
        self.exporter = exporter
        self.limits = limits or ApiLimits()
        self._limits_proto = convert.server_limits(self.limits)  # constant: every RunStatus carries it
        self.default_rewards = default_reward_pairs(default_rewards)
        self.tokenizer_getter = tokenizer_getter
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.room_getter = room_getter  # the model's context less the completion length, once it is loaded
        self.metrics = metrics
        self._counter: tuple[Any, TokenCounter] | None = None
        self._watch_lock = threading.Lock()
        self._watch_streams = 0  # WatchSteps streams open now (each holds a handler thread)

    # ------------------------------------------------------------------------------ prompts

    def _token_counter(self, room: PromptRoom | None) -> TokenCounter | None:
        """What counts a prompt's tokens for the checks; None when there is none to make. While the model
        loads there is no tokenizer: UNAVAILABLE when limits.max_prompt_tokens asks for a count, else the
        prompt is taken uncounted (the trainer fails one too long for the context when a step leases it)."""
        if self.limits.max_prompt_tokens <= 0 and room is None:
            return None
        tokenizer = self.tokenizer_getter() if self.tokenizer_getter else None
        if tokenizer is None:
            if self.limits.max_prompt_tokens <= 0:
                return None
            raise errors.unavailable("the model's tokenizer is still loading; retry shortly", 5.0)
        if self._counter is None or self._counter[0] is not tokenizer:
            self._counter = (tokenizer, prompt_token_counter(tokenizer, self.chat_template_kwargs))
        return self._counter[1]

    def _active_id_violations(self, request: trainer_pb2.SubmitPromptsRequest,
                              found: Sequence[Violation]) -> list[Violation]:
        """Violations for the ids of `request` already queued or leased, but for ids `found` names already
        (a request that failed validation never reaches the store's own check)."""
        named = {v.field for v in found}
        ids = [p.id for i, p in enumerate(request.prompts) if p.id and f"prompts[{i}].id" not in named]
        if not ids or len(request.prompts) > self.limits.max_prompts_per_request:
            return []
        active = {e.id for state in (PromptState.QUEUED, PromptState.LEASED)
                  for e in self.store.list_prompts(ids=ids, state=state, limit=len(ids))}
        return [v for v in _active_violations(request, active) if v.field not in named]

    @unary
    def SubmitPrompts(
        self, request: trainer_pb2.SubmitPromptsRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.SubmitPromptsResponse:
        """Validate and queue a batch of prompts (all or nothing); a retried request gets its first answer."""
        request_id = replayable_request_id(request, self.limits)
        sent = sent_digest(request.prompts) if request_id else None
        try:
            # A retry is answered before validation: it must not be refused for what changed since.
            result = self.store.replay(request_id, sent) if request_id and sent else None
            if result is None and self.control.state is RunState.FINISHED:
                # The loop leases nothing more: accepted, they would wait in silence for a restart.
                raise errors.failed_precondition(
                    "RUN_STATE", "run", "the run is finished (it reached training.max_steps): it trains no more "
                    "prompts; restart the trainer with a higher training.max_steps to queue more")
            if result is None:
                room = self.room_getter() if self.room_getter else None
                try:
                    valid = validate_submit(
                        request,
                        limits=self.limits,
                        registry=self.registry,
                        default_rewards=self.default_rewards,
                        count_tokens=self._token_counter(room),
                        room=room,
                    )
                except ValidationFailed as exc:
                    # Every bad field is listed: an id already queued too, which the store tells.
                    raise ValidationFailed(exc.violations + self._active_id_violations(request, exc.violations)) from None
                result = self.store.submit(valid.prompts, valid.request_id, self.limits.max_queue_depth, sent)
        except DuplicatePromptError as exc:
            raise errors.invalid_argument(_active_violations(request, set(exc.ids))) from None
        except RequestIdReusedError as exc:
            shown = ", ".join(exc.first_ids[:5]) + (f" and {len(exc.first_ids) - 5} more" if len(exc.first_ids) > 5 else "")
            raise errors.invalid_argument([Violation(
                "request_id",
                f"{exc.request_id!r} was first used for other prompts (it queued {shown}); a request id "
                "names one request, retried as it was: use a new request_id for new prompts",
            )]) from None
        except QueueFullError as exc:
            raise errors.resource_exhausted(
                f"the prompt queue is full ({exc.depth} of {exc.max_depth} waiting; {exc.requested} more "
                f"{'does' if exc.requested == 1 else 'do'} not fit); retry after {self.limits.retry_after_seconds:g} s",
                self.limits.retry_after_seconds,
            ) from None
        if not result.duplicate:
            if self.metrics is not None:
                self.metrics.prompts_submitted.inc(len(result.accepted_ids))
                self.metrics.queue_depth.set(result.queue_depth)
            self.control.notify_work()
        return trainer_pb2.SubmitPromptsResponse(
            accepted_ids=list(result.accepted_ids), queue_depth=result.queue_depth, duplicate=result.duplicate
        )

    @unary
    def ListPrompts(
        self, request: trainer_pb2.ListPromptsRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.ListPromptsResponse:
        """Submitted prompts and where each is, in submission order, a page at a time."""
        q = validate_list_prompts(request, self.limits)
        entries = self.store.list_prompts(ids=q.ids, state=q.state, after_seq=q.after_seq, limit=q.limit + 1)
        page = entries[: q.limit]
        more = len(entries) > q.limit
        return trainer_pb2.ListPromptsResponse(
            prompts=[convert.prompt_entry_to_proto(e) for e in page],
            next_page_token=page_token(page[-1].seq, request.ids, request.state) if more else "",
        )

    @unary
    def CancelPrompts(
        self, request: trainer_pb2.CancelPromptsRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.CancelPromptsResponse:
        """Take queued prompts out of the queue; say where each other id is."""
        result = self.store.cancel(validate_cancel_prompts(request, self.limits))
        if result.cancelled_ids:
            log.info("cancelled %d queued prompts: %s", len(result.cancelled_ids),
                     ", ".join(result.cancelled_ids[:10]) + (" ..." if len(result.cancelled_ids) > 10 else ""))
            if self.metrics is not None:
                self.metrics.prompts_cancelled.inc(len(result.cancelled_ids))
                self.metrics.queue_depth.set(result.queue_depth)
        return trainer_pb2.CancelPromptsResponse(
            cancelled_ids=list(result.cancelled_ids),
            not_cancelled=[convert.prompt_entry_to_proto(e) for e in result.not_cancelled],
            unknown_ids=list(result.unknown_ids),
            queue_depth=result.queue_depth,
        )

    # -------------------------------------------------------------------------------- steps

    @unary
    def StepStatus(
        self, request: trainer_pb2.StepStatusRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.StepStatusResponse:
        """One step (the latest by default) and the run."""
        validate_step_number(request.step, "step")
        if request.step == 0:
            report = self.store.latest_step()
        else:
            report = self.store.get_step(request.step)
            if report is None:
                forgotten = self.store.forgotten_steps()
                if request.step <= forgotten:
                    raise errors.not_found(
                        "step", str(request.step),
                        f"step {request.step}'s report is no longer kept (retention.step_reports_seconds deleted "
                        f"the reports of steps up to {forgotten})",
                    )
                latest = self.store.latest_step()
                raise errors.not_found(
                    "step", str(request.step),
                    f"step {request.step} has not run; the latest step is {latest.step if latest else 0}",
                )
        out = trainer_pb2.StepStatusResponse(run=self._run_status())
        if report is not None:
            out.step.CopyFrom(convert.step_to_proto(report))
            if request.include_samples:
                self._add_samples(out, [convert.sample_to_proto(s) for s in self.store.step_samples(report)])
        return out

    def _add_samples(self, out: trainer_pb2.StepStatusResponse, samples: list[trainer_pb2.CompletionSample]) -> None:
        """Add the samples that fit, in order, in SAMPLES_RESPONSE_BYTES and the server's message limit
        (64 samples of long text with many backends' feedback can pass either, and a response over the
        limit would fail the whole call); count the rest in `samples_left_out`."""
        room = min(SAMPLES_RESPONSE_BYTES, self.limits.max_message_bytes) - out.ByteSize() - 6  # samples_left_out's tag and varint
        kept = 0
        for sample in samples:
            n = sample.ByteSize()
            room -= 1 + max(1, (n.bit_length() + 6) // 7) + n  # tag, varint length, message
            if room < 0:
                break
            kept += 1
        out.samples.extend(samples[:kept])
        out.samples_left_out = len(samples) - kept

    @errors.stream
    def WatchSteps(
        self, request: trainer_pb2.WatchStepsRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.WatchStepsResponse]:
        """The finished steps after `after_step`, then each step as it finishes (and starts, with
        include_running), until the client cancels or the server shuts down. A step run again after a
        resume (same number, new start) is sent again; an unchanged report never is. The response
        headers go out at once, before any report: a client knows the trainer answered even while no
        step runs (the followers reset their give-up timer on them)."""
        validate_step_number(request.after_step, "after_step")
        with self._watch_lock:
            if self._watch_streams >= self.limits.max_watch_streams:
                raise errors.resource_exhausted(
                    f"{self._watch_streams} WatchSteps streams are open, the most this trainer serves at once "
                    f"(limits.max_watch_streams); retry after {WATCH_RETRY_SECONDS:g} s",
                    WATCH_RETRY_SECONDS, subject="watch_streams",
                )
            self._watch_streams += 1
        try:
            yield from self._watch(request, context)
        finally:
            with self._watch_lock:
                self._watch_streams -= 1

    def _watch(
        self, request: trainer_pb2.WatchStepsRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.WatchStepsResponse]:
        """WatchSteps once the stream is admitted."""
        # When the client goes away, the wait for the next step ends at once, so the stream frees its
        # handler thread and its place under limits.max_watch_streams now, not at the next poll: a
        # client that hangs up and watches again held two places for up to a second.
        ended = threading.Event()

        def on_end() -> None:
            ended.set()
            self.control.interrupt_waits()

        context.add_callback(on_end)
        context.send_initial_metadata(())
        seq = self.control.event_seq  # before the backlog read: nothing published after it is missed
        last_final = request.after_step
        # What this stream sent, to send a report again only when it changed: step -> (start, state) of
        # the final reports, and the (step, start) of the last RUNNING one. A trainer resumed from a
        # checkpoint runs the steps after it again under their numbers, so a step may come twice.
        sent: dict[int, tuple[float, StepState]] = {}
        sent_running: tuple[int, float] | None = None
        # While a page of stored reports is replayed, the run's status read once for the page: read per
        # report it took three store queries under the lock the training loop takes too (0.32 ms a report:
        # half a minute of replay for a run of 100k steps).
        page_status: trainer_pb2.RunStatus | None = None
        told_forgotten = 0  # the highest forgotten_through this stream has sent: each gap is told once

        def response(r: StepReport) -> trainer_pb2.WatchStepsResponse:
            nonlocal told_forgotten
            out = trainer_pb2.WatchStepsResponse(step=convert.step_to_proto(r), run=page_status or self._run_status())
            if r.step > last_final + 1:  # a gap: only retention.step_reports_seconds leaves one
                forgotten = self.store.forgotten_steps()
                # A RUNNING report moves no last_final: without told_forgotten the end of the step whose
                # start told the gap told it again.
                if forgotten > max(last_final, told_forgotten):
                    out.forgotten_through = told_forgotten = min(forgotten, r.step - 1)
            return out

        def final(r: StepReport) -> Iterator[trainer_pb2.WatchStepsResponse]:
            nonlocal last_final
            if r.step <= request.after_step:  # not asked for (a catch-up may start below it)
                return
            if sent.get(r.step) != (r.started_at, r.state):
                out = response(r)  # before last_final moves: it tells a gap
                last_final = r.step
                sent[r.step] = (r.started_at, r.state)
                if len(sent) > 1000:  # steps in a checkpoint are never run again: forget them
                    checkpoint = self.store.latest_checkpoint()
                    for n in [n for n in sent if checkpoint and n <= min(checkpoint.step, last_final)]:
                        del sent[n]
                yield out
            else:
                last_final = r.step

        def running(r: StepReport) -> Iterator[trainer_pb2.WatchStepsResponse]:
            nonlocal sent_running
            if r.step <= request.after_step:  # not asked for (a catch-up from the checkpoint starts below it)
                return
            if request.include_running and sent_running != (r.step, r.started_at):
                sent_running = (r.step, r.started_at)
                yield response(r)

        def catch_up(start: int) -> Iterator[trainer_pb2.WatchStepsResponse]:
            nonlocal page_status
            try:
                yield from pages(start)
            finally:
                page_status = None

        def pages(start: int) -> Iterator[trainer_pb2.WatchStepsResponse]:
            nonlocal page_status
            while True:
                backlog = self.store.steps_after(start, limit=500)
                page_status = self._run_status()
                finished = [r for r in backlog if r.state is not StepState.RUNNING]
                for r in backlog:
                    if r.state is StepState.RUNNING:
                        yield from running(r)
                        break  # a running step is the newest; what follows it is not final yet
                    yield from final(r)
                if len(finished) < 500:
                    return
                start = finished[-1].step

        yield from catch_up(last_final)
        while context.is_active() and not ended.is_set():
            refused = stream_refused()  # the token revoked since (checked at least once a poll)
            if refused is not None:
                raise errors.ApiError(*refused)
            # Read before the wait: once closed, one more pass sends what was published before close()
            # (a stream busy sending the previous report would otherwise end without the last step).
            closing = self.control.closed
            events, missed = self.control.wait_for_step(seq, timeout=WATCH_POLL_SECONDS, until=ended.is_set)
            if missed:  # a slow reader fell out of the event window: read the store instead
                seq = events[-1][0] if events else self.control.event_seq
                checkpoint = self.store.latest_checkpoint()
                # From the checkpoint on, in case the missed events re-ran steps this stream has sent.
                yield from catch_up(min(last_final, checkpoint.step if checkpoint else 0))
                continue
            for n, r in events:
                seq = n
                if r.state is StepState.RUNNING:
                    before = sent.get(r.step)
                    if before is not None and before[0] != r.started_at:
                        # A step this stream sent, run again after a resume: its new end is sent too.
                        last_final = min(last_final, r.step - 1)
                    if r.step > last_final:
                        yield from running(r)
                elif r.step > last_final:
                    yield from final(r)
            if closing:
                return

    # ------------------------------------------------------------------------------ exports

    @unary
    def ExportCheckpoint(
        self, request: trainer_pb2.ExportCheckpointRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.ExportCheckpointResponse:
        """Start (or, with `wait`, run) an export of the current weights."""
        validate_destination(request.destination)
        dest = request.destination or None
        try:
            info = self.exporter.start(dest, request.wait)
        except FileExistsError as exc:
            raise errors.failed_precondition("DESTINATION_NOT_EMPTY", request.destination, str(exc)) from None
        except WeightsUnsafe as exc:
            raise errors.failed_precondition("WEIGHTS_INCONSISTENT", "run", str(exc)) from None
        except RuntimeError as exc:
            raise errors.failed_precondition("RUN_NOT_READY", "run", str(exc)) from None
        except OSError as exc:  # the exporter's DestinationUnwritable names the path in its message
            path = getattr(exc, "destination", None) or request.destination
            message = str(exc) if hasattr(exc, "destination") else f"cannot write the export to {path}: {exc}"
            raise errors.failed_precondition("DESTINATION_UNWRITABLE", path, message) from None
        return trainer_pb2.ExportCheckpointResponse(export=convert.export_to_proto(info))

    @unary
    def GetExport(
        self, request: trainer_pb2.GetExportRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.GetExportResponse:
        """The progress of one export."""
        validate_export_id(request.export_id)
        info = self.exporter.get(request.export_id)
        if info is None:
            raise errors.not_found("export", request.export_id, f"no export with id {request.export_id!r} (never "
                                   "started, or its record deleted under retention.export_records_seconds)")
        return trainer_pb2.GetExportResponse(export=convert.export_to_proto(info))

    @unary
    def ListExports(
        self, request: trainer_pb2.ListExportsRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.ListExportsResponse:
        """The exports the store knows of, the newest first, a page at a time."""
        q = validate_list_exports(request)
        page, more_before = self.exporter.page(q.state, q.before, q.limit)
        return trainer_pb2.ListExportsResponse(
            exports=[convert.export_to_proto(info) for info in page],
            next_page_token=exports_page_token(more_before, request.state) if more_before else "",
        )

    # -------------------------------------------------------------------------- run control

    @unary
    def PauseTraining(
        self, request: trainer_pb2.PauseTrainingRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.PauseTrainingResponse:
        """Ask the loop to pause after the step in progress."""
        try:
            self.control.request_pause()
        except ControlError as exc:
            raise errors.failed_precondition("RUN_STATE", "run", str(exc)) from None
        return trainer_pb2.PauseTrainingResponse(run=self._run_status())

    @unary
    def ResumeTraining(
        self, request: trainer_pb2.ResumeTrainingRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.ResumeTrainingResponse:
        """Resume a paused run."""
        try:
            self.control.resume()
        except ControlError as exc:
            raise errors.failed_precondition("RUN_STATE", "run", str(exc)) from None
        return trainer_pb2.ResumeTrainingResponse(run=self._run_status())

    def _run_status(self) -> trainer_pb2.RunStatus:
        return convert.run_status(self.control, self.store, self._limits_proto)

    # ----------------------------------------------------------------------------- backends

    @unary
    def ListRewardBackends(
        self, request: trainer_pb2.ListRewardBackendsRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.ListRewardBackendsResponse:
        """The registry, sorted by name."""
        version, entries = self.registry.list()
        return trainer_pb2.ListRewardBackendsResponse(
            backends=[convert.backend_to_proto(b) for b in sorted(entries, key=lambda b: b.name)],
            registry_version=version,
        )

    @unary
    def SetRewardBackend(
        self, request: trainer_pb2.SetRewardBackendRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.SetRewardBackendResponse:
        """Add or replace one backend; the next step uses it."""
        if not request.HasField("backend"):
            raise errors.invalid_argument([Violation("backend", "required: the backend to add or replace")])
        try:
            validate_backend(request.backend)
            found: list[Violation] = []
        except ValidationFailed as exc:
            found = exc.violations
        # Read the files now: one the trainer cannot read would make every call to the backend fail as
        # an outage, skipping steps for ever, instead of a refusal the caller sees. Listed with the
        # other bad fields, as every bad field is.
        from grpo_server.rewards.client import unreadable_files

        named = {v.field for v in found}
        found += [Violation(v.field, v.description) for v in unreadable_files(request.backend, "backend.")
                  if v.field not in named]
        if found:
            raise errors.invalid_argument(found)
        try:
            version, stored = self.registry.set(convert.backend_from_proto(request.backend))
        except ValueError as exc:
            # A registry error may list its fields (`violations` with field/description); else one.
            found = [Violation(str(x.field), str(x.description)) for x in getattr(exc, "violations", ())]
            raise errors.invalid_argument(found or [Violation("backend", str(exc))]) from None
        log.info("reward backend %s set to %s (registry version %d)", stored.name, stored.address, version)
        return trainer_pb2.SetRewardBackendResponse(backend=convert.backend_to_proto(stored), registry_version=version)

    @unary
    def DeleteRewardBackend(
        self, request: trainer_pb2.DeleteRewardBackendRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.DeleteRewardBackendResponse:
        """Remove one backend."""
        validate_backend_name(request.name)
        try:
            version = self.registry.delete(request.name)
        except KeyError:
            raise errors.not_found("reward backend", request.name, f"no reward backend named {request.name!r}") from None
        log.info("reward backend %s deleted (registry version %d)", request.name, version)
        return trainer_pb2.DeleteRewardBackendResponse(registry_version=version)


def _active_violations(request: trainer_pb2.SubmitPromptsRequest, active: set[str]) -> list[Violation]:
    """A violation for each prompt of `request` whose id is in `active` (queued or being trained)."""
    return [
        Violation(
            f"prompts[{i}].id",
            f"prompt {p.id!r} is already queued or being trained; submit it again once it is trained, or use "
            "a new id",
        )
        for i, p in enumerate(request.prompts)
        if p.id in active
    ]
