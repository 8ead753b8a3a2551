"""The prompt file format: what a line becomes, and errors that name the line and the field."""

from __future__ import annotations

import json

import pytest

from grpo_client.prompts import PromptFileError, batch_request_id, parse_prompt, parse_prompt_lines


def test_a_math_line_becomes_a_prompt_with_answer_rewards_and_metadata() -> None:
    p = parse_prompt({"id": "p1", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "2+2?"}],
                      "answer": "4", "rewards": [{"backend": "math", "weight": 0.5}, {"backend": "rm"}],
                      "metadata": {"task": "sum"}})
    assert p.id == "p1" and p.answer == "4" and p.WhichOneof("reference") == "answer"
    assert [(m.role, m.content) for m in p.messages] == [("system", "Be brief."), ("user", "2+2?")]
    assert [(r.backend, r.weight) for r in p.rewards] == [("math", 0.5), ("rm", 1.0)]
    assert dict(p.metadata) == {"task": "sum"}


def test_a_numeric_answer_is_sent_as_its_json_text() -> None:
    assert parse_prompt({"id": "p", "messages": [{"role": "user", "content": "x"}], "answer": 42}).answer == "42"


def test_a_code_line_becomes_code_tests() -> None:
    p = parse_prompt({"id": "c", "messages": [{"role": "user", "content": "write inc"}],
                      "code": {"test_code": "def check(f): assert f(1) == 2", "entry_point": "inc",
                               "io_cases": [{"stdin": "1\n", "expected_stdout": "2\n"}], "timeout_seconds": 5}})
    assert p.WhichOneof("reference") == "code"
    assert p.code.entry_point == "inc" and p.code.timeout_seconds == 5.0
    assert [(c.stdin, c.expected_stdout) for c in p.code.io_cases] == [("1\n", "2\n")]


def test_no_reference_and_no_rewards_are_allowed() -> None:
    p = parse_prompt({"id": "r", "messages": [{"role": "user", "content": "a poem"}]})
    assert p.WhichOneof("reference") is None and not p.rewards


@pytest.mark.parametrize(
    ("obj", "field", "words"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "id", "required"),
        ({"id": "a", "messages": []}, "messages", "non-empty"),
        ({"id": "a", "messages": [{"role": "user"}]}, "messages[0].content", "required"),
        ({"id": "a", "messages": [{"role": 1, "content": "x"}]}, "messages[0].role", "must be a string"),
        ({"id": "a", "messages": [{"role": "user", "content": "x"}], "anwser": "1"}, "anwser", "unknown field"),
        ({"id": "a", "messages": [{"role": "user", "content": "x"}], "answer": "1", "code": {}}, "answer", "not both"),
        ({"id": "a", "messages": [{"role": "user", "content": "x"}], "rewards": [{"backend": "m", "weight": 0}]},
         "rewards[0].weight", "> 0"),
        ({"id": "a", "messages": [{"role": "user", "content": "x"}], "rewards": [{"weight": 1}]},
         "rewards[0].backend", "required"),
        ({"id": "a", "messages": [{"role": "user", "content": "x"}], "metadata": {"k": 1}}, "metadata.k", "string"),
        ({"id": "a", "messages": [{"role": "user", "content": "x"}], "code": {"io_cases": [{"stdin": "1"}]}},
         "code.io_cases[0].expected_stdout", "required"),
        ({"id": "a", "messages": [{"role": "user", "content": "x"}], "code": {"timeout_seconds": "5"}},
         "code.timeout_seconds", "finite number"),
    ],
)
def test_a_bad_line_is_rejected_naming_the_field(obj: dict, field: str, words: str) -> None:
    with pytest.raises(PromptFileError) as err:
        parse_prompt_lines([json.dumps(obj)], "f.jsonl")
    [e] = [e for e in err.value.errors if e.field == field]
    assert e.line == 1 and words in e.message
    assert f"f.jsonl:1: {field}: " in str(err.value)


def test_every_bad_line_is_listed_with_its_number_and_blank_lines_count() -> None:
    lines = ['{"id": "a", "messages": [{"role": "user", "content": "x"}]}', "", "[1]", "{not json",
             '{"id": "a", "messages": [{"role": "user", "content": "y"}]}']
    with pytest.raises(PromptFileError) as err:
        parse_prompt_lines(lines, "f.jsonl")
    assert [(e.line, e.field) for e in err.value.errors] == [(3, ""), (4, ""), (5, "id")]
    assert "must be a JSON object" in err.value.errors[0].message
    assert "not valid JSON" in err.value.errors[1].message
    assert "repeats the id of line 1" in err.value.errors[2].message


def test_request_ids_depend_on_content_and_batch_index_only() -> None:
    a = parse_prompt_lines(['{"id": "a", "messages": [{"role": "user", "content": "x"}]}'])
    b = parse_prompt_lines(['{"id": "a", "messages": [{"role": "user", "content": "y"}]}'])
    assert batch_request_id(a, 0) == batch_request_id(list(a), 0)
    assert batch_request_id(a, 0) != batch_request_id(b, 0)
    assert batch_request_id(a, 0) != batch_request_id(a, 1)
    assert len(batch_request_id(a, 0)) <= 128 and batch_request_id(a, 3, "run") == "run-3"
    assert batch_request_id(a, 3, "") == batch_request_id(a, 3)  # an empty prefix is none, as in Go and TypeScript
