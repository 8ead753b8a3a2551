"""follow_steps' bookkeeping without a trainer (FollowState): where a new stream starts after a restart,
which reports it skips as yielded already, and which retention gaps it passes on. The same cases as the
Go client's follow_test.go and the TypeScript client's follow.test.ts; the restarts themselves, with a
real trainer killed and started again, are in tests/integration/clients."""

from __future__ import annotations

from grpo.trainer.v1 import trainer_pb2
from grpo_client.client import FollowState

RUNNING = trainer_pb2.STEP_STATE_RUNNING
COMPLETED = trainer_pb2.STEP_STATE_COMPLETED
FAILED = trainer_pb2.STEP_STATE_FAILED


def response(step: int, state: int, started_at: int, checkpoint: int, forgotten_through: int = 0
             ) -> trainer_pb2.WatchStepsResponse:
    """A WatchSteps message: `step`'s report started at second `started_at`, the run's checkpoint step."""
    out = trainer_pb2.WatchStepsResponse(forgotten_through=forgotten_through)
    out.step.step, out.step.state = step, state
    out.step.started_at.seconds, out.step.started_at.nanos = started_at, 7
    out.run.checkpoint_step = checkpoint
    return out


def admit_all(f: FollowState, *messages: trainer_pb2.WatchStepsResponse) -> list[int]:
    """Feed one stream's messages; the steps admitted, in order."""
    return [m.step.step for m in messages if f.admit(m)]


def test_resumes_after_the_lower_of_the_last_finished_step_and_the_checkpoint() -> None:
    f = FollowState(5)
    assert f.resume_after() == 5  # before any response: the caller's after_step
    admit_all(f, response(6, COMPLETED, 100, 4), response(7, COMPLETED, 110, 4))
    assert f.resume_after() == 4  # last 7, checkpoint 4: a restart runs 5-7 again
    admit_all(f, response(8, COMPLETED, 120, 8))
    assert f.resume_after() == 8


def test_a_step_that_only_started_does_not_move_the_resume_point() -> None:
    f = FollowState(0)
    admit_all(f, response(1, COMPLETED, 100, 1), response(2, RUNNING, 110, 1))
    assert f.resume_after() == 1


def test_skips_reports_yielded_before_and_keeps_the_new_run_of_a_step() -> None:
    f = FollowState(0)
    # The first trainer: steps 1-3 finish, the checkpoint is at 2; then it is killed.
    assert admit_all(f, response(1, COMPLETED, 100, 1), response(2, COMPLETED, 110, 2),
                     response(3, COMPLETED, 120, 2)) == [1, 2, 3]
    assert f.resume_after() == 2
    # The backlog after step 2 repeats step 3, then the restart turns it FAILED ("lost: ...") and runs it again.
    assert admit_all(f,
                     response(3, COMPLETED, 120, 2),  # yielded already: skipped
                     response(3, FAILED, 120, 2),  # the same run, now lost
                     response(3, COMPLETED, 130, 2),  # the new run
                     response(4, COMPLETED, 140, 4)) == [3, 3, 4]
    assert f.resume_after() == 4
    assert admit_all(f, response(5, COMPLETED, 150, 4), response(5, COMPLETED, 150, 4)) == [5]


def lost(step: int, started_at: int, checkpoint: int) -> trainer_pb2.WatchStepsResponse:
    """The report of a run of `step` that a restart turned FAILED."""
    out = response(step, FAILED, started_at, checkpoint)
    out.step.error = "lost: the trainer stopped before a checkpoint contained this step; its prompts went back"
    return out


def test_a_resumed_stream_does_not_repeat_what_the_caller_had_before_following() -> None:
    f = FollowState(10)  # the caller has the reports up to step 10
    assert admit_all(f, response(11, COMPLETED, 200, 8)) == [11]
    assert f.resume_after() == 8  # the next stream starts at the checkpoint, below the caller's 10
    # A dropped connection, no restart: steps 9 and 10 come again unchanged.
    assert admit_all(f, response(9, COMPLETED, 180, 8), response(10, COMPLETED, 190, 8),
                     response(11, COMPLETED, 200, 8), response(12, COMPLETED, 210, 8)) == [12]


def test_a_restart_after_the_follow_began_reports_again_what_the_caller_had() -> None:
    f = FollowState(10)
    assert admit_all(f, response(11, COMPLETED, 200, 8)) == [11]
    # The trainer restarts from checkpoint 8: steps 9-11 turn lost, then run again.
    assert admit_all(f, lost(9, 180, 8), lost(10, 190, 8), lost(11, 200, 8), response(9, COMPLETED, 300, 8),
                     response(10, COMPLETED, 310, 8), response(11, COMPLETED, 320, 8)) == [9, 10, 11, 9, 10, 11]


def test_forgets_steps_at_or_below_the_resume_point() -> None:
    f = FollowState(0)
    admit_all(f, response(1, COMPLETED, 100, 0), response(2, COMPLETED, 110, 0), response(3, COMPLETED, 120, 2))
    assert list(f.yielded) == [3]  # only step 3, after the checkpoint, can come again


def test_passes_on_a_gap_only_past_what_was_yielded() -> None:
    f = FollowState(2)
    # Retention deleted steps 3-5: the first stream says so on step 6.
    first = response(6, COMPLETED, 100, 6, forgotten_through=5)
    admit_all(f, first, response(7, COMPLETED, 110, 6), response(8, COMPLETED, 120, 6))
    assert first.forgotten_through == 5
    # The next stream starts after the checkpoint (6) and finds 7 deleted since: the caller has 7 and 8.
    assert admit_all(f, response(8, COMPLETED, 120, 8, forgotten_through=7)) == []
    after = response(9, COMPLETED, 130, 8)
    admit_all(f, after)
    assert after.forgotten_through == 0  # the caller missed none of the deleted steps
    lost = response(13, COMPLETED, 140, 13, forgotten_through=12)
    admit_all(f, lost)
    assert lost.forgotten_through == 12  # steps 10-12 deleted, past step 9
