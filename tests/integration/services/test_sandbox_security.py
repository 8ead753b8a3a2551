"""The code sandbox against hostile programs, one attack per test, through the real service (its own
process, real bubblewrap, seccomp and rlimits). Each attack must be contained, come back with its
status, and leave the service answering a normal item.

Every attack runs against each way the service is deployed (``sandbox_modes``): as root, and as the
Helm chart runs it, uid 10001 with no capabilities and no_new_privs, with a fresh /proc and with a
masked /proc (Kubernetes' default, the sandbox then has no /proc).

Each hostile program is the candidate of a test whose check asserts the attack's outcome: a score of
1.0 means the program itself saw the attack fail. Where the host can look too (the listener, the files,
the server process, the feedback text), the test checks from outside as well.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
import sandbox_modes
from reward_service_kit import REPO, EntryPoint, item, reward_stub

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")

SECRET = f"grpo-secret-{uuid.uuid4().hex}"
TIMEOUT_S = 2.0
# Everything the service does beyond the program's own time: sandbox start, kill, reap, gRPC.
SLACK_S = 3.0
EXPECT_BLOCKED = "def check(candidate):\n    assert candidate() == 'blocked'\n"


@pytest.fixture(scope="module", params=sandbox_modes.modes())
def mode(request: pytest.FixtureRequest) -> sandbox_modes.Mode:
    return request.param


@pytest.fixture(scope="module")
def service(mode: sandbox_modes.Mode) -> Iterator[EntryPoint]:
    svc = sandbox_modes.start(mode, "--listen", "127.0.0.1:0", "--workers", "2",
                              env={"GRPO_SANDBOX_TEST_SECRET": SECRET})
    yield svc
    assert svc.terminate() == 0
    assert SECRET not in svc.text


@pytest.fixture(scope="module")
def stub(service: EntryPoint) -> Iterator[reward_pb2_grpc.RewardServiceStub]:
    with grpc.insecure_channel(service.address) as channel:
        yield reward_stub(channel)


def attack(stub: reward_pb2_grpc.RewardServiceStub, program: str, test_code: str = EXPECT_BLOCKED,
           timeout: float = TIMEOUT_S) -> tuple[reward_pb2.ScoreResult, float]:
    """Score ``program`` (defining ``f``) and return the result and the seconds the call took."""
    started = time.monotonic()
    (result,) = stub.Score(reward_pb2.ScoreRequest(items=[item("attack", program, code=reward_pb2.CodeTests(
        test_code=test_code, entry_point="f", timeout_seconds=timeout))]), timeout=60).results
    elapsed = time.monotonic() - started
    assert elapsed < timeout + SLACK_S
    assert SECRET not in result.feedback and SECRET not in result.status_message
    return result, elapsed


@pytest.fixture(autouse=True)
def still_serving_afterwards(request: pytest.FixtureRequest, service: EntryPoint) -> Iterator[None]:
    """After every attack: the service process is alive and scores a normal item."""
    yield
    assert service.proc.poll() is None, "the service died"
    stub = request.getfixturevalue("stub")
    (ok,) = stub.Score(reward_pb2.ScoreRequest(items=[item("normal", "def f():\n    return 'blocked'\n",
                       code=reward_pb2.CodeTests(test_code=EXPECT_BLOCKED, entry_point="f"))]), timeout=60).results
    assert (ok.status, ok.score) == (reward_pb2.SCORE_STATUS_OK, 1.0)


def sandbox_processes_left(service: EntryPoint) -> list[str]:
    """Processes of the per-slot sandbox uids (61000 + slot, as root) and the service's descendants (it
    reaps orphaned sandboxes: the only mark of a run as non-root, which shares the service's uid), but
    not the service's own spawner (the process that forks the sandboxes: see spawner.py)."""
    pids: set[int] = set()
    with contextlib.suppress(psutil.NoSuchProcess):
        pids = {p.pid for p in psutil.Process(service.proc.pid).children(recursive=True)}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if 61000 <= os.stat(f"/proc/{name}").st_uid < 61100:
                pids.add(int(name))
        except OSError:
            continue
    left = []
    for pid in sorted(pids):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if "/code_sandbox/spawner.py\0" not in cmdline:
                left.append(cmdline)
        except OSError:
            continue
    return left


def test_the_service_runs_with_the_modes_privileges(service: EntryPoint, mode: sandbox_modes.Mode) -> None:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{service.proc.pid}/status").read_text().splitlines())
    assert status["Uid"].split()[0] == str(mode.uid)
    if mode.uid != 0:
        assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0 or mode.name == "self"
        assert status["NoNewPrivs"].strip() == "1" or mode.name == "self"


def test_connecting_to_a_host_listener_is_blocked(stub) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        program = (f"import socket\ndef f():\n    try:\n        socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                   "        return 'connected'\n    except OSError as exc:\n        return 'blocked'\n")
        result, _ = attack(stub, program)
        assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected


def test_internet_sockets_cannot_even_be_created(stub) -> None:
    # Every family but AF_UNIX: IPv4 and IPv6, netlink (the kernel's routing and more, open to any user) and
    # raw packets. (IPv6 alone was tried: a filter refusing only it passed.)
    program = ("import socket\ndef f():\n    made = []\n"
               "    for family, kind, proto in ((socket.AF_INET, socket.SOCK_STREAM, 0), (socket.AF_INET6, socket.SOCK_DGRAM, 0),\n"
               "                                (socket.AF_NETLINK, socket.SOCK_RAW, 0), (socket.AF_PACKET, socket.SOCK_RAW, 0)):\n"
               "        try:\n            socket.socket(family, kind, proto).close()\n            made.append(family.name)\n"
               "        except PermissionError:\n            pass\n"
               "    return 'blocked' if not made else 'created ' + ', '.join(made)\n")
    result, _ = attack(stub, program)
    assert result.score == 1.0, result.feedback


def test_dns_lookup_fails(stub) -> None:
    program = ("import socket\ndef f():\n    try:\n        socket.getaddrinfo('example.com', 443)\n"
               "        return 'resolved'\n    except OSError:\n        return 'blocked'\n")
    result, _ = attack(stub, program)
    assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback


# What the sandbox's root may hold: the system's programs and libraries (read-only), its own /dev, /tmp and
# /proc (none under a masked /proc), /etc with only the alternatives links, and the runner's files.
SANDBOX_ROOT = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sandbox", "sbin", "tmp", "usr"}


def test_nothing_of_the_host_file_system_but_its_system_files_is_visible(stub) -> None:
    """Only writes and /etc/shadow were tried: a sandbox that saw the whole host read-only (the service's
    files, a mounted TLS key, this repository) passed the battery."""
    readme = REPO / "README.md"
    program = ("import os\ndef f():\n"
               f"    extra = sorted(set(os.listdir('/')) - set({sorted(SANDBOX_ROOT)!r}))\n"
               "    etc = sorted(set(os.listdir('/etc')) - {'alternatives'})\n"
               f"    host = [p for p in ({str(readme)!r}, '/root', '/home', '/var', '/run', '/work', '/srv') if os.path.exists(p)]\n"
               "    return 'blocked' if not (extra or etc or host) else repr((extra, etc, host))\n")
    result, _ = attack(stub, program)
    assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback


def test_etc_shadow_cannot_be_read(stub) -> None:
    program = ("def f():\n    try:\n        return open('/etc/shadow').read()\n"
               "    except OSError:\n        return 'blocked'\n")
    result, _ = attack(stub, program)
    assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback
    assert "root:" not in result.feedback


def test_the_services_environment_never_reaches_the_program(stub) -> None:
    # The program dumps every environment it can find; the test fails so the dump lands in feedback.
    program = ("import os\ndef f():\n    found = [repr(dict(os.environ))]\n"
               "    for pid in (os.listdir('/proc') if os.path.isdir('/proc') else []):\n        try:\n"
               "            found.append(open(f'/proc/{pid}/environ').read())\n        except (OSError, ValueError):\n"
               "            pass\n    return ' '.join(found)\n")
    result, _ = attack(stub, program, test_code="def check(candidate):\n    assert candidate() == ''\n")
    assert result.status == reward_pb2.SCORE_STATUS_OK
    assert "PATH" in result.feedback  # the dump is there...
    assert "GRPO_SANDBOX_TEST_SECRET" not in result.feedback  # ...without the service's secret


def test_writes_outside_the_work_dir_fail_and_the_work_dir_is_private(stub) -> None:
    marker = f"sandbox-escape-{uuid.uuid4().hex}"
    targets = ["/usr/" + marker, f"{REPO}/{marker}", "/" + marker, "/etc/" + marker, "/root/" + marker,
               "/tmp/" + marker]
    program = (f"def f():\n    wrote = []\n    for path in {targets!r}:\n        try:\n"
               "            open(path, 'w').write('x')\n            wrote.append(path)\n"
               "        except OSError:\n            pass\n"
               f"    return 'blocked' if wrote == ['/tmp/{marker}'] else repr(wrote)\n")
    result, _ = attack(stub, program)
    assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback
    for path in targets:  # the sandbox's /tmp is its own tmpfs: nothing appears on the host either
        assert not os.path.exists(path), path


def test_the_program_holds_only_its_streams_and_the_runners_events_pipe(stub) -> None:
    # Whatever the service or the process that forks the sandboxes had open (the socket it takes
    # requests on, another run's pipes, the runner's files) must not reach the program.
    program = ("import os, stat\ndef f():\n    held = []\n    for fd in range(4096):\n        try:\n"
               "            mode = os.fstat(fd).st_mode\n        except OSError:\n            continue\n"
               "        held.append((fd, 'chr' if stat.S_ISCHR(mode) else 'pipe' if stat.S_ISFIFO(mode) else 'other'))\n"
               "    return 'blocked' if [k for _, k in held] == ['chr', 'pipe', 'pipe', 'pipe'] else repr(held)\n")
    result, _ = attack(stub, program)
    assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback


FORK_BOMB = "import os\ndef f():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n"


def test_fork_bomb_is_contained_and_leaves_no_process(stub, service: EntryPoint) -> None:
    result, _ = attack(stub, FORK_BOMB)
    assert result.status in (reward_pb2.SCORE_STATUS_TIMEOUT, reward_pb2.SCORE_STATUS_OK), result
    assert result.score == 0.0
    deadline = time.monotonic() + 5
    while sandbox_processes_left(service) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes_left(service) == []


# Forks until the process limit refuses, then every process waits: it holds all the processes the
# limit allows (without spinning the CPU) until the sandbox is killed at its timeout.
HOLDING_FORK_BOMB = ("import os, time\ndef f():\n    while True:\n        try:\n            os.fork()\n"
                     "        except OSError:\n            time.sleep(60)\n")


def test_a_fork_bomb_does_not_starve_a_concurrent_run(stub, service: EntryPoint) -> None:
    # Two runs at once (--workers 2): the bomb holds every process its limit allows while the other run
    # forks 8 children of its own. The process limit is per run, so the normal run still gets them.
    bomb: list[reward_pb2.ScoreResult] = []
    thread = threading.Thread(target=lambda: bomb.append(attack(stub, HOLDING_FORK_BOMB, timeout=6.0)[0]))
    thread.start()
    deadline = time.monotonic() + 10
    while len(sandbox_processes_left(service)) < 32 and time.monotonic() < deadline:  # --max-processes
        time.sleep(0.1)
    assert len(sandbox_processes_left(service)) >= 32, "the bomb never reached its process limit"
    program = ("import os\ndef f():\n    pids = []\n    for i in range(8):\n        pid = os.fork()\n"
               "        if pid == 0:\n            os._exit(i)\n        pids.append(pid)\n"
               "    return sum(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids)\n")
    (normal,) = stub.Score(reward_pb2.ScoreRequest(items=[item("normal", program, code=reward_pb2.CodeTests(
        test_code="def check(candidate):\n    assert candidate() == 28\n", entry_point="f",
        timeout_seconds=10))]), timeout=60).results
    still_bombing = thread.is_alive()
    thread.join(timeout=30)
    assert (normal.status, normal.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), normal.feedback
    assert still_bombing, "the bomb ended before the normal run: the two did not overlap"
    assert bomb and bomb[0].score == 0.0


def test_process_limit_stops_forking(stub) -> None:
    program = ("import os, time\ndef f():\n    n = 0\n    try:\n        while n < 1000:\n"
               "            if os.fork() == 0:\n                time.sleep(30)\n                os._exit(0)\n"
               "            n += 1\n    except OSError:\n        return 'blocked' if n < 64 else n\n    return n\n")
    result, _ = attack(stub, program)
    assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback


def test_memory_bomb_is_resource_exhausted(stub) -> None:
    # 128 MiB blocks until the 512 MiB address-space limit refuses one (each block is zero-filled, so
    # this touches ~400 MiB: give it time on a busy machine).
    program = "def f():\n    hoard = []\n    while True:\n        hoard.append(bytearray(128 << 20))\n"
    result, _ = attack(stub, program, timeout=20)
    assert result.status == reward_pb2.SCORE_STATUS_RESOURCE_EXHAUSTED, result
    assert "MemoryError" in result.feedback


def test_endless_loop_is_killed_on_the_wall_clock(stub) -> None:
    program = "import time\ndef f():\n    while True:\n        time.sleep(0.01)\n"  # sleeps: no CPU limit helps
    result, elapsed = attack(stub, program)
    assert result.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert result.score == 0.0
    assert elapsed >= TIMEOUT_S
    assert f"timed out after {TIMEOUT_S:g} s" in result.feedback


def test_endless_loop_that_ignores_signals_is_still_killed(stub) -> None:
    program = ("import signal\ndef f():\n    for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGXCPU):\n"
               "        signal.signal(s, signal.SIG_IGN)\n    while True:\n        pass\n")
    result, elapsed = attack(stub, program)
    assert result.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert elapsed >= TIMEOUT_S


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_flood_is_cut_off(stub, stream: str) -> None:
    # Output past --max-output-bytes is dropped; at 256 times it (16 MiB) the run is a flood and stopped.
    program = f"import sys\ndef f():\n    while True:\n        sys.{stream}.write('x' * 65536)\n"
    result, elapsed = attack(stub, program)
    assert result.components["output_exceeded"] == 1.0
    assert result.score == 0.0
    assert f"the program wrote more than {256 * 65536} bytes of output and was stopped" in result.feedback
    assert elapsed < TIMEOUT_S  # stopped at the flood size, not at the timeout


def test_killing_other_processes_fails(stub, service: EntryPoint) -> None:
    # The service and this test process by their host pids (invisible in the sandbox's pid namespace),
    # then everything the program may signal.
    program = (f"import os, signal\ndef f():\n    hit = []\n    for pid in ({service.proc.pid}, {os.getpid()}):\n"
               "        try:\n            os.kill(pid, signal.SIGKILL)\n"
               "            hit.append(pid)\n        except OSError:\n            pass\n"
               "    try:\n        os.kill(-1, signal.SIGKILL)\n    except OSError:\n        pass\n"
               "    return 'blocked' if not hit else repr(hit)\n")
    result, _ = attack(stub, program)
    assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback
    assert service.proc.poll() is None


def test_proc_shows_only_the_sandbox(stub, service: EntryPoint, mode: sandbox_modes.Mode) -> None:
    # With --no-proc (a masked /proc) there is no /proc at all; otherwise it is the sandbox's own.
    expected = "blocked" if mode.proc_in_sandbox else "no proc"
    program = (f"import os\ndef f():\n    if not os.path.exists('/proc'):\n        return 'no proc'\n"
               "    pids = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
               f"    try:\n        open('/proc/{service.proc.pid}/cmdline').read()\n        return 'read the server'\n"
               "    except OSError:\n        pass\n    return 'blocked' if pids == ['1'] else repr(pids)\n")
    result, _ = attack(stub, program, test_code=f"def check(candidate):\n    assert candidate() == {expected!r}\n")
    assert (result.status, result.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), result.feedback


def test_runs_as_nobody_without_capabilities(stub) -> None:
    # capget(2) rather than /proc/self/status: the sandbox may have no /proc.
    program = ("import ctypes, os\ndef f():\n"
               "    header = (ctypes.c_uint32 * 2)(0x20080522, 0)\n    data = (ctypes.c_uint32 * 6)()\n"
               "    if ctypes.CDLL(None, use_errno=True).capget(header, data) != 0:\n        return 'capget failed'\n"
               "    caps = list(data)\n"
               "    ok = (os.getuid(), os.getgid()) == (65534, 65534) and caps == [0] * 6\n"
               "    return 'blocked' if ok else repr((os.getuid(), caps))\n")
    result, _ = attack(stub, program)
    assert result.score == 1.0, result.feedback


def test_ptrace_and_new_namespaces_are_refused_by_seccomp(stub) -> None:
    # clone() with a namespace flag (CLONE_NEWUSER: open to any user otherwise) is refused with EPERM, and
    # clone3, whose flags a filter cannot read, with ENOSYS; only unshare was tried, and a filter without
    # the clone rules passed. A clone that went through would return 0 in a child: it exits at once.
    program = ("import ctypes, errno, os, platform\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
               "    results = []\n    results.append(libc.ptrace(0, 0, 0, 0) == -1 and ctypes.get_errno() == errno.EPERM)\n"
               "    results.append(libc.unshare(0x10000000) == -1 and ctypes.get_errno() == errno.EPERM)\n"
               "    results.append(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == -1)\n"
               "    clone = {'x86_64': 56, 'aarch64': 220}[platform.machine()]\n"
               "    pid = libc.syscall(clone, 0x10000000 | 17, 0, 0, 0, 0)  # CLONE_NEWUSER | SIGCHLD\n"
               "    if pid == 0:\n        os._exit(0)\n"
               "    if pid > 0:\n        os.waitpid(pid, 0)\n"
               "    results.append(pid == -1 and ctypes.get_errno() == errno.EPERM)\n"
               "    results.append(libc.syscall(435, 0, 0) == -1 and ctypes.get_errno() == errno.ENOSYS)  # clone3\n"
               "    return 'blocked' if all(results) else repr(results)\n")
    result, _ = attack(stub, program)
    assert result.score == 1.0, result.feedback


def test_memory_outside_the_address_space_limit_is_refused(stub) -> None:
    """SysV shared memory (detached, it keeps its pages: one process once held 1 GiB under a 64 MiB
    limit), message queues, semaphores and memfds (written, never mapped) escape RLIMIT_AS: seccomp
    refuses them with EPERM. multiprocessing's POSIX shared memory still works, in the capped /dev/shm."""
    program = ("import ctypes, errno, os\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
               "    results = []\n"
               "    for call in (lambda: libc.shmget(0, 1 << 20, 0o1600), lambda: libc.msgget(0, 0o1600),\n"
               "                 lambda: libc.semget(0, 1, 0o1600)):\n"
               "        results.append(call() == -1 and ctypes.get_errno() == errno.EPERM)\n"
               "    try:\n        os.memfd_create('x')\n        results.append(False)\n"
               "    except PermissionError:\n        results.append(True)\n"
               "    from multiprocessing import shared_memory\n"
               "    shm = shared_memory.SharedMemory(create=True, size=4096)\n"
               "    shm.buf[0] = 7\n    results.append(shm.buf[0] == 7)\n    shm.close()\n    shm.unlink()\n"
               "    return 'blocked' if all(results) else repr(results)\n")
    result, _ = attack(stub, program)
    assert result.score == 1.0, result.feedback


def test_filling_the_work_dir_stops_at_its_size(stub) -> None:
    program = ("def f():\n    try:\n        for i in range(1000):\n            with open(f'/tmp/fill{i}', 'wb') as fh:\n"
               "                fh.write(b'x' * (8 << 20))\n        return 'filled'\n"
               "    except OSError:\n        return 'blocked'\n")
    result, _ = attack(stub, program)
    assert result.score == 1.0, result.feedback
