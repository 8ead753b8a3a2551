"""grpo-reward-code on completions written the way instruct models (Qwen, Llama, SmolLM, DeepSeek) answer
HumanEval/MBPP-style tasks (test_code + entry_point) and stdin/stdout tasks (io_cases): each case is one
habit of theirs, and its score is the one a careful grader gives (the program the model meant, run as
Python runs it). All cases go to one real service in a few batches, so the module stays fast.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from reward_service_kit import EntryPoint, item, reward_stub

from grpo.reward.v1 import reward_pb2

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap)")

SANDBOX_PYTHON = "/usr/bin/python3"
HAS_NUMPY = subprocess.run([SANDBOX_PYTHON, "-c", "import numpy"], capture_output=True).returncode == 0

# A HumanEval-style task: the model sees the stub and answers with the whole function.
RUNNING_MAX_TESTS = (
    "def check(candidate):\n"
    "    assert candidate([]) == []\n"
    "    assert candidate([1, 2, 3, 4]) == [1, 2, 3, 4]\n"
    "    assert candidate([4, 3, 2, 1]) == [4, 4, 4, 4]\n"
    "    assert candidate([3, 2, 3, 100, 3]) == [3, 3, 3, 100, 100]\n"
)
SOLUTION = (
    "from typing import List\n"
    "\n"
    "\n"
    "def running_max(numbers: List[int]) -> List[int]:\n"
    "    result = []\n"
    "    best = None\n"
    "    for n in numbers:\n"
    "        best = n if best is None else max(best, n)\n"
    "        result.append(best)\n"
    "    return result\n"
)
# The same without its import line, for completions that put the import elsewhere.
SOLUTION_BODY = SOLUTION.split("\n\n\n", 1)[1]

# A recursive task: the depth reaches 3000, over Python's default limit of 1000.
DEPTH_TESTS = (
    "def check(candidate):\n"
    "    assert candidate(10) == 55\n"
    "    assert candidate(3000) == 4501500\n"
)

# stdin/stdout: n, then n integers; print them sorted, one line, separated by spaces.
SORT_IO = (("3\n3 1 2\n", "1 2 3\n"), ("5\n5 -1 4 4 0\n", "-1 0 4 4 5\n"), ("1\n7\n", "7\n"))
# stdin/stdout: a chain of n nodes given as parent links; print the depth of the deepest one (recursion
# 20000 deep, which needs a raised limit and, in CPython, a thread with a bigger stack).
CHAIN_N = 20000
CHAIN_IO = ((f"{CHAIN_N}\n" + " ".join(str(i) for i in range(-1, CHAIN_N - 1)) + "\n", f"{CHAIN_N - 1}\n"),
            ("3\n-1 0 0\n", "1\n"))


def humaneval(tests: str = RUNNING_MAX_TESTS, entry_point: str = "running_max") -> reward_pb2.CodeTests:
    return reward_pb2.CodeTests(test_code=tests, entry_point=entry_point, timeout_seconds=5)


def io(cases: tuple[tuple[str, str], ...] = SORT_IO) -> reward_pb2.CodeTests:
    return reward_pb2.CodeTests(io_cases=[reward_pb2.IOCase(stdin=s, expected_stdout=e) for s, e in cases],
                                timeout_seconds=5)


def fence(code: str, lang: str = "python") -> str:
    return f"```{lang}\n{code.rstrip(chr(10))}\n```"


EVALPLUS_TESTS = (
    "def is_floats(x) -> bool:\n"
    "    if isinstance(x, float):\n        return True\n"
    "    if isinstance(x, (list, tuple)):\n        return all(isinstance(i, float) for i in x)\n"
    "    return False\n\n\n"
    "def allclose(a, b, rtol, atol):\n    return abs(a - b) <= atol + rtol * abs(b)\n\n\n"
    "def assertion(out, exp, atol):\n"
    "    exact_match = out == exp\n"
    "    if atol == 0 and is_floats(exp):\n        atol = 1e-6\n"
    "    if not exact_match and atol != 0:\n        assert allclose(out, exp, rtol=1e-07, atol=atol)\n"
    "    else:\n        assert exact_match\n\n\n"
    "def check(candidate):\n"
    "    inputs = [[1, 2], [3, 4], [10, -3], [0, 0]]\n"
    "    results = [3, 7, 7, 0]\n"
    "    for inp, exp in zip(inputs, results):\n        assertion(candidate(*inp), exp, 0)\n")


@dataclass(frozen=True)
class Case:
    id: str
    completion: str
    tests: reward_pb2.CodeTests
    score: float
    feedback: str = ""  # a part of the feedback the score rests on
    output_exceeded: bool = False


SORT_READ_ALL = "import sys\n\ndata = sys.stdin.read().split()\nn = int(data[0])\nxs = sorted(map(int, data[1:1 + n]))\nprint(*xs)\n"

CASES = [
    # ---- HumanEval: what models put around a right function ----
    Case("humaneval-plain-fence",
         "Here is the implementation:\n\n" + fence(SOLUTION) + "\n\nIt keeps the largest value seen so far.",
         humaneval(), 1.0),
    Case("humaneval-main-guard-demo-is-not-run",
         fence(SOLUTION + "\n\nif __name__ == \"__main__\":\n    print(running_max(list(map(int, input().split()))))\n"),
         humaneval(), 1.0),
    Case("humaneval-example-calls-that-print",
         fence(SOLUTION + "\n\n# Example usage:\nprint(running_max([1, 3, 2]))  # [1, 3, 3]\n"
                          "print(running_max([]))  # []\n"), humaneval(), 1.0),
    Case("humaneval-doctest-docstring-and-testmod-under-main",
         fence("from typing import List\n\n\ndef running_max(numbers: List[int]) -> List[int]:\n"
               '    """Running maximum.\n\n    >>> running_max([1, 3, 2])\n    [1, 3, 3]\n    """\n'
               "    out: List[int] = []\n    for n in numbers:\n        out.append(n if not out else max(out[-1], n))\n"
               "    return out\n\n\nif __name__ == \"__main__\":\n    import doctest\n\n    doctest.testmod()\n"),
         humaneval(), 1.0),
    Case("humaneval-doctest-testmod-at-module-level",
         fence(SOLUTION + "\n\nimport doctest\ndoctest.testmod()\n"), humaneval(), 1.0),
    # The sandbox's interpreter is the system's: an `import numpy` there scores as Python runs it there.
    Case("humaneval-unused-numpy-import-follows-the-sandbox-interpreter",
         fence("import numpy as np\n" + SOLUTION), humaneval(), 1.0 if HAS_NUMPY else 0.0,
         "" if HAS_NUMPY else "No module named 'numpy'"),
    Case("humaneval-stdlib-imports", fence("import itertools\nimport math\n" + SOLUTION_BODY.replace(
        "List[int]", "list")), humaneval(), 1.0),
    Case("humaneval-helpers-defined-after-the-entry-point",
         fence("def running_max(numbers):\n    return list(_scan(numbers, _bigger))\n\n\n"
               "def _scan(xs, op):\n    acc = None\n    for x in xs:\n        acc = x if acc is None else op(acc, x)\n"
               "        yield acc\n\n\ndef _bigger(a, b):\n    return a if a > b else b\n"), humaneval(), 1.0),
    Case("humaneval-class-with-module-level-function",
         fence("class Solution:\n    def running_max(self, numbers):\n        out = []\n        for n in numbers:\n"
               "            out.append(max(out[-1], n) if out else n)\n        return out\n\n\n"
               "def running_max(numbers):\n    return Solution().running_max(numbers)\n"), humaneval(), 1.0),
    # A method is not the function the task names: nothing defines `running_max`.
    Case("humaneval-class-only-defines-no-entry-point",
         fence("class Solution:\n    def running_max(self, numbers):\n        out = []\n        for n in numbers:\n"
               "            out.append(max(out[-1], n) if out else n)\n        return out\n"), humaneval(), 0.0,
         "does not define `running_max`"),
    Case("humaneval-recursion-with-raised-limit",
         fence("import sys\n\nsys.setrecursionlimit(10000)\n\n\ndef tri(n):\n    return 0 if n == 0 else n + tri(n - 1)\n"),
         humaneval(DEPTH_TESTS, "tri"), 1.0),
    # Python's own limit: the deep call fails, the shallow one still counts.
    Case("humaneval-recursion-over-the-default-limit",
         fence("def tri(n):\n    return 0 if n == 0 else n + tri(n - 1)\n"), humaneval(DEPTH_TESTS, "tri"), 0.5,
         "RecursionError"),
    # The program as run fails before any test (HumanEval's own harness runs program and tests as one).
    Case("humaneval-demo-code-raising-after-the-function",
         fence(SOLUTION + "\n\nprint(running_max(None))\n"), humaneval(), 0.0,
         "running the completion failed"),
    Case("humaneval-unguarded-input-demo",
         fence(SOLUTION + "\n\nnums = list(map(int, input().split()))\nprint(running_max(nums))\n"), humaneval(), 0.0,
         "EOFError"),
    Case("humaneval-own-asserts-that-hold", fence(SOLUTION + "\n\nassert running_max([2, 1]) == [2, 2]\n"),
         humaneval(), 1.0),
    Case("humaneval-exit-under-main-guard", fence(SOLUTION + "\n\nif __name__ == '__main__':\n    exit(0)\n"),
         humaneval(), 1.0),
    # Two fences: the helpers (or the imports) first, then the function that uses them.
    Case("humaneval-helpers-in-an-earlier-fence",
         "First a helper:\n\n" + fence("def _bigger(a, b):\n    return a if a > b else b\n")
         + "\n\nThen the function:\n\n" + fence("def running_max(numbers):\n    out = []\n    for n in numbers:\n"
                                                "        out.append(_bigger(out[-1], n) if out else n)\n"
                                                "    return out\n"), humaneval(), 1.0),
    Case("humaneval-imports-in-an-earlier-fence",
         "We need:\n\n" + fence("from itertools import accumulate") + "\n\nSolution:\n\n"
         + fence("def running_max(numbers):\n    return list(accumulate(numbers, max))\n"), humaneval(), 1.0),
    Case("humaneval-typing-import-in-an-earlier-fence",
         "We need:\n\n" + fence("from typing import List") + "\n\nSolution:\n\n" + fence(SOLUTION_BODY),
         humaneval(), 1.0),
    Case("humaneval-helper-in-a-later-fence",
         fence("import math\n\n\ndef running_max(numbers):\n    return [_peak(numbers[:i + 1]) for i in range(len(numbers))]\n")
         + "\n\nwhere the helper is:\n\n" + fence("def _peak(xs):\n    return max(xs) if xs else -math.inf\n"),
         humaneval(), 1.0),
    # ... but the names a block binds itself are never taken from another block, nor is usage code.
    Case("humaneval-a-later-usage-fence-is-not-run",
         fence(SOLUTION) + "\n\nUsage:\n\n" + fence("print(running_max(None))"), humaneval(), 1.0),
    Case("humaneval-wrong-function-with-a-helper-fence",
         fence("def _bigger(a, b):\n    return a if a < b else b\n") + "\n\n"
         + fence("def running_max(numbers):\n    out = []\n    for n in numbers:\n"
                 "        out.append(_bigger(out[-1], n) if out else n)\n    return out\n"), humaneval(), 0.25),
    Case("humaneval-signature-stub-repeated-then-solution",
         fence("from typing import List\n\n\ndef running_max(numbers: List[int]) -> List[int]:\n"
               '    """ From a given list of integers, generate a list of rolling maximum elements."""\n\n\n'
               + SOLUTION_BODY), humaneval(), 1.0),
    Case("humaneval-stub-in-its-own-fence-then-solution",
         "The signature is:\n\n" + fence("from typing import List\n\ndef running_max(numbers: List[int]) -> List[int]:\n"
                                         "    pass\n")
         + "\n\nFull implementation:\n\n" + fence(SOLUTION), humaneval(), 1.0),
    Case("humaneval-pycon-examples-after-the-solution",
         fence(SOLUTION) + "\n\nExamples:\n\n" + fence(">>> running_max([1, 3, 2])\n[1, 3, 3]"), humaneval(), 1.0),
    Case("humaneval-untagged-fence", "Here is the completed function:\n\n" + fence(SOLUTION, ""), humaneval(), 1.0),
    Case("humaneval-reasoning-then-answer",
         "<think>\nKeep the best so far. Draft:\n" + fence("def running_max(numbers):\n    return numbers\n")
         + "\nNo, that is wrong.\n</think>\n\n" + fence(SOLUTION), humaneval(), 1.0),
    Case("humaneval-bare-code-with-prose-around",
         "Sure! Here's the function:\n\n" + SOLUTION + "\nThis runs in O(n) time.", humaneval(), 1.0),
    Case("humaneval-moderate-debug-prints",
         fence(SOLUTION.replace("        result.append(best)\n",
                                "        result.append(best)\n        print('debug', n, best, result)\n")),
         humaneval(), 1.0),
    # Output past the cap (--max-output-bytes, 64 KiB) is dropped, not judged: a right function that prints
    # 300 KB passes (it scored 0 when the cap stopped it), a wrong one keeps its partial score.
    Case("humaneval-debug-output-over-the-cap",
         fence(SOLUTION + "\n\nfor i in range(20000):\n    print('debug line', i)\n"), humaneval(), 1.0,
         "all 4 tests passed"),
    Case("humaneval-wrong-function-with-debug-output-over-the-cap",
         fence("import sys\n\ndef running_max(numbers):\n    for i in range(5000):\n"
               "        print('debug line', i)\n        print('debug line', i, file=sys.stderr)\n"
               "    return sorted(numbers)\n"), humaneval(), 0.5, "test 3 of 4 failed"),
    Case("humaneval-wrong-function", fence("def running_max(numbers):\n    return sorted(numbers)\n"), humaneval(),
         0.5, "test 3 of 4 failed"),
    # ---- EvalPlus (HumanEval+/MBPP+): its assertion() helper holds two asserts, one per branch, and each
    # input takes one. The assert a program's inputs never reach is no test of it: it was counted as
    # passed, so a function wrong on every input got 0.5. (np.allclose written out: no numpy here.)
    Case("evalplus-right-function", fence("def add(a, b):\n    return a + b\n"), humaneval(EVALPLUS_TESTS, "add"), 1.0),
    Case("evalplus-wrong-on-every-input", fence("def add(a, b):\n    return 42\n"),
         humaneval(EVALPLUS_TESTS, "add"), 0.0, "assert exact_match"),
    # HumanEval's `assert True, "This prints if this assert fails"` lines hold whatever the program does.
    Case("humaneval-assert-true-lines-are-no-tests", fence("def total(xs):\n    raise NotImplementedError\n"),
         humaneval("def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n"
                   "    assert True, 'This prints if this assert fails 1 (good for debugging!)'\n"
                   "    assert candidate([]) == 0\n"
                   "    assert True, 'This prints if this assert fails 2 (also good for debugging!)'\n", "total"),
         0.0, "test 1 of 2 failed"),
    # ---- stdin/stdout ----
    Case("io-input-loop-until-eof",
         fence("import sys\n\nlines = []\nwhile True:\n    try:\n        lines.append(input())\n"
               "    except EOFError:\n        break\nxs = sorted(map(int, lines[1].split()))\nprint(' '.join(map(str, xs)))\n"),
         io(), 1.0),
    Case("io-stdin-read-split-print-star", fence(SORT_READ_ALL), io(), 1.0),
    Case("io-trailing-space-and-no-newline",
         fence("n = int(input())\nfor x in sorted(map(int, input().split())):\n    print(x, end=' ')\n"), io(), 1.0),
    # The prompt is part of the output the grader compares: "Enter n: Enter the numbers: 1 2 3".
    Case("io-interactive-prompts-fail",
         fence("n = int(input('Enter n: '))\nxs = list(map(int, input('Enter the numbers: ').split()))\n"
               "print(*sorted(xs))\n"), io(), 0.0, "got:\nEnter n: Enter the numbers: 1 2 3"),
    Case("io-windows-line-endings-in-expected-output-and-stdin", fence(SORT_READ_ALL),
         io((("3\r\n3 1 2\r\n", "1 2 3\r\n"), ("2\r\n2 1\r\n", "1 2\r\n"))), 1.0),
    Case("io-open-0", fence("n, *xs = map(int, open(0).read().split())\nprint(*sorted(xs[:n]))\n"), io(), 1.0),
    Case("io-readline-alias",
         fence("import sys\ninput = sys.stdin.readline\n\nn = int(input())\nxs = sorted(map(int, input().split()))\n"
               "sys.stdout.write(' '.join(map(str, xs)) + '\\n')\n"), io(), 1.0),
    Case("io-buffer-read", fence("import sys\n\ndata = sys.stdin.buffer.read().split()\n"
                                 "print(*sorted(int(x) for x in data[1:]))\n"), io(), 1.0),
    Case("io-main-function-under-main-guard",
         fence("def main():\n    n = int(input())\n    print(*sorted(map(int, input().split())))\n\n\n"
               "if __name__ == \"__main__\":\n    main()\n"), io(), 1.0),
    Case("io-debug-output-on-stderr",
         fence("import sys\n\nn = int(input())\nxs = sorted(map(int, input().split()))\n"
               "print('DEBUG', xs, file=sys.stderr)\nprint(*xs)\n"), io(), 1.0),
    Case("io-exit-0-after-printing", fence(SORT_READ_ALL + "exit(0)\n"), io(), 1.0),
    Case("io-sys-exit-after-printing", fence(SORT_READ_ALL + "sys.exit()\n"), io(), 1.0),
    Case("io-sys-exit-main-returning-none",
         fence("import sys\n\n\ndef main():\n    data = sys.stdin.read().split()\n    print(*sorted(map(int, data[1:])))\n\n\n"
               "sys.exit(main())\n"), io(), 1.0),
    # A runtime error after the right output is still a runtime error (exit status 1), as judges count it.
    Case("io-crash-after-the-right-output", fence(SORT_READ_ALL + "print(data[100])\n"), io(), 0.0,
         "exited with status 1"),
    Case("io-setrecursionlimit-deep-recursion",
         fence("import sys\nsys.setrecursionlimit(10000)\n\n\ndef depth(v, parent_of):\n"
               "    return 0 if parent_of[v] < 0 else 1 + depth(parent_of[v], parent_of)\n\n\n"
               "n = int(input())\nparents = list(map(int, input().split()))\nprint(max(depth(v, parents) for v in range(n)))\n"),
         io((("3\n-1 0 0\n", "1\n"), ("4\n-1 0 1 2\n", "3\n"))), 1.0),
    Case("io-threading-with-a-larger-stack",
         fence("import sys\nimport threading\n\n\ndef main():\n    n = int(sys.stdin.readline())\n"
               "    parent = list(map(int, sys.stdin.readline().split()))\n    children = [[] for _ in range(n)]\n"
               "    root = 0\n    for v, p in enumerate(parent):\n        if p < 0:\n            root = v\n"
               "        else:\n            children[p].append(v)\n\n    def deepest(v):\n"
               "        return max((1 + deepest(c) for c in children[v]), default=0)\n\n    print(deepest(root))\n\n\n"
               "sys.setrecursionlimit(1 << 20)\nthreading.stack_size(1 << 27)\nthreading.Thread(target=main).start()\n"),
         io(CHAIN_IO), 1.0),
    Case("io-samples-in-untagged-fences",
         "Read the numbers and sort them.\n\n" + fence(SORT_READ_ALL) + "\n\nInput:\n" + fence("3\n3 1 2", "")
         + "\nOutput:\n" + fence("1 2 3", ""), io(), 1.0),
    Case("io-run-command-in-a-bash-fence", fence(SORT_READ_ALL) + "\n\nRun it with:\n"
         + fence("python3 solution.py < input.txt", "bash"), io(), 1.0),
    # Two fences: a function first, then the lines that read the input and call it.
    Case("io-solve-in-an-earlier-fence",
         "The core:\n\n" + fence("def solve(xs):\n    return sorted(xs)\n") + "\n\nReading the input:\n\n"
         + fence("n = int(input())\nprint(*solve(list(map(int, input().split()))))\n"), io(), 1.0),
    Case("io-constant-and-import-in-an-earlier-fence",
         fence("import sys\nSEP = ' '\n") + "\n\n"
         + fence("data = sys.stdin.read().split()\nprint(*sorted(int(x) for x in data[1:]), sep=SEP)\n"), io(), 1.0),
    # A whole program, then a fence that only tries it on the sample: the program is what runs.
    Case("io-whole-program-then-a-sample-harness-fence",
         fence("def main():\n    n = int(input())\n    print(*sorted(map(int, input().split())))\n\n\n"
               "if __name__ == \"__main__\":\n    main()\n") + "\n\nTo test it:\n\n"
         + fence("import io\nimport sys\n\nsys.stdin = io.StringIO('3\\n3 1 2\\n')\nmain()\n"), io(), 1.0),
    Case("io-whole-program-then-a-call-fence",
         fence("def solve(xs):\n    return sorted(xs)\n\n\nn = int(input())\nprint(*solve(list(map(int, input().split()))))\n")
         + "\n\nFor example:\n\n" + fence("print(solve([3, 1, 2]))  # [1, 2, 3]"), io(), 1.0),
    # After the whole program: a slice of it (`n` is its main's), or a sample of comments alone.
    Case("io-whole-program-then-a-slice-of-it",
         fence("import sys\n\n\ndef main():\n    n = int(sys.stdin.readline())\n"
               "    xs = sorted(map(int, sys.stdin.readline().split()))\n    print(*xs[:n])\n\n\nmain()\n")
         + "\n\nThe key line is:\n\n" + fence("print(*xs[:n])"), io(), 1.0),
    Case("io-whole-program-then-a-comment-only-sample",
         fence(SORT_READ_ALL) + "\n\nExample:\n\n" + fence("# Input:\n# 3\n# 3 1 2\n# Output:\n# 1 2 3"), io(), 1.0),
    Case("io-wrong-answer", fence("n = int(input())\nprint(*sorted(map(int, input().split()), reverse=True))\n"),
         io(), 1 / 3, "io case 1 of 3 failed: wrong output"),
]


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, reward_pb2.ScoreResult]]:
    svc = EntryPoint("grpo_rewards.code_sandbox.server", "--listen", "127.0.0.1:0", "--workers", "2",
                     "--python", SANDBOX_PYTHON)
    try:
        with grpc.insecure_channel(svc.address) as channel:
            stub = reward_stub(channel)
            items = [item(case.id, case.completion, code=case.tests) for case in CASES]
            out = []
            for at in range(0, len(items), 64):  # the service's default --max-batch
                out += stub.Score(reward_pb2.ScoreRequest(items=items[at:at + 64]), timeout=300).results
        yield {r.id: r for r in out}
    finally:
        assert svc.terminate() == 0


def test_case_ids_are_unique() -> None:
    assert len({case.id for case in CASES}) == len(CASES)


# The program is compiled as Python runs it: not with the runner's own `from __future__ import
# annotations` (compile() inherits the caller's future flags unless told not to), so a function annotated
# with a `List` it never imports fails with NameError when the `def` runs, as it does in an io case.
CASES.append(Case("humaneval-annotation-without-its-import", fence(SOLUTION_BODY), humaneval(), 0.0,
                  "NameError: name 'List' is not defined"))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_realistic_completion_gets_the_score_a_careful_grader_gives(case: Case, results) -> None:
    r = results[case.id]
    assert r.status == reward_pb2.SCORE_STATUS_OK, (reward_pb2.ScoreStatus.Name(r.status), r.status_message)
    assert r.score == pytest.approx(case.score), r.feedback
    assert case.feedback in r.feedback
    assert bool(r.components["output_exceeded"]) == case.output_exceeded
