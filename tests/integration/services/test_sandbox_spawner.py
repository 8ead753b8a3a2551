"""The code sandbox's spawner (services/grpo_rewards/code_sandbox/spawner.py), the process that forks
every sandbox: real processes, no bubblewrap needed here."""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import grpo_rewards
from grpo_rewards.code_sandbox.spawner import Spawner

PYTHON = "/usr/bin/python3"
LIST_FDS = ("import os, sys\nheld = []\nfor fd in range(4096):\n    try:\n        os.fstat(fd)\n"
            "    except OSError:\n        continue\n    held.append(fd)\nos.write(1, repr(held).encode())\n")


@pytest.fixture
def spawner():
    s = Spawner()
    yield s
    s.close()


def _pipe_output(read_fd: int, timeout: float = 5.0) -> bytes:
    """All that is written to the pipe until every write end is closed (the child's and any leaked)."""
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(deadline - time.monotonic(), 0))
            assert ready, f"the pipe is still open after {timeout} s (a write end leaked?): {out!r}"
            chunk = os.read(read_fd, 65536)
            if not chunk:
                return out
            out += chunk
    finally:
        os.close(read_fd)


# The two ways the spawner starts a child: posix_spawn (nothing to set up), fork and exec (a uid or rlimits
# to set first, as every sandbox has).
SETUPS = {"plain": {}, "limits": {"limits": [(resource.RLIMIT_CORE, 0, 0)]}}


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_the_child_holds_exactly_the_descriptors_handed_to_it(spawner, setup) -> None:
    # Received over the socket, the descriptors are not close-on-exec: each must be moved to its number
    # and the original closed, or it reaches the program at its old number too. The numbers overlap
    # those the spawner received them at.
    out_r, out_w = os.pipe()
    extra = os.memfd_create("x")
    devnull = os.open(os.devnull, os.O_RDONLY)
    handed = {0: devnull, 1: out_w, 2: out_w, 3: extra, 4: extra, 7: devnull}
    child = spawner.spawn([PYTHON, "-I", "-S", "-c", LIST_FDS], handed, **setup)
    for fd in (out_w, extra, devnull):
        os.close(fd)
    held = _pipe_output(out_r)
    assert child.wait(30)[0] == 0
    assert held == b"[0, 1, 2, 3, 4, 7]"


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_the_child_leads_its_own_session_and_is_counted_from_the_spawner(spawner, setup) -> None:
    # A new session, so that killing its process group takes the whole run. Its peak resident set is its
    # own: this process's peak (600 MiB here) is not carried into it, as vfork+exec from here would.
    hog = b"x" * (600 << 20)
    del hog
    out_r, out_w = os.pipe()
    child = spawner.spawn([PYTHON, "-I", "-S", "-c", "import os; os.write(1, b'%d %d' % (os.getsid(0), os.getpid()))"],
                          {1: out_w}, **setup)
    os.close(out_w)
    sid, pid = _pipe_output(out_r).split()
    assert sid == pid == str(child.pid).encode()
    exit_code, max_rss, cpu_s = child.wait(30)
    assert exit_code == 0 and 0 < max_rss < 100 << 20 and cpu_s >= 0


def test_exit_codes_and_signals_come_back_as_popen_gives_them(spawner) -> None:
    assert spawner.spawn([PYTHON, "-I", "-S", "-c", "raise SystemExit(3)"], {}).wait(30)[0] == 3
    killed = spawner.spawn([PYTHON, "-I", "-S", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], {})
    assert killed.wait(30)[0] == -signal.SIGKILL
    with pytest.raises(OSError, match="could not start /nonexistent/program: .*No such file"):
        spawner.spawn(["/nonexistent/program"], {})
    assert spawner.spawn([PYTHON, "-I", "-S", "-c", "pass"], {}).wait(30)[0] == 0  # and it still serves


SHOW_IDENTITY = ("import os, resource\n"
                 "limits = [resource.getrlimit(r) for r in (resource.RLIMIT_CPU, resource.RLIMIT_AS, "
                 "resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC, resource.RLIMIT_CORE)]\n"
                 "os.write(1, repr((os.getresuid(), os.getresgid(), os.getgroups(), limits)).encode())\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")
def test_with_a_uid_the_child_runs_as_that_uid_alone_under_the_limits_given(spawner) -> None:
    # What setpriv --reuid/--regid/--clear-groups and prlimit did in front of bwrap: every id the uid,
    # no supplementary group, the limits set (after the uid: the kernel checks RLIMIT_NPROC at the exec).
    limits = [(resource.RLIMIT_CPU, 5, 6), (resource.RLIMIT_AS, 1 << 30, 1 << 30), (resource.RLIMIT_NOFILE, 40, 40),
              (resource.RLIMIT_NPROC, 30, 30), (resource.RLIMIT_CORE, 0, 0)]
    out_r, out_w = os.pipe()
    child = spawner.spawn([PYTHON, "-I", "-S", "-c", SHOW_IDENTITY], {1: out_w}, uid=61234, limits=limits)
    os.close(out_w)
    shown = _pipe_output(out_r).decode()
    assert child.wait(30)[0] == 0
    assert shown == repr(((61234,) * 3, (61234,) * 3, [], [(5, 6), (1 << 30, 1 << 30), (40, 40), (30, 30), (0, 0)]))
    # The spawner itself kept its own ids and limits: the next plain child is root, unlimited as before.
    out_r, out_w = os.pipe()
    spawner.spawn([PYTHON, "-I", "-S", "-c", SHOW_IDENTITY], {1: out_w}).wait(30)
    os.close(out_w)
    uids, _, _, (cpu, *_) = eval(_pipe_output(out_r).decode())  # noqa: S307 - our own child's repr
    assert uids == (0, 0, 0) and cpu == resource.getrlimit(resource.RLIMIT_CPU)


def test_a_cpu_limit_given_ends_the_child_as_it_would_end_a_sandbox(spawner) -> None:
    # RLIMIT_CPU 1:2 s: SIGXCPU at one CPU second (Python dies of it), counted from the child's own start.
    child = spawner.spawn([PYTHON, "-I", "-S", "-c", "while True: pass"], {},
                          limits=[(resource.RLIMIT_CPU, 1, 2)])
    exit_code, _, cpu_s = child.wait(30)
    assert exit_code == -signal.SIGXCPU and 0.9 <= cpu_s < 2.5


def test_a_child_that_cannot_be_set_up_or_started_is_refused_with_its_reason(spawner) -> None:
    # The fork-and-exec child reports why it got no further (its exec, or a limit it may not set), and the
    # spawner goes on serving.
    with pytest.raises(OSError, match="could not start /nonexistent/program: .*No such file"):
        spawner.spawn(["/nonexistent/program"], {}, limits=[(resource.RLIMIT_CORE, 0, 0)])
    with pytest.raises(OSError, match="could not start .*: current limit exceeds maximum limit"):
        spawner.spawn([PYTHON, "-c", "pass"], {}, limits=[(resource.RLIMIT_CORE, 10, 5)])  # soft over hard
    assert spawner.spawn([PYTHON, "-I", "-S", "-c", "pass"], {}, limits=[(resource.RLIMIT_CORE, 0, 0)]).wait(30)[0] == 0


def test_a_spawner_that_dies_loses_its_runs_and_the_next_spawn_starts_a_new_one(spawner) -> None:
    sleeper = spawner.spawn([PYTHON, "-I", "-S", "-c", "import time; time.sleep(60)"], {})
    first = spawner.pid
    os.kill(first, signal.SIGKILL)
    started = time.monotonic()
    assert sleeper.wait(10) is None  # lost, promptly, not after the program's 60 s
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 10  # the sleeper died with it (its new session still ends: see below)
    while psutil.pid_exists(sleeper.pid) and psutil.Process(sleeper.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed spawner's child still runs"
        sleeper.kill_group()  # a plain program has no --die-with-parent: the service kills what it lost
        time.sleep(0.05)
    again = spawner.spawn([PYTHON, "-I", "-S", "-c", "pass"], {})
    assert again.wait(30)[0] == 0
    assert spawner.pid != first


def test_a_spawn_right_after_the_spawner_died_gets_a_new_spawner(spawner) -> None:
    # Before its reader has seen the old one go: the request is lost with it, and sent again to a new one.
    for _ in range(5):
        first = spawner.spawn([PYTHON, "-I", "-S", "-c", "pass"], {})
        assert first.wait(30)[0] == 0
        dead = spawner.pid
        os.kill(dead, signal.SIGKILL)
        child = spawner.spawn([PYTHON, "-I", "-S", "-c", "pass"], {})
        assert child.wait(30)[0] == 0
        assert spawner.pid != dead


def test_closing_ends_the_spawner_and_what_it_still_runs() -> None:
    s = Spawner()
    sleeper = s.spawn([PYTHON, "-I", "-S", "-c", "import time; time.sleep(60)"], {})
    spawner_pid = s.pid
    s.close()
    assert sleeper.wait(10) is None
    assert not psutil.pid_exists(spawner_pid)  # ended and reaped
    deadline = time.monotonic() + 10
    while psutil.pid_exists(sleeper.pid) and psutil.Process(sleeper.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the closed spawner's child still runs"
        time.sleep(0.05)
    with pytest.raises(OSError, match="closed"):
        s.spawn([PYTHON, "-c", "pass"], {})


def test_a_service_killed_outright_takes_the_spawner_and_its_children_with_it(tmp_path) -> None:
    # The service's end of the socket closes with the service, however it ends.
    script = tmp_path / "service.py"
    script.write_text(
        "import time\n"
        "from grpo_rewards.code_sandbox.spawner import Spawner\n"
        "s = Spawner()\n"
        f"c = s.spawn([{PYTHON!r}, '-I', '-S', '-c', 'import time; time.sleep(60)'], {{}})\n"
        "print(s.pid, c.pid, flush=True)\n"
        "time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(grpo_rewards.__file__).parents[1])}
    service = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        spawner_pid, child_pid = (int(x) for x in service.stdout.readline().split())
        service.kill()
        service.wait(10)
        deadline = time.monotonic() + 10
        for pid in (spawner_pid, child_pid):
            while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < deadline, f"{pid} still runs after the service was killed"
                time.sleep(0.05)
    finally:
        service.kill()
        service.wait()
