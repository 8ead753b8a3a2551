"""The prompt file format (DESIGN.md section 6): one JSON object a line, blank lines skipped.

    {"id": "p1", "messages": [{"role": "user", "content": "What is 2+2?"}], "answer": "4",
     "rewards": [{"backend": "math", "weight": 1.0}], "metadata": {"task": "sum"}}
    {"id": "c1", "messages": [...], "code": {"test_code": "def check(f): ...", "entry_point": "f",
     "io_cases": [{"stdin": "1", "expected_stdout": "2"}], "timeout_seconds": 5}}

Errors name the line and the field (`prompts.jsonl:3: messages[0].content: must be a string`).
The checks here are about shape; the trainer validates the rest (roles, lengths, backend names).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2

_PROMPT_KEYS = {"id", "messages", "answer", "code", "rewards", "metadata"}
_CODE_KEYS = {"language", "test_code", "entry_point", "io_cases", "timeout_seconds"}
MAX_ERRORS = 50  # stop listing after this many, a file with a systematic mistake would print thousands


@dataclass(frozen=True)
class PromptError:
    """One problem in a prompt file: 1-based `line`, the `field` path in that line's object, `message`."""

    line: int
    field: str
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PromptFileError(ValueError):
    """A prompt file with problems; `errors` lists them (at most MAX_ERRORS)."""

    def __init__(self, source: str, errors: Sequence[PromptError]):
        self.source = source
        self.errors = tuple(errors)
        super().__init__("\n".join(e.format(source) for e in self.errors))


class _Errors:
    def __init__(self, line: int) -> None:
        self.line = line
        self.items: list[PromptError] = []

    def add(self, field: str, message: str) -> None:
        self.items.append(PromptError(self.line, field, message))


def _string(obj: dict[str, Any], key: str, path: str, errors: _Errors, *, required: bool = False) -> str | None:
    if key not in obj:
        if required:
            errors.add(path, "required")
        return None
    value = obj[key]
    if not isinstance(value, str):
        errors.add(path, f"must be a string, got {type(value).__name__}")
        return None
    return value


def _number(value: Any, path: str, errors: _Errors) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.add(path, f"must be a finite number, got {value!r}")
        return None
    return float(value)


def _unknown(obj: dict[str, Any], allowed: set[str], prefix: str, errors: _Errors) -> None:
    for key in sorted(set(obj) - allowed):
        errors.add(f"{prefix}{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")


def parse_prompt(obj: Any, line: int = 1) -> trainer_pb2.Prompt:
    """One decoded JSON object as a grpo.trainer.v1.Prompt. Raises PromptFileError naming the fields."""
    errors = _Errors(line)
    prompt = _parse(obj, errors)
    if errors.items:
        raise PromptFileError("<prompt>", errors.items)
    return prompt


def _parse(obj: Any, errors: _Errors) -> trainer_pb2.Prompt:
    prompt = trainer_pb2.Prompt()
    if not isinstance(obj, dict):
        errors.add("", f"must be a JSON object, got {type(obj).__name__}")
        return prompt
    _unknown(obj, _PROMPT_KEYS, "", errors)
    pid = _string(obj, "id", "id", errors, required=True)
    if pid is not None:
        if not pid:
            errors.add("id", "must not be empty")
        prompt.id = pid
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        errors.add("messages", "required: a non-empty list of {\"role\", \"content\"}")
    else:
        for i, m in enumerate(messages):
            path = f"messages[{i}]"
            if not isinstance(m, dict):
                errors.add(path, "must be an object with \"role\" and \"content\"")
                continue
            _unknown(m, {"role", "content"}, f"{path}.", errors)
            role = _string(m, "role", f"{path}.role", errors, required=True)
            content = _string(m, "content", f"{path}.content", errors, required=True)
            prompt.messages.append(reward_pb2.Message(role=role or "", content=content or ""))
    if "answer" in obj and "code" in obj:
        errors.add("answer", "give either \"answer\" or \"code\", not both")
    elif "answer" in obj:
        answer = obj["answer"]
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            errors.add("answer", f"must be a string (or a number), got {type(answer).__name__}")
        else:
            prompt.answer = answer if isinstance(answer, str) else json.dumps(answer)
    elif "code" in obj:
        _parse_code(obj["code"], prompt.code, errors)
    rewards = obj.get("rewards", [])
    if not isinstance(rewards, list):
        errors.add("rewards", "must be a list of {\"backend\", \"weight\"}")
    else:
        for i, r in enumerate(rewards):
            path = f"rewards[{i}]"
            if not isinstance(r, dict):
                errors.add(path, "must be an object with \"backend\" and optional \"weight\"")
                continue
            _unknown(r, {"backend", "weight"}, f"{path}.", errors)
            backend = _string(r, "backend", f"{path}.backend", errors, required=True)
            weight = _number(r["weight"], f"{path}.weight", errors) if "weight" in r else 1.0
            if weight is not None and weight <= 0:
                errors.add(f"{path}.weight", f"must be > 0, got {weight}")
            prompt.rewards.append(trainer_pb2.RewardSpec(backend=backend or "", weight=weight or 0.0))
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        errors.add("metadata", "must be an object of string values")
    else:
        for key, value in metadata.items():
            if not isinstance(value, str):
                errors.add(f"metadata.{key}", f"must be a string, got {type(value).__name__}")
            else:
                prompt.metadata[key] = value
    return prompt


def _parse_code(code: Any, out: reward_pb2.CodeTests, errors: _Errors) -> None:
    if not isinstance(code, dict):
        errors.add("code", "must be an object with \"test_code\"/\"entry_point\" and/or \"io_cases\"")
        return
    _unknown(code, _CODE_KEYS, "code.", errors)
    out.SetInParent()  # an empty object still selects the `code` reference
    for key in ("language", "test_code", "entry_point"):
        value = _string(code, key, f"code.{key}", errors)
        if value is not None:
            setattr(out, key, value)
    if "timeout_seconds" in code:
        t = _number(code["timeout_seconds"], "code.timeout_seconds", errors)
        if t is not None:
            out.timeout_seconds = t
    cases = code.get("io_cases", [])
    if not isinstance(cases, list):
        errors.add("code.io_cases", "must be a list of {\"stdin\", \"expected_stdout\"}")
        return
    for i, case in enumerate(cases):
        path = f"code.io_cases[{i}]"
        if not isinstance(case, dict):
            errors.add(path, "must be an object with \"stdin\" and \"expected_stdout\"")
            continue
        _unknown(case, {"stdin", "expected_stdout"}, f"{path}.", errors)
        stdin = _string(case, "stdin", f"{path}.stdin", errors)
        expected = _string(case, "expected_stdout", f"{path}.expected_stdout", errors, required=True)
        out.io_cases.append(reward_pb2.IOCase(stdin=stdin or "", expected_stdout=expected or ""))


def parse_prompt_lines(lines: Iterable[str], source: str = "<prompts>") -> list[trainer_pb2.Prompt]:
    """Parse prompt-file lines (blank lines skipped). Raises PromptFileError listing every problem
    (with line numbers from 1), duplicate ids included."""
    prompts: list[trainer_pb2.Prompt] = []
    problems: list[PromptError] = []
    first_line: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        errors = _Errors(number)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            errors.add("", f"not valid JSON: {exc.msg} at column {exc.colno}")
        else:
            prompt = _parse(obj, errors)
            if not errors.items:
                if prompt.id in first_line:
                    errors.add("id", f"{prompt.id!r} repeats the id of line {first_line[prompt.id]}")
                else:
                    first_line[prompt.id] = number
                    prompts.append(prompt)
        problems += errors.items
        if len(problems) >= MAX_ERRORS:
            break
    if problems:
        raise PromptFileError(source, problems[:MAX_ERRORS])
    return prompts


def read_prompt_file(path: str | Path) -> list[trainer_pb2.Prompt]:
    """Read a prompt file (UTF-8 JSON Lines). Raises PromptFileError or OSError."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        return parse_prompt_lines(f, str(path))


def batches(prompts: Sequence[trainer_pb2.Prompt], batch_size: int) -> Iterator[list[trainer_pb2.Prompt]]:
    """Consecutive slices of `batch_size` prompts (the last may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(prompts), batch_size):
        yield list(prompts[start:start + batch_size])


def batch_request_id(batch: Sequence[trainer_pb2.Prompt], index: int, prefix: str | None = None) -> str:
    """The idempotency key of one batch of a submission.

    Without `prefix`: "sub-" + the first 40 hex digits of a SHA-256 over the batch index and the batch's
    prompts (deterministic protobuf serialisation), so submitting the same file with the same batch size
    again sends the same keys and the trainer answers "duplicate" instead of queueing the prompts twice.
    (Editing the file changes the keys of the batches it touches; the trainer then refuses ids that are
    still queued, naming them.) With `prefix` (the user's --request-id): "<prefix>-<index>".
    """
    if prefix is not None:
        return f"{prefix}-{index}"
    h = hashlib.sha256(f"grpo-submit/v1/{index}/".encode())
    for p in batch:
        data = p.SerializeToString(deterministic=True)
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return "sub-" + h.hexdigest()[:40]
