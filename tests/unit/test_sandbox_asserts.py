"""The assert rewriting that makes each assert of HumanEval-style test code count as one test."""

from __future__ import annotations

import ast
import sys

import pytest

from grpo_rewards.code_sandbox.inner.asserts import instrument


class Recorder:
    """The runtime interface the rewritten asserts call (see inner/runner.py's AssertRuntime)."""

    NOVALUE = object()

    def __init__(self) -> None:
        self.log: list[tuple] = []

    def enter(self, i: int) -> None:
        self.log.append(("enter", i))

    def held(self, i: int) -> None:
        self.log.append(("held", i))

    def failed(self, i: int, left: object, right: object, message: object) -> None:
        self.log.append(("failed", i, left, right, message))

    def raised(self, i: int, exc: BaseException) -> None:
        self.log.append(("raised", i, type(exc).__name__))

    def settle(self, ids: tuple) -> None:
        self.log.append(("settle", ids))


def run(source: str, **names: object) -> tuple[Recorder, list]:
    tree, table = instrument(source)
    rt = Recorder()
    exec(compile(tree, "test.py", "exec"), {"_grpo_rt": rt, **names})
    return rt, table


def test_a_failing_assert_is_recorded_and_the_next_one_still_runs() -> None:
    rt, table = run("assert 1 + 1 == 3, 'math'\nassert 2 > 1\n")
    assert [info.source for info in table] == ["assert 1 + 1 == 3, 'math'", "assert 2 > 1"]
    assert ("failed", 0, 2, 3, "math") in rt.log
    assert ("held", 1) in rt.log


def test_the_compared_sides_are_each_evaluated_once() -> None:
    calls = []

    def f(x: int) -> int:
        calls.append(x)
        return x

    rt, _ = run("assert f(1) == f(2)\n", f=f)
    assert calls == [1, 2]
    assert ("failed", 0, 1, 2, None) in rt.log


def test_an_exception_in_the_condition_is_a_failure_of_that_assert_only() -> None:
    rt, _ = run("assert 1 // 0 == 1\nassert 2 > 1\n")
    assert ("raised", 0, "ZeroDivisionError") in rt.log
    assert ("held", 1) in rt.log


def test_an_assert_of_a_true_constant_is_no_test() -> None:
    """HumanEval's `assert True, "This prints if this assert fails ..."` holds whatever the program does:
    counted, it gave a program that raises on every input 2 of 5 tests. A false one still fails."""
    rt, table = run("assert True, 'This prints if this assert fails 1 (good for debugging!)'\nassert 1\n"
                    "assert 3 == 3\nassert False, 'never'\nassert ''\n")
    assert [info.source for info in table] == ["assert 3 == 3", "assert False, 'never'", "assert ''"]
    assert ("held", 0) in rt.log and ("failed", 1, Recorder.NOVALUE, Recorder.NOVALUE, "never") in rt.log


def test_asserts_in_a_loop_are_deferred_and_settled_after_the_loop() -> None:
    rt, table = run("def check(c):\n    for i in range(3):\n        for j in range(2):\n"
                    "            assert c(i) == i\n    assert c(0) == 0\ncheck(lambda x: x)\n")
    assert [info.deferred for info in table] == [True, False]
    assert rt.log.count(("settle", (0,))) == 1  # once, after the outermost loop
    assert rt.log.index(("settle", (0,))) < rt.log.index(("held", 1))


def test_asserts_in_helper_functions_wait_for_checks_end_even_in_their_own_loops() -> None:
    """A helper may be called any number of times: its asserts are settled by check()'s end alone."""
    rt, table = run("def helper(x):\n    assert x >= 0\n    for i in range(2):\n        assert i < 2\n"
                    "class T:\n    def check(self):\n        assert self\n"
                    "def check(c):\n    helper(1)\n    assert c(0) == 0\n    def inner():\n        assert c\n"
                    "    inner()\ncheck(lambda x: x)\nT().check()\n")
    assert [info.deferred for info in table] == [True, True, True, False, True]
    assert not any(event[0] == "settle" for event in rt.log), rt.log
    assert [event for event in rt.log if event[0] == "held"] == [("held", i) for i in (0, 1, 1, 3, 4, 2)]


def test_asserts_inside_class_bodies_survive_name_mangling() -> None:
    rt, _ = run("class T:\n    def m(self):\n        assert 1 == 1\nT().m()\n")
    assert ("held", 0) in rt.log


def test_non_comparison_asserts_report_no_sides() -> None:
    rt, _ = run("assert not [1]\n")
    assert rt.log[-1][:2] == ("failed", 0)
    assert rt.log[-1][2] is Recorder.NOVALUE


def test_syntax_errors_are_raised() -> None:
    with pytest.raises(SyntaxError):
        instrument("def check(:\n")


def _checks(n: int) -> str:
    return "def check(candidate):\n" + "".join(f"    assert candidate({i}) == {i}\n" for i in range(n))


def _calls_made_by_instrument(source: str) -> int:
    """Python and C function calls made while rewriting ``source``: a measure of work that does not
    depend on the machine's speed or load."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        instrument(source)
    finally:
        sys.setprofile(None)
    return calls


def test_rewriting_costs_the_same_per_assert_however_many_there_are() -> None:
    # Four times the asserts is about four times the work. Re-reading the whole source for every assert
    # (what ast.get_source_segment does) made it about eleven times here, and 40 s for 4000 asserts.
    small, large = _calls_made_by_instrument(_checks(100)), _calls_made_by_instrument(_checks(400))
    assert large < 5 * small, (small, large)


def test_thousands_of_asserts_are_each_one_test_with_their_own_text() -> None:
    n = 5000
    rt, table = run(_checks(n) + "check(lambda x: x if x != 4321 else -1)\n")
    assert [(info.lineno, info.source) for info in table] == [(i + 2, f"assert candidate({i}) == {i}")
                                                              for i in range(n)]
    assert [e for e in rt.log if e[0] == "failed"] == [("failed", 4321, -1, 4321, None)]
    assert sum(e[0] == "held" for e in rt.log) == n - 1


@pytest.mark.parametrize("source", [
    "assert 1 == 1\nassert (2,\n        3) == (2, 3), 'multi\\\n'\n",
    "assert 'é' == 'é'; assert 'ü🙂' != 'x'  # non-ASCII: columns are UTF-8 bytes\n",
    "assert a\r\nassert (a,\r\n  2)\rassert b\n",                # CRLF and a lone CR end lines
    "assert a\n\x0cassert b \x0c\nassert '\x1c\u2028' == '\x1c\u2028'\n",  # these do not end a line of Python
    "def f():\n    for i in x:\n        assert \\\n            i\n",
    "assert x",                                             # no final newline
])
def test_each_asserts_text_is_what_the_standard_library_finds(source: str) -> None:
    expected = [ast.get_source_segment(source, node).strip()  # type: ignore[union-attr]
                for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assert)]
    _, table = instrument(source)
    assert sorted(info.source for info in table) == sorted(expected)
    assert len(table) == len(expected)
