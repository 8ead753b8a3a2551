"""Run one job inside bubblewrap and collect what the in-sandbox runner reported.

Layers, outermost first:
1. The host process: its own session (``start_new_session``) so the whole tree can be killed with
   ``os.killpg``; a wall-clock deadline; every pipe read with a byte cap (a flood kills the run);
   an empty environment. Sandboxes are started by a small process of their own (``spawner``), which
   reports the kernel's accounting of each, so that this service's own memory is never counted as a
   program's.
2. rlimits (CPU seconds, address space, file size, open files, no core dumps) set by the spawner in
   the child it starts bwrap in, right before the exec (``_launch_limits``; spawner.py's
   ``_fork_exec``), and the process limit. As root, each concurrent run gets its own unprivileged host
   uid (the same child drops to it first) and a host-side RLIMIT_NPROC caps that uid's processes,
   which are this run's alone.
   Not as root, the limit is set by ``prlimit`` inside the sandbox, after bubblewrap has made the
   run's own user namespace (see ``_inner_argv``): the kernel (5.14+) counts RLIMIT_NPROC per user
   namespace and uid, so it caps this run only.
3. bubblewrap: every namespace unshared (network: only a down loopback; pid: other processes are
   invisible), ``--die-with-parent``, ``--new-session`` (no terminal injection), read-only ``/usr``
   and nothing else of the host file system (no ``/etc``, ``/home``, ``/root``, the repository),
   a size-capped tmpfs ``/tmp`` as the work dir, minimal ``/dev`` and ``/proc``, uid/gid 65534 inside,
   all capabilities dropped, environment cleared.
4. seccomp (``seccomp_filter``), installed by bubblewrap right before the runner starts.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import marshal
import math
import os
import queue
import re
import resource
import selectors
import signal
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

from .config import SandboxConfig
from .inner.asserts import instrument
from .seccomp_filter import export_bpf
from .spawner import Child, Spawner

log = logging.getLogger("grpo_rewards.code_sandbox")

INNER_DIR = Path(__file__).with_name("inner")
INNER_FILES = ("runner.py", "asserts.py")
SANDBOX_CODE_DIR = "/sandbox"
RUNNER_PYC = "runner.pyc"  # the runner compiled by the service, when the interpreter inside runs its bytecode
# Events come from the runner; a runner (or a program posing as it) writing more than this, plus
# EVENT_BYTES_PER_TEST for each of the item's tests, is killed. A test's own reports (its entry in the
# plan, held/settle, a fail without feedback, a memory note) are under 80 bytes, so tens of thousands of
# asserts (1 MiB of test code holds ~100,000) never reach the cap.
MAX_EVENT_BYTES = 1024 * 1024
EVENT_BYTES_PER_TEST = 80
# bwrap reports a command killed by signal N as exit status 128 + N.
_SIGNAL_EXIT_BASE = 128
# A MemoryError is believed (RESOURCE_EXHAUSTED) only when one process of the sandbox had at least this
# share of the address-space limit resident: the kernel's count, which a program cannot fake by printing
# "MemoryError" or raising one (see scoring.py).
MEMORY_EVIDENCE_FRACTION = 0.5



@dataclass(frozen=True)
class Job:
    """What to run: the extracted program and its tests (see inner/runner.py for the semantics)."""

    code: str
    test_code: str = ""
    entry_point: str = ""
    io_cases: tuple[tuple[str, str], ...] = ()  # (stdin, expected stdout)
    timeout_s: float = 10.0


@dataclass
class RunRecord:
    """What came back from one sandbox run.

    ``events`` are the runner's JSON events in arrival order; ``exit_code`` is bwrap's (the runner's
    exit status, 128+N for signal N, negative when the host killed bwrap); ``killed`` says why the host
    stopped it ("" when it ended by itself, "timeout", "output", "events", or "shutdown" when the
    service closed the sandbox).

    The rest is the kernel's accounting (wait4) of the sandbox's processes that were reaped: the
    program cannot write it. ``cpu_s`` is their CPU time; ``max_rss_bytes`` the largest peak resident
    set among them; ``out_of_cpu`` says the runner was killed by its CPU-time limit (SIGKILL at the
    hard RLIMIT_CPU, with the CPU time to show for it: an exit status alone is the program's to choose);
    ``memory_near_limit`` that ``max_rss_bytes`` reached ``MEMORY_EVIDENCE_FRACTION`` of the memory limit.
    """

    events: list[dict] = field(default_factory=list)
    exit_code: int | None = None
    killed: str = ""
    stdout_bytes: int = 0
    stderr: str = ""
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_bytes: int = 0
    out_of_cpu: bool = False
    memory_near_limit: bool = False


class _SlotPool:
    """Hands each concurrent run its own slot (and so its own host uid)."""

    def __init__(self, size: int) -> None:
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(size):
            self._free.put(slot)

    @contextmanager
    def take(self) -> Iterator[int]:
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)


def _launch_limits(config: SandboxConfig, timeout_s: float, uid: int | None) -> list[tuple[int, int, int]]:
    """The rlimits the spawner sets on the child it starts bwrap in, after dropping to ``uid`` (see
    spawner.py's ``_fork_exec``): ``(resource, soft, hard)``, inherited by the sandbox and all in it."""
    cpu = cpu_limit_s(timeout_s)
    limits = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),                      # SIGXCPU, then SIGKILL a second later
        (resource.RLIMIT_AS, config.memory_mib << 20, config.memory_mib << 20),  # address space per process
        (resource.RLIMIT_FSIZE, config.max_file_mib << 20, config.max_file_mib << 20),  # largest file written
        (resource.RLIMIT_NOFILE, config.max_open_files, config.max_open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if uid is not None:
        # The slot's own host uid: its count is this run's alone, so the host-side cap is exact too.
        limits.append((resource.RLIMIT_NPROC, config.max_processes, config.max_processes))
    # Without a uid of its own (not root) no host-side process limit is set here: it would count
    # every run and this service's threads together, so one fork bomb would starve the other runs
    # (and bwrap itself could not start). The per-run cap is set inside (``_inner_argv``).
    return limits


# Waits before each new try of a sandbox that bwrap could not create for a passing shortage.
START_RETRY_WAITS_S = (0.1, 0.4, 1.0)
# bwrap's own error when clone() of its namespaces fails with EAGAIN (the slot uid's process limit, still
# counting the processes of the run before as they exit, or the kernel's namespace limits) or ENOMEM.
_TRANSIENT_START = re.compile(r"^bwrap: .*(?:Resource temporarily unavailable|Cannot allocate memory)", re.MULTILINE)


def transient_start_failure(record: RunRecord) -> bool:
    """True when bwrap failed before anything ran in the sandbox for a reason that passes: no event from
    the runner, not stopped by the service, and bwrap's error says EAGAIN or ENOMEM. Under load this
    failed items as INTERNAL ("bwrap: Creating new namespace failed: Resource temporarily unavailable"),
    and the trainer counted each as an attempt of its prompt."""
    return (not record.events and not record.killed and record.exit_code not in (None, 0)
            and _TRANSIENT_START.search(record.stderr) is not None)


def cpu_limit_s(timeout_s: float) -> int:
    """The soft RLIMIT_CPU of a run with wall-clock limit ``timeout_s``, in CPU seconds (the hard limit,
    SIGKILL, is one more)."""
    return int(math.ceil(timeout_s)) + 1


def _inner_argv(config: SandboxConfig) -> list[str]:
    """``prlimit --nproc`` as the sandbox's first command, run inside bubblewrap's new user namespace.

    Since Linux 5.14 RLIMIT_NPROC is charged per (user namespace, uid), at every level up to the
    initial namespace; a fork is refused when the count of the forking task's own (namespace, uid)
    exceeds its RLIMIT_NPROC, or an ancestor level's count exceeds the limit its creator had when the
    namespace was made. Set here, after bwrap made the run's namespace, the limit counts this run's
    processes and threads only (uid 65534 of its own namespace), never another run's. Lowering a
    limit needs no privilege; raising the hard limit back needs CAP_SYS_RESOURCE, which the program
    does not have.
    """
    return ["/usr/bin/prlimit", f"--nproc={config.max_processes}", "--"]


class Sandbox:
    """Runs jobs in bubblewrap, ``config.workers`` at a time. Thread-safe; blocks the calling thread."""

    def __init__(self, config: SandboxConfig) -> None:
        config.validate()
        if not os.access(config.bwrap, os.X_OK):
            raise RuntimeError(f"bubblewrap not found at {config.bwrap}: install the Debian/Ubuntu package "
                               "'bubblewrap' (or your distribution's equivalent)")
        if os.geteuid() != 0 and not os.access("/usr/bin/prlimit", os.X_OK):  # the inner one (_inner_argv)
            raise RuntimeError("/usr/bin/prlimit not found: install util-linux")
        if not os.access(config.python, os.X_OK):
            raise RuntimeError(f"no interpreter at {config.python} (set --python)")
        self.config = config
        self._bpf = export_bpf()
        self._slots = _SlotPool(config.workers)
        # The bwrap processes running now, for close() to kill, and the runs started and not yet reaped,
        # for close() to wait for; once closed, no run starts.
        self._live: set[Child] = set()
        self._runs = 0
        self._spawner = Spawner()
        self._state = threading.Condition()
        self._closed = False
        self._as_root = os.geteuid() == 0
        self._same_bytecode = _same_bytecode(config.python)
        # The runner's files as the sandbox gets them under SANDBOX_CODE_DIR, and the one it starts.
        self.inner_files = {name: (INNER_DIR / name).read_bytes() for name in INNER_FILES}
        if self._same_bytecode:
            # Compiling the runner's source took 4 of the 6.5 ms the runner added per item: ship its bytecode.
            self.inner_files[RUNNER_PYC] = _runner_pyc(self.inner_files.pop("runner.py"))
        self.runner_path = f"{SANDBOX_CODE_DIR}/{RUNNER_PYC if self._same_bytecode else 'runner.py'}"
        _become_subreaper()
        try:
            self._check_starts()
        except BaseException:
            self._spawner.close()
            raise
        if not self._as_root:
            log.info("not running as root: sandboxes run under this service's host uid, each in its own "
                     "user namespace with its own process limit (%d)", config.max_processes)

    def _check_starts(self) -> None:
        """Start one empty sandbox now, so that a host that cannot run it (no user namespaces, a
        seccomp or AppArmor profile refusing them, a masked /proc) fails at start with bwrap's reason
        instead of failing every item later."""
        for wait in (*START_RETRY_WAITS_S, None):
            try:
                done = self.run_isolated([self.config.python, "-I", "-S", "-c", "pass"], timeout_s=30.0)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise RuntimeError(f"the sandbox cannot start: {exc}") from exc
            # A passing shortage (EAGAIN: the slot uid's processes of another sandbox still exiting) is tried
            # again, as a run's is; it is no reason to refuse to start.
            if done.returncode == 0 or wait is None or not _TRANSIENT_START.search(done.stderr.decode(errors="replace")):
                break
            time.sleep(wait)
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip()[-500:]
            hint = (" (this /proc is masked, as in a Kubernetes container: run with --no-proc, or unmask it)"
                    if "mount proc" in reason else "")
            raise RuntimeError(f"the sandbox cannot start: bwrap exited {done.returncode}: {reason}{hint}")

    def _bwrap_argv(self, memfds: dict[str, int], seccomp_fd: int, command: list[str] | None = None) -> list[str]:
        """bwrap's command line; ``command`` replaces the runner (for ``run_isolated``)."""
        c = self.config
        argv = [
            c.bwrap, "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
        ]
        # Merged-/usr systems have /bin, /lib... as symlinks into /usr; older ones have real dirs.
        for top in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        argv += [
            "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
            *(["--proc", "/proc"] if c.mount_proc else []), "--dev", "/dev",
            "--size", str(c.tmp_mib << 20), "--tmpfs", "/tmp",
            "--size", str(1 << 20), "--tmpfs", "/dev/shm",
        ]
        for name, fd in memfds.items():
            argv += ["--ro-bind-data", str(fd), f"{SANDBOX_CODE_DIR}/{name}"]
        argv += [
            "--remount-ro", "/",
            "--seccomp", str(seccomp_fd),
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONIOENCODING", "utf-8",
            "--chdir", "/tmp",
            # -S: no `site` (its .pth processing is a third of the interpreter's start-up); the runner
            # puts back what programs expect of it (see inner/runner.py, `restore_site`).
            # As root the host-side limit on the slot's own uid already caps this run alone; the inner
            # prlimit (one more exec per run) is needed only without a uid of its own.
            "--", *([] if self._as_root else _inner_argv(c)),
            *(command or [c.python, "-I", "-B", "-S", self.runner_path]),
        ]
        return argv

    def run_isolated(self, command: list[str], timeout_s: float = 10.0) -> subprocess.CompletedProcess:
        """Run ``command`` (a program under /usr) with exactly the isolation a job gets, but no runner and
        no job: for benchmarks and for checking a deployment. Output is captured, not capped. Raises
        subprocess.TimeoutExpired after ``timeout_s`` (plus the kill grace), with the sandbox killed."""
        with self._slots.take() as slot:
            fds: list[int] = []
            try:
                seccomp_fd = _memfd("seccomp", self._bpf)
                fds.append(seccomp_fd)
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                fds += [out_r, out_w, err_r, err_w]
                uid = self.config.uid_base + slot if self._as_root else None
                handed = {0: _devnull(fds), 1: out_w, 2: err_w, 3: seccomp_fd}
                argv = self._bwrap_argv({}, 3, command)
                child = self._spawner.spawn(argv, handed, uid=uid, limits=_launch_limits(self.config, timeout_s, uid))
                for fd in (out_w, err_w):
                    os.close(fd)
                    fds.remove(fd)
                deadline = time.monotonic() + timeout_s + self.config.kill_grace_s
                out, err = _read_all((out_r, err_r), deadline)
                try:
                    report = child.wait(max(deadline - time.monotonic(), 0) + 5)
                except subprocess.TimeoutExpired:
                    report = None
                if out is None or report is None:
                    child.kill_group()
                    raise subprocess.TimeoutExpired(argv, timeout_s)
                return subprocess.CompletedProcess(argv, report[0], out, err)
            finally:
                for fd in fds:
                    os.close(fd)

    def run(self, job: Job) -> RunRecord:
        """Run ``job`` in a fresh sandbox and return what it reported. Never raises for anything the
        program does; raises OSError only when the sandbox cannot be started at all. After ``close()``
        it returns at once a record with ``killed`` "shutdown". A sandbox that bwrap could not create for
        a passing shortage (`transient_start_failure`) is tried again after START_RETRY_WAITS_S."""
        with self._slots.take() as slot:
            record = self._run(job, slot)
            for wait in START_RETRY_WAITS_S:
                if not transient_start_failure(record):
                    break
                log.warning("the sandbox could not start (%s); trying again in %g s", record.stderr.strip(), wait)
                with self._state:
                    if self._state.wait_for(lambda: self._closed, timeout=wait):
                        return RunRecord(killed="shutdown")
                record = self._run(job, slot)
            return record

    def close(self, wait_s: float = 2.0) -> None:
        """Kill every sandbox running now (their runs return with ``killed`` "shutdown") and refuse new
        ones. Waits up to ``wait_s`` for the killed sandboxes to be reaped (a killed sandbox ends at
        once; reaped here, none is left behind as an orphan of a service that exits), for nothing
        else: a thread still compiling an item's tests has no sandbox yet."""
        with self._state:
            self._closed = True
            live = list(self._live)
        for proc in live:
            proc.kill_group()
        with self._state:
            if not self._state.wait_for(lambda: self._runs == 0, timeout=wait_s):
                log.warning("%d killed sandbox run(s) not reaped after %.1f s", self._runs, wait_s)
        self._spawner.close()

    def _run(self, job: Job, slot: int) -> RunRecord:
        c = self.config
        fds: list[int] = []
        try:
            seccomp_fd = _memfd("seccomp", self._bpf)
            fds.append(seccomp_fd)
            memfds = {}
            for name, data in self.inner_files.items():
                memfds[name] = _memfd(name, data)
                fds.append(memfds[name])
            events_r, events_w = os.pipe()
            fds += [events_r, events_w]
            stdin_r, stdin_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            fds += [stdin_r, stdin_w, out_r, out_w, err_r, err_w]
            # The numbers the child gets them at (see spawner.py): its standard streams, then the
            # seccomp program, the runner's files and the events pipe, named so on bwrap's command line.
            handed = {0: stdin_r, 1: out_w, 2: err_w, 3: seccomp_fd}
            memfd_numbers = {}
            for number, (name, fd) in enumerate(memfds.items(), start=4):
                handed[number] = fd
                memfd_numbers[name] = number
            events_number = 4 + len(memfds)
            handed[events_number] = events_w
            # pass_fds keeps descriptor numbers through fork, exec and bwrap: tell the runner its number.
            compiled, asserts = _compile_tests(job.test_code) if self._same_bytecode and job.test_code else (None, None)
            # Two parts (inner/runner.py's main): the job less the io cases' expected outputs, behind its
            # length, then those outputs, which a runner with asserts too reads only after they have run.
            first = marshal.dumps({
                "code": job.code, "test_code": job.test_code, "entry_point": job.entry_point,
                "test_compiled": compiled, "test_asserts": asserts,
                "io_cases": [{"stdin": s} for s, _ in job.io_cases],
                "timeout_s": job.timeout_s, "max_output_bytes": c.max_output_bytes,
                "feedback_bytes": c.feedback_bytes, "python": c.python, "memory_bytes": c.memory_mib << 20,
                "events_fd": events_number,
            })
            job_bytes = len(first).to_bytes(8, "little") + first + marshal.dumps([e for _, e in job.io_cases])
            argv = self._bwrap_argv(memfd_numbers, 3)
            uid = c.uid_base + slot if self._as_root else None
            limits = _launch_limits(c, job.timeout_s, uid)
            start = time.monotonic()
            with self._state:
                if self._closed:
                    return RunRecord(killed="shutdown")
                proc = self._spawner.spawn(argv, handed, uid=uid, limits=limits)
                self._live.add(proc)
                self._runs += 1
            try:
                # Only the child holds these ends now: the pipes end when the sandbox does.
                for fd in (events_w, stdin_r, out_w, err_w):
                    os.close(fd)
                    fds.remove(fd)
                for fd in (stdin_w, out_r, err_r):
                    fds.remove(fd)  # _collect closes them
                record = self._collect(proc, job_bytes, (stdin_w, out_r, err_r), events_r,
                                       start + job.timeout_s + c.kill_grace_s, events_cap=_events_cap(job, asserts))
                with self._state:
                    self._live.discard(proc)
                    if self._closed:  # killed by close(), or ended as the service stopped: nobody waits
                        record.killed = "shutdown"
                record.elapsed_s = time.monotonic() - start
                if record.killed:
                    orphans_rss = _reap_orphans(c.uid_base + slot if self._as_root else os.getuid(),
                                                skip=self._spawner.pid)
                    record.max_rss_bytes = max(record.max_rss_bytes, orphans_rss)
                record.out_of_cpu = (not record.killed and record.exit_code == _SIGNAL_EXIT_BASE + signal.SIGKILL
                                     and record.cpu_s >= cpu_limit_s(job.timeout_s))
                record.memory_near_limit = record.max_rss_bytes >= MEMORY_EVIDENCE_FRACTION * (c.memory_mib << 20)
                return record
            finally:
                with self._state:
                    self._live.discard(proc)
                    self._runs -= 1
                    self._state.notify_all()
        finally:
            for fd in fds:
                os.close(fd)

    def _collect(self, proc: Child, payload: bytes, pipes: tuple[int, int, int], events_r: int, deadline: float,
                 events_cap: int = MAX_EVENT_BYTES) -> RunRecord:
        """Feed the job, read stdout/stderr/events with caps until the runner ends or the deadline, then
        take the spawner's report of the kernel's accounting. Closes ``pipes`` (stdin, stdout, stderr)."""
        c = self.config
        record = RunRecord()
        stdin_fd, out_fd, err_fd = pipes
        buffers = {out_fd: bytearray(), err_fd: bytearray(), events_r: bytearray()}
        caps = {out_fd: c.max_output_bytes, err_fd: c.max_output_bytes, events_r: events_cap}  # bytes kept
        # Past its cap, stdout and stderr are read and dropped until the flood size; events never are.
        stops = {out_fd: c.flood_output_bytes, err_fd: c.flood_output_bytes, events_r: events_cap}
        why = {out_fd: "output", err_fd: "output", events_r: "events"}
        totals = dict.fromkeys(buffers, 0)
        sel = selectors.DefaultSelector()
        os.set_blocking(stdin_fd, False)
        stdin_open = True
        pending = memoryview(payload)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
        for fd in buffers:
            sel.register(fd, selectors.EVENT_READ)
        try:
            while any(key.events & selectors.EVENT_READ for key in sel.get_map().values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    record.killed = "timeout"
                    break
                for key, _ in sel.select(left):
                    fd = key.fd
                    if fd == stdin_fd:
                        try:
                            pending = pending[os.write(fd, pending[:1 << 16]):]
                        except OSError:  # the runner is gone; what it reported says why
                            pending = memoryview(b"")
                        if not pending:
                            sel.unregister(fd)
                            os.close(fd)
                            stdin_open = False
                        continue
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        sel.unregister(fd)
                        continue
                    totals[fd] += len(chunk)
                    room = caps[fd] - len(buffers[fd])
                    if room > 0:
                        buffers[fd] += chunk[:room]
                    if totals[fd] > stops[fd]:
                        record.killed = why[fd]
                        break
                if record.killed:
                    break
        finally:
            sel.close()
            if record.killed:
                proc.kill_group()
            if stdin_open:
                os.close(stdin_fd)
            try:
                report = proc.wait(max(deadline - time.monotonic(), 0) + 5)
            except subprocess.TimeoutExpired:
                proc.kill_group()
                record.killed = record.killed or "timeout"
                report = proc.wait()
            if report is None:  # the spawner died, and the sandbox with it
                record.killed = record.killed or "shutdown"
            else:
                # bwrap's and what it reaped (the runner, the io-case programs the runner reaped)
                record.exit_code, record.max_rss_bytes, record.cpu_s = report
            os.close(out_fd)
            os.close(err_fd)
        record.stdout_bytes = totals[out_fd]
        record.stderr = buffers[err_fd].decode("utf-8", "replace")
        record.events = _parse_events(bytes(buffers[events_r]))
        return record


def _events_cap(job: Job, asserts: list[list] | None) -> int:
    """The most event bytes a run of ``job`` may write (see ``EVENT_BYTES_PER_TEST``). Its asserts are
    counted when the service compiled the tests, else bounded by the test code's length (an assert takes
    at least 8 characters)."""
    if not job.test_code:
        n_asserts = 0
    elif asserts is not None:
        n_asserts = max(len(asserts), 1)
    else:
        n_asserts = len(job.test_code) // 8 + 1
    return MAX_EVENT_BYTES + EVENT_BYTES_PER_TEST * (n_asserts + len(job.io_cases))


def _same_bytecode(python: str) -> bool:
    """Whether ``python`` runs this interpreter's bytecode (same magic number), so that test code can be
    compiled here once instead of in every sandbox."""
    try:
        out = subprocess.run([python, "-I", "-S", "-c", "import importlib.util, sys; "
                              "sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
                             capture_output=True, text=True, timeout=30, env={}).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out == importlib.util.MAGIC_NUMBER.hex()


def _runner_pyc(source: bytes) -> bytes:
    """``inner/runner.py`` as a .pyc file the interpreter inside runs directly (``python runner.pyc``):
    the magic number, 12 bytes of flags and source stamp (not read for a file run as a script), then
    the marshalled code object, compiled under the name the source has inside."""
    code = compile(source, f"{SANDBOX_CODE_DIR}/runner.py", "exec", dont_inherit=True)
    return importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code)


CompiledTests = tuple[bytes | None, list[list] | None]


class _CompiledTestsCache:
    """The compiled tests of recently seen test codes, least recently used first out, at most
    ``max_bytes`` of keys and values together. Bounded by bytes, not entries: the marshalled
    instrumented code is up to ~20 times its source, so 256 entries of 1 MiB tests would hold 5 GiB.
    Thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[CompiledTests, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, test_code: str) -> CompiledTests | None:
        with self._lock:
            entry = self._entries.get(test_code)
            if entry is None:
                return None
            self._entries.move_to_end(test_code)
            return entry[0]

    def put(self, test_code: str, value: CompiledTests) -> None:
        code, table = value
        size = len(test_code) + len(code or b"") + sum(64 + len(row[1]) for row in table or [])
        if size > self.max_bytes:
            return
        with self._lock:
            if test_code in self._entries:
                return
            self._entries[test_code] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    @property
    def nbytes(self) -> int:
        """Bytes held now (as counted for ``max_bytes``)."""
        return self._bytes


# The G completions of a GRPO group share their tests: each distinct test code is compiled once.
COMPILED_CACHE_BYTES = 64 * 1024 * 1024
_compiled_cache = _CompiledTestsCache(COMPILED_CACHE_BYTES)


# Compiling rewrites every assert into a block of its own, and the service's memory peaks at about 850
# times the test code's size while it does (0.8 GiB for 1 MiB of one-line asserts; see
# bench/bench_sandbox_compile.py). So one test code is compiled once however many items carry it at the
# same time (the G completions of a group do), and at most one test code over BIG_COMPILE_BYTES is
# compiled at a time: concurrent large items do not add up their peaks (BIG_COMPILE_BYTES itself peaks
# at about 55 MiB).
BIG_COMPILE_BYTES = 64 * 1024
_big_compile = threading.Lock()
_compiling: dict[str, Future[CompiledTests]] = {}
_compiling_lock = threading.Lock()


def _compile_tests(test_code: str) -> CompiledTests:
    """The instrumented test code (marshalled code object) and its assert table [[line, source,
    deferred]], or (None, None) when it does not compile (the runner then reports why). Cached (see
    ``_CompiledTestsCache``); a test code being compiled by another thread is waited for, not compiled
    again."""
    cached = _compiled_cache.get(test_code)
    if cached is not None:
        return cached
    with _compiling_lock:
        pending = _compiling.get(test_code)
        if pending is not None:
            owner = False
        else:
            owner, pending = True, Future()
            _compiling[test_code] = pending
    if not owner:
        return pending.result()
    try:
        with _big_compile if len(test_code) > BIG_COMPILE_BYTES else nullcontext():
            result = _compile_uncached(test_code)
        _compiled_cache.put(test_code, result)
        pending.set_result(result)
        return result
    except BaseException as exc:
        pending.set_exception(exc)
        raise
    finally:
        with _compiling_lock:
            _compiling.pop(test_code, None)


def _compile_uncached(test_code: str) -> CompiledTests:
    try:
        tree, infos = instrument(test_code)
        return (marshal.dumps(compile(tree, "test.py", "exec", dont_inherit=True)),
                [[i.lineno, i.source, i.deferred] for i in infos])
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None, None


def _become_subreaper() -> None:
    """Make this process the reaper of its orphaned descendants.

    When the host kills bwrap (timeout, flood), the sandbox's pid 1 (the runner) outlives it for a
    moment and is orphaned; without this it would be reparented to the machine's (or container's) init,
    which in a container is often this very service or a process that never reaps, and a zombie left
    there keeps counting against the slot uid's process limit.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        log.warning("cannot become a child subreaper; killed sandboxes are reaped by init")


def _reap_orphans(uid: int, *, skip: int, wait_s: float = 5.0) -> int:
    """Reap the orphaned sandbox processes of ``uid`` that were reparented to this process (see
    ``_become_subreaper``): every child of this process but the spawner (pid ``skip``), whose children
    the runs in flight are. Returns the largest peak resident set of those reaped, in bytes (the runner
    of a killed sandbox is one of them)."""
    me = os.getpid()
    deadline = time.monotonic() + wait_s
    max_rss = 0
    for pid in (pid for pid in _children_of(me, uid) if pid != skip):
        while True:
            try:
                done, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                max_rss = max(max_rss, usage.ru_maxrss * 1024)
                break
            if time.monotonic() > deadline:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + wait_s
            time.sleep(0.01)
    return max_rss


def _children_of(parent: int, uid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[1]) == parent:
            out.append(int(name))
    return out


def _memfd(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data``, positioned at its start (for bwrap's ``--seccomp``
    and ``--ro-bind-data``). Close-on-exec until handed to ``subprocess`` through ``pass_fds``."""
    fd = os.memfd_create(f"grpo-sandbox-{name}", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _devnull(fds: list[int]) -> int:
    """/dev/null open for reading, added to ``fds`` (to be closed by the caller)."""
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    fds.append(fd)
    return fd


def _read_all(fds: tuple[int, ...], deadline: float) -> tuple[bytes, ...] | tuple[None, None]:
    """Everything written to each pipe of ``fds`` until all are closed; (None, None) at the deadline."""
    buffers = {fd: bytearray() for fd in fds}
    with selectors.DefaultSelector() as sel:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    buffers[key.fd] += chunk
                else:
                    sel.unregister(key.fd)
    return tuple(bytes(buffers[fd]) for fd in fds)


def _parse_events(data: bytes) -> list[dict]:
    """Complete JSON lines only; a torn last line (a run killed mid-write) is dropped."""
    out: list[dict] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("e"), str):
            out.append(event)
    return out
