"""A TrainerClient tries to reach a trainer that is down at least every few seconds
(MAX_RECONNECT_BACKOFF_SECONDS), not on gRPC's default backoff that grows to 2 minutes: a call made
while gRPC waits fails at once without trying, so follow_steps would find a restarted trainer late,
or give up on it."""

from __future__ import annotations

import itertools
import socket
import threading
import time

from grpo_client import TrainerClient
from grpo_client.client import MAX_RECONNECT_BACKOFF_SECONDS

WATCHED_SECONDS = 28.0  # gRPC's default backoff (1 s x 1.6^n, +-20%) waits about 10 s after the 16th second


def test_a_trainer_that_is_down_is_tried_again_every_few_seconds() -> None:
    # A port that takes each connection and closes it at once: the trainer cannot be reached, and every
    # attempt of the client's channel to connect is seen.
    listener = socket.create_server(("127.0.0.1", 0))
    attempts: list[float] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            attempts.append(time.monotonic())
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    client = TrainerClient(f"127.0.0.1:{listener.getsockname()[1]}")

    def follow() -> None:
        for _ in client.follow_steps(retry_seconds=0.2, give_up_seconds=None):
            pass

    follower = threading.Thread(target=follow, daemon=True)
    began = time.monotonic()
    follower.start()
    try:
        time.sleep(WATCHED_SECONDS)
    finally:
        ended = time.monotonic()
        client.close()
        listener.close()
    follower.join(10)
    assert not follower.is_alive(), "follow_steps did not end when its client was closed"
    times = [began, *attempts, ended]  # the wait before the first attempt and after the last count too
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(attempts) >= WATCHED_SECONDS / (MAX_RECONNECT_BACKOFF_SECONDS * 1.2), attempts
    # gRPC adds up to 20% jitter to each wait; the slack is for a loaded machine.
    assert max(gaps) <= MAX_RECONNECT_BACKOFF_SECONDS * 1.2 + 1.0, [round(g, 1) for g in gaps]
