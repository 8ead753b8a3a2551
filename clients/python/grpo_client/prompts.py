"""The prompt file format (DESIGN.md section 6): one JSON object a line, blank lines skipped.

    {"id": "p1", "messages": [{"role": "user", "content": "What is 2+2?"}], "answer": "4",
     "rewards": [{"backend": "math", "weight": 1.0}], "metadata": {"task": "sum"}}
    {"id": "c1", "messages": [...], "code": {"test_code": "def check(f): ...", "entry_point": "f",
     "io_cases": [{"stdin": "1", "expected_stdout": "2"}], "timeout_seconds": 5}}

Errors name the line and the field (`prompts.jsonl:3: messages[0].content: must be a string`).
The checks here are about shape and about text no trainer accepts (bytes that are not UTF-8, a lone
surrogate such as "\ud800", a NUL character, JSON's non-standard NaN and Infinity); the trainer
validates the rest (roles, sizes against its configured limits, token counts, backend names).
A number given as the answer is sent as the text the file has (`2.50` stays "2.50").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo.reward.v1 import reward_pb2
from grpo.trainer.v1 import trainer_pb2

_PROMPT_KEYS = {"id", "messages", "answer", "code", "rewards", "metadata"}
_CODE_KEYS = {"language", "test_code", "entry_point", "io_cases", "timeout_seconds"}
MAX_ERRORS = 50  # stop listing after this many, a file with a systematic mistake would print thousands
MAX_DEPTH = 64  # arrays and objects inside each other: a prompt needs 4; deeper is refused before decoding
REPEATED = "given more than once: JSON keeps only the last, write it once"


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


@dataclass(frozen=True)
class PromptFile:
    """A parsed prompt file: its `prompts` in file order and `lines[i]`, the 1-based line prompts[i]
    came from (blank lines count), so that what the trainer says about a prompt can name its line."""

    source: str
    prompts: list[trainer_pb2.Prompt]
    lines: list[int]


class _Number(float):
    """A JSON number as the file writes it: a float for weights and timeouts, `text` for an answer."""

    text: str

    def __new__(cls, text: str) -> _Number:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True)
class _Constant:
    """NaN, Infinity or -Infinity in a line: Python's json reads them, JSON has no such values."""

    name: str


class _Object(dict):  # type: ignore[type-arg]
    """A decoded JSON object (each key in its first place, with its last value, as json.loads gives it);
    `repeated`: the keys the line gives more than once."""

    repeated: set[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.repeated = set()
    for key, value in pairs:
        if key in obj:
            obj.repeated.add(key)
        obj[key] = value
    return obj


def _loads(text: str) -> Any:
    """json.loads that keeps each number's text, marks the non-standard constants and the repeated keys
    (see `_values`)."""
    return json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=_Constant,
                      object_pairs_hook=_object)


# A string (to its closing quote, or the end of the line) or a bracket.
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def _too_deep(text: str) -> int | None:
    """The column of the first `[` or `{` nested deeper than MAX_DEPTH in a line, brackets inside strings
    not counted, or None. Checked before decoding, whatever else the line holds: the Go and TypeScript
    clients do the same, and Python's decoder would give up at a depth that depends on its stack."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth = 0
    for m in _BRACKETS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return m.start() + 1
        elif c in "]}":
            depth -= 1
    return None


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names = {str: "string", dict: "object", list: "array"}
    return next((name for t, name in names.items() if isinstance(value, t)), type(value).__name__)


def _key(key: str) -> str:
    """A key in a field path: as it is when plain, else as a JSON string (ASCII, printable)."""
    return key if key.isprintable() and key.isascii() and "." not in key and key else json.dumps(key)


def _undecodable(text: str, number: int) -> str | None:
    """Why a line read with errors="surrogateescape" is not UTF-8 text (its first bad byte), or None."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        start = exc.start
    char, before = text[start], text[:start]
    if not 0xDC80 <= ord(char) <= 0xDCFF:  # a str line from a caller, not bytes from a file
        return f"not valid text: an unpaired surrogate U+{ord(char):04X} at column {start + 1}"
    message = f"not valid UTF-8: byte 0x{ord(char) - 0xDC00:02x} at byte {len(before.encode('utf-8')) + 1}"
    if number == 1 and text.startswith(("\udcff\udcfe", "\udcfe\udcff")):
        return message + " (the file starts with a UTF-16 byte-order mark: save it as UTF-8)"
    return message + "; prompt files are UTF-8"


def _text_problem(s: str) -> str | None:
    """Why the trainer refuses the string `s` wherever it appears (a NUL, an unpaired surrogate), or None."""
    if "\x00" in s:
        return "contains a NUL character (U+0000), which the trainer does not accept"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"contains an unpaired surrogate ({json.dumps(s[exc.start])}), which is not valid UTF-8 text; "
                "write the character itself or its surrogate pair")
    return None


def _values(value: Any, path: str, errors: _Errors) -> None:
    """Every string and constant in a decoded line that no trainer accepts, named by its field path."""
    if isinstance(value, _Constant):
        errors.add(path, f"{value.name} is not valid JSON (JSON numbers are finite): write a number, or the "
                   f"string \"{value.name}\"")
    elif isinstance(value, float) and not isinstance(value, _Number) and not math.isfinite(value):
        errors.add(path, f"must be a finite number, got {value!r}")
    elif isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            errors.add(path, problem)
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{_key(key)}" if path else _key(key)
            problem = _text_problem(key) if isinstance(key, str) else None
            if problem:
                errors.add(sub, f"the key {problem}")
            if key in getattr(value, "repeated", ()):
                errors.add(sub, REPEATED)
            _values(item, sub, errors)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _values(item, f"{path}[{i}]", errors)


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
        errors.add(path, f"must be a string, got {_json_type(value)}")
        return None
    return value


def _number(value: Any, path: str, errors: _Errors) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.add(path, f"must be a finite number, got {value!r}")
        return None
    return float(value)


# Fields other tools' datasets use for a prompt's text (TRL, verl, OpenAI chat files): the error says where it goes.
_TEXT_KEYS = {"prompt", "question", "problem", "query", "input", "instruction"}


def _unknown(obj: dict[str, Any], allowed: set[str], prefix: str, errors: _Errors) -> None:
    for key in sorted(set(obj) - allowed):
        hint = ""
        if not prefix and key in _TEXT_KEYS and "messages" not in obj:
            hint = '; the text goes in "messages": [{"role": "user", "content": ...}]'
        errors.add(f"{prefix}{key}", f"unknown field (allowed: {', '.join(sorted(allowed))}){hint}")


def parse_prompt(obj: Any, line: int = 1) -> trainer_pb2.Prompt:
    """One decoded JSON object as a grpo.trainer.v1.Prompt. Raises PromptFileError naming the fields."""
    errors = _Errors(line)
    prompt = _parse(obj, errors)
    if errors.items:
        raise PromptFileError("<prompt>", errors.items)
    return prompt


def _parse(obj: Any, errors: _Errors) -> trainer_pb2.Prompt:
    prompt = trainer_pb2.Prompt()
    before = len(errors.items)
    _values(obj, "", errors)
    if len(errors.items) > before:  # text protobuf cannot hold, or a value JSON does not have
        return prompt
    if not isinstance(obj, dict):
        errors.add("", f"must be a JSON object, got {_json_type(obj)}")
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
            errors.add("answer", f"must be a string (or a number), got {_json_type(answer)}")
        elif isinstance(answer, _Number):
            prompt.answer = answer.text  # as written: the math verifier compares answers
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
                errors.add(f"metadata.{_key(key)}", f"must be a string, got {_json_type(value)}")
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
    return parse_prompt_file(lines, source).prompts


def parse_prompt_file(lines: Iterable[str], source: str = "<prompts>") -> PromptFile:
    """`parse_prompt_lines`, keeping the line of each prompt. A line may hold undecodable bytes as
    surrogate escapes (errors="surrogateescape"): they are reported as not UTF-8."""
    prompts: list[trainer_pb2.Prompt] = []
    numbers: list[int] = []
    problems: list[PromptError] = []
    first_line: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if number == 1:  # a byte-order mark some editors write at the start of a UTF-8 file
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        errors = _Errors(number)
        undecodable = _undecodable(text, number)
        text = text.rstrip("\r\n")  # the line break: an error at the end of the line is then at its column
        deep = None if undecodable else _too_deep(text)
        if undecodable:
            errors.add("", undecodable)
        elif deep is not None:
            errors.add("", f"not valid JSON: nested deeper than {MAX_DEPTH} levels at column {deep}")
        else:
            try:
                obj = _loads(text)
            except json.JSONDecodeError as exc:
                errors.add("", f"not valid JSON: {exc.msg} at column {exc.colno}")
            except RecursionError:  # not with MAX_DEPTH, unless called with the stack nearly full
                errors.add("", "not valid JSON: nested too deeply")
            else:
                prompt = _parse(obj, errors)
                if not errors.items:
                    if prompt.id in first_line:
                        errors.add("id", f"{prompt.id!r} repeats the id of line {first_line[prompt.id]}")
                    else:
                        first_line[prompt.id] = number
                        prompts.append(prompt)
                        numbers.append(number)
        problems += errors.items
        if len(problems) >= MAX_ERRORS:
            break
    if problems:
        raise PromptFileError(source, problems[:MAX_ERRORS])
    return PromptFile(source, prompts, numbers)


def load_prompt_file(path: str | Path) -> PromptFile:
    """Read a prompt file (UTF-8 JSON Lines) with the line of each prompt. Raises PromptFileError
    (bytes that are not UTF-8 included) or OSError."""
    path = Path(path)
    with path.open(encoding="utf-8", errors="surrogateescape") as f:
        return parse_prompt_file(f, str(path))


def read_prompt_file(path: str | Path) -> list[trainer_pb2.Prompt]:
    """Read a prompt file (UTF-8 JSON Lines). Raises PromptFileError or OSError."""
    return load_prompt_file(path).prompts


def batch_request_id(batch: Sequence[trainer_pb2.Prompt], index: int, prefix: str | None = None) -> str:
    """The idempotency key of one batch of a submission.

    Without `prefix`: "sub-" + the first 40 hex digits of a SHA-256 over the batch index and the batch's
    prompts (deterministic protobuf serialisation), so submitting the same file with the same batch size
    again sends the same keys and the trainer answers "duplicate" instead of queueing the prompts twice.
    (Editing the file changes the keys of the batches it touches; the trainer then refuses ids that are
    still queued, naming them.) With `prefix` (the user's --request-id): "<prefix>-<index>"; an empty
    prefix counts as none, as in the Go and TypeScript clients.
    """
    if prefix:
        return f"{prefix}-{index}"
    h = hashlib.sha256(f"grpo-submit/v1/{index}/".encode())
    for p in batch:
        data = p.SerializeToString(deterministic=True)
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return "sub-" + h.hexdigest()[:40]
