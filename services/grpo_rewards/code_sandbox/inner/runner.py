"""The test runner that executes INSIDE the sandbox (standard library only, Python >= 3.9).

Protocol with the service (see ../executor.py):
- stdin: one job in ``marshal`` format (written by the trusted service; marshal needs no import and
  JSON's would cost start-up time on every run), in two parts: an 8-byte little-endian length and the
  dict ``{"code", "test_code", "entry_point", "io_cases": [{"stdin"}], "timeout_s", "max_output_bytes",
  "feedback_bytes", "python", "memory_bytes", "events_fd"}``, then the list of the io cases' expected
  outputs. Both are read before anything untrusted runs, except in an item with asserts and io cases:
  its asserts run in a child that never reads the second part (``_asserts_apart``), which this process
  reads once they are done. stdin is then replaced by /dev/null.
- fd ``events_fd`` (a number in the job): events, one JSON object a line, written as tests finish, so that a run killed from outside
  still leaves the results it reached:
  ``{"e": "plan", "asserts": [[line, deferred], ...], "io": N}`` first, then
  ``{"e": "held", "t": i}`` (an assert outside loops held), ``{"e": "settle", "t": [i, ...]}`` (the
  asserts of a finished loop), ``{"e": "fail", "t": i, "fb": str}`` (``fb`` on the first failure only),
  ``{"e": "pass", "t": i}`` (an io
  case), ``{"e": "done", "part": "asserts" | "io"}``, ``{"e": "abort", "fb": str}`` (the test code
  could not go on), ``{"e": "timeout", "fb": str}``, ``{"e": "memory"}`` (a MemoryError: raised in
  this process, or an io case's program that failed with one while its peak resident memory was at
  least half of ``memory_bytes``; the service believes it only with the kernel's own accounting),
  ``{"e": "invalid", "fb": str}`` (the tests themselves are unusable), ``{"e": "output"}`` (an io
  case's program went over ``max_output_bytes`` of stdout or stderr and was stopped).
  Test ids: asserts first (0..A-1), then io cases (A..A+N-1).

HumanEval tests run in this interpreter, after the completion (the candidate must be callable from
`check`). io cases run the completion as its own program, one child process per case, so the expected
outputs never enter the candidate's process.
"""

from __future__ import annotations

# Only cheap modules at the top: this starts once per scored item, and importing `signal`, `ast` or
# `traceback` (each pulls in enum/functools/collections/re) costs more than the interpreter's own
# start-up. `_signal` is the C module under `signal`; `asserts` (and so `ast`) is only imported when the
# service could not compile the test code itself (a different interpreter version inside);
# subprocess and selectors only for io cases.
import _signal
import marshal
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported at run time: start-up time in the sandbox
    import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RUNTIME_NAME = "_grpo_rt"  # the name rewritten asserts call; see asserts.py

SOLUTION_FILE = "solution.py"
TEST_FILE = "test.py"
_VALUE_CHARS = 300


# Interpreters here start with -S (no `site`, a third of their start-up time). What programs use of
# site: the exit()/quit() builtins and the system's dist-packages on sys.path (.pth files skipped).
_DIST_PACKAGES = ("/usr/local/lib/python{0}.{1}/dist-packages", "/usr/lib/python3/dist-packages")


def restore_site() -> None:
    """Give this interpreter the parts of `site` that programs rely on."""
    import builtins

    builtins.exit = builtins.quit = sys.exit  # type: ignore[assignment]
    for path in _DIST_PACKAGES:
        path = path.format(*sys.version_info[:2])
        if os.path.isdir(path) and path not in sys.path:
            sys.path.append(path)


# How an io case starts the program: restore_site, then run solution.py as __main__.
_IO_BOOTSTRAP = (
    "import builtins, sys\n"
    "builtins.exit = builtins.quit = sys.exit\n"
    f"sys.path += [p.format(*sys.version_info[:2]) for p in {_DIST_PACKAGES!r}]\n"
    "sys.argv = sys.argv[1:]\n"
    "exec(compile(open(sys.argv[0], encoding='utf-8').read(), sys.argv[0], 'exec'),"
    " {'__name__': '__main__', '__file__': sys.argv[0], '__builtins__': builtins})\n"
)


class _Timeout(BaseException):
    """Raised by SIGALRM; a BaseException so that the rewritten asserts (which catch Exception) let it
    through."""


def trim(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, keeping its start and its end (the end of a
    traceback says most)."""
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head - 25
    return text[:head] + "\n... [trimmed] ...\n" + text[-tail:]


_JSON_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_JSON_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})


def to_json(value: object) -> str:
    """JSON text of str/int/float/bool/None/list/tuple/dict values (the json module's import alone
    costs more than a test run of most items)."""
    if isinstance(value, str):
        return '"' + value.translate(_JSON_ESCAPES) + '"'
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(to_json(str(k)) + ":" + to_json(v) for k, v in value.items()) + "}"
    return to_json(repr(value))


class Events:
    """Writes protocol events to the event pipe; never raises (a program that closed it just loses
    them)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.write_ = os.write
        self.failed_once = False

    def fail(self, test_id: int, feedback: str) -> None:
        """A failed test. Only the first failure carries its feedback (the only one the service shows):
        the reports of a run stay a few bytes a test, however many tests fail."""
        if self.failed_once:
            self.emit(e="fail", t=test_id)
        else:
            self.failed_once = True
            self.emit(e="fail", t=test_id, fb=feedback)

    def emit(self, **event: object) -> None:
        data = (to_json(event) + "\n").encode("utf-8", "replace")
        try:
            while data:
                data = data[self.write_(self.fd, data):]
        except OSError:
            pass


def _format_exception(exc: BaseException, limit: int) -> str:
    """The traceback of ``exc`` in the usual layout, with the runner's own frames left out (written
    here because importing `traceback` costs more than a typical test run)."""
    lines = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename in _SOURCES:
            lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}\n')
            source = _SOURCES[code.co_filename]
            if 0 < tb.tb_lineno <= len(source):
                lines.append("    " + source[tb.tb_lineno - 1].strip() + "\n")
        tb = tb.tb_next
    if lines:
        lines.insert(0, "Traceback (most recent call last):\n")
    name = type(exc).__name__
    if isinstance(exc, SyntaxError):
        where = f'  File "{exc.filename}", line {exc.lineno}\n' if exc.lineno else ""
        text = f"    {exc.text.strip()}\n" if exc.text else ""
        lines.append(f"{where}{text}{name}: {exc.msg}\n")
    else:
        try:
            message = str(exc)
        except Exception:  # a candidate's exception class may break __str__
            message = "<unprintable>"
        lines.append(f"{name}: {message}\n" if message else f"{name}\n")
    return trim("".join(lines), limit)


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a candidate's object may break repr
        text = f"<repr failed: {type(exc).__name__}>"
    return trim(text, _VALUE_CHARS)


class AssertRuntime:
    """What the rewritten asserts call (bound to the name ``_grpo_rt`` in the test namespace)."""

    NOVALUE = object()

    def __init__(self, events: Events, table: list, feedback_bytes: int) -> None:
        self.events = events
        self.table = table
        self.feedback_bytes = feedback_bytes
        self.current = -1
        self.inside = False  # in the assert `current` (not after it: a timeout names what was running)
        self.failed_ids: set[int] = set()
        self.held_ids: set[int] = set()
        self.out_of_memory = False

    def enter(self, test_id: int) -> None:
        _check_deadline()
        self.current = test_id
        self.inside = True

    def held(self, test_id: int) -> None:
        # Past the deadline nothing more is credited: the program's bare `except:` may have swallowed the
        # timer's _Timeout, and the asserts after it ran on (they were credited, status OK).
        _check_deadline()
        self.inside = False
        if test_id not in self.held_ids:
            self.held_ids.add(test_id)
            if not self.table[test_id].deferred:
                self.events.emit(e="held", t=test_id)

    def settle(self, test_ids: tuple) -> None:
        self.events.emit(e="settle", t=list(test_ids))

    def _fail(self, test_id: int, detail: str) -> None:
        _check_deadline()
        self.inside = False
        if test_id in self.failed_ids:
            return  # the first failure of an assert in a loop says enough
        self.failed_ids.add(test_id)
        info = self.table[test_id]
        head = f"test {test_id + 1} of {len(self.table)} failed (line {info.lineno}): {info.source}\n"
        self.events.fail(test_id, trim(head + detail, self.feedback_bytes))

    def failed(self, test_id: int, left: object, right: object, message: object) -> None:
        detail = ""
        if left is not self.NOVALUE:
            detail += f"  left side:  {_short_repr(left)}\n  right side: {_short_repr(right)}\n"
        if message is not None:
            detail += f"  message: {_short_repr(message)}\n"
        self._fail(test_id, detail)

    def raised(self, test_id: int, exc: BaseException) -> None:
        if isinstance(exc, MemoryError):
            self.out_of_memory = True
            self.events.emit(e="memory")
        self._fail(test_id, _format_exception(exc, self.feedback_bytes))


_SOURCES: dict = {}


def _register_source(filename: str, source: str) -> None:
    """Remember the lines of code compiled from a string, for tracebacks (see _format_exception)."""
    _SOURCES[filename] = source.splitlines()


class TestInfo:
    """One assert of the test code: line, source text, inside a loop (see asserts.AssertInfo)."""

    __slots__ = ("lineno", "source", "deferred")

    def __init__(self, lineno: int, source: str, deferred: bool) -> None:
        self.lineno = lineno
        self.source = source
        self.deferred = deferred


def compiled_tests(job: dict) -> tuple:
    """The instrumented test code object and its assert table. The service sends both ready-made
    (``test_compiled``: marshalled code, ``test_asserts``: [[line, source, deferred]]) when this
    interpreter is its own version; otherwise they are made here. Raises SyntaxError/ValueError when
    the test code does not compile."""
    if job.get("test_compiled") is not None:
        code = marshal.loads(job["test_compiled"])
        table = [TestInfo(*row) for row in job["test_asserts"]]
        return code, table
    from asserts import instrument

    tree, infos = instrument(job["test_code"])
    return compile(tree, TEST_FILE, "exec", dont_inherit=True), [TestInfo(i.lineno, i.source, i.deferred) for i in infos]


def prepare_asserts(job: dict, events: Events) -> tuple | None:
    """The compiled test code and its assert table, after the ``plan`` event; None (after an
    ``invalid`` event) when the tests cannot run: they do not compile, or nothing at their top level even
    names ``check``. Runs no untrusted code."""
    feedback_bytes = int(job["feedback_bytes"])
    try:
        test_code, table = compiled_tests(job)
    except (SyntaxError, ValueError) as exc:
        events.emit(e="invalid", fb=trim(f"test_code does not compile: {exc}", feedback_bytes))
        return None
    plan = [[info.lineno, info.deferred] for info in table] or [[0, False]]
    events.emit(e="plan", asserts=plan, io=len(job["io_cases"]))
    if "check" not in test_code.co_names:  # nothing at its top level even names it: it cannot define it
        events.emit(e="invalid", fb="test_code defines no check(candidate) function")
        return None
    if not table:
        # No asserts: the whole check() is one test.
        table = [TestInfo(0, "check(candidate) returns without an exception", False)]
    return test_code, table


def run_prepared_asserts(job: dict, events: Events, deadline: float, test_code: types.CodeType,
                         table: list) -> bool:
    """Run the completion then ``check(entry_point)`` with every assert instrumented (the tests
    ``prepare_asserts`` gave). Returns False when the time ran out (the caller then skips the io cases)."""
    feedback_bytes = int(job["feedback_bytes"])
    runtime = AssertRuntime(events, table, feedback_bytes)

    def abort(text: str) -> None:
        events.emit(e="abort", fb=trim(text, feedback_bytes))

    _signal.signal(_signal.SIGALRM, _raise_timeout)
    _signal.setitimer(_signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
    try:
        namespace: dict = {"__name__": "solution", "__builtins__": __builtins__}
        _register_source(SOLUTION_FILE, job["code"])
        _register_source(TEST_FILE, job["test_code"])
        try:
            exec(compile(job["code"], SOLUTION_FILE, "exec", dont_inherit=True), namespace)
        except _Timeout:
            raise
        except SyntaxError as exc:
            abort("the completion does not compile:\n" + _format_exception(exc, feedback_bytes))
            return True
        except BaseException as exc:  # SystemExit too: the program may not end the tests early
            if isinstance(exc, MemoryError):
                events.emit(e="memory")
            abort("running the completion failed:\n" + _format_exception(exc, feedback_bytes))
            return True
        namespace[RUNTIME_NAME] = runtime
        try:
            exec(test_code, namespace)
        except _Timeout:
            raise
        except BaseException as exc:  # an import the sandbox lacks, a top-level call into the program
            if isinstance(exc, MemoryError):
                events.emit(e="memory")
            abort("running the test code failed (before check()):\n" + _format_exception(exc, feedback_bytes))
            return True
        check = namespace.get("check")
        if not callable(check):
            events.emit(e="invalid", fb="test_code defines no check(candidate) function")
            return True
        entry_point = job["entry_point"]
        if entry_point not in namespace:
            abort(f"the completion does not define `{entry_point}`")
            return True
        try:
            check(namespace[entry_point])
        except _Timeout:
            raise
        except BaseException as exc:
            if isinstance(exc, MemoryError):
                events.emit(e="memory")
            where = ""
            if runtime.current >= 0:
                info = table[runtime.current]
                where = f" after test {runtime.current + 1} (line {info.lineno}): {info.source}"
            abort(f"check() stopped{where}\n" + _format_exception(exc, feedback_bytes))
            return True
        # Every assert that held at least once (those in loops and helpers were not reported one by one);
        # one that never ran (an untaken branch of a helper) is in neither this nor a failure. Without
        # asserts, check() returning is the one test (line 0) holding.
        _check_deadline()  # check() returned after the deadline: a swallowed timeout is still one
        ran = runtime.held_ids or ({0} if len(table) == 1 and table[0].lineno == 0 else set())
        if ran:
            runtime.settle(tuple(sorted(ran)))
        events.emit(e="done", part="asserts")
        return True
    except _Timeout:
        where = ""
        if runtime.current >= 0:
            info = table[runtime.current]
            where = (f" while running test {runtime.current + 1} (line {info.lineno}): {info.source}" if runtime.inside
                     else f" after test {runtime.current + 1} (line {info.lineno}) had ended, outside any assert")
        events.emit(e="timeout", fb=trim(f"timed out after {job['timeout_s']:g} s{where}", feedback_bytes))
        return False
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)


_timed_out = False  # set once the timer fired: a _Timeout the program swallowed still ends the asserts


def _raise_timeout(signum: int, frame: object) -> None:
    global _timed_out
    _timed_out = True
    raise _Timeout()


def _check_deadline() -> None:
    """Raise _Timeout again once the timer has fired (see _raise_timeout)."""
    if _timed_out:
        raise _Timeout()


_BLANKS = " \t\f\v\r\n"  # ASCII whitespace: what "trailing whitespace" means for a judge


def _normalise(text: str) -> str:
    """Trailing whitespace stripped on every line, trailing blank lines dropped. Lines end at \\n, \\r\\n
    or \\r only: str.splitlines also splits at \\x1c-\\x1e, \\x85, \\u2028 and more, and str.rstrip strips
    them, which made outputs that differ in those characters equal."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").rstrip(_BLANKS).split("\n")
    return "\n".join(line.rstrip(_BLANKS) for line in lines)


# How long an io case's output is still read once its program has exited, before what the program left
# running is killed (see _run_child); also the longest wait between checks that the program still runs.
LEFTOVER_GRACE_S = 0.05

_CHILD_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}


def _run_child(argv: list, stdin: bytes, timeout: float, max_output: int) -> tuple:
    """Run one io case: returns (exit code or None, stdout, stderr, why it was stopped or "", its peak
    resident memory in bytes and its CPU seconds, as the kernel counted them).

    posix_spawn and poll rather than `subprocess`, whose import (threading, selectors, signal...)
    would cost more than the case itself. The child gets its own session so that the whole group it
    may start can be killed. The case ends when the program does: what it started and left holding its
    output (a background process, say) is killed LEFTOVER_GRACE_S after the program exited, instead of
    keeping the case waiting until its timeout.
    """
    import select

    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, _CHILD_ENV, setsid=True, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    buffers = {out_r: bytearray(), err_r: bytearray()}
    stopped = ""
    pending = memoryview(stdin)
    poller = select.poll()
    for fd in buffers:
        poller.register(fd, select.POLLIN)
    if pending:
        os.set_blocking(in_w, False)
        poller.register(in_w, select.POLLOUT)
    else:
        os.close(in_w)
        in_w = -1
    open_fds = len(buffers) + (1 if in_w >= 0 else 0)
    deadline = time.monotonic() + timeout
    code = None
    peak_rss = 0
    cpu_s = 0.0
    exited_at = 0.0
    while open_fds and not stopped:
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            stopped = "timeout"
            break
        if code is None:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
                cpu_s = usage.ru_utime + usage.ru_stime
                exited_at = now
        elif now - exited_at > LEFTOVER_GRACE_S:  # the program is gone; something it started holds a pipe
            _kill_leftovers(pid)
        for fd, _ in poller.poll(min(left, LEFTOVER_GRACE_S) * 1000):
            if fd == in_w:
                try:
                    pending = pending[os.write(in_w, pending[:65536]):]
                except OSError:  # the program closed its stdin or exited
                    pending = memoryview(b"")
                if not pending:
                    poller.unregister(in_w)
                    os.close(in_w)
                    in_w = -1
                    open_fds -= 1
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                open_fds -= 1
                continue
            buffers[fd].extend(chunk)
            if len(buffers[fd]) > max_output:  # stdout or stderr: the cap holds for both
                stopped = "output"
    if stopped:
        _kill_group(pid)
        if code is not None:
            _kill_leftovers(pid)
    while code is None:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
            cpu_s = usage.ru_utime + usage.ru_stime
        elif time.monotonic() > deadline:
            _kill_group(pid)  # closed its output but kept running
            stopped = stopped or "timeout"
        else:
            time.sleep(0.002)
    for fd in (in_w, out_r, err_r):
        if fd >= 0:
            os.close(fd)
    if not stopped and code in (-_signal.SIGXCPU, -_signal.SIGKILL) and _out_of_cpu(cpu_s):
        stopped = "cpu"  # the kernel's CPU-time limit, not the program's choice of exit
    return ((None if stopped else code), bytes(buffers[out_r][:max_output]), bytes(buffers[err_r][:max_output]),
            stopped, peak_rss)


def _out_of_cpu(cpu_s: float) -> bool:
    """True when `cpu_s` CPU seconds reach the soft RLIMIT_CPU the sandbox runs under (SIGXCPU there,
    SIGKILL a second later): a program that dies of one of those signals with that much CPU time behind
    it was stopped by the limit. The signal alone is the program's to send itself."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_CPU)[0]
    return soft != resource.RLIM_INFINITY and cpu_s >= soft - 0.05


def _kill_leftovers(pid: int) -> None:
    """Kill what an io case's program left running: its process group, and as the sandbox's init
    (pid 1) every other process of the sandbox, wherever it moved (only the case's can be there)."""
    _kill_group(pid)
    if os.getpid() == 1:
        try:  # noqa: SIM105 (contextlib costs start-up time)
            os.kill(-1, _signal.SIGKILL)  # all but the caller, pid 1
        except OSError:
            pass


def _kill_group(pid: int) -> None:
    # not contextlib.suppress: importing contextlib costs start-up time
    try:  # noqa: SIM105
        os.killpg(pid, _signal.SIGKILL)
    except OSError:
        pass


def run_io_cases(job: dict, events: Events, first_id: int, deadline: float) -> None:
    """Run the completion once per io case with the case's stdin; compare stdout."""
    feedback_bytes = int(job["feedback_bytes"])
    max_output = int(job["max_output_bytes"])
    with open(SOLUTION_FILE, "w", encoding="utf-8") as fh:
        fh.write(job["code"])
    argv = [job["python"], "-I", "-B", "-S", "-c", _IO_BOOTSTRAP, SOLUTION_FILE]
    cases = job["io_cases"]
    for k, case in enumerate(cases):
        test_id = first_id + k
        left = deadline - time.monotonic()
        label = f"io case {k + 1} of {len(cases)}"
        if left <= 0:
            events.emit(e="timeout", fb=f"timed out after {job['timeout_s']:g} s before {label}")
            return
        # A case whose right answer is longer than the cap could never pass: its cap is twice the answer.
        cap = max(max_output, 2 * len(case["expected_stdout"].encode("utf-8")) + 1024)
        code, out, err, stopped, peak_rss = _run_child(argv, case["stdin"].encode("utf-8"), left, cap)
        err_text = err.decode("utf-8", "replace")
        # The text alone is the program's to print: it counts only when the program failed and really
        # held half of its memory limit.
        if code and "MemoryError" in err_text and peak_rss * 2 >= int(job["memory_bytes"]):
            events.emit(e="memory")
        stdin_text = trim(case["stdin"], 300)
        if stopped in ("timeout", "cpu"):
            what = (f"timed out after {job['timeout_s']:g} s" if stopped == "timeout" else
                    f"ran out of CPU time (the limit of a {job['timeout_s']:g} s run; threads add up)")
            events.emit(e="timeout", fb=trim(f"{what} during {label}\nstdin:\n{stdin_text}", feedback_bytes))
            return
        got = out.decode("utf-8", "replace")
        if stopped == "output":
            events.emit(e="output")
            why = f"{label} failed: the program wrote more than {cap} bytes and was stopped"
        elif code != 0:
            why = f"{label} failed: the program exited with status {code}\nstdin:\n{stdin_text}\n" + \
                  trim(err_text, feedback_bytes // 2)
        elif _normalise(got) != _normalise(case["expected_stdout"]):
            why = (f"{label} failed: wrong output\nstdin:\n{stdin_text}\nexpected:\n"
                   f"{trim(case['expected_stdout'], 400)}\ngot:\n{trim(got, 400)}")
        else:
            events.emit(e="pass", t=test_id)
            continue
        events.fail(test_id, trim(why, feedback_bytes))
    events.emit(e="done", part="io")


def _harden(events_fd: int, protect_memory: bool) -> None:
    """Drop every inherited descriptor but stdio and the event pipe; with ``protect_memory`` (io cases,
    whose expected outputs this process holds) make its memory and descriptors unreadable through
    /proc by the programs it starts, which share its uid."""
    if protect_memory:
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
        except Exception:
            pass
    os.closerange(3, events_fd)
    os.closerange(events_fd + 1, 4096)
    os.set_inheritable(events_fd, False)  # the io-case programs must not write events


def _read_exactly(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError(f"the job ended after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def _read_to_end(fd: int) -> bytes:
    out = bytearray()
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return bytes(out)
        out += chunk


def _stdin_from_devnull() -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


# What the asserts phase of an item with io cases may report (see _asserts_apart): its own tests'
# results and how it ended. Not `plan` or `invalid` (the runner said those before it started), nor an
# io case's `pass`: the program runs in that phase and could write any event.
_ASSERT_PHASE_EVENTS = frozenset({"held", "settle", "fail", "done", "abort", "timeout", "memory"})


def _asserts_apart(job: dict, events: Events, deadline: float, prepared: tuple) -> bool:
    """The asserts phase of an item that has io cases too, in a child process that never holds their
    expected outputs (they are still unread in the job's pipe, whose end the child replaces by /dev/null
    before anything untrusted runs) and cannot write the event pipe: its events come through a pipe of
    its own, and only those of its asserts are passed on. The program runs inside the tests' process
    there, as HumanEval's tests need; in the same process as the expected outputs it could read them
    (gc, /proc/self/mem) and print them in the io cases, or write their `pass` events itself. Returns
    False when the time ran out."""
    n_tests = max(len(prepared[1]), 1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the asserts phase
        try:
            os.close(r)
            _stdin_from_devnull()
            os.close(events.fd)
            in_time = run_prepared_asserts(job, Events(w), deadline, *prepared)
            os._exit(0 if in_time else 3)
        except BaseException:  # noqa: BLE001 - the child must never return into the runner's code
            os._exit(4)
    os.close(w)
    import json
    import select

    pending = b""
    poller = select.poll()
    poller.register(r, select.POLLIN)
    chunk = b"-"
    while chunk:  # until the child's end of the pipe closes
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, 9)  # past the deadline (a program that ignores its timer): the phase ends
            os.waitpid(pid, 0)
            os.close(r)
            events.emit(e="timeout", fb=f"timed out after {job['timeout_s']:g} s in the asserts")
            return False
        if not poller.poll(max(int(left * 1000), 1)):
            continue
        chunk = os.read(r, 1 << 16)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            _pass_on(events, line, n_tests, json)
        if len(pending) > 1 << 20:  # no event line is that long: a program writing garbage
            pending = b""
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3)


def _pass_on(events: Events, line: bytes, n_tests: int, json: object) -> None:
    """Write one event line of the asserts phase to the event pipe if it is one that phase may report
    (``json``: the module, imported once by the caller)."""
    try:
        event = json.loads(line)  # type: ignore[attr-defined]
    except ValueError:
        return
    if not isinstance(event, dict) or event.get("e") not in _ASSERT_PHASE_EVENTS:
        return
    ids = event.get("t")
    if isinstance(ids, list):
        if not all(isinstance(t, int) and 0 <= t < n_tests for t in ids):
            return
    elif ids is not None and not (isinstance(ids, int) and 0 <= ids < n_tests):
        return
    if event["e"] == "done" and event.get("part") != "asserts":
        return
    if event["e"] == "fail" and "fb" in event:
        events.failed_once = True  # only the first failure carries its feedback, io cases' included
    events.emit(**event)


def main() -> int:
    """Read the job from stdin, run its tests, report on the event pipe. Exit code 0 unless the runner
    broke.

    The job comes in two parts (``executor``): an 8-byte length and the job less the io cases' expected
    outputs, then those outputs. An item with both asserts and io cases runs its asserts in a child
    before this process reads the second part (``_asserts_apart``)."""
    size = int.from_bytes(_read_exactly(0, 8), "little")
    job = marshal.loads(_read_exactly(0, size))
    mixed = bool(job["test_code"] and job["io_cases"])
    if not mixed:
        _attach_expected(job, marshal.loads(_read_to_end(0)))
        _stdin_from_devnull()
    restore_site()
    events_fd = int(job["events_fd"])
    _harden(events_fd, protect_memory=bool(job["io_cases"]))
    events = Events(events_fd)
    deadline = time.monotonic() + float(job["timeout_s"])
    os.chdir("/tmp")
    n_asserts = 0
    prepared = None
    if job["test_code"]:
        prepared = prepare_asserts(job, events)
        if prepared is not None:
            in_time = (_asserts_apart(job, events, deadline, prepared) if mixed
                       else run_prepared_asserts(job, events, deadline, *prepared))
            if not in_time:
                os._exit(0)
    else:
        events.emit(e="plan", asserts=[], io=len(job["io_cases"]))
    if job["io_cases"]:
        if mixed:
            _attach_expected(job, marshal.loads(_read_to_end(0)))
            _stdin_from_devnull()
        if job["test_code"]:
            # the plan event said how many asserts there are; io ids follow them (the table prepared
            # above, never empty; compiled again only for tests that could not run)
            n_asserts = len(prepared[1]) if prepared is not None else max(1, _count_asserts(job))
        run_io_cases(job, events, n_asserts, deadline)
    sys.stdout.flush()
    # _exit: skip atexit handlers and threads the completion may have left behind.
    os._exit(0)


def _attach_expected(job: dict, expected: list) -> None:
    """The io cases' expected outputs (the job's second part) put back into its cases."""
    if len(expected) != len(job["io_cases"]):
        raise ValueError(f"{len(expected)} expected outputs for {len(job['io_cases'])} io cases")
    for k, case in enumerate(job["io_cases"]):  # zip(strict=) needs Python 3.10; this runs on 3.9 too
        case["expected_stdout"] = expected[k]


def _count_asserts(job: dict) -> int:
    try:
        return len(compiled_tests(job)[1])
    except (SyntaxError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
