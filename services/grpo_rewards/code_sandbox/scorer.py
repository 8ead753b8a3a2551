"""The code sandbox as a `Scorer` for the reward-service harness: checks each item, runs the valid ones
in the sandbox (``config.workers`` at a time) and turns each run into a result."""

from __future__ import annotations

import keyword
import logging
import math
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from importlib import metadata

from grpo.reward.v1 import reward_pb2
from grpo_rewards.common import call_abandoned, result_for
from grpo_rewards.common.reasoning import UNCLOSED, answer_part

from .config import SandboxConfig
from .executor import Job, Sandbox
from .extract import extract_code
from .scoring import verdict_from_run
from .workers import DaemonWorkers

# How often a call waiting for its items checks whether its client is still there, seconds.
ABANDON_POLL_S = 0.05

log = logging.getLogger("grpo_rewards.code_sandbox")

NAME = "code-sandbox"
SUPPORTED_LANGUAGES = ("", "python", "python3", "py")


def _version() -> str:
    try:
        return metadata.version("grpo-service")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def code_tests_bytes(tests: reward_pb2.CodeTests) -> int:
    """The size of ``tests`` as the trainer counts it (its ``limits.max_code_bytes``): UTF-8 bytes of
    ``test_code`` plus every io case's ``stdin`` and ``expected_stdout``."""
    return len(tests.test_code.encode()) + sum(len(case.stdin.encode()) + len(case.expected_stdout.encode())
                                               for case in tests.io_cases)


class CodeSandboxScorer:
    """Scores Python completions against ``reference.code`` in bubblewrap (see executor.py)."""

    def __init__(self, config: SandboxConfig, max_batch: int = 64) -> None:
        self.config = config
        self.sandbox = Sandbox(config)
        self.max_batch = max_batch
        # One pool for the whole service: a batch's items and concurrent requests share the workers.
        self._pool = DaemonWorkers(config.workers, name="sandbox")
        # Done once close() has run: score() calls still waiting then return without their items.
        self._closed: Future = Future()

    def describe(self) -> reward_pb2.DescribeResponse:
        """Name "code-sandbox", the package version, feedback on, scores in [0, 1]."""
        return reward_pb2.DescribeResponse(
            name=NAME, version=_version(),
            capabilities=reward_pb2.Capabilities(
                feedback=True, step_scores=False, max_batch_size=self.max_batch,
                reference_kinds=[reward_pb2.REFERENCE_KIND_CODE], score_min=0.0, score_max=1.0))

    def score(self, items: Sequence[reward_pb2.ScoreItem]) -> list[reward_pb2.ScoreResult]:
        """One result per item, in order. Items run concurrently on the service's workers. Once the
        scorer is closed, the items not finished come back INTERNAL at once. Once the call is abandoned
        (its client is gone: call_abandoned()), the items no worker has started are dropped, so they do
        not hold the workers other calls wait for; the running ones finish."""
        abandoned = call_abandoned()
        futures = [self._pool.submit(self.score_one, item) for item in items]
        pending = set(futures)
        while pending and not self._closed.done():
            _, pending = wait(pending | {self._closed}, timeout=ABANDON_POLL_S, return_when=FIRST_COMPLETED)
            pending.discard(self._closed)
            if pending and abandoned.is_set():
                for f in pending:
                    f.cancel()  # a running one is not cancelled, and finishes
                return [f.result() if f.done() and not f.cancelled() else
                        result_for(item, reward_pb2.SCORE_STATUS_INTERNAL, "not run: the call ended first")
                        for f, item in zip(futures, items, strict=True)]
        return [f.result() if f.done() and not f.cancelled() else _stopped(item)
                for f, item in zip(futures, items, strict=True)]

    def score_one(self, item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        """Check, run and score one item; never raises."""
        job_or_problem = self._job_for(item)
        if isinstance(job_or_problem, reward_pb2.ScoreResult):
            return job_or_problem
        job = job_or_problem
        if not job.code.strip():
            # Fences were there but held no Python: the model's answer, scored 0 (not masked).
            return reward_pb2.ScoreResult(
                id=item.id, score=0.0, status=reward_pb2.SCORE_STATUS_OK,
                feedback="no Python code block found in the completion"
                         + (f": {UNCLOSED}" if answer_part(item.completion).unclosed else ""),
                components={"tests_passed": 0.0, "tests_total": 0.0})
        try:
            run = self.sandbox.run(job)
        except OSError as exc:
            log.exception("sandbox failed to start for item %r", item.id)
            return reward_pb2.ScoreResult(id=item.id, status=reward_pb2.SCORE_STATUS_INTERNAL,
                                          status_message=f"the sandbox could not start: {exc}")
        verdict = verdict_from_run(run, scoring=self.config.scoring, timeout_s=job.timeout_s,
                                   flood_output_bytes=self.config.flood_output_bytes,
                                   feedback_bytes=self.config.feedback_bytes)
        return verdict.to_result(item.id, run.elapsed_s)

    def _job_for(self, item: reward_pb2.ScoreItem) -> Job | reward_pb2.ScoreResult:
        """The sandbox job for ``item``, or an INVALID_INPUT result saying which field is wrong."""

        def invalid(field: str, why: str) -> reward_pb2.ScoreResult:
            return reward_pb2.ScoreResult(id=item.id, status=reward_pb2.SCORE_STATUS_INVALID_INPUT,
                                          status_message=f"{field}: {why}")

        if item.WhichOneof("reference") != "code":
            return invalid("code", "this backend scores items whose reference is `code`")
        tests = item.code
        size = code_tests_bytes(tests)
        if size > self.config.max_code_bytes:
            # Checked first: nothing of an oversize item is compiled, cached or copied into a sandbox.
            return invalid("code", f"the tests are {size} bytes (test_code plus every io case's stdin and "
                                   f"expected_stdout, UTF-8); at most {self.config.max_code_bytes} are allowed "
                                   "(--max-code-bytes)")
        if tests.language.lower() not in SUPPORTED_LANGUAGES:
            return invalid("code.language", f"{tests.language!r} is not supported; only python")
        if not tests.test_code.strip() and not tests.io_cases:
            return invalid("code", "no tests: set code.test_code (with code.entry_point) or code.io_cases")
        if tests.test_code.strip() and not tests.entry_point.strip():
            return invalid("code.entry_point", "required with code.test_code (the function check() is "
                                               "called with)")
        if not tests.entry_point.isidentifier() and tests.test_code.strip():
            return invalid("code.entry_point", f"{tests.entry_point!r} is not a Python identifier")
        if keyword.iskeyword(tests.entry_point) and tests.test_code.strip():
            return invalid("code.entry_point", f"{tests.entry_point!r} is a Python keyword: no function can "
                                               "have that name")
        timeout = tests.timeout_seconds
        if math.isnan(timeout) or timeout < 0:
            return invalid("code.timeout_seconds", "must be >= 0 (0 means the default)")
        timeout = min(timeout or self.config.default_timeout_s, self.config.max_timeout_s)
        if not item.completion.strip():
            return invalid("completion", "empty: there is no code to run")
        code = extract_code(item.completion, tests.entry_point)
        return Job(code=code, test_code=tests.test_code if tests.test_code.strip() else "",
                   entry_point=tests.entry_point.strip(),
                   io_cases=tuple((c.stdin, c.expected_stdout) for c in tests.io_cases), timeout_s=timeout)

    def close(self) -> None:
        """Stop now (the harness calls this once its drain is over, or ran out): kill the sandboxes
        still running and reap them (a moment; at most 2 s), drop the items not started, and let Score
        calls still waiting return INTERNAL for their unfinished items. Nothing else is waited for: the
        worker threads are daemons, so one still compiling an item's tests does not keep the process
        alive."""
        self.sandbox.close()
        self._pool.close()
        if not self._closed.done():
            self._closed.set_result(None)


def _stopped(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
    return reward_pb2.ScoreResult(id=item.id, status=reward_pb2.SCORE_STATUS_INTERNAL,
                                  status_message="the service stopped before this item finished")
