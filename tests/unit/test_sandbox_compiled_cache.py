"""The cache of compiled test code is bounded by bytes, not entries: a compiled 1 MiB test is ~22 MiB."""

from __future__ import annotations

from grpo_rewards.code_sandbox.executor import COMPILED_CACHE_BYTES, _compile_tests, _CompiledTestsCache


def compiled(code_bytes: int) -> tuple[bytes, list[list]]:
    return b"c" * code_bytes, []


def test_the_least_recently_used_go_first_once_the_bytes_are_spent() -> None:
    cache = _CompiledTestsCache(max_bytes=1000)
    for key in "abc":
        cache.put(key, compiled(299))  # 1 byte of key + 299 of code
    assert cache.nbytes == 900
    assert cache.get("a") is not None  # now the most recently used
    cache.put("d", compiled(299))
    assert cache.nbytes == 900
    assert [k for k in "abcd" if cache.get(k) is not None] == ["a", "c", "d"]


def test_an_entry_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = _CompiledTestsCache(max_bytes=1000)
    cache.put("small", compiled(100))
    cache.put("huge", compiled(5000))
    assert cache.get("huge") is None
    assert cache.get("small") is not None


def test_compiled_tests_count_their_assert_table_too() -> None:
    cache = _CompiledTestsCache(max_bytes=10_000)
    cache.put("t", (b"", [[2, "assert f(1) == 1", False]] * 10))
    assert cache.nbytes == 1 + 10 * (64 + len("assert f(1) == 1"))


def test_compile_tests_keeps_its_cache_within_its_bytes(monkeypatch) -> None:
    from grpo_rewards.code_sandbox import executor

    cache = _CompiledTestsCache(max_bytes=500_000)
    monkeypatch.setattr(executor, "_compiled_cache", cache)
    tests = ["def check(candidate):\n" + "    assert candidate(1) == 1\n" * 500 + f"# {k}\n" for k in range(4)]
    results = [_compile_tests(t) for t in tests]  # ~230 KB each compiled: two fit
    assert all(code is not None and len(table or []) == 500 for code, table in results)
    assert 0 < cache.nbytes <= 500_000
    assert _compile_tests(tests[-1]) is results[-1]  # the latest is still cached
    assert cache.get(tests[0]) is None  # the first is gone
    assert COMPILED_CACHE_BYTES == 64 * 1024 * 1024


def _instrument_spy(monkeypatch):
    """Counts the calls of the real `instrument` and how many ran at once."""
    import threading

    from grpo_rewards.code_sandbox import executor

    real, lock = executor.instrument, threading.Lock()
    seen = {"calls": 0, "running": 0, "most_at_once": 0}

    def spy(code: str):
        with lock:
            seen["calls"] += 1
            seen["running"] += 1
            seen["most_at_once"] = max(seen["most_at_once"], seen["running"])
        try:
            return real(code)
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(executor, "instrument", spy)
    monkeypatch.setattr(executor, "_compiled_cache", _CompiledTestsCache(max_bytes=64 << 20))
    return seen


def _at_once(fn, args: list) -> list:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(len(args))
    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(lambda a: (start.wait(), fn(a))[1], args))


def test_a_test_code_arriving_on_several_workers_at_once_is_compiled_once(monkeypatch) -> None:
    # The G completions of a group carry the same tests and reach the workers together: each used to
    # compile them (12-15 s of CPU and over a GiB of memory each for 1 MiB of asserts).
    seen = _instrument_spy(monkeypatch)
    tests = "def check(candidate):\n" + "    assert candidate(1) == 1\n" * 3000
    results = _at_once(_compile_tests, [tests] * 3)
    assert seen["calls"] == 1
    assert results[0][0] is not None and all(r is results[0] for r in results)


def test_large_test_codes_are_compiled_one_at_a_time(monkeypatch) -> None:
    # Their memory peaks (about 850 times their size) must not add up on concurrent items.
    from grpo_rewards.code_sandbox.executor import BIG_COMPILE_BYTES

    seen = _instrument_spy(monkeypatch)
    tests = ["def check(candidate):\n" + "    assert candidate(1) == 1\n" * 3000 + f"# {k}\n" for k in range(2)]
    assert all(len(t) > BIG_COMPILE_BYTES for t in tests)
    results = _at_once(_compile_tests, tests)
    assert seen["calls"] == 2 and seen["most_at_once"] == 1
    assert all(code is not None and len(table or []) == 3000 for code, table in results)
