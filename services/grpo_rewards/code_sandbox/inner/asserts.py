"""Rewrite the `assert` statements of HumanEval-style test code so that each one counts as a test.

Runs INSIDE the sandbox (standard library only, Python >= 3.9). Every ``assert TEST, MSG`` of the test
code becomes a block that evaluates TEST, catches what it raises and reports the outcome to the runtime
object ``_grpo_rt`` instead of raising, so that one failing assert does not hide the others: the score
is the fraction of assert statements that held. For a single comparison (``assert f(x) == y``) both
sides are kept so that the feedback can show what the candidate returned.

An assert inside a loop runs many times; it passes only if every run held. Such an assert is "settled"
(known to have passed) only once its outermost loop has finished, so that a run killed half-way through
a loop does not credit it.
"""

from __future__ import annotations

import ast

RUNTIME_NAME = "_grpo_rt"

# The block one assert becomes. __TEST__, __LEFT__, __RIGHT__, __MSG__ and __ID__ are replaced by the
# assert's own expressions. Names start with a single underscore: double underscores would be mangled
# inside class bodies.
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


class AssertInfo:
    """One assert statement of the test code: its 1-based line, its source text, and whether it sits
    in a loop (``deferred``: it passes only once its loop has finished).

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, which costs more start-up time
    in the sandbox than the rest of the runner together.
    """

    __slots__ = ("lineno", "source", "deferred")

    def __init__(self, lineno: int, source: str, deferred: bool) -> None:
        self.lineno = lineno
        self.source = source
        self.deferred = deferred


class _Substitute(ast.NodeTransformer):
    def __init__(self, values: dict[str, ast.expr]) -> None:
        self.values = values

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.values:
            return self.values[node.id]
        return node


class _AssertRewriter(ast.NodeTransformer):
    def __init__(self, source: str) -> None:
        self.source = source
        self.asserts: list[AssertInfo] = []
        self._loop_depth = 0
        self._pending_in_loop: list[int] = []

    def _function(self, node: ast.AST) -> ast.AST:
        saved_depth, saved_pending = self._loop_depth, self._pending_in_loop
        self._loop_depth, self._pending_in_loop = 0, []
        self.generic_visit(node)
        self._loop_depth, self._pending_in_loop = saved_depth, saved_pending
        return node

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _loop(self, node: ast.AST) -> ast.AST | list[ast.stmt]:
        self._loop_depth += 1
        self.generic_visit(node)
        self._loop_depth -= 1
        if self._loop_depth or not self._pending_in_loop:
            return node
        ids, self._pending_in_loop = self._pending_in_loop, []
        settle = ast.Expr(ast.Call(
            func=ast.Attribute(ast.Name(RUNTIME_NAME, ast.Load()), "settle", ast.Load()),
            args=[ast.Tuple([ast.Constant(i) for i in ids], ast.Load())], keywords=[]))
        ast.copy_location(settle, node)
        return [node, settle]  # type: ignore[list-item]

    visit_For = _loop
    visit_AsyncFor = _loop
    visit_While = _loop

    def visit_Assert(self, node: ast.Assert) -> list[ast.stmt]:
        test_id = len(self.asserts)
        text = ast.get_source_segment(self.source, node) or ast.unparse(node)
        deferred = self._loop_depth > 0
        self.asserts.append(AssertInfo(node.lineno, text.strip(), deferred))
        if deferred:
            self._pending_in_loop.append(test_id)
        values: dict[str, ast.expr] = {
            "__ID__": ast.Constant(test_id),
            "__TEST__": node.test,
            "__MSG__": node.msg if node.msg is not None else ast.Constant(None),
        }
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            # Evaluate each side once, then compare the saved values: same order, same result as the
            # original expression, and both sides can be shown in the feedback.
            values["__LEFT__"] = test.left
            values["__RIGHT__"] = test.comparators[0]
            values["__TEST__"] = ast.Compare(
                left=ast.Name("_grpo_l", ast.Load()), ops=test.ops,
                comparators=[ast.Name("_grpo_r", ast.Load())])
            template = _COMPARE_TEMPLATE
        else:
            template = _PLAIN_TEMPLATE
        block = ast.parse(template).body
        # The template's own nodes take the assert's position (so tracebacks point at the test line);
        # the substituted expressions keep theirs.
        for stmt in block:
            for sub in ast.walk(stmt):
                if hasattr(sub, "lineno"):
                    ast.copy_location(sub, node)
        return [_Substitute(values).visit(stmt) for stmt in block]


def instrument(source: str) -> tuple[ast.Module, list[AssertInfo]]:
    """Parse ``source`` and rewrite its asserts; returns the module to compile and the assert table
    (index = test id). Raises SyntaxError when the source does not parse."""
    tree = ast.parse(source)
    rewriter = _AssertRewriter(source)
    tree = rewriter.visit(tree)
    ast.fix_missing_locations(tree)
    return tree, rewriter.asserts
