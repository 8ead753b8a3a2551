"""Closing the math verifier's worker pool while an item is being verified (the server stopping after
its drain time) starts no worker after: a worker started then outlived the server and kept the
multiprocessing forkserver and resource tracker alive with it (seen once: all three still running
24 minutes after the demo stopped on Ctrl-C)."""

from __future__ import annotations

import multiprocessing.forkserver
import os
import signal
import threading
import time
from pathlib import Path

from grpo_rewards.math_verifier.pool import CLOSED, VerifierPool
from grpo_rewards.math_verifier.worker import Verdict


def forkserver_children() -> set[int]:
    """Live (not zombie) children of this process's multiprocessing forkserver: the verifier workers."""
    server = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == server and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def test_closing_the_pool_mid_item_leaves_no_worker_running() -> None:
    pool = VerifierPool(1, item_timeout_s=30.0)
    [worker] = pool.worker_pids()
    others = forkserver_children() - {worker}  # other tests' pools share the forkserver
    os.kill(worker, signal.SIGSTOP)  # the item below stays in flight until close() kills the worker
    verdicts: list[Verdict] = []
    in_flight = threading.Thread(target=lambda: verdicts.append(pool.verify("1", "1")))
    in_flight.start()
    time.sleep(0.5)

    pool.close()
    in_flight.join(10)
    # The next item of the same batch, as the scorer asks for it after close. (It used to start a new
    # worker, verify the item, and leave the worker running.)
    after = pool.verify("2", "2")
    deadline = time.monotonic() + 10
    while (left := forkserver_children() - others) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == set(), f"verifier workers still running after close(): {left}"
    assert pool.worker_pids() == []
    assert verdicts == [CLOSED] and after == CLOSED
