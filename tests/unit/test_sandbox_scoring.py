"""From a sandbox run's events to score, status and feedback (pure aggregation)."""

from __future__ import annotations

import time

import pytest

from grpo.reward.v1 import reward_pb2
from grpo_rewards.code_sandbox.executor import RunRecord
from grpo_rewards.code_sandbox.extract import extract_code
from grpo_rewards.code_sandbox.scoring import verdict_from_run

PLAN = {"e": "plan", "asserts": [[2, False], [3, False], [5, True]], "io": 2}


def verdict(*events: dict, killed: str = "", exit_code: int = 0, stderr: str = "", scoring: str = "fraction",
            **observed: object):
    """The verdict of a run that reported ``events``; ``observed`` sets the kernel's accounting
    (RunRecord's cpu_s, max_rss_bytes, out_of_cpu, memory_near_limit)."""
    run = RunRecord(events=list(events), exit_code=exit_code, killed=killed, stderr=stderr, **observed)  # type: ignore[arg-type]
    return verdict_from_run(run, scoring=scoring, timeout_s=2.0, flood_output_bytes=1024)  # type: ignore[arg-type]


def test_done_asserts_pass_as_settled_unless_seen_failing() -> None:
    # The runner settles every assert that held before `done` (those in loops and helpers included).
    v = verdict(PLAN, {"e": "fail", "t": 1, "fb": "test 2 failed"}, {"e": "settle", "t": [0, 1, 2]},
                {"e": "done", "part": "asserts"}, {"e": "pass", "t": 3}, {"e": "fail", "t": 4, "fb": "io"},
                {"e": "done", "part": "io"})
    assert (v.tests_passed, v.tests_total) == (3, 5)
    assert v.score == pytest.approx(0.6)
    assert v.status == reward_pb2.SCORE_STATUS_OK
    assert v.feedback == "test 2 failed"


def test_an_assert_that_never_ran_is_no_test() -> None:
    """check() finished, and the helper's assert 2 neither held nor failed (an untaken branch): it is left
    out of the total. It was counted as passed: a program wrong on every input got credit for it."""
    v = verdict(PLAN, {"e": "fail", "t": 1, "fb": "test 2 failed"}, {"e": "settle", "t": [0]},
                {"e": "done", "part": "asserts"}, {"e": "pass", "t": 3}, {"e": "pass", "t": 4},
                {"e": "done", "part": "io"})
    assert (v.tests_passed, v.tests_total) == (3, 4)
    wrong_everywhere = verdict({"e": "plan", "asserts": [[2, True], [3, True]], "io": 0},
                               {"e": "fail", "t": 1, "fb": "exact match failed"}, {"e": "done", "part": "asserts"})
    assert (wrong_everywhere.tests_passed, wrong_everywhere.tests_total, wrong_everywhere.score) == (0, 1, 0.0)
    none_ran = verdict({"e": "plan", "asserts": [[2, True]], "io": 0}, {"e": "done", "part": "asserts"})
    assert (none_ran.score, none_ran.tests_total) == (0.0, 0)
    assert none_ran.feedback == "check() returned without running any of its 1 asserts"


def test_all_or_nothing() -> None:
    held = {"e": "settle", "t": [0, 1, 2]}
    events = (PLAN, held, {"e": "done", "part": "asserts"}, {"e": "pass", "t": 3}, {"e": "pass", "t": 4})
    assert verdict(*events, scoring="all_or_nothing").score == 1.0
    partial = (PLAN, held, {"e": "done", "part": "asserts"}, {"e": "pass", "t": 3})
    assert verdict(*partial, scoring="all_or_nothing").score == 0.0


def test_unfinished_run_credits_only_what_it_reached() -> None:
    # Assert 0 held; the loop assert (2) held once but its loop never finished; then the host killed it.
    v = verdict(PLAN, {"e": "held", "t": 0}, {"e": "held", "t": 2}, killed="timeout", exit_code=-9)
    assert (v.tests_passed, v.tests_total) == (1, 5)
    assert v.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert "timed out after 2 s" in v.feedback


def test_a_settled_loop_counts() -> None:
    v = verdict(PLAN, {"e": "settle", "t": [2]}, {"e": "abort", "fb": "check() stopped"})
    assert v.tests_passed == 1
    assert v.feedback == "check() stopped"


MEMORY_ERROR = (PLAN, {"e": "memory"}, {"e": "fail", "t": 0, "fb": "MemoryError"}, {"e": "settle", "t": [1, 2]},
                {"e": "done", "part": "asserts"})


def test_memory_error_near_the_memory_limit_is_resource_exhausted() -> None:
    v = verdict(*MEMORY_ERROR, memory_near_limit=True)
    assert v.status == reward_pb2.SCORE_STATUS_RESOURCE_EXHAUSTED
    assert v.status_message == "the program ran out of memory"


def test_memory_error_far_from_the_memory_limit_is_the_programs_failure() -> None:
    # A program that raises MemoryError itself (or asks for far more than the limit at once) has not
    # run out of memory: it fails its test, and the item keeps its score.
    v = verdict(*MEMORY_ERROR, memory_near_limit=False)
    assert v.status == reward_pb2.SCORE_STATUS_OK
    assert (v.tests_passed, v.tests_total) == (2, 5)


def test_memory_error_printed_on_stderr_is_not_out_of_memory() -> None:
    printed = (PLAN, {"e": "fail", "t": 0, "fb": "wrong"}, {"e": "done", "part": "asserts"})
    for near_limit in (False, True):
        v = verdict(*printed, stderr="Traceback (most recent call last):\nMemoryError\n", memory_near_limit=near_limit)
        assert v.status == reward_pb2.SCORE_STATUS_OK
        assert v.feedback == "wrong"


def test_exit_status_152_is_not_a_timeout() -> None:
    # 128 + SIGXCPU, from os._exit(152): an exit status is the program's to choose.
    v = verdict(PLAN, exit_code=128 + 24)
    assert v.status == reward_pb2.SCORE_STATUS_OK
    assert (v.score, v.tests_passed) == (0.0, 0)
    assert "ended early (exit status 152)" in v.feedback


def test_cpu_limit_kill_is_a_timeout() -> None:
    v = verdict(PLAN, {"e": "held", "t": 0}, exit_code=128 + 9, out_of_cpu=True, cpu_s=4.02)
    assert v.status == reward_pb2.SCORE_STATUS_TIMEOUT
    assert v.tests_passed == 1
    assert v.feedback == "ran out of CPU time (4.0 s of CPU) and was killed"


def test_a_run_cut_short_by_the_service_stopping_is_internal() -> None:
    v = verdict(PLAN, {"e": "held", "t": 0}, killed="shutdown", exit_code=-9)
    assert v.status == reward_pb2.SCORE_STATUS_INTERNAL
    assert "stopped" in v.status_message


def test_output_flood_is_reported_and_fails_what_was_unfinished() -> None:
    v = verdict(PLAN, {"e": "held", "t": 0}, killed="output", exit_code=-9)
    assert v.output_exceeded
    assert v.tests_passed == 1
    assert v.feedback.startswith("the program wrote more than 1024 bytes")


def test_no_plan_means_the_sandbox_failed() -> None:
    v = verdict(exit_code=1, stderr="bwrap: No permissions to create new namespace")
    assert v.status == reward_pb2.SCORE_STATUS_INTERNAL
    assert "No permissions" in v.status_message


def test_invalid_tests_are_invalid_input() -> None:
    v = verdict({"e": "invalid", "fb": "test_code does not compile"})
    assert v.status == reward_pb2.SCORE_STATUS_INVALID_INPUT


def test_forged_test_ids_out_of_range_are_ignored() -> None:
    v = verdict(PLAN, {"e": "pass", "t": 99}, {"e": "held", "t": 0})
    assert (v.tests_passed, v.tests_total) == (1, 5)


ADD = "def add(a, b):\n    return a + b\n"


@pytest.mark.parametrize(("completion", "expected"), [
    ("def f():\n    return 1", "def f():\n    return 1"),
    ("Sure:\n```python\nx = 1\n```\nDone.", "x = 1\n"),
    ("```py\nx = 1\n", "x = 1\n"),  # cut off inside the fence
    ("```\nx = 1\n```\nDone.\n```\n", "x = 1\n"),  # a stray fence after the answer opens an empty block
    ("```python\nx = 1\n```\n```python\n```\n", "x = 1\n"),  # an empty tagged block is no answer either
    ("```\nx = 2\n```", "x = 2\n"),
    ("```bash\nls\n```", ""),
    ("```python\ndef add(a, b):\n    return a + b\n```\n```python\nprint(add(1, 2))\n```", "def add(a, b):\n    return a + b\n"),
    # a reasoning block's drafts are not the answer; the text after the last </think> is
    ("<think>Draft:\n```python\ndef add(a, b):\n    return a - b\n```\n</think>\ndef add(a, b):\n    return a + b",
     "def add(a, b):\n    return a + b"),
    ("<think>Let me see.</think>\n\ndef add(a, b):\n    return a + b\n", "def add(a, b):\n    return a + b"),
    ("Reasoning the prompt opened.\n</think>\n```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a + b\n"),
    ("<think>```python\ndef add(a, b):\n    return a + b\n```</think>", ""),
    ("<think>Draft:\n```python\ndef add(a, b):\n    return a + b\n```\nLet me check", ""),  # never closed
    # fences as CommonMark reads them, and the slips models make
    ("Steps:\n1. Write it:\n   ```python\n   def add(a, b):\n       return a + b\n   ```\n", ADD),  # in a list
    ("\t```python\n\tdef add(a, b):\n\t    return a + b\n\t```", ADD),
    ("```python\ndef add(a, b):\n    return a + b```\nDone.", ADD),  # closing fence glued to the code
    ("````python\ndef add(a, b):\n    return a + b\n`````\nDone.", ADD),  # a longer closing fence
    ("```python:solution.py\ndef add(a, b):\n    return a + b\n```", ADD),  # info strings
    ("```{python}\ndef add(a, b):\n    return a + b\n```", ADD),
    ("```Python3.11 title=add\ndef add(a, b):\n    return a + b\n```", ADD),
    ("```python\r\ndef add(a, b):\r\n    return a + b\r\n```\r\n", ADD),  # CRLF
    ("```python\ndef add(a, b):\n    return a + b\n    ```\nThat's it.", ADD),  # closing fence indented
    ("```python\ndef add(a, b):\n    return a + b\n    ```\n```python\nprint(add(1, 2))\n```", ADD),
    # a ``` indented inside a docstring does not end the block; ~~~ does not close ```
    ("```python\ndef add(a, b):\n    \"\"\"\n    ```\n    add(1, 2)\n    ~~~\n    \"\"\"\n    return a + b\n```",
     'def add(a, b):\n    """\n    ```\n    add(1, 2)\n    ~~~\n    """\n    return a + b\n'),
    ("```pycon\n>>> add(1, 2)\n3\n```", ""),  # not a Python program
    ("The ```add``` function:\n\ndef add(a, b):\n    return a + b",  # inline code is no fence
     "def add(a, b):\n    return a + b"),
    # no fence: paragraphs of prose around bare code are dropped when only without them does it compile
    ("Here is the solution:\n\ndef add(a, b):\n    return a + b\n\nThis function adds two numbers.\n\n"
     "Example:\n>>> add(1, 2)\n3", ADD.rstrip("\n")),
    ("Sure! Here's how:\n\n\n# helper\ndef add(a, b):\n\n    return a + b\n\n**Explanation**: it adds.",
     "# helper\ndef add(a, b):\n\n    return a + b"),
    ("Certainly.\n\nimport math\n\ndef add(a, b):\n    return math.fsum([a, b])\n\n- It uses fsum.\n- Exact.",
     "import math\n\ndef add(a, b):\n    return math.fsum([a, b])"),
    ("1. Define it:\n\ndef add(a, b):\n    return a + b\n\n### Explanation\nIt adds.", ADD.rstrip("\n")),
    ("# Adds two numbers\ndef add(a, b):\n    return a + b\n\nThis adds.",  # a comment over code is code
     "# Adds two numbers\n" + ADD.rstrip("\n")),
    # ... and nothing else: code that does not compile stays as it is, and fails as itself
    ("def add(a, b):\n    return a + b\n\nprint(add(1, 2)", "def add(a, b):\n    return a + b\n\nprint(add(1, 2)"),
    ("def add(a, b):\n    return a +\n\nThis is broken.", "def add(a, b):\n    return a +\n\nThis is broken."),
    ("MAX = 3\n\ndef add(a, b):\n    return a + b", "MAX = 3\n\ndef add(a, b):\n    return a + b"),
    # a paragraph whose first line reads like a sentence but which compiles is code, not prose
    ("Here it is:\n\nDIRS = [\n    (0, 1),\n]\n\ndef add(a, b):\n    return a + b + 0 * len(DIRS)\n\nThis adds.",
     "DIRS = [\n    (0, 1),\n]\n\ndef add(a, b):\n    return a + b + 0 * len(DIRS)"),
    ("> Note: it must be fast.\n\ndef add(a, b):\n    return a + b", ADD.rstrip("\n")),  # a quote is prose
    # a fence inside a blockquote is a fence: the quote markers go, the quote's end ends the block
    ("Here you go:\n\n> ```python\n> def add(a, b):\n>     return a + b\n> ```\n\nThat's it.", ADD),
    ("> > ```python\n> > def add(a, b):\n> >     return a + b\n> > ```\n", ADD),
    ("> ```python\n> import math\n>\n> def add(a, b):\n>     return a + b\n> ```",
     "import math\n\ndef add(a, b):\n    return a + b\n"),
    ("> ```python\n> def add(a, b):\n>     return a + b\nDone.", ADD),  # the quote ends, and the block
    ("> ```python\n> def add(a, b):\n>     \"\"\"\n>     >>> add(1, 2)\n>     3\n>     \"\"\"\n>     return a + b\n> ```",
     'def add(a, b):\n    """\n    >>> add(1, 2)\n    3\n    """\n    return a + b\n'),  # one marker less only
    ("> ```python\n> def add(a, b):\n>     return a + b\n> ```\nUsage:\n```python\nprint(add(1, 2))\n```", ADD),
    # ... which counts as if it came before the blocks outside quotes: the task's stub quoted back loses
    ("```python\ndef add(a, b):\n    return a + b\n```\nAs asked:\n> ```python\n> def add(a, b):\n>     pass\n> ```",
     ADD),
    # no fence: HTML code blocks and CodeLlama's [PYTHON] tags, picked by the fences' rule
    ('Solution:\n<pre><code class="language-python">def add(a, b):\n    return a + b\n</code></pre>\nIt adds.', ADD),
    ('<pre><code class="language-python">def add(a, b):\n    return a + b if a &lt; 1 &amp;&amp; b &gt; 1 '
     'else &quot;&quot; + &#39;&#39;\n</code></pre>',
     "def add(a, b):\n    return a + b if a < 1 && b > 1 else \"\" + ''\n"),  # entities decoded
    ("Here's the code:\n<code>\ndef add(a, b):\n    return a + b\n</code>\nIt returns the sum.", ADD),
    ("<PRE class=python>\ndef add(a, b):\n    return a + b\n</PRE>", ADD),
    ('1. Code:\n   <pre><code class="lang-py">\n   def add(a, b):\n       return a + b\n   </code></pre>', ADD),
    ('<pre><code class="language-bash">pip install x\n</code></pre>\n<pre><code class="language-python">'
     "def add(a, b):\n    return a + b\n</code></pre>", ADD),
    ("<pre><code>def add(a, b):\n    return a + b\n</code></pre>\nExample:\n<pre><code>print(add(1, 2))\n</code></pre>",
     ADD),
    ('<code class="language-bash">\npip install x\n</code>', ""),  # no Python block
    ("<code>\ndef add(a, b):\n    return a + b\n", ADD),  # cut off: runs to the end, as a fence does
    ("[PYTHON]\ndef add(a, b):\n    return a + b\n[/PYTHON]\n[TESTS]\nassert add(1, 2) == 3\n[/TESTS]", ADD),
    ("[PYTHON]\ndef add(a, b):\n    return a + b\n", ADD),
    ("<think>Try <code>\ndef add(a, b):\n    return a - b\n</code></think>\n<code>\ndef add(a, b):\n    return a + b\n"
     "</code>", ADD),
    # ... and not: a fence wins, inline code is prose, HTML in a program's strings is the program's
    ("<pre><code>def add(a, b):\n    return a - b\n</code></pre>\n```python\ndef add(a, b):\n    return a + b\n```",
     ADD),
    ("Call <code>add(a, b)</code> to add.\n\ndef add(a, b):\n    return a + b", ADD.rstrip("\n")),
    ("Use <code>a + b</code> in <code>add</code>.", "Use <code>a + b</code> in <code>add</code>."),
    ("def add(a, b):\n    return a + b\n\nPAGE = '''\n<pre>\n{body}\n</pre>\n'''",
     "def add(a, b):\n    return a + b\n\nPAGE = '''\n<pre>\n{body}\n</pre>\n'''"),
    ("PYTHON = 1\nLANGS = [PYTHON]\n\ndef add(a, b):\n    return a + b",
     "PYTHON = 1\nLANGS = [PYTHON]\n\ndef add(a, b):\n    return a + b"),
])
def test_code_extraction(completion: str, expected: str) -> None:
    assert extract_code(completion, "add") == expected


def test_fence_parsing_stays_linear_on_hostile_text() -> None:
    """Each fallback to a deeper closing fence rescans the rest of the text; they are bounded. On this
    text (2 MB, every line a fence four tabs deeper than the one before) that is 0.5 s of CPU here,
    6.7 s without the bound."""
    hostile = "".join("\t" * (4 * j) + "```\n" for j in range(1000))
    started = time.process_time()
    extract_code(hostile, "add")
    assert time.process_time() - started < 3.0


@pytest.mark.parametrize("hostile", [
    "<code>\n" * 285_000,  # openings never closed
    "<code>\nx\n</code>" * 125_000,
    ("<pre class=" + "a" * 600) * 3_300,  # attributes that never end
    "[PYTHON]\n" * 222_000,
    "".join("> " + "\t" * (4 * j) + "```\n" for j in range(1000)),  # quoted fences ever deeper
    ">\n" * 1_000_000,
], ids=["unclosed-code", "code-blocks", "endless-attributes", "unclosed-python", "quoted-deeper", "quotes"])
def test_tags_and_quotes_stay_linear_on_hostile_text(hostile: str) -> None:
    """Looking for tags searches each stretch of the text once, and quoted fences fall back to deeper
    closing fences as seldom as unquoted ones: each 2 MB text takes under 1 s of CPU here (a regex
    searching for the close from every opening takes 12 s on 20,000 of the first's 285,000 lines)."""
    started = time.process_time()
    extract_code(hostile, "add")
    assert time.process_time() - started < 3.0


def test_without_an_entry_point_the_last_python_block_wins() -> None:
    assert extract_code("```python\na = 1\n```\n```python\nb = 2\n```") == "b = 2\n"
    assert extract_code("```python\na = 1\n```\n> ```python\n> b = 2\n> ```") == "a = 1\n"  # b is quoted
    assert extract_code("> ```python\n> a = 1\n> ```\n> ```python\n> b = 2\n> ```") == "b = 2\n"


def test_texts_over_the_prose_check_limit_are_not_parsed_in_the_service() -> None:
    """The prose fallback parses in the service's process (about 350 times the text's size in memory):
    a completion over PROSE_CHECK_MAX_CHARS is the program as it is, prose and all."""
    from grpo_rewards.code_sandbox.extract import PROSE_CHECK_MAX_CHARS

    code = "def add(a, b):\n    return a + b\n" + "x = 1\n" * (PROSE_CHECK_MAX_CHARS // 6)
    text = "Here is the solution:\n\n" + code
    assert len(text) > PROSE_CHECK_MAX_CHARS
    assert extract_code(text, "add") == text.strip("\n")
    assert extract_code("Here is the solution:\n\n" + ADD, "add") == ADD.rstrip("\n")
