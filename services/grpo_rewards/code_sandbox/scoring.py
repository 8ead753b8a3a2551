"""Turn what a sandbox run reported into a score, a status and feedback. Pure functions, no I/O.

A test passes only on positive evidence: an assert outside loops that held, the asserts of a loop that
finished, an io case whose output matched, or every assert not seen failing once the runner said the
test code ran to its end. Whatever the run did not reach (it timed out, crashed, exited early, flooded
its output) counts as failed, so a program cannot gain by ending the run.

TIMEOUT and RESOURCE_EXHAUSTED rest only on what the program cannot write: the runner's own timer, the
host's wall-clock kill, the kernel's CPU-time kill (with the CPU time used), and for memory a MemoryError
the runner saw together with the kernel's peak resident memory near the limit. Neither a program's
output ("MemoryError" on stderr) nor its exit status (os._exit(152), which reads as death by SIGXCPU)
counts: a program must not pick its own status (the trainer scores both statuses of a code item like OK,
but a client that skips them as infrastructure failures would let a wrong program hide its zero).
"""

from __future__ import annotations

from dataclasses import dataclass

from grpo.reward.v1 import reward_pb2

from .config import ScoringMode
from .executor import RunRecord


@dataclass(frozen=True)
class Verdict:
    """The outcome of one item: ``score`` in [0, 1], a ``ScoreStatus``, feedback for the model and for
    people (the first failing test and a trimmed traceback), and the test counts."""

    score: float
    status: int
    feedback: str
    status_message: str
    tests_passed: int
    tests_total: int
    output_exceeded: bool = False

    def to_result(self, item_id: str, elapsed_s: float) -> reward_pb2.ScoreResult:
        """The wire form, echoing ``item_id``."""
        components = {"tests_passed": float(self.tests_passed), "tests_total": float(self.tests_total),
                      "seconds": round(elapsed_s, 4)}
        if self.output_exceeded:
            components["output_exceeded"] = 1.0
        return reward_pb2.ScoreResult(
            id=item_id, score=self.score, status=self.status,  # type: ignore[arg-type]
            feedback=self.feedback, status_message=self.status_message, components=components)


def trim(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, keeping its start and its end."""
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head - 25
    return text[:head] + "\n... [trimmed] ...\n" + text[-tail:]


def verdict_from_run(run: RunRecord, *, scoring: ScoringMode, timeout_s: float, flood_output_bytes: int,
                     feedback_bytes: int = 2048) -> Verdict:
    """Aggregate the runner's events (see inner/runner.py) into a verdict."""
    if run.killed == "shutdown":
        return Verdict(0.0, reward_pb2.SCORE_STATUS_INTERNAL, "",
                       "the service stopped before this item finished (its sandbox was killed)", 0, 0)
    plan = next((e for e in run.events if e["e"] == "plan"), None)
    invalid = next((e for e in run.events if e["e"] == "invalid"), None)
    if invalid is not None:
        return Verdict(0.0, reward_pb2.SCORE_STATUS_INVALID_INPUT, trim(str(invalid.get("fb", "")), feedback_bytes),
                       "the tests cannot be run: " + trim(str(invalid.get("fb", "")), 200), 0, 0)
    if plan is None:
        if run.killed == "timeout":
            # The runner never started within the deadline: the sandbox itself is at fault.
            return Verdict(0.0, reward_pb2.SCORE_STATUS_INTERNAL, "",
                           f"the sandbox did not start within {timeout_s:g} s", 0, 0)
        return Verdict(0.0, reward_pb2.SCORE_STATUS_INTERNAL, "",
                       trim(f"the sandbox failed (exit status {run.exit_code}): {run.stderr.strip()}", 500), 0, 0)

    asserts = plan.get("asserts") or []
    n_asserts, n_io = len(asserts), int(plan.get("io", 0))
    total = n_asserts + n_io
    deferred = {i for i, (_, is_deferred) in enumerate(asserts) if is_deferred}
    passed: set[int] = set()
    failed: set[int] = set()
    first_failure = ""
    abort_text = timeout_text = ""
    out_of_memory = asserts_done = io_output_exceeded = False
    for event in run.events:
        kind = event["e"]
        if kind == "held" and event.get("t") not in deferred:
            passed.add(int(event["t"]))
        elif kind == "settle":
            passed.update(int(t) for t in event.get("t", []))
        elif kind == "pass":
            passed.add(int(event["t"]))
        elif kind == "fail":
            failed.add(int(event["t"]))
            first_failure = first_failure or str(event.get("fb", ""))
        elif kind == "done" and event.get("part") == "asserts":
            asserts_done = True
        elif kind == "abort":
            abort_text = abort_text or str(event.get("fb", ""))
        elif kind == "timeout":
            timeout_text = timeout_text or str(event.get("fb", ""))
        elif kind == "memory":
            out_of_memory = True
        elif kind == "output":  # an io case's program stopped at the cap (its failure says so)
            io_output_exceeded = True
    # When check() ran to its end the runner settled every assert that held: one that neither held nor
    # failed never ran (a helper's untaken branch: EvalPlus's exact-match or allclose assert), no test of
    # this program, left out of the total. It was counted as passed: a program wrong on every input got
    # half marks.
    not_run = set(range(n_asserts)) - passed - failed if asserts_done else set()
    passed = {t for t in passed - failed - not_run if 0 <= t < total}
    total -= len(not_run)

    timed_out = bool(timeout_text) or run.killed == "timeout" or run.out_of_cpu
    output_exceeded = run.killed == "output" or io_output_exceeded
    # The runner saw a MemoryError; believed only with the kernel's word that memory really ran short.
    out_of_memory = out_of_memory and run.memory_near_limit

    notes = []
    if run.killed == "output":
        notes.append(f"the program wrote more than {flood_output_bytes} bytes of output and was stopped")
    if run.out_of_cpu and not timeout_text:
        timeout_text = f"ran out of CPU time ({run.cpu_s:.1f} s of CPU) and was killed"
    if timed_out and not timeout_text:
        timeout_text = f"timed out after {timeout_s:g} s"
    feedback = first_failure or abort_text or timeout_text
    if first_failure and timeout_text:
        notes.append(timeout_text)
    if not feedback and len(passed) < total and not output_exceeded:
        feedback = f"the test run ended early (exit status {run.exit_code}); unfinished tests count as failed"
    if not feedback and total == 0 and not_run:
        feedback = f"check() returned without running any of its {len(not_run)} asserts"
    elif not feedback and len(passed) == total:
        feedback = f"all {total} tests passed"
    feedback = "\n".join(part for part in [*notes, feedback] if part)

    if out_of_memory:
        status, message = reward_pb2.SCORE_STATUS_RESOURCE_EXHAUSTED, "the program ran out of memory"
    elif timed_out:
        status, message = reward_pb2.SCORE_STATUS_TIMEOUT, f"the program did not finish within {timeout_s:g} s"
    else:
        status, message = reward_pb2.SCORE_STATUS_OK, ""
    n_passed = len(passed)
    if scoring == "all_or_nothing":
        score = 1.0 if total and n_passed == total else 0.0
    else:
        score = n_passed / total if total else 0.0
    return Verdict(score, status, trim(feedback, feedback_bytes), message, n_passed, total, output_exceeded)
