"""Prompt files from the Go and TypeScript clients (grpoclient.LoadPromptFile/SubmitFile, loadPromptFile/
submitFile) against the Python client, the reference: the same problems named by the same line, field and
words; the same batches and request ids; and, against a live trainer, a file submitted from one client is
answered as already submitted (duplicate batches, nothing queued twice) when submitted from another."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import REPO, LiveTrainer, require_tools, run_tool, running_trainer

sys.path.insert(0, str(REPO / "clients" / "python"))
from grpo_client.client import TrainerClient  # noqa: E402
from grpo_client.prompts import PromptFileError, batch_request_id, load_prompt_file  # noqa: E402
from grpo_client.words import counted, span  # noqa: E402

GO = REPO / "clients" / "go"
TS = REPO / "clients" / "typescript"

_P = '"messages": [{"role": "user", "content": "What is 1 + 1?"}]'

# Files that parse: numbers kept as written, unicode and escapes, maps whose key order differs by sort,
# code tests, a UTF-8 byte-order mark, CRLF and CR line breaks, lines of Unicode whitespace, no final break.
VALID = {
    "mixed.jsonl": (
        "\ufeff" + json.dumps({"id": "p1", "messages": [{"role": "user", "content": "What is 2+2? ✓ 😀"}],
                               "rewards": [{"backend": "math", "weight": 0.5}]})[:-1] + ', "answer": 2.50}\r\n'
        + "\u00a0 \u3000\r\n"
        + '{"id": "p2", ' + _P + ', "answer": "\\ud83d\\ude00 \\u00e9", "metadata": {"10": "a", "9": "b", "\u00e9": "c", '
          '"\U0001F600": "d", "Z": "", "": "e"}}\r'
        + '{"id": "c1", ' + _P + ', "code": {"test_code": "def check(f):\\n    assert f(1) == 2", "entry_point": "f", '
          '"io_cases": [{"stdin": "1", "expected_stdout": "2"}, {"expected_stdout": ""}], "timeout_seconds": 5}}\n'
        + '{"id": "c2", ' + _P + ', "code": {}, "rewards": [{"backend": "math"}, {"backend": "code", "weight": 1e-300}]}\n'
        + '\n'
        + '{"id": "e1", ' + _P + ', "answer": "", "metadata": {}}\n'
        + '{"id": "o1", ' + _P + ', "metadata": {"__proto__": "x", "constructor": "y", "a": "b"}}\n'
        + '{"id": "n1", ' + _P + ', "answer": -0.0e+0}\n'
        + '{"id": "deep", ' + _P + ', "metadata": {"k": "' + "[" * 70 + '"}}' + " " * 3 + '\n'
        + '{"id": "big", ' + _P + ', "code": {"test_code": "' + "x" * 300 + '", "timeout_seconds": -0}}'
    ).encode("utf-8"),
    "empty.jsonl": b"\n\n   \n",
}

# Files with problems: every kind the Python client names.
INVALID = {
    "json.jsonl": "\n".join([
        '{"id": "a",', '[1,]', '{"a":1,}', '"\\u12"', '"\\x"', '{"a": "ab', '{"a" 1}', '{"a":1 "b"}', '01', '1.',
        '-', 'nul', '{"a":}', '"\\ud800\\uzzzz"', '{"id": "a"} x', '\ufeff{"id": "b"}', '{"s": "tab\there"}',
    ]).encode("utf-8"),
    "fields.jsonl": "\n".join([
        '{"id": "a", "prompt": "hi"}',
        '{"id": "", ' + _P + ', "answer": true}',
        '{"id": 5, "messages": [{"role": "user"}, "x", {"role": 1, "content": "c", "extra": 1}]}',
        '{"id": "b", ' + _P + ', "answer": "4", "code": {}}',
        '{"id": "c", ' + _P + ', "rewards": [{"backend": "m", "weight": "abc"}, {"weight": -1}, {"backend": "m", "weight": 0}, '
        '{"backend": "m", "weight": [1, "a\'b", {"k": null}]}, {"backend": "m", "weight": 1e400}, 7, '
        '{"backend": "m", "weight": -1e-7}, {"backend": "m", "weight": -2e16}]}',
        '{"id": "d", ' + _P + ', "metadata": {"a.b": 1, "ok": "x", "\\u00e9\\n": [], "k": "\\u0000"}}',
        '{"id": "e", ' + _P + ', "code": {"io_cases": [{"stdin": 1}, 2], "timeout_seconds": NaN, "lang": "py"}}',
        '{"id": "f", ' + _P + ', "code": {"io_cases": {}, "test_code": "\\udc00x"}, "\\ud800k": 1}',
        '{"id": "g", ' + _P + ', "metadata": [], "rewards": null, "answer": {"x": Infinity}}',
        '[1, 2]', '"just a string"', 'null',
        '{"id": "h", ' + _P + '}', '{"id": "h", ' + _P + '}',
        '{"id": "i", ' + _P + ', "weight": -Infinity, "QUESTION": "q"}',
        '{"id": "n1", ' + _P + ', "answer": "1", "id": "n2", "metadata": {"k": "a", "k": "b", "\\u006b": "c"}}',
        '{"id": "j", "messages": [{"role": "user", "content": "x", "role": "user"}], "id": "j", "id": "j"}',
    ]).encode("utf-8"),
    "deep.jsonl": "\n".join([
        "[" * 1000 + "]" * 1000,
        '{"id": "a", "metadata": ' + "[" * 63 + "]" * 63 + "}",
        '{"id": "a", "metadata": ' + "[" * 64 + "]" * 64 + "}",
        '["\\"[", ' + "{" * 65 + '"x": 1',
        '{"id": "a", "x": 1,',
        '{"id": "a", "messages": [',
    ]).encode("utf-8"),
    "bytes.jsonl": b'{"id": "a", "messages": [{"role": "user", "content": "caf\xc3"}]}\n'
                   b'{"id": "b", "messages": [{"role": "user", "content": "\xe2\x82"}]}\n\xff\n'
                   b'{"id": "c", "x": "\xed\xa0\x80"}\r{"id": 1}',
    "utf16.jsonl": ('{"id": "a", ' + _P + '}\n').encode("utf-16"),
    "many.jsonl": b"\n".join(b'{"id": %d}' % i for i in range(40)),
}


def _python(path: Path, batch_size: int, request_id: str | None) -> tuple[int, str]:
    """What `submit-file --dry-run` must print for `path`: the exit status and its output, from Python."""
    try:
        loaded = load_prompt_file(path)
    except PromptFileError as exc:
        return 2, f"error: bad prompt file\n{exc}\n"
    out = []
    for i, start in enumerate(range(0, len(loaded.prompts), batch_size)):
        batch = loaded.prompts[start:start + batch_size]
        rid = batch_request_id(batch, i, request_id)
        lines = span("line", loaded.lines[start], loaded.lines[start + len(batch) - 1])  # "line 9" for one
        out.append(f"batch {i + 1}: {counted(len(batch), 'prompt')} ({lines}): {rid}\n")
    return 0, "".join(out)


@pytest.fixture(scope="module")
def go_example() -> Path:
    require_tools("go", "protoc", hint="clients/setup.sh")
    run_tool([str(GO / "build.sh"), "build"], cwd=GO, timeout=600)
    return GO / "bin" / "grpo-go-example"


@pytest.fixture(scope="module")
def ts_example() -> Path:
    require_tools("node", "npm", hint="clients/setup.sh")
    if not (TS / "node_modules" / ".bin" / "tsc").exists():
        pytest.skip("clients/typescript/node_modules missing; run `npm ci` there")
    run_tool(["node_modules/.bin/tsc", "-p", "tsconfig.json"], cwd=TS, timeout=300)
    return TS / "dist" / "examples" / "submit.js"


def _go(example: Path, target: str, *args: str, token: str | None = None):
    cmd = [str(example), "-target", target] + (["-token", token] if token else []) + ["submit-file", *args]
    return run_tool(cmd, cwd=GO, timeout=300, check=False)


def _ts(example: Path, target: str, *args: str, token: str | None = None):
    cmd = ["node", str(example), "--target", target] + (["--token", token] if token else []) + list(args)
    return run_tool(cmd, cwd=TS, timeout=300, check=False)


@pytest.mark.parametrize("name", sorted(VALID) + sorted(INVALID))
@pytest.mark.parametrize("batch_size,request_id", [(2, None), (1, None), (256, None), (2, "run-7")])
def test_go_and_typescript_read_a_prompt_file_as_python_does(go_example: Path, ts_example: Path, tmp_path: Path,
                                                             name: str, batch_size: int, request_id: str | None) -> None:
    """The same problems (line, field, words, in order, at most 50), or the same batches and request ids."""
    path = tmp_path / name
    path.write_bytes({**VALID, **INVALID}[name])
    code, want = _python(path, batch_size, request_id)
    extra_go = ["-request-id", request_id] if request_id else []
    extra_ts = ["--request-id", request_id] if request_id else []
    go = _go(go_example, "127.0.0.1:1", "-dry-run", "-batch-size", str(batch_size), *extra_go, str(path))
    ts = _ts(ts_example, "127.0.0.1:1", "--file", str(path), "--dry-run", "--batch-size", str(batch_size), *extra_ts)
    for who, proc in (("go", go), ("typescript", ts)):
        got = proc.stdout if code == 0 else proc.stderr
        assert (proc.returncode, got) == (code, want), f"{who}:\n{proc.stdout}{proc.stderr}"
    if name in INVALID:
        assert code == 2
    elif name != "empty.jsonl":
        assert code == 0 and "sub-" in want or request_id


def test_an_empty_or_unreadable_file_is_reported_as_python_reports_it(go_example: Path, ts_example: Path,
                                                                     tmp_path: Path) -> None:
    """A file without prompts sends nothing and needs no trainer (nothing listens on the target): the same
    line, or the same JSON document (queue_depth null), and exit status 0. A file that cannot be read is
    one "error: ..." line and exit status 1, not a stack trace."""
    import subprocess

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(VALID["empty.jsonl"])
    missing = tmp_path / "missing.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "clients" / "python")}
    for json_flag in (False, True):
        py = subprocess.run([sys.executable, "-m", "grpo_client.cli", "--target", "127.0.0.1:1",
                             *(["--json"] if json_flag else []), "submit", str(empty)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert py.returncode == 0, py.stdout + py.stderr
        go = _go(go_example, "127.0.0.1:1", *(["-json"] if json_flag else []), str(empty))
        ts = _ts(ts_example, "127.0.0.1:1", "--file", str(empty), *(["--json"] if json_flag else []))
        for who, proc in (("go", go), ("typescript", ts)):
            assert proc.returncode == 0, (who, proc.stdout + proc.stderr)
            if json_flag:
                assert json.loads(proc.stdout) == json.loads(py.stdout), (who, proc.stdout)
            else:
                assert proc.stdout == py.stdout == f"{empty} holds no prompts: nothing submitted\n", (who, proc.stdout)
    go = _go(go_example, "127.0.0.1:1", str(missing))
    ts = _ts(ts_example, "127.0.0.1:1", "--file", str(missing))
    for who, proc in (("go", go), ("typescript", ts)):
        assert proc.returncode == 1, (who, proc.stdout + proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, (who, proc.stderr)
        assert str(missing) in proc.stderr, (who, proc.stderr)


def test_a_file_submitted_from_one_client_is_a_duplicate_from_the_others(go_example: Path, ts_example: Path,
                                                                        live_trainer: LiveTrainer, tmp_path: Path) -> None:
    """Python submits a file; Go and TypeScript then send the same request ids and the trainer answers
    every batch as a duplicate (nothing queued twice). And the other way round: a file Go submitted first
    is a duplicate for Python and TypeScript."""
    token = live_trainer.admin_token
    for first, tag in (("python", "py"), ("go", "go")):
        path = tmp_path / f"{tag}.jsonl"
        lines = [json.dumps({"id": f"xlang-{tag}-{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
                             "answer": str(2 * i), "metadata": {"n": str(i), "10": "x", "9": "y"}})
                 for i in range(5)]
        path.write_text("\n".join(lines) + "\n")
        docs = {}
        order = ["python", "go", "typescript"] if first == "python" else ["go", "python", "typescript"]
        for who in order:
            if who == "python":
                with TrainerClient(live_trainer.target, token) as client:
                    r = client.submit_file(path, batch_size=2)
                docs[who] = {"request_ids": r.request_ids, "duplicate_batches": r.duplicate_batches,
                             "batches": r.batches, "accepted_ids": r.accepted_ids, "replayed_ids": r.replayed_ids}
            else:
                proc = (_go(go_example, live_trainer.target, "-batch-size", "2", "-json", str(path), token=token)
                        if who == "go" else
                        _ts(ts_example, live_trainer.target, "--file", str(path), "--batch-size", "2", "--json", token=token))
                assert proc.returncode == 0, proc.stdout + proc.stderr
                docs[who] = json.loads(proc.stdout)
        ids = [f"xlang-{tag}-{i}" for i in range(5)]
        want_rids = [batch_request_id(load_prompt_file(path).prompts[s:s + 2], k) for k, s in enumerate(range(0, 5, 2))]
        assert docs[order[0]]["duplicate_batches"] == 0 and docs[order[0]]["accepted_ids"] == ids, docs
        for who in order:
            assert docs[who]["request_ids"] == want_rids, (who, docs)
            assert docs[who]["batches"] == 3 and docs[who]["accepted_ids"] == ids, (who, docs)
        for who in order[1:]:
            assert docs[who]["duplicate_batches"] == 3 and docs[who]["replayed_ids"] == ids, (who, docs)


def test_go_and_typescript_report_a_refused_batch_by_file_line(go_example: Path, ts_example: Path,
                                                              live_trainer: LiveTrainer, tmp_path: Path) -> None:
    """A batch the trainer refuses (a role it does not allow on line 3) is reported with the file's line
    and what the batches before it queued, in the Python client's words."""
    path = tmp_path / "refused.jsonl"
    tag = os.urandom(4).hex()
    rows = [{"id": f"ref-{tag}-{i}", "messages": [{"role": "robot" if i == 2 else "user", "content": "2+2?"}], "answer": "4"}
            for i in range(4)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with TrainerClient(live_trainer.target, live_trainer.admin_token) as client:
        try:
            client.submit_file(path, batch_size=2)
        except Exception as exc:  # SubmitError
            want = f"error: {exc}\n"
        else:
            pytest.fail("the trainer accepted role 'robot'")
    go = _go(go_example, live_trainer.target, "-batch-size", "2", str(path), token=live_trainer.admin_token)
    ts = _ts(ts_example, live_trainer.target, "--file", str(path), "--batch-size", "2", token=live_trainer.admin_token)
    for who, proc in (("go", go), ("typescript", ts)):
        # Exit status 2 for INVALID_ARGUMENT, as `grpo submit` exits (both once exited 1: parity with the
        # Python CLI is the point, so the assertion changed with it).
        assert proc.returncode == 2, (who, proc.stdout + proc.stderr)
        err = "".join(line + "\n" for line in proc.stderr.splitlines() if not line.startswith("submit: "))
        assert err == want, f"{who}:\n{err}\nwant:\n{want}"
        assert f"{path}:3: id ref-{tag}-2: messages[0].role: " in err


@pytest.fixture(scope="module")
def small_trainer(tmp_path_factory: pytest.TempPathFactory, live_trainer: LiveTrainer):
    """A trainer with small limits (2 prompts a request, 4 in the queue, a 1 s retry delay on a full queue),
    auth off, scoring on the session's math verifier. Yields (target, TrainerApp)."""
    with running_trainer(tmp_path_factory.mktemp("small-limits") / "store", live_trainer.math_address,
                         rollout={"max_new_tokens": 4}, checkpoint={"every_steps": 100},
                         limits={"max_prompts_per_request": 2, "max_queue_depth": 4,
                                 "retry_after_seconds": 1.0}) as app:
        yield f"127.0.0.1:{app.api_port}", app


def _rows(tag: str, n: int) -> str:
    return "".join(json.dumps({"id": f"{tag}-{i}", "messages": [{"role": "user", "content": f"What is {i} + 1?"}],
                               "answer": str(i + 1)}) + "\n" for i in range(n))


def _queued_ids(client: TrainerClient) -> list[str]:
    from grpo.trainer.v1 import trainer_pb2

    return [p.id for p in client.list_prompts(state=trainer_pb2.PROMPT_STATE_QUEUED).prompts]


def _drain(client: TrainerClient) -> None:
    """Resume training and wait until the queue is empty; then pause again."""
    import time

    client.resume()
    deadline = time.monotonic() + 120
    while client.step_status().run.queue_depth and time.monotonic() < deadline:
        time.sleep(0.2)
    client.pause()
    assert client.step_status().run.queue_depth == 0


def test_a_batch_over_the_prompts_per_request_limit_is_resent_in_smaller_batches_with_pythons_ids(
        go_example: Path, ts_example: Path, small_trainer, tmp_path: Path) -> None:
    """Batches of 4 against a trainer that takes 2 a request: every client re-chunks to batches of 2, with
    the same request ids as Python, so the file submitted by Python is a duplicate for Go and TypeScript."""
    target, _ = small_trainer
    path = tmp_path / "rechunk.jsonl"
    tag = f"rc-{os.urandom(3).hex()}"
    path.write_text(_rows(tag, 4))
    ids = [f"{tag}-{i}" for i in range(4)]
    with TrainerClient(target) as client:
        client.pause()
        _drain(client)
        result = client.submit_file(path, batch_size=4)
        assert result.accepted_ids == ids and result.resized and result.batches == 2, result
        docs = {}
        for who, proc in (("go", _go(go_example, target, "-batch-size", "4", "-json", str(path))),
                          ("typescript", _ts(ts_example, target, "--file", str(path), "--batch-size", "4", "--json"))):
            assert proc.returncode == 0, (who, proc.stdout + proc.stderr)
            docs[who] = json.loads(proc.stdout)
        for who, doc in docs.items():
            assert doc["request_ids"] == result.request_ids, (who, doc, result.request_ids)
            assert doc["duplicate_batches"] == result.batches and doc["replayed_ids"] == result.accepted_ids, (who, doc)
        assert _queued_ids(client) == ids  # queued once
        _drain(client)


def test_a_full_queue_is_waited_out_with_the_trainers_retry_delay(go_example: Path, ts_example: Path,
                                                                 small_trainer, tmp_path: Path) -> None:
    """The queue (at most 4) is full and training paused: each client's first attempt is refused
    RESOURCE_EXHAUSTED with a 1 s RetryInfo; it succeeds only by retrying after training resumes and a step
    empties the queue (a client that did not retry would have failed before), and says so before each wait."""
    import subprocess
    import time

    target, _ = small_trainer
    with TrainerClient(target) as client:
        client.pause()
        _drain(client)
        for who in ("python", "go", "typescript"):
            tag = f"full-{who}-{os.urandom(3).hex()}"
            fill = load_prompt_file_rows(tmp_path, f"{tag}-fill", 4)
            client.submit_prompts(fill[:2])
            client.submit_prompts(fill[2:])
            path = tmp_path / f"{tag}.jsonl"
            path.write_text(_rows(tag, 2))
            if who == "python":
                cmd = [sys.executable, "-m", "grpo_client.cli", "--target", target, "--json", "submit", str(path)]
                cwd, env = REPO, {**os.environ, "PYTHONPATH": str(REPO / "clients" / "python")}
            elif who == "go":
                cmd, cwd, env = [str(go_example), "-target", target, "submit-file", "-json", str(path)], GO, None
            else:
                cmd, cwd, env = ["node", str(ts_example), "--target", target, "--file", str(path), "--json"], TS, None
            started = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(2.0)  # its first attempt is refused: the queue is full and nothing trains
            assert proc.poll() is None, (who, proc.communicate())
            client.resume()
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, (who, out, err)
            assert json.loads(out)["accepted_ids"] == [f"{tag}-0", f"{tag}-1"], (who, out)
            assert time.monotonic() - started > 2.0
            # Each wait is announced on stderr, in the Python CLI's words and with the trainer's own reason: a
            # silent wait looks like a hang.
            assert ("the trainer refused a batch (RESOURCE_EXHAUSTED: the prompt queue is full (4 of 4 waiting; 2 more "
                    "do not fit); retry after 1 s); sending it again in 1 s (retry 1 of 4)\n") in err, (who, err)
            _drain(client)


def load_prompt_file_rows(tmp_path: Path, tag: str, n: int) -> list:
    path = tmp_path / f"{tag}.jsonl"
    path.write_text(_rows(tag, n))
    return list(load_prompt_file(path).prompts)
