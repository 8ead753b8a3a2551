"""Rewrite the `assert` statements of HumanEval-style test code so that each one counts as a test.

Runs INSIDE the sandbox (standard library only, Python >= 3.9). Every ``assert TEST, MSG`` of the test
code becomes a ``with`` block that evaluates TEST and reports the outcome to the runtime object
``_grpo_rt`` instead of raising, so that one failing assert does not hide the others: the score is the
fraction of assert statements that held. For a single comparison (``assert f(x) == y``) both sides are
kept so that the feedback can show what the candidate returned.

An assert inside a loop runs many times; it passes only if every run held. Such an assert is "settled"
(known to have passed) only once its outermost loop has finished, so that a run killed half-way through
a loop does not credit it. An assert inside any function other than the module's ``check`` (a helper
such as EvalPlus's ``assertion(out, exp, atol)``, called once per input from check's loop) may run any
number of times from anywhere: it is settled only when check() returns, so a run that stops after the
helper's first call credits nothing of it.

Why ``with`` and not ``try``: the service compiles test code of up to 1 MiB (tens of thousands of
asserts) and its memory peaks while it does (bench/bench_sandbox_compile.py). What costs is the AST
nodes per assert (each a Python object with a dict, then a C node) and the compiler's basic blocks
per assert (each with an array of 16 instructions, all held until the function is assembled). A
``with`` block is a quarter of the blocks that ``try``/``except ... as``/``else`` with a nested ``try``
for the message took, the helper class below does what their handlers did, and the nodes that are the
same in every assert are shared: 1 MiB of one-line asserts peaks at 0.8 GiB instead of 2.5 GiB.
Compiling rewritten source text instead of the AST does not help: the parser's tokens cost more than
the Python AST they would replace.
"""

from __future__ import annotations

import ast

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: it costs start-up time in the sandbox
    from typing import TypeVar

    _Node = TypeVar("_Node", bound=ast.AST)

RUNTIME_NAME = "_grpo_rt"

# Inserted at the top of the rewritten module (after its docstring and __future__ imports). One
# instance per assert run: ``__enter__`` tells the runtime which assert runs; the block stores the
# compared sides (``l``, ``r``), whether the test failed (``f``) and the message (``m``, evaluated only
# when the test failed); ``__exit__`` reports. An Exception from the test is the assert's failure
# (``raised``); one from the message, once the test is known to have failed, leaves the message None;
# anything else (a timeout, SystemExit) goes through. Names start with a single underscore: double
# underscores would be mangled inside class bodies. Its nodes take line 0: none of its lines is a line
# of the test code.
_HELPER = """
class _grpo_A:
    __slots__ = ("i", "m", "l", "r", "f")

    def __init__(self, i, m=None):
        self.i = i
        self.m = m
        self.l = self.r = _grpo_rt.NOVALUE
        self.f = False

    def __enter__(self):
        _grpo_rt.enter(self.i)
        return self

    def __exit__(self, t, e, tb):
        if t is None or (self.f and issubclass(t, Exception)):
            if self.f:
                _grpo_rt.failed(self.i, self.l, self.r, self.m)
            else:
                _grpo_rt.held(self.i)
            return t is not None
        if issubclass(t, Exception):
            _grpo_rt.raised(self.i, e)
            return True
        return False
"""
_HELPER_CLASS = "_grpo_A"
_CASE = "_grpo_c"  # the name each assert's instance is bound to
_POSITION = ("lineno", "col_offset", "end_lineno", "end_col_offset")


def _helper_nodes() -> list[ast.stmt]:
    """The statements of ``_HELPER``, every node at line 0."""
    body = ast.parse(_HELPER).body
    for stmt in body:
        for node in ast.walk(stmt):
            if "lineno" in node._attributes:
                for name in _POSITION:
                    setattr(node, name, 0)
    return body


def _at(node: _Node, where: ast.AST) -> _Node:
    """``node`` with the position of ``where``."""
    for name in _POSITION:
        setattr(node, name, getattr(where, name))
    return node


class AssertInfo:
    """One assert statement of the test code: its 1-based line, its source text, and whether it sits
    in a loop or a helper function (``deferred``: it passes only once its loop, or check(), has finished).

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, which costs more start-up time
    in the sandbox than the rest of the runner together.
    """

    __slots__ = ("lineno", "source", "deferred")

    def __init__(self, lineno: int, source: str, deferred: bool) -> None:
        self.lineno = lineno
        self.source = source
        self.deferred = deferred


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
        self._function_depth = 0  # functions around the node being visited (check's body: 1)
        self._in_helper = False  # inside a function that is not the module's check(): asserts wait for its end
        self._nodes: dict[str, ast.expr] = {}
        self._lists: dict[str, list[ast.expr]] = {}

    def _function(self, node: ast.AST) -> ast.AST:
        saved = self._loop_depth, self._pending_in_loop, self._in_helper
        self._loop_depth, self._pending_in_loop = 0, []
        is_check = self._function_depth == 0 and getattr(node, "name", "") == "check"
        self._in_helper = self._in_helper or not is_check
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1
        self._loop_depth, self._pending_in_loop, self._in_helper = saved
        return node

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._function_depth += 1  # its methods are helpers, a method named check too
        self.generic_visit(node)
        self._function_depth -= 1
        return node

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

    def _shared(self, name: str, where: ast.AST) -> ast.expr:
        """The node ``name`` of ``_SHARED``: the same in every assert, made once and used by all
        (compile() reads a node as often as it occurs). Shared nodes take the position of the first
        assert; the instructions they become (loading the helper class, the stores to and loads from
        its instance's slots) raise nothing that a test could show."""
        node = self._nodes.get(name)
        if node is None:
            what, ctx = _SHARED[name]
            if what in _SLOTS:
                node = ast.Attribute(self._shared("case", where), what, ctx)
            else:
                node = ast.Name(what, ctx)
            node = self._nodes[name] = _at(node, where)
        return node

    def _one(self, name: str, where: ast.AST) -> list[ast.expr]:
        """``[shared node]``, the list shared too (an Assign's targets, a Compare's comparators)."""
        nodes = self._lists.get(name)
        if nodes is None:
            nodes = self._lists[name] = [self._shared(name, where)]
        return nodes

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        if isinstance(node.test, ast.Constant) and node.test.value:
            # `assert True, "This prints if this assert fails 1 (good for debugging!)"`, HumanEval's: it holds
            # whatever the program does, so it tests nothing (it gave a program that raises 2 of 5 tests).
            return _at(ast.Pass(), node)
        test_id = len(self.asserts)
        text = self.lines.segment(node) or ast.unparse(node)
        deferred = self._loop_depth > 0 or self._in_helper
        self.asserts.append(AssertInfo(node.lineno, text.strip(), deferred))
        if deferred and not self._in_helper:  # a helper's asserts are settled by check()'s end alone
            self._pending_in_loop.append(test_id)
        # with _grpo_A(ID[, MSG]) as _grpo_c:
        #     _grpo_c.l = LEFT; _grpo_c.r = RIGHT; _grpo_c.f = not (_grpo_c.l OP _grpo_c.r)  (one comparison)
        #     _grpo_c.f = not (TEST)                                                          (otherwise)
        #     if _grpo_c.f: _grpo_c.m = MSG                                 (a message that is not a constant)
        # Every node made here takes the assert's position, as the expressions of the assert keep theirs.
        shared, one = self._shared, self._one
        args: list[ast.expr] = [_at(ast.Constant(test_id), node)]
        msg = node.msg
        if isinstance(msg, ast.Constant):
            args.append(msg)  # evaluating it cannot raise: given to the instance now
            msg = None
        test = node.test
        body: list[ast.stmt] = []
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            # Evaluate each side once, then compare the saved values: same order, same result as the
            # original expression, and both sides can be shown in the feedback. The Compare node itself
            # is reused, at the assert's position.
            body.append(_at(ast.Assign(one("l_", node), test.left, None), node))
            body.append(_at(ast.Assign(one("r_", node), test.comparators[0], None), node))
            test.left, test.comparators = shared("l", node), one("r", node)
            _at(test, node)
        failed = _at(ast.UnaryOp(_NOT, test), node)
        body.append(_at(ast.Assign(one("f_", node), failed, None), node))
        if msg is not None:
            body.append(_at(ast.If(shared("f", node), [_at(ast.Assign(one("m_", node), msg, None), node)], []), node))
        case = _at(ast.Call(shared("class", node), args, []), node)
        item = ast.withitem(case, shared("case=", node))
        return _at(ast.With([item], body, None), node)


_LOAD, _STORE, _NOT = ast.Load(), ast.Store(), ast.Not()
_SLOTS = ("i", "m", "l", "r", "f")  # those of the helper class
# The nodes every rewritten assert has in common: a name, or a slot of the instance (``_grpo_c.l``).
_SHARED: dict[str, tuple[str, ast.expr_context]] = {
    "class": (_HELPER_CLASS, _LOAD), "case": (_CASE, _LOAD), "case=": (_CASE, _STORE),
    "l": ("l", _LOAD), "r": ("r", _LOAD), "f": ("f", _LOAD),
    "l_": ("l", _STORE), "r_": ("r", _STORE), "f_": ("f", _STORE), "m_": ("m", _STORE),
}


def instrument(source: str) -> tuple[ast.Module, list[AssertInfo]]:
    """Parse ``source`` and rewrite its asserts; returns the module to compile and the assert table
    (index = test id). Raises SyntaxError when the source does not parse."""
    tree = ast.parse(source)
    rewriter = _AssertRewriter(source)
    tree = rewriter.visit(tree)  # every node it adds has a position: no fix_missing_locations pass
    if rewriter.asserts:
        # after the docstring and the __future__ imports, which must come first
        body, at = tree.body, 0
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            at = 1
        while at < len(body) and isinstance(body[at], ast.ImportFrom) and body[at].module == "__future__":
            at += 1
        body[at:at] = _helper_nodes()
    return tree, rewriter.asserts
