"""The code sandbox's program when a completion spreads it over several fences (extract.with_other_blocks):
the chosen block gets the definitions it reads from the other blocks, and nothing else of them."""

from __future__ import annotations

import pytest

from grpo_rewards.code_sandbox.extract import PROSE_CHECK_MAX_CHARS, extract_code


def fences(*bodies: str) -> str:
    return "\n\nThen:\n\n".join(f"```python\n{body}```" for body in bodies)


HELPER = "def _big(a, b):\n    return a if a > b else b\n"
USES_HELPER = "def peak(xs):\n    out = xs[0]\n    for x in xs:\n        out = _big(out, x)\n    return out\n"


@pytest.mark.parametrize(("completion", "entry_point", "expected"), [
    # a helper before, after, and the imports it needs in turn (a third block)
    (fences(HELPER, USES_HELPER), "peak", HELPER + "\n\n" + USES_HELPER),
    (fences(USES_HELPER, HELPER), "peak", HELPER + "\n\n" + USES_HELPER),
    (fences("import math\n", "def _big(a, b):\n    return math.fmax(a, b)\n", USES_HELPER), "peak",
     "import math\n\ndef _big(a, b):\n    return math.fmax(a, b)\n\n\n" + USES_HELPER),
    # example calls and prints of the other blocks do not come along; `import x; call()` brings the import
    (fences(HELPER + "\nprint(_big(1, 2))\n", USES_HELPER), "peak", HELPER + "\n\n" + USES_HELPER),
    (fences("import math; print(math.pi)\n", "def peak(xs):\n    return math.fsum(xs)\n"), "peak",
     "import math\n\n\ndef peak(xs):\n    return math.fsum(xs)\n"),
    # a decorated helper keeps its decorator; a constant comes as its assignment
    (fences("import functools\n\n@functools.cache\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
            "def peak(xs):\n    return max(fib(x) for x in xs) % MOD\n", "MOD = 7\n"), "peak",
     "import functools\n\n@functools.cache\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n"
     "MOD = 7\n\n\ndef peak(xs):\n    return max(fib(x) for x in xs) % MOD\n"),
    # the last definition before the chosen block wins, over earlier ones and later ones
    (fences("def _big(a, b):\n    return a\n", HELPER, USES_HELPER, "def _big(a, b):\n    return b\n"), "peak",
     HELPER + "\n\n" + USES_HELPER),
    # the task's stub quoted back can give an import, never the stub itself
    ("> ```python\n> from typing import List\n> def peak(xs: List[int]) -> int:\n>     pass\n> ```\n\n"
     "```python\ndef peak(xs: List[int]) -> int:\n    return max(xs)\n```",
     "peak", "from typing import List\n\n\ndef peak(xs: List[int]) -> int:\n    return max(xs)\n"),
], ids=["helper-before", "helper-after", "helper-needing-an-import", "no-example-calls", "import-not-its-call",
        "decorator-and-constant", "last-before-wins", "import-from-quoted-stub"])
def test_a_block_gets_the_definitions_it_reads_from_the_other_blocks(completion: str, entry_point: str,
                                                                      expected: str) -> None:
    assert extract_code(completion, entry_point) == expected


@pytest.mark.parametrize(("completion", "entry_point"), [
    (fences(HELPER, HELPER + USES_HELPER), "peak"),  # it misses nothing
    (fences(HELPER, "from helpers import *\n" + USES_HELPER), "peak"),  # a star import may define anything
    (fences(HELPER, USES_HELPER + "print(peak([1, 2])\n"), "peak"),  # it does not compile: it fails as itself
    (fences("print(_big(1, 2))\n", USES_HELPER), "peak"),  # no other block defines what it misses
    (fences(HELPER, "def peak(xs):\n    def _big(a, b):\n        return a\n    return _big(xs[0], 0)\n"), "peak"),
], ids=["misses-nothing", "star-import", "does-not-compile", "nothing-defines-it", "binds-it-locally"])
def test_a_block_stays_as_it_is_when_other_blocks_have_nothing_it_misses(completion: str, entry_point: str) -> None:
    last = completion.rsplit("```python\n", 1)[1].removesuffix("```")
    assert extract_code(completion, entry_point) == last


def test_blocks_over_the_parse_limit_together_are_taken_as_they_are() -> None:
    """They would be parsed in the service's process: past PROSE_CHECK_MAX_CHARS they are not."""
    padding = "x = 1\n" * (PROSE_CHECK_MAX_CHARS // 6)
    assert extract_code(fences(HELPER + padding, USES_HELPER), "peak") == USES_HELPER
    assert extract_code(fences(HELPER, USES_HELPER), "peak") == HELPER + "\n\n" + USES_HELPER


WHOLE = "def main():\n    print(sum(map(int, input().split())))\n\n\nif __name__ == '__main__':\n    main()\n"


@pytest.mark.parametrize(("completion", "expected"), [
    # a whole stdin program, then a block that only calls into it: the program
    (fences(WHOLE, "import io, sys\nsys.stdin = io.StringIO('1 2')\nmain()\n"), WHOLE),
    (fences(WHOLE, "main()\n"), WHOLE),
    # a block that reads stdin itself is the program, given what it misses
    (fences("def solve(xs):\n    return sum(xs)\n", "print(solve(map(int, input().split())))\n"),
     "def solve(xs):\n    return sum(xs)\n\n\nprint(solve(map(int, input().split())))\n"),
    # ... and so is one calling a block that defines only (it reads no stdin: nothing else could be)
    (fences("def main():\n    print(sum(map(int, input().split())))\n", "main()\n"),
     "def main():\n    print(sum(map(int, input().split())))\n\n\nmain()\n"),
], ids=["sample-harness", "bare-call", "block-reading-stdin", "call-of-a-definitions-block"])
def test_without_an_entry_point_a_whole_program_wins_over_a_block_that_only_tries_it(completion: str,
                                                                                     expected: str) -> None:
    assert extract_code(completion) == expected


@pytest.mark.parametrize("definition", [
    "class Solver:\n    def __init__(self, n):\n        self.n = n\n",
    "Solver = lambda n: n * 2\n",
    "Solver: Callable[[int], int] = double\n",
    "async def Solver(n):\n    return n\n",
])
def test_the_block_that_defines_the_entry_point_by_class_or_assignment_is_picked(definition: str) -> None:
    """Only `def NAME(` counted as defining it: the last block, an example reading input(), was run instead
    (with the definition put before it) and failed every test."""
    example = "for x in input().split():\n    print(Solver(int(x)))\n"
    completion = f"Here it is:\n```python\n{definition}```\nUse it so:\n```python\n{example}```\n"
    code = extract_code(completion, "Solver")
    assert definition in code and "input()" not in code, code
