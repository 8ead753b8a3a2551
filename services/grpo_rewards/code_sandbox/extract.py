"""Find the program in a model's completion: the contents of a Markdown code fence when there is one.

Fences are read as CommonMark reads them, plus the slips models make:
- an opening fence is ``` or ~~~ (or longer), with an info string whose first word is the language
  (`python`, `Python3`, `py`, `{python}`, `python:solution.py`);
- the block ends at a closing fence of the same character, at least as long, indented at most three
  columns more than the opening one (so a ``` inside an indented docstring does not end it); a block
  that would run to the end of the text, or into an opening fence with an info string, ends instead
  at its first closing fence indented deeper (a model indenting the fence like the code above it);
- a closing fence glued to the last line of code (`return x```) ends the block there;
- the opening fence's indentation is removed from the block's lines (a fence inside a numbered list);
- a block left open by a cut-off generation runs to the end of the text;
- a fence inside a blockquote (`> ```python`) is a fence: the block's lines lose the opening line's
  quote markers, and the block ends where the quote does (a line without them), as at the end of the text.

A completion without any fence may hold its code in tags instead (`tag_blocks`): HTML (`<pre>`,
`<pre><code class="language-python">`, a `<code>` spanning several lines; entities decoded) or
CodeLlama's `[PYTHON]...[/PYTHON]`.
"""

from __future__ import annotations

import ast
import builtins
import html
import re
import textwrap

from grpo_rewards.common.reasoning import answer_part

_OPEN = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)")
_CLOSE = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*")
_LANGUAGE = re.compile(r"[\s{.]*(?P<lang>[\w+#.-]*)")
_PYTHON = re.compile(r"py(?:thon)?[0-9.]*")  # python, py, python3, py3, python3.11
_MAX_FALLBACKS = 16
_QUOTE = re.compile(r"(?:[ ]{0,3}>[ \t]?)+")  # blockquote markers: `> `, `> > `, `>`
_QUOTE_MARK = re.compile(r"[ ]{0,3}>[ \t]?")


def _fits(fence: str, opening: str) -> bool:
    return fence[0] == opening[0] and len(fence) >= len(opening)


def _glued_close(line: str, opening: str) -> str | None:
    """The code of a line that ends in a closing fence glued to it (`return x```), else None."""
    text = line.rstrip(" \t")
    run = len(text) - len(text.rstrip(opening[0]))
    code = text[: len(text) - run].rstrip(" \t")
    if run < len(opening) or not code or code[-1] in "`~":
        return None
    return code


def _dedent(line: str, indent: int) -> str:
    blank = len(line) - len(line.lstrip(" \t"))
    return line[min(blank, indent):]


def _unquote(line: str, depth: int) -> str | None:
    """``line`` less ``depth`` blockquote markers, or None when it has fewer (it is outside the quote)."""
    pos = 0
    for _ in range(depth):
        mark = _QUOTE_MARK.match(line, pos)
        if mark is None:
            return None
        pos = mark.end()
    return line[pos:]


def _opening(line: str) -> tuple[re.Match[str] | None, int]:
    """The opening fence of ``line`` and the number of blockquote markers before it (0: not quoted)."""
    opening = _OPEN.fullmatch(line)
    if opening is not None or not line.lstrip(" ").startswith(">"):
        return opening, 0
    quote = _QUOTE.match(line)
    if quote is None:
        return None, 0
    return _OPEN.fullmatch(line, quote.end()), quote.group().count(">")


def code_blocks(text: str) -> list[tuple[str, str, bool]]:
    """(language, body, quoted) of each fenced block of ``text``, in order; language lower-cased, ""
    untagged; quoted: the fence is inside a blockquote."""
    lines = re.split(r"\r\n?|\n", text)
    if lines[-1] == "":
        lines.pop()
    blocks: list[tuple[str, str, bool]] = []
    fallbacks = _MAX_FALLBACKS  # each one rescans the rest of the text: bounded, so the work stays linear
    i = 0
    while i < len(lines):
        opening, depth = _opening(lines[i])
        i += 1
        if opening is None:
            continue
        fence, info = opening["fence"], opening["info"]
        if fence[0] == "`" and "`" in info:  # CommonMark: not a fence (inline code such as ```x```)
            continue
        indent = len(opening["indent"])
        body: list[str] = []
        deep: tuple[int, int] | None = None  # (lines of body, next line) at the first deeper closing fence
        closed = False
        while i < len(lines):
            line = lines[i] if not depth else _unquote(lines[i], depth)
            if line is None:  # the blockquote ends, and the block with it: as at the end of the text
                break
            i += 1
            close = _CLOSE.fullmatch(line)
            if close is not None and _fits(close["fence"], fence):
                if len(close["indent"]) <= indent + 3:
                    closed = True
                    break
                deep = deep or (len(body), i)
            reopened = _OPEN.fullmatch(line)
            if deep is not None and reopened is not None and reopened["info"].strip():
                i = len(lines)  # a new block opens: the deeper fence closed this one
                break
            glued = _glued_close(line, fence)
            body.append(_dedent(line if glued is None else glued, indent))
            if glued is not None:
                closed = True
                break
        if not closed and deep is not None and fallbacks:  # the deeper fence was the close after all
            fallbacks -= 1
            del body[deep[0]:]
            i = deep[1]
        lang = _LANGUAGE.match(info)
        blocks.append(((lang["lang"] if lang else "").lower(), "".join(f"{line}\n" for line in body), depth > 0))
    return blocks


# Tags some models put their code in when they write no fence. An opening tag's attributes are bounded
# (and hold no `<`), so that looking for tags stays linear on hostile text.
_TAG_OPEN = re.compile(r"<(?P<tag>pre|code)(?P<attrs>\s[^<>]{0,512})?>|^[ \t]*(?-i:\[(?P<bracket>PYTHON)\])",
                       re.IGNORECASE | re.MULTILINE)
_TAG_CLOSE = {"pre": re.compile(r"</pre\s*>", re.IGNORECASE), "code": re.compile(r"</code\s*>", re.IGNORECASE),
              "python": re.compile(r"\[/PYTHON\]")}
_INNER_CODE = re.compile(r"<code(?P<attrs>\s[^<>]{0,512})?>", re.IGNORECASE)
_CLASS = re.compile(r"""\bclass\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"'>]+))""", re.IGNORECASE)


def _html_language(attrs: str) -> str:
    """The language an HTML tag's class names (`language-python`, `lang-py`, `python`), lower-cased."""
    for found in _CLASS.finditer(attrs):
        for name in (found["dq"] or found["sq"] or found["bare"] or "").lower().split():
            for prefix in ("language-", "lang-"):
                if name.startswith(prefix) and len(name) > len(prefix):
                    return name[len(prefix):]
            if _PYTHON.fullmatch(name):
                return name
    return ""


def _tag_body(content: str) -> str:
    """A tag's content as a block's body: its lines less their common indentation and the blank lines
    around them, each ending in a newline."""
    lines = textwrap.dedent("\n".join(re.split(r"\r\n?|\n", content))).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "".join(f"{line}\n" for line in lines)


def tag_blocks(text: str) -> tuple[list[tuple[str, str, bool]], bool]:
    """(language, body, False) of each block of ``text`` held in tags, in order (as `code_blocks` gives
    them; a tag is never quoted), and whether all of them are HTML. The tags (names in any case):

    - ``<pre>...</pre>``, with or without a ``<code>`` inside;
    - ``<code>...</code>`` spanning several lines (one within a line is inline code in a sentence);
    - ``[PYTHON]...[/PYTHON]`` (CodeLlama's, upper case), the opening tag at the start of a line (so
      that a list ``[PYTHON]`` in code is no tag), tagged as Python.

    An HTML block's language is its tags' class (`language-python`, `lang-py`, `python`), untagged when
    they have none, and its entities are decoded (`&lt;` is `<`). A tag never closed runs to the end of
    the text (a cut-off generation); tags inside a block's content are part of it.
    """
    blocks: list[tuple[str, str, bool]] = []
    html_only = True
    pos = 0
    while (opening := _TAG_OPEN.search(text, pos)) is not None:
        kind = (opening["tag"] or opening["bracket"]).lower()
        closing = _TAG_CLOSE[kind].search(text, opening.end())
        content = text[opening.end(): closing.start() if closing else len(text)]
        pos = closing.end() if closing else len(text)  # each stretch of text is searched once
        lang = "python"
        if kind == "pre":
            lang = _html_language(opening["attrs"] or "")
            inner = _INNER_CODE.match(content.lstrip())
            if inner is not None:  # <pre><code ...>...</code></pre>
                content = content.lstrip()[inner.end():].rstrip()
                if content.lower().endswith("</code>"):
                    content = content[: -len("</code>")]
                lang = lang or _html_language(inner["attrs"] or "")
        elif kind == "code":
            if "\n" not in content and "\r" not in content:
                continue
            lang = _html_language(opening["attrs"] or "")
        if kind != "python":
            content = html.unescape(content)
        body = _tag_body(content)
        if body:
            blocks.append((lang, body, False))
            html_only = html_only and kind != "python"
    return blocks, html_only


# Parsing runs in the service's own process (the program's compile runs in the sandbox, under its memory
# limit) and costs about 350 times the text's size in memory: only answer-sized texts are looked at.
PROSE_CHECK_MAX_CHARS = 64 * 1024


def _compiles(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        return False
    return True


def without_prose(text: str) -> str:
    """`text` less the paragraphs of prose that open and close it, when the whole does not compile and
    what is left does: "Here is the solution:", then the code, then "This function adds ...". A
    paragraph (lines between blank lines) counts as prose when its first line reads like a sentence,
    bold text, a list item or a blockquote and is no Python statement on its own, and the paragraph
    does not compile either (`DIRS = [` over a list's items is code), or when it is a Markdown heading
    (`### Explanation`) over lines that do not compile (a `# Comment` over code is code). Otherwise
    `text` as it is: a program that does not compile fails as itself, and so does a text over
    PROSE_CHECK_MAX_CHARS (not parsed here at all)."""
    if len(text) > PROSE_CHECK_MAX_CHARS or _compiles(text):
        return text
    paragraphs = re.split(r"\n(?:[ \t]*\n)+", text)
    start, end = 0, len(paragraphs)
    while start < end and _is_prose(paragraphs[start]):
        start += 1
    while end > start and _is_prose(paragraphs[end - 1]):
        end -= 1
    if (start, end) == (0, len(paragraphs)):
        return text
    code = "\n\n".join(paragraphs[start:end])
    return code if code.strip() and _compiles(code) else text


# The first line of a paragraph of prose: a sentence ("Here is", "Sure! Here", "Note:", "Certainly."),
# bold text, a list item, a blockquote.
_HEADING = re.compile(r"[ \t]*#{1,6}[ \t]+[A-Z*]")
_PROSE_LINE = re.compile(r"[ \t]*(?:[A-Z][A-Za-z']*(?:[!,.:]?[ \t]+\S|[!.:][ \t]*$)|\*\*|[-*+][ \t]|\d+[.)][ \t]|>)")


def _is_prose(paragraph: str) -> bool:
    first = paragraph.strip("\n").split("\n", 1)[0]
    if not first.strip():
        return True
    if _HEADING.match(first):  # a comment to Python: prose only when the paragraph is no code
        return not _compiles(paragraph.strip("\n"))
    if _PROSE_LINE.match(first) is None or _compiles(first.strip()):
        return False
    return not _compiles(paragraph.strip("\n"))  # `DIRS = [` over the list's items is code


def _has_code(body: str) -> bool:
    """A line that is neither blank nor a comment."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in body.splitlines())


def extract_code(completion: str, entry_point: str = "") -> str:
    """The code to run from ``completion``.

    - A reasoning model's `<think>` block is not the answer: when the completion holds `</think>`, only
      the text after the last one is looked at (drafts in the reasoning are not run); a `<think>` never
      closed leaves no code (grpo_rewards.common.reasoning).
    - Fences (read as the module's docstring says): blocks tagged as Python (`python`, `py`,
      `python3`...) or untagged when none is tagged; among them the last one that defines
      ``entry_point`` when one is given and some block does, else the last block (models tend to put
      usage examples before or after the answer, and the answer last); a block inside a blockquote
      counts as if it came before all the others (a model quoting the task's stub back, after its
      answer too), so it is picked only when no block outside a quote would be. When the block picked
      reads names that only other blocks define (helpers or imports in one fence, the function in the
      next), it gets their definitions, or for a stdin program it may give way to the whole program it
      only tries out (`with_other_blocks`).
    - No fence, but code in tags (`tag_blocks`: `<pre>`, a `<code>` spanning lines, `[PYTHON]`): those
      blocks, picked by the same rule; unless all of them are HTML and the bare code below compiles
      (a program whose strings hold HTML is no HTML page).
    - Neither: the whole completion (a model told to answer with bare code), less the paragraphs of
      prose before and after the code when only without them does it compile (`without_prose`).
    Returns "" when the completion holds no code at all.
    """
    completion = answer_part(completion).text
    blocks = code_blocks(completion)
    if not blocks:
        if not completion.strip():
            return ""
        blocks, html_only = tag_blocks(completion)
        if not blocks or html_only:  # bare code is parsed (in this process) only when it may be the answer
            bare = without_prose(completion.strip("\n"))
            if not blocks or (len(bare) <= PROSE_CHECK_MAX_CHARS and _compiles(bare)):
                return bare
    # an empty block (a stray fence opening one), or one of comments alone (an example's "# Input: 3" /
    # "# Output: 6" after the program), is no candidate
    tagged = [(quoted, body) for lang, body, quoted in blocks if _PYTHON.fullmatch(lang) and _has_code(body)]
    pool = tagged or [(quoted, body) for lang, body, quoted in blocks if not lang and _has_code(body)]
    # a quoted block (often the task, quoted back) counts as if it came before every block outside quotes
    candidates = [body for _, body in sorted(pool, key=lambda candidate: not candidate[0])]
    if not candidates:
        return ""
    chosen = len(candidates) - 1
    if entry_point:
        # `def NAME(`, `class NAME` or an assignment `NAME = ...` (`NAME = lambda ...`, `NAME: T = ...`)
        name = re.escape(entry_point)
        definition = re.compile(rf"^\s*(?:(?:async\s+)?def\s+{name}\s*\(|class\s+{name}\b|{name}\s*(?::[^=\n]*)?=(?!=))",
                                re.MULTILINE)
        defining = [i for i, body in enumerate(candidates) if definition.search(body)]
        if defining:
            chosen = defining[-1]
    return with_other_blocks(candidates, chosen, stdin_program=not entry_point)


# What a program may read without defining it: builtins and a module's own globals.
_PREDEFINED = frozenset(dir(builtins)) | {"__file__", "__builtins__", "__cached__"}
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)


class _Block:
    """What one candidate block binds and reads, and its top-level definitions (as `with_other_blocks`
    takes them)."""

    def __init__(self, source: str) -> None:
        self.tree: ast.Module | None = None
        try:
            self.tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return
        self.bound, self.read, self.star = _names(self.tree)
        self.missing = set() if self.star else self.read - self.bound - _PREDEFINED
        self.reads_stdin = any(
            (isinstance(node, ast.Name) and node.id == "input" and isinstance(node.ctx, ast.Load))
            or (isinstance(node, ast.Attribute) and node.attr == "stdin" and isinstance(node.ctx, ast.Load))
            or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == 0)
            for node in ast.walk(self.tree))
        lines = source.splitlines()
        # name -> (position in the block, source, names it reads and binds nowhere itself)
        self.definitions: dict[str, tuple[int, str, set[str]]] = {}
        self.runs_code = False  # a top-level statement other than a definition or a docstring
        for position, stmt in enumerate(self.tree.body):
            names = _top_level_names(stmt)
            if not names:
                docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                self.runs_code = self.runs_code or not docstring
                continue
            decorators = getattr(stmt, "decorator_list", [])
            first = min([stmt.lineno, *(d.lineno for d in decorators)])
            text = "\n".join(lines[first - 1: stmt.end_lineno or stmt.lineno])
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                text = ast.get_source_segment(source, stmt) or text  # `import a; main()`: the import only
            bound, read, _ = _names(stmt)
            for name in names:
                self.definitions[name] = (position, text, read - bound - _PREDEFINED)


def _top_level_names(stmt: ast.stmt) -> list[str]:
    """The names a top-level statement defines when it is a definition: `def`, `class`, `import`
    (not `*`), an assignment to plain names (`MOD = 10**9 + 7`); [] for anything else."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        if any(alias.name == "*" for alias in stmt.names):
            return []
        return [alias.asname or alias.name.split(".")[0] for alias in stmt.names]
    if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
        return [t.id for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return [stmt.target.id]
    return []


def _names(tree: ast.AST) -> tuple[set[str], set[str], bool]:
    """(names bound anywhere in ``tree``, names read anywhere, whether it has a `from x import *`).
    Bound in any scope counts as bound: a name is taken as missing only when nothing binds it."""
    bound: set[str] = set()
    read: set[str] = set()
    star = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                star = star or alias.name == "*"
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound, read, star


def with_other_blocks(candidates: list[str], chosen: int, *, stdin_program: bool) -> str:
    """The program of block ``chosen`` among ``candidates`` (in the order `extract_code` ranks them),
    when it reads names that nothing in it binds (not builtins) and other blocks define them, as when a
    model writes its helpers (or imports) in one fence and the function in the next:

    - for a stdin program (``stdin_program``: no entry point), when the block does not read stdin and
      another block is a whole program that does (it reads stdin, runs code at its top level, misses no
      name) and defines one of those names, that block: the chosen one only uses it ("To test it:
      `sys.stdin = io.StringIO(...)`, `main()`"); the last such whole program too when no block defines
      any of those names (the chosen one is a slice of it: "The key line is: `print(n * 2)`");
    - otherwise the block with those top-level definitions (`def`, `class`, `import`, `NAME = ...`)
      of the other blocks put before it, and the definitions these need in turn: for each name, the
      last definition in the blocks before it, else the first in the blocks after it. Nothing else of
      the other blocks (their example calls, prints) runs.

    The block as it is when it misses nothing, does not compile, or the blocks are over
    PROSE_CHECK_MAX_CHARS together (they are parsed in the service's process)."""
    program = candidates[chosen]
    if len(candidates) < 2 or sum(map(len, candidates)) > PROSE_CHECK_MAX_CHARS:
        return program
    block = _Block(program)
    if block.tree is None or not block.missing:
        return program
    others = [(i, _Block(body)) for i, body in enumerate(candidates) if i != chosen]
    others = [(i, other) for i, other in others if other.tree is not None]
    if stdin_program and not block.reads_stdin:
        supplies = {i for i, other in others if block.missing & other.definitions.keys()}
        whole = [i for i, other in others if other.reads_stdin and other.runs_code and not other.missing]
        supplying = [i for i in whole if i in supplies]
        # With nothing supplying what it misses, a slice of the program quoted after it ("The key line is:
        # print(n * 2)", `n` local to its main) cannot run; the whole program can.
        if supplying or (whole and not supplies):
            return candidates[(supplying or whole)[-1]]
    # name -> ((block, position), source, names it needs): later blocks before the chosen one win, then
    # the blocks after it fill in what is still undefined
    found: dict[str, tuple[tuple[int, int], str, set[str]]] = {}
    for i, other in others:
        for name, (position, text, needs) in other.definitions.items():
            if i < chosen or name not in found:
                found[name] = ((i, position), text, needs)
    added: dict[tuple[int, int], str] = {}
    wanted = sorted(block.missing)
    seen = set(wanted)
    while wanted:
        name = wanted.pop()
        if name not in found:
            continue
        where, text, needs = found[name]
        added[where] = text
        for need in sorted(needs - block.bound - seen):
            seen.add(need)
            wanted.append(need)
    if not added:
        return program
    return "".join(f"{added[where]}\n\n" for where in sorted(added)) + "\n" + program
