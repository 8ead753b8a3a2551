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


# Parsed once; every assert gets a copy (parsing and walking a fresh block per assert cost more than
# the rest of the rewrite together).
_COMPARE_BLOCK = ast.parse(_COMPARE_TEMPLATE).body
_PLAIN_BLOCK = ast.parse(_PLAIN_TEMPLATE).body
_POSITION = ("lineno", "col_offset", "end_lineno", "end_col_offset")


def _instantiate(template: ast.AST, values: dict[str, ast.expr], where: ast.stmt) -> ast.AST:
    """A copy of ``template`` with its placeholder names replaced by ``values``. The copied nodes take
    the position of ``where`` (so that tracebacks point at the test line); the substituted expressions
    keep their own."""
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


class _SourceLines:
    """The lines of a source text, split and encoded once, to cut out the text of many nodes.

    ``ast.get_source_segment`` re-splits the whole source (character by character, in Python) on every
    call, which made rewriting N asserts cost N times the source (40 s for 4000 asserts). Here each
    call costs the length of its own node. Lines end at "\\r\\n", "\\r" or "\\n" only, as the
    tokenizer's do (``str.splitlines`` also breaks at form feeds and other separators that end no line
    of Python); column offsets are UTF-8 byte offsets, as in the AST.
    """

    __slots__ = ("lines",)

    def __init__(self, source: str) -> None:
        self.lines: list[bytes] = []
        parts: list[str] = []
        for piece in source.splitlines(keepends=True):
            parts.append(piece)
            if piece.endswith(("\n", "\r")):
                self.lines.append("".join(parts).encode("utf-8"))
                parts = []
        if parts:
            self.lines.append("".join(parts).encode("utf-8"))

    def segment(self, node: ast.AST) -> str | None:
        """The source text of ``node`` (what ``ast.get_source_segment`` returns), or None when the node
        has no end position."""
        end_lineno = getattr(node, "end_lineno", None)
        end_col = getattr(node, "end_col_offset", None)
        if end_lineno is None or end_col is None:
            return None
        first, last = node.lineno - 1, end_lineno - 1  # type: ignore[attr-defined]
        col = node.col_offset  # type: ignore[attr-defined]
        if first == last:
            return self.lines[first][col:end_col].decode("utf-8")
        parts = [self.lines[first][col:], *self.lines[first + 1:last], self.lines[last][:end_col]]
        return b"".join(parts).decode("utf-8")


class _AssertRewriter(ast.NodeTransformer):
    def __init__(self, source: str) -> None:
        self.lines = _SourceLines(source)
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
        ast.fix_missing_locations(ast.copy_location(settle, node))
        return [node, settle]  # type: ignore[list-item]

    visit_For = _loop
    visit_AsyncFor = _loop
    visit_While = _loop

    def visit_Assert(self, node: ast.Assert) -> list[ast.stmt]:
        test_id = len(self.asserts)
        text = self.lines.segment(node) or ast.unparse(node)
        deferred = self._loop_depth > 0
        self.asserts.append(AssertInfo(node.lineno, text.strip(), deferred))
        if deferred:
            self._pending_in_loop.append(test_id)
        # New nodes take the assert's position, as the template's copies do.
        values: dict[str, ast.expr] = {
            "__ID__": ast.copy_location(ast.Constant(test_id), node),
            "__TEST__": node.test,
            "__MSG__": node.msg if node.msg is not None else ast.copy_location(ast.Constant(None), node),
        }
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            # Evaluate each side once, then compare the saved values: same order, same result as the
            # original expression, and both sides can be shown in the feedback.
            values["__LEFT__"] = test.left
            values["__RIGHT__"] = test.comparators[0]
            values["__TEST__"] = ast.fix_missing_locations(ast.copy_location(ast.Compare(
                left=ast.Name("_grpo_l", ast.Load()), ops=test.ops,
                comparators=[ast.Name("_grpo_r", ast.Load())]), node))
            block = _COMPARE_BLOCK
        else:
            block = _PLAIN_BLOCK
        return [_instantiate(stmt, values, node) for stmt in block]  # type: ignore[misc]


def instrument(source: str) -> tuple[ast.Module, list[AssertInfo]]:
    """Parse ``source`` and rewrite its asserts; returns the module to compile and the assert table
    (index = test id). Raises SyntaxError when the source does not parse."""
    tree = ast.parse(source)
    rewriter = _AssertRewriter(source)
    tree = rewriter.visit(tree)  # every node it adds has a position: no fix_missing_locations pass
    return tree, rewriter.asserts
