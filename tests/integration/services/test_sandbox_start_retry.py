"""A sandbox bwrap cannot create for a passing shortage is tried again. Under load the service failed
items as INTERNAL with "bwrap: Creating new namespace failed: Resource temporarily unavailable" (EAGAIN
from clone(): as root each run has the slot's own uid, whose process limit still counts the processes of
the run before while they exit), and the trainer counted each such item as a failed attempt of its prompt:
a soak at load 3-5 on 2 cores failed 45 prompts for good. Reproduced here for real: processes of the
slot's uid hold its whole process limit, then exit while the service waits to try again."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time

import pytest

from grpo_rewards.code_sandbox.config import SandboxConfig
from grpo_rewards.code_sandbox.executor import Job, Sandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="slot uids (and their process limit) exist only as root")

PROCESSES = 8


def hold_slot_uid(uid: int, count: int) -> list[subprocess.Popen]:
    """`count` sleeping processes of `uid`: with the run's limit of `count` processes, bwrap's clone fails."""
    procs = [subprocess.Popen(["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                               "sleep", "60"]) for _ in range(count)]
    time.sleep(0.3)  # each has exec'd sleep as `uid`
    return procs


def release(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait(10)


def test_a_sandbox_bwrap_could_not_create_for_a_passing_shortage_is_tried_again() -> None:
    config = SandboxConfig(workers=1, max_processes=PROCESSES)
    sandbox = Sandbox(config)
    job = Job(code="print(6 * 7)\n", io_cases=(("", "42"),), timeout_s=10.0)
    held = hold_slot_uid(config.uid_base, PROCESSES)
    failed_first = threading.Event()

    class ReleaseOnFirstFailure(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:  # the service's warning, before it waits 0.1 s
            if "could not start" in record.getMessage() and not failed_first.is_set():
                failed_first.set()
                release(held)

    handler = ReleaseOnFirstFailure()
    logging.getLogger("grpo_rewards.code_sandbox").addHandler(handler)
    try:
        run = sandbox.run(job)
    finally:
        logging.getLogger("grpo_rewards.code_sandbox").removeHandler(handler)
        release(held)
        sandbox.close()
    assert failed_first.is_set(), "the first try was not refused: nothing was tried again"
    assert run.exit_code == 0 and not run.killed, (run.exit_code, run.killed, run.stderr)
    assert [e["e"] for e in run.events][:1] == ["plan"], run.events


def test_a_shortage_that_lasts_still_fails_the_item_with_bwrap_s_reason() -> None:
    config = SandboxConfig(workers=1, max_processes=PROCESSES)
    sandbox = Sandbox(config)
    job = Job(code="print(6 * 7)\n", io_cases=(("", "42"),), timeout_s=10.0)
    held = hold_slot_uid(config.uid_base, PROCESSES)
    try:
        started = time.monotonic()
        run = sandbox.run(job)
        elapsed = time.monotonic() - started
    finally:
        release(held)
        sandbox.close()
    assert not run.events and "Resource temporarily unavailable" in run.stderr, run.stderr
    assert 1.4 < elapsed < 10, elapsed  # three more tries, 0.1 + 0.4 + 1.0 s apart


def test_the_start_check_tries_a_passing_shortage_again() -> None:
    """The service's start check (one empty sandbox) took a passing shortage for a host that cannot run
    sandboxes, and refused to start: seen in a full suite run while another sandbox's processes of the
    slot uid were still exiting."""
    config = SandboxConfig(workers=1, max_processes=PROCESSES)
    held = hold_slot_uid(config.uid_base, PROCESSES)
    timer = threading.Timer(0.2, release, args=(held,))
    timer.start()
    try:
        sandbox = Sandbox(config)  # the first try fails with EAGAIN; the slot frees up; the next starts
    finally:
        timer.join()
        release(held)
    sandbox.close()
