"""Reading a prompt file: bytes that are not UTF-8, text the trainer cannot take, JSON's non-standard
constants and the text of number answers, each reported on its line (grpo_client.prompts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_client.prompts import (
    PromptFileError,
    load_prompt_file,
    parse_prompt,
    parse_prompt_lines,
    read_prompt_file,
)

OK = '{"id": "ok", "messages": [{"role": "user", "content": "x"}]}\n'


def with_answer(answer: str) -> str:
    """A line whose answer is the JSON text `answer`."""
    return '{"id": "a", "messages": [{"role": "user", "content": "x"}], "answer": ' + answer + "}"


def _errors(path: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(PromptFileError) as err:
        read_prompt_file(path)
    str(err.value).encode("utf-8")  # printable: no lone surrogate in the message
    return [(e.line, e.field, e.message) for e in err.value.errors]


def test_a_utf16_file_is_a_line_error_that_names_the_byte_order_mark(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_bytes(b'\xff\xfe{"id":"a"}\n')
    [(line, field, message)] = _errors(f)
    assert (line, field) == (1, "")
    assert "not valid UTF-8: byte 0xff at byte 1" in message and "UTF-16" in message


def test_an_invalid_byte_is_reported_on_its_line_and_the_other_lines_are_still_checked(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_bytes(OK.encode() + b'{"id": "b", "messages": [{"role": "user", "content": "caf\xe9"}]}\n' + b"{oops\n")
    errors = _errors(f)
    assert [(line, field) for line, field, _ in errors] == [(2, ""), (3, "")]
    assert "not valid UTF-8: byte 0xe9 at byte 58" in errors[0][2] and "not valid JSON" in errors[1][2]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"id": "a", "messages": [{"role": "user", "content": "x\\ud800y"}]}', "messages[0].content"),
        ('{"id": "a", "messages": [{"role": "user", "content": "x"}], "metadata": {"k\\udfff": "v"}}',
         'metadata."k\\udfff"'),
        ('{"id": "a", "messages": [{"role": "user", "content": "x"}], "answer": "\\ud83d"}', "answer"),
    ],
)
def test_a_lone_surrogate_escape_names_its_field(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(OK + text + "\n")
    [(line, got_field, message)] = _errors(f)
    assert (line, got_field) == (2, field)
    assert "unpaired surrogate" in message


def test_a_nul_character_names_its_field(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "messages": [{"role": "user", "content": "x\\u0000"}]}\n')
    assert _errors(f) == [(1, "messages[0].content", "contains a NUL character (U+0000), which the trainer does not accept")]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    lines = [OK, with_answer(constant)]
    with pytest.raises(PromptFileError) as err:
        parse_prompt_lines(lines, "f.jsonl")
    [e] = err.value.errors
    assert (e.line, e.field) == (2, "answer")
    assert f"{constant} is not valid JSON" in e.message
    assert f"f.jsonl:2: answer: {constant} is not valid JSON" in str(err.value)


def test_a_weight_of_nan_is_not_json_either() -> None:
    with pytest.raises(PromptFileError) as err:
        parse_prompt_lines(['{"id": "a", "messages": [{"role": "user", "content": "x"}], '
                            '"rewards": [{"backend": "math", "weight": NaN}]}'])
    assert [(e.line, e.field) for e in err.value.errors] == [(1, "rewards[0].weight")]
    assert "NaN is not valid JSON" in err.value.errors[0].message


@pytest.mark.parametrize("number", ["2.50", "1e3", "-0", "1E-7", "0.1000"])
def test_a_number_answer_is_sent_as_written(number: str) -> None:
    [p] = parse_prompt_lines([with_answer(number)])
    assert p.answer == number


def test_numbers_elsewhere_keep_their_value_while_the_answer_keeps_its_text() -> None:
    [p, c] = parse_prompt_lines([
        '{"id": "a", "messages": [{"role": "user", "content": "x"}], "answer": 2.50, '
        '"rewards": [{"backend": "math", "weight": 2.50}]}',
        '{"id": "c", "messages": [{"role": "user", "content": "x"}], '
        '"code": {"test_code": "t", "entry_point": "f", "timeout_seconds": 1e1}}',
    ])
    assert (p.answer, p.rewards[0].weight, c.code.timeout_seconds) == ("2.50", 2.5, 10.0)


def test_a_number_where_a_string_belongs_is_named_as_a_json_number() -> None:
    with pytest.raises(PromptFileError) as err:
        parse_prompt_lines(['{"id": 7, "messages": [{"role": "user", "content": "x"}]}'])
    [e] = err.value.errors
    assert (e.field, e.message) == ("id", "must be a string, got number")


def test_parse_prompt_rejects_a_non_finite_answer_and_a_lone_surrogate() -> None:
    with pytest.raises(PromptFileError) as err:
        parse_prompt({"id": "a", "messages": [{"role": "user", "content": "x\ud800"}], "answer": float("nan")})
    assert {e.field for e in err.value.errors} == {"messages[0].content", "answer"}
    with pytest.raises(PromptFileError) as err:
        parse_prompt({"id": "a", "messages": [{"role": "user", "content": "x"}], "answer": float("inf")})
    assert [e.field for e in err.value.errors] == ["answer"]


def test_load_prompt_file_keeps_the_line_of_each_prompt(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text("\n" + OK + "\n\n" + OK.replace('"ok"', '"ok2"'))
    loaded = load_prompt_file(f)
    assert [p.id for p in loaded.prompts] == ["ok", "ok2"]
    assert loaded.lines == [2, 5] and loaded.source == str(f)


@pytest.mark.parametrize("key", ["prompt", "question", "problem"])
def test_a_text_field_from_another_tools_dataset_says_where_the_text_goes(tmp_path: Path, key: str) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(OK + '{"id": "t", "' + key + '": "What is 1+1?", "answer": "2"}\n')
    errors = _errors(f)
    assert (2, key) in [(line, field) for line, field, _ in errors]
    [message] = [m for _, field, m in errors if field == key]
    assert message.startswith("unknown field (allowed: answer, code, id, messages, metadata, rewards)")
    assert message.endswith('; the text goes in "messages": [{"role": "user", "content": ...}]')


def test_an_unknown_field_beside_messages_gets_no_hint(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "t", "messages": [{"role": "user", "content": "x"}], "prompt": "y"}\n')
    [(line, field, message)] = _errors(f)
    assert (line, field, message) == (1, "prompt", "unknown field (allowed: answer, code, id, messages, metadata, rewards)")


def test_a_utf8_byte_order_mark_at_the_start_is_ignored() -> None:
    from grpo_client.prompts import parse_prompt_file

    line = '{"id": "a", "messages": [{"role": "user", "content": "1+1?"}], "answer": "2"}\n'
    got = parse_prompt_file(["\ufeff" + line, line.replace('"a"', '"b"')], "f.jsonl")
    assert [p.id for p in got.prompts] == ["a", "b"]


def test_a_metadata_key_with_a_dot_is_quoted_in_the_field_path() -> None:
    from grpo_client.prompts import PromptFileError, parse_prompt_file

    line = '{"id": "a", "messages": [{"role": "user", "content": "1+1?"}], "metadata": {"a.b": 2}}\n'
    with pytest.raises(PromptFileError) as err:
        parse_prompt_file([line], "f.jsonl")
    assert err.value.errors[0].field == 'metadata."a.b"', err.value.errors


def _line_errors(*lines: str) -> list[tuple[int, str, str]]:
    from grpo_client.prompts import parse_prompt_file

    with pytest.raises(PromptFileError) as err:
        parse_prompt_file(list(lines), "f.jsonl")
    return [(e.line, e.field, e.message) for e in err.value.errors]


def test_a_key_given_twice_is_named_not_kept_silently_with_its_last_value() -> None:
    """JSON keeps the last of a repeated key: `"answer": "4", "answer": "5"` would send 5 without a word,
    as an unknown field would drop a reference (which is why those are errors too)."""
    line = ('{"id": "a", "messages": [{"role": "user", "content": "x", "role": "user"}], "answer": "4", '
            '"answer": "5", "metadata": {"k": "1", "\\u006b": "2"}}\n')
    repeated = "given more than once: JSON keeps only the last, write it once"
    assert _line_errors(OK, line) == [(2, "messages[0].role", repeated), (2, "answer", repeated),
                                      (2, "metadata.k", repeated)]


def test_a_line_nested_too_deep_is_a_line_error_not_a_crash(tmp_path: Path) -> None:
    """1000 brackets deep made Python's decoder raise RecursionError out of the reader (a traceback from
    `grpo submit`); lines are refused past 64 levels, brackets inside strings not counted."""
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 1000 + "]" * 1000 + "\n" + OK + '{"id": "s", "x": "' + "[" * 100 + '"}\n')
    errors = _errors(deep)
    assert errors[0] == (1, "", "not valid JSON: nested deeper than 64 levels at column 65")
    assert [e[:2] for e in errors[1:]] == [(3, "x"), (3, "messages")]  # decoded: only its fields are wrong
    assert _line_errors("[" * 64 + "]" * 64) == [(1, "", "must be a JSON object, got array")]


def test_a_json_error_at_the_end_of_a_line_is_at_that_column() -> None:
    """The line's break is not part of the JSON: an error at its end was reported at column 1 (of the
    line after the break, as Python's decoder counts)."""
    assert _line_errors('{"id": "a",\n', '{"id": "a", "x": 1\r\n', '{"id": "a", "x": [1, 2') == [
        (1, "", "not valid JSON: Expecting property name enclosed in double quotes at column 12"),
        (2, "", "not valid JSON: Expecting ',' delimiter at column 19"),
        (3, "", "not valid JSON: Expecting ',' delimiter at column 23"),
    ]
