"""The process that starts every sandbox, and the service's handle on it.

Why a process of its own: a program started from the service by vfork/posix_spawn (what
``subprocess`` does) shares the service's memory until it execs, and at the exec the kernel carries
that memory's peak into the new program's peak count, which wait4 reports as ``ru_maxrss``. So every
sandbox started from the service reported the service's own peak resident set (over a GiB after
compiling a large test set) as the program's, and a program that merely raised MemoryError got
RESOURCE_EXHAUSTED. Started from this small, single-threaded process (about 10 MB), a sandbox's count
starts there.

The spawner runs ``main()`` below in the service's interpreter (``python -I -S spawner.py FD``, stdlib
only). It talks with the service over a SOCK_SEQPACKET socket pair, one marshalled message each way:

- service -> spawner: ``(request_id, argv, targets, setup)`` with the file descriptors to hand over
  attached (SCM_RIGHTS); the child gets the i-th at number ``targets[i]`` (0, 1, 2 for its standard
  streams) and nothing else, in a new session, with an empty environment. ``setup`` is None or
  ``(uid, limits)``: the child drops to host uid ``uid`` (its gid the same, no supplementary groups;
  None keeps the spawner's) and then sets each ``(resource, soft, hard)`` rlimit before its exec.
- spawner -> service: ``("started", request_id, pid)`` or ``("failed", request_id, reason)`` (it
  could not be started: no such program, say), then
  ``("ended", request_id, wait status, peak resident set in KiB, CPU microseconds)`` when the child has
  ended: the kernel's wait4 accounting of it and of every descendant it reaped.

When the service goes away (the socket closes: a stop, a crash, SIGKILL) the spawner kills every
process group it started and exits; bwrap, its direct child, also dies with it (--die-with-parent).
"""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path

log = logging.getLogger("grpo_rewards.code_sandbox")

MAX_MESSAGE = 1 << 20
MAX_FDS = 16
START_TIMEOUT_S = 30.0
SPAWNER_ENDED = "the spawner ended"


# -- the spawner process (stdlib only: it runs with -I -S) ---------------------------------------------

def _start(argv: list[str], fds: list[int], targets: list[int], setup: tuple | None = None) -> int:
    """Start ``argv`` with ``fds[i]`` at number ``targets[i]``, in a new session; returns its pid.

    Without ``setup``, posix_spawn (vfork and exec). With it, fork and exec (`_fork_exec`). Either way
    the child's peak memory count starts from this small process's. The received descriptors are not
    close-on-exec: each is first moved out of the way of every target number (close-on-exec), the
    original closed, then dup2'd to its number in the child, so that none reaches the program at
    another number."""
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1024) for fd in fds]
    try:
        for fd in fds:
            os.close(fd)
        if setup is not None:
            return _fork_exec(argv, moved, targets, *setup)
        actions = [(os.POSIX_SPAWN_DUP2, src, dst) for src, dst in zip(moved, targets, strict=True)]
        return os.posix_spawn(argv[0], argv, {}, file_actions=actions, setsid=True)
    finally:
        for fd in moved:
            os.close(fd)


def _fork_exec(argv: list[str], moved: list[int], targets: list[int], uid: int | None,
               limits: list[tuple[int, int, int]]) -> int:
    """Fork; in the child: a new session, drop to ``uid`` (gid the same, no supplementary groups), set
    ``limits``, put ``moved[i]`` at ``targets[i]``, exec ``argv``. Returns the child's pid; raises
    OSError with the child's reason when it could not get as far as the exec.

    What util-linux ``setpriv`` and ``prlimit`` did in front of bwrap, in the same order (the uid first,
    so that the kernel checks RLIMIT_NPROC at the exec as it did), without their two execs (about 1.5 ms
    per sandbox). This process is single-threaded and small (fork copies about 10 MB of page tables),
    and the child runs only this function before its exec."""
    # Close-on-exec (the exec closes the child's end: EOF means it got there), and out of the way of every
    # target number, so that no dup2 lands on it.
    fresh = os.pipe()
    try:
        report_r, report_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1024) for fd in fresh)
    finally:
        for fd in fresh:
            os.close(fd)
    pid = os.fork()
    if pid == 0:  # the child: nothing but system calls until the exec, and never back into the loop
        try:
            os.setsid()
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            for which, soft, hard in limits:
                resource.setrlimit(which, (soft, hard))
            for src, dst in zip(moved, targets, strict=True):
                os.dup2(src, dst)  # inheritable: the program gets it
            os.execve(argv[0], argv, {})
        except BaseException as exc:  # noqa: BLE001 - anything, reported, then this child ends
            with suppress(BaseException):
                os.write(report_w, str(exc).encode(errors="replace")[:4096])
        finally:
            os._exit(127)
    os.close(report_w)
    try:
        reason = b""
        while chunk := os.read(report_r, 4096):
            reason += chunk
    finally:
        os.close(report_r)
    if reason:
        with suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise OSError(reason.decode(errors="replace"))
    return pid


def main(sock_fd: int) -> None:
    """Serve spawn requests on ``sock_fd`` until the service closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when this ends
    os.set_inheritable(sock_fd, False)  # handed over inheritable; no child may hold it (nor keep it open)
    sock = socket.socket(fileno=sock_fd)
    # A child's end wakes the poll below through SIGCHLD's wakeup pipe (not pidfds: a container's
    # seccomp profile may refuse pidfd_open).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    children: dict[int, int] = {}  # pid -> request id
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                with suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
                while children:
                    try:
                        pid, status, usage = os.wait4(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    request = children.pop(pid, None)
                    if request is not None:
                        cpu_us = round((usage.ru_utime + usage.ru_stime) * 1e6)
                        sock.send(marshal.dumps(("ended", request, status, usage.ru_maxrss, cpu_us)))
                continue
            try:
                message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
            except OSError:
                message, fds = b"", []
            if not message:  # the service is gone: so is everything it started
                for pid in children:
                    with suppress(OSError):
                        os.killpg(pid, signal.SIGKILL)
                os._exit(0)
            request, argv, targets, setup = marshal.loads(message)
            try:
                pid = _start(argv, fds, targets, setup)
            except OSError as exc:
                sock.send(marshal.dumps(("failed", request, str(exc))))
                continue
            children[pid] = request
            sock.send(marshal.dumps(("started", request, pid)))


# -- the service's side --------------------------------------------------------------------------------

class Child:
    """A process the spawner started. ``wait`` gives its end as the kernel counted it."""

    def __init__(self) -> None:
        self.pid = 0
        self.failed = ""
        self._started = threading.Event()
        self._ended = threading.Event()
        self._report: tuple[int, int, float] | None = None

    def wait(self, timeout: float | None = None) -> tuple[int, int, float] | None:
        """(exit code as ``Popen.returncode`` gives it, peak resident set in bytes, CPU seconds) of the
        child and the descendants it reaped; None when the spawner went away before it ended. Raises
        subprocess.TimeoutExpired when it has not ended within ``timeout``."""
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"sandbox {self.pid}", timeout or 0.0)
        return self._report

    def kill_group(self) -> None:
        """SIGKILL the child's process group (it leads a session of its own)."""
        if self.pid > 0:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)


class Spawner:
    """The service's handle on one spawner process. Thread-safe. ``spawn`` starts it again if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        # request id -> (the socket of the spawner it went to, its child): a spawner's end loses only its own
        self._pending: dict[int, tuple[socket.socket, Child]] = {}
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._closed = False

    @property
    def pid(self) -> int:
        """The spawner process's pid (0 before it is started)."""
        proc = self._proc
        return proc.pid if proc is not None else 0

    def _start(self) -> socket.socket:
        """The socket of a running spawner, starting one when there is none (caller holds the lock)."""
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__)), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env={}, cwd="/", start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        threading.Thread(target=self._read, args=(ours, self._proc), name="sandbox-spawner", daemon=True).start()
        return ours

    def spawn(self, argv: list[str], fds: dict[int, int], *, uid: int | None = None,
              limits: list[tuple[int, int, int]] | None = None) -> Child:
        """Start ``argv`` in a new session with ``fds`` ({number in the child: descriptor here}) and
        nothing else open; as host ``uid`` (None: the spawner's) with the ``(resource, soft, hard)``
        rlimits ``limits``, when either is given. Raises OSError when it cannot be started. A spawner
        found dead on the way (killed, say) is replaced once."""
        setup = None if uid is None and not limits else (uid, list(limits or []))
        for attempt in (1, 2):
            child, lost = self._spawn_once(argv, fds, setup)
            if child is not None:
                return child
            if attempt == 1:
                log.warning("the sandbox spawner was gone (%s); starting a new one", lost)
        raise OSError(f"the sandbox spawner could not start {argv[0]}: {lost}")

    def _spawn_once(self, argv: list[str], fds: dict[int, int], setup: tuple | None) -> tuple[Child | None, str]:
        """(the child, "") once started; (None, why) when the spawner was gone. Raises OSError when the
        program itself cannot be started."""
        child = Child()
        with self._lock:
            if self._closed:
                raise OSError("the sandbox is closed")
            sock = self._start()
            self._next += 1
            request = self._next
            self._pending[request] = (sock, child)
            targets = list(fds)
            try:
                socket.send_fds(sock, [marshal.dumps((request, argv, targets, setup))], [fds[t] for t in targets])
            except OSError as exc:
                self._pending.pop(request, None)
                if self._sock is sock:  # its reader cleans up; the next attempt starts a new spawner
                    self._sock = None
                return None, str(exc)
        if not child._started.wait(START_TIMEOUT_S):
            with self._lock:
                self._pending.pop(request, None)
            raise OSError(f"the sandbox spawner did not answer within {START_TIMEOUT_S:.0f} s")
        if child.failed == SPAWNER_ENDED:
            return None, child.failed
        if child.failed:
            raise OSError(f"the sandbox spawner could not start {argv[0]}: {child.failed}")
        return child, ""

    def _read(self, sock: socket.socket, proc: subprocess.Popen) -> None:
        """Hand the spawner's answers to the children they are about, until its socket closes."""
        while True:
            try:
                message = sock.recv(MAX_MESSAGE)
            except OSError:
                message = b""
            if not message:
                break
            kind, request, *rest = marshal.loads(message)
            with self._lock:
                entry = self._pending.get(request) if kind == "started" else self._pending.pop(request, None)
            child = entry[1] if entry is not None else None
            if child is None:
                continue
            if kind == "started":
                child.pid = rest[0]
                child._started.set()
            elif kind == "failed":
                child.failed = rest[0]
                child._started.set()
            else:
                status, maxrss_kib, cpu_us = rest
                child._report = (os.waitstatus_to_exitcode(status), maxrss_kib * 1024, cpu_us / 1e6)
                child._ended.set()
        # The spawner is gone (killed, or closed by us): its children died with it (--die-with-parent).
        with self._lock:
            gone = [request for request, (to, _) in self._pending.items() if to is sock]
            lost = [self._pending.pop(request)[1] for request in gone]
            if self._sock is sock:
                self._sock = None
        sock.close()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if lost and not self._closed:
            log.error("the sandbox spawner (pid %d) ended with %d run(s) in flight; starting a new one",
                      proc.pid, len(lost))
        for child in lost:
            child.failed = child.failed or SPAWNER_ENDED
            child._started.set()
            child._ended.set()

    def close(self, wait_s: float = 2.0) -> None:
        """End the spawner, and with it every sandbox still running, and reap it (a service that exits
        next leaves nothing behind). Idempotent."""
        with self._lock:
            self._closed = True
            sock, proc = self._sock, self._proc
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if proc is not None:
            try:
                proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]))
