"""The cache of compiled test code is bounded by bytes, not entries: a compiled 1 MiB test is ~25 MiB."""

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

    cache = _CompiledTestsCache(max_bytes=1_000_000)
    monkeypatch.setattr(executor, "_compiled_cache", cache)
    tests = ["def check(candidate):\n" + "    assert candidate(1) == 1\n" * 500 + f"# {k}\n" for k in range(4)]
    results = [_compile_tests(t) for t in tests]  # ~340 KB each compiled: two fit
    assert all(code is not None and len(table or []) == 500 for code, table in results)
    assert 0 < cache.nbytes <= 1_000_000
    assert _compile_tests(tests[-1]) is results[-1]  # the latest is still cached
    assert cache.get(tests[0]) is None  # the first is gone
    assert COMPILED_CACHE_BYTES == 64 * 1024 * 1024
