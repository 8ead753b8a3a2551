"""`grpo submit` when a file or a batch goes wrong, against a real trainer API on loopback: a batch the
trainer refuses part-way names the file's line and the prompt's id and says what was already queued,
and the same command run again after the fix queues nothing twice; prompt-file bytes and text the
trainer cannot take, and a bad --batch-size, are reported before anything is sent."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from trainer_api import TrainerApi

from grpo_client import TrainerClient
from grpo_client.cli import main
from grpo_client.client import SubmitError
from grpo_client.prompts import read_prompt_file

BIG = 70_000  # bytes of content: over the trainer's default limits.max_chat_message_bytes (64 KiB)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `grpo` in process; returns (exit code, stdout, stderr)."""
    out = io.StringIO()
    capsys.readouterr()
    code = main(list(argv), out=out)
    return code, out.getvalue(), capsys.readouterr().err


def line(i: int, content: str | None = None) -> str:
    return json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": content or f"What is {i}+1?"}],
                       "answer": str(i + 1)}) + "\n"


def five_prompts_line_4_too_big(path: Path) -> Path:
    """Lines 1-5 hold q0..q4; q3 (line 4, the 2nd prompt of batch 2 at --batch-size 2) is too big."""
    path.write_text("".join(line(i, "x" * BIG if i == 3 else None) for i in range(5)))
    return path


def submitted_ids(api: TrainerApi) -> list[str]:
    """Every submission the store holds, in order (an id queued twice would show twice)."""
    return [p.id for p in api.store.list_prompts(limit=1000)]


@pytest.mark.parametrize("request_id", [[], ["--request-id", "run-1"]], ids=["content-keys", "request-id"])
def test_a_batch_refused_part_way_names_line_and_id_and_a_rerun_after_the_fix_queues_nothing_twice(
    api: TrainerApi, tmp_path: Path, capsys, request_id: list[str]
) -> None:
    f = five_prompts_line_4_too_big(tmp_path / "p.jsonl")
    argv = ["--target", api.target, "submit", str(f), "--batch-size", "2", *request_id]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert f"\n  {f}:4: id q3: messages[0].content: the content is {BIG} bytes; at most 65536" in err, err
    assert "batch 2 of 3 (prompts 3-4, lines 3-4)" in err, err
    assert "2 prompts of batch 1 (lines 1-2) were accepted before it" in err, err
    assert "run the same command again" in err and "queues nothing twice" in err, err
    assert api.store.queue_depth() == 2  # batch 1 only

    f.write_text("".join(line(i) for i in range(5)))  # the fix: line 4 only
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    assert ("submitted 3 new prompts in 3 batches (1 of them, 2 prompts, already submitted before: not queued "
            "again); queue depth 5") in out, out
    assert submitted_ids(api) == ["q0", "q1", "q2", "q3", "q4"]  # each once


def test_a_batch_refused_part_way_in_json_locates_each_violation(api: TrainerApi, tmp_path: Path, capsys) -> None:
    f = five_prompts_line_4_too_big(tmp_path / "p.jsonl")
    code, out, _ = cli(capsys, "--target", api.target, "--json", "submit", str(f), "--batch-size", "2")
    assert code == 2
    error = json.loads(out)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    [v] = error["field_violations"]
    assert (v["field"], v["file"], v["line"], v["id"], v["prompt_field"]) == (
        "prompts[1].messages[0].content", str(f), 4, "q3", "messages[0].content")
    s = error["submission"]
    assert (s["batch_index"], s["batches"], s["batch_size"], s["accepted_prompts"], s["accepted_through_line"],
            s["refused_batch_queued"]) == (1, 3, 2, 2, 2, False)
    assert s["accepted_ids"] == ["q0", "q1"] and s["file"] == str(f)


def test_a_full_queue_part_way_says_what_was_accepted(make_api, tmp_path: Path, capsys) -> None:
    from grpo_server.api.settings import ApiLimits

    api = make_api(limits=ApiLimits(max_queue_depth=2, retry_after_seconds=0.05))
    f = tmp_path / "p.jsonl"
    f.write_text("".join(line(i) for i in range(3)))
    code, _, err = cli(capsys, "--target", api.target, "submit", str(f), "--batch-size", "2")
    assert code == 1 and "RESOURCE_EXHAUSTED" in err
    assert "batch 2 of 2 (prompt 3, line 3)" in err and "2 prompts of batch 1 (lines 1-2) were accepted" in err, err
    assert "The trainer's queue stayed full through the retries: once it has room, run the same command" in err, err
    assert "Fix what is named" not in err  # nothing is named: nothing to fix
    # Each wait is said as it starts, with the trainer's own reason, so the retries do not look like a hang.
    notices = [x for x in err.splitlines() if x.startswith("the trainer refused a batch")]
    assert notices == [f"the trainer refused a batch (RESOURCE_EXHAUSTED: the prompt queue is full (2 of 2 waiting; "
                       f"1 more does not fit); retry after 0.05 s); sending it again in 0.05 s (retry {i} of 4)"
                       for i in range(1, 5)], err

    # The same file with another batch size: new keys, so the queued prompts are refused as queued, and
    # the advice says why rather than "fix what is named".
    code, _, err = cli(capsys, "--target", api.target, "submit", str(f), "--batch-size", "1")
    assert code == 2 and "already queued" in err and "another --batch-size or --request-id" in err, err


def test_one_prompt_accepted_before_a_refused_batch_is_said_in_the_singular(
    api: TrainerApi, tmp_path: Path, capsys
) -> None:
    """With one prompt accepted the progress reads "The 1 prompt of batch 1 (line 1) was accepted", not
    "The 1 prompts of batch 1 (lines 1-1) were accepted"."""
    f = tmp_path / "p.jsonl"
    f.write_text(line(0) + line(1, "x" * BIG))
    code, _, err = cli(capsys, "--target", api.target, "submit", str(f), "--batch-size", "1")
    assert code == 2, err
    assert "batch 2 of 2 (prompt 2, line 2)" in err, err
    assert "Batch 2 was not queued. The 1 prompt of batch 1 (line 1) was accepted before it; the trainer keeps it." \
        in err, err


def test_a_trainer_still_loading_its_tokenizer_is_waited_out_and_the_retry_line_says_why(
    api: TrainerApi, tmp_path: Path, capsys
) -> None:
    """The trainer answers UNAVAILABLE while its model's tokenizer loads (it needs one to count prompt
    tokens), with a message saying so and a 5 s RetryInfo. `grpo submit` waits and sends the batch again,
    and the line it prints before the wait quotes that reason, not just "it is unavailable"."""
    tokenizer = api.servicer.tokenizer_getter
    asked: list[int] = []

    def loading_once() -> object:  # no tokenizer at the first call, as while the model loads
        asked.append(1)
        return None if len(asked) == 1 else tokenizer()

    api.servicer.tokenizer_getter = loading_once
    f = tmp_path / "p.jsonl"
    f.write_text(line(0))
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f))
    assert code == 0 and "submitted 1 prompt in 1 batch; queue depth 1" in out, (out, err)
    notices = [x for x in err.splitlines() if x.startswith("the trainer refused a batch")]
    assert notices == ["the trainer refused a batch (UNAVAILABLE: the model's tokenizer is still loading; retry "
                       "shortly); sending it again in 5 s (retry 1 of 4)"], err


def test_the_retry_line_keeps_the_generic_words_without_a_reason_and_cuts_a_long_one() -> None:
    """A refusal without a message (a proxy's bare UNAVAILABLE, say) still says what the code means; the
    trainer's message is put on one line and cut to 200 characters, so the notice stays one line."""
    import grpc

    from grpo_client.cli import retry_notice
    from grpo_client.client import TrainerError

    assert retry_notice(TrainerError(grpc.StatusCode.UNAVAILABLE, ""), 1.0, 1) == (
        "the trainer refused a batch (UNAVAILABLE: it is unavailable); sending it again in 1 s (retry 1 of 4)")
    assert retry_notice(TrainerError(grpc.StatusCode.RESOURCE_EXHAUSTED, " \n"), 2.5, 4) == (
        "the trainer refused a batch (RESOURCE_EXHAUSTED: its queue is full); sending it again in 2.5 s (retry 4 of 4)")
    long = retry_notice(TrainerError(grpc.StatusCode.UNAVAILABLE, "a\nb " + "\u00e9" * 300), 1.0, 2)
    assert long == ("the trainer refused a batch (UNAVAILABLE: a b " + "\u00e9" * 193 + "...); sending it again in 1 s "
                    "(retry 2 of 4)")


def test_submit_file_raises_submit_error_with_the_lines_and_submit_all_with_the_indexes(
    api: TrainerApi, tmp_path: Path
) -> None:
    f = five_prompts_line_4_too_big(tmp_path / "p.jsonl")
    with TrainerClient(api.target) as client:
        with pytest.raises(SubmitError) as err:
            client.submit_file(f, batch_size=2)
        e = err.value
        assert (e.batch_index, e.batches, e.accepted_ids, e.refused_batch_queued) == (1, 3, ["q0", "q1"], False)
        [loc] = e.located
        assert (loc.index, loc.line, loc.prompt_id, loc.prompt_field) == (3, 4, "q3", "messages[0].content")
        assert loc.format(e.source).startswith(f"{f}:4: id q3: messages[0].content: the content is {BIG} bytes")

        g = tmp_path / "g.jsonl"
        g.write_text("".join(line(i + 10, "x" * BIG if i == 3 else None) for i in range(5)))
        with pytest.raises(SubmitError) as err:
            client.submit_all(read_prompt_file(g), batch_size=2)
    assert "\n  prompts[3] (id q13): messages[0].content: the content is" in str(err.value)


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_a_batch_size_below_one_is_refused_by_the_argument_parser(capsys, value: str) -> None:
    assert main(["--target", "127.0.0.1:1", "submit", "p.jsonl", "--batch-size", value]) == 2
    err = capsys.readouterr().err
    assert "argument --batch-size:" in err and "a whole number >= 1" in err and "Traceback" not in err


def _file_error(capsys, api: TrainerApi, f: Path) -> tuple[str, dict[str, Any]]:
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f))
    assert code == 2 and out == "", err
    code, out, _ = cli(capsys, "--target", api.target, "--json", "submit", str(f))
    assert code == 2
    assert api.store.queue_depth() == 0
    return err, json.loads(out)["error"]


def test_a_file_that_is_not_utf8_is_a_prompt_file_error(api: TrainerApi, tmp_path: Path, capsys) -> None:
    f = tmp_path / "p.jsonl"
    f.write_bytes(b'\xff\xfe{"id":"a"}\n')
    err, doc = _file_error(capsys, api, f)
    assert f"{f}:1: not valid UTF-8: byte 0xff at byte 1" in err
    assert doc["code"] == "INVALID_ARGUMENT" and doc["field_violations"][0]["field"] == "line 1"


def test_a_lone_surrogate_escape_is_a_prompt_file_error(api: TrainerApi, tmp_path: Path, capsys) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(line(0) + '{"id": "a", "messages": [{"role": "user", "content": "x\\ud800y"}]}\n')
    err, doc = _file_error(capsys, api, f)
    assert f"{f}:2: messages[0].content: contains an unpaired surrogate" in err
    assert [v["field"] for v in doc["field_violations"]] == ["line 2: messages[0].content"]


def test_nan_is_a_prompt_file_error(api: TrainerApi, tmp_path: Path, capsys) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "messages": [{"role": "user", "content": "x"}], "answer": NaN}\n')
    err, doc = _file_error(capsys, api, f)
    assert f"{f}:1: answer: NaN is not valid JSON" in err
    assert [v["field"] for v in doc["field_violations"]] == ["line 1: answer"]


def test_a_number_answer_reaches_the_trainer_as_written(api: TrainerApi, tmp_path: Path, capsys) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "messages": [{"role": "user", "content": "x"}], "answer": 2.50}\n'
                 '{"id": "b", "messages": [{"role": "user", "content": "y"}], "answer": 1e3}\n')
    code, _, err = cli(capsys, "--target", api.target, "submit", str(f))
    assert code == 0, err
    assert {p.id: p.answer for p in api.store.lease(2, 1)} == {"a": "2.50", "b": "1e3"}


def test_a_batch_larger_than_the_trainers_message_limit_is_sent_again_in_batches_within_it(
    make_api, tmp_path: Path, capsys
) -> None:
    import time

    from grpo_server.api.settings import ApiLimits

    api = make_api(limits=ApiLimits(max_message_bytes=1024 * 1024, max_prompt_tokens=0))
    f = tmp_path / "p.jsonl"  # batch 1 (lines 1-20) small; batch 2 (lines 21-40) 20 x 60 KB > 1 MiB
    f.write_text("".join(line(i, "x" * 60_000 if i >= 20 else None) for i in range(40)))
    started = time.monotonic()
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f), "--batch-size", "20")
    assert time.monotonic() - started < 5  # not the queue-full retries (1 + 2 + 4 + 8 s)
    assert code == 0, err
    assert ("note: the batch of 20 prompts from prompt 21 (line 21) on was more than the trainer takes in one "
            "message (1048576 bytes); sent in smaller batches from there") in err, err
    assert submitted_ids(api) == [f"q{i}" for i in range(40)]  # each once
    # 1 MiB holds 17 of the 60 KB prompts: batch 1, then 17 and 3
    assert "submitted 40 prompts in 3 batches; queue depth 40" in out, out

    # The same command again: the same grouping, so the same keys, and every batch a duplicate.
    code, out, err = cli(capsys, "--json", "--target", api.target, "submit", str(f), "--batch-size", "20")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["batches"], doc["duplicate_batches"], len(doc["resized"])) == (3, 3, 1), doc
    assert submitted_ids(api) == [f"q{i}" for i in range(40)]


def test_a_batch_over_64_mib_goes_whole_to_a_trainer_that_takes_it(make_api, tmp_path: Path, capsys) -> None:
    """The client capped what it sends at 64 MiB itself, took its own refusal for the trainer's and split
    the batch: the Go and TypeScript clients, with no such cap, sent it whole, so the same file had other
    request ids there (not recognised as already submitted). Only the trainer's limit splits a batch."""
    from grpo_server.api.settings import ApiLimits

    api = make_api(limits=ApiLimits(max_message_bytes=256 * 1024 * 1024, max_prompt_tokens=0,
                                    max_metadata_bytes=1024 * 1024))
    f = tmp_path / "big.jsonl"  # 240 prompts of 300 KB: 72 MB in one batch
    f.write_text("".join(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": "hi"}], "answer": "1",
                                     "metadata": {"blob": "v" * 300_000}}) + "\n" for i in range(240)))
    code, out, err = cli(capsys, "--json", "--target", api.target, "submit", str(f))
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["batches"], doc["resized"]) == (1, []), doc
    assert len(submitted_ids(api)) == 240


def test_a_rerun_of_prompts_that_failed_says_nothing_was_queued_and_how_to_queue_them_again(
    api: TrainerApi, tmp_path: Path, capsys
) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text("".join(line(i) for i in range(3)))
    assert cli(capsys, "--target", api.target, "submit", str(f))[0] == 0
    for step in (1, 2, 3):  # 3 failed attempts (the store's default limit): all three FAILED
        api.store.lease(3, step)
        api.store.requeue_step(step, count_attempt=True)
    assert api.store.queue_depth() == 0
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f))
    assert code == 0, err
    assert out.startswith("nothing queued: the batch (3 prompts) had been submitted before under the same "
                          "request ids"), out
    assert "give --request-id a new value" in out and api.store.queue_depth() == 0
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f), "--request-id", "again")
    assert code == 0 and "submitted 3 prompts in 1 batch; queue depth 3" in out, (out, err)


def test_a_request_id_reused_for_other_prompts_is_refused_naming_it(api: TrainerApi, tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(line(i) for i in range(2)))
    b.write_text("".join(line(i) for i in range(10, 12)))
    assert cli(capsys, "--target", api.target, "submit", str(a), "--request-id", "RR")[0] == 0
    code, out, err = cli(capsys, "--target", api.target, "submit", str(b), "--request-id", "RR")
    assert code == 2, (out, err)
    assert "request_id: 'RR-0' was first used for other prompts (it queued q0, q1)" in err, err
    assert submitted_ids(api) == ["q0", "q1"]  # b's prompts were not quietly dropped, nor queued under RR-0
    # An empty prefix would make every such submission's keys alike.
    code, _, err = cli(capsys, "--target", api.target, "submit", str(b), "--request-id", "")
    assert code == 2 and "argument --request-id: must not be empty" in err, err


def test_a_single_prompt_over_the_message_limit_is_named_and_what_came_before_is_kept(
    make_api, tmp_path: Path, capsys
) -> None:
    from grpo_server.api.settings import ApiLimits

    api = make_api(limits=ApiLimits(max_message_bytes=1024 * 1024, max_prompt_tokens=0,
                                    max_chat_message_bytes=2 * 1024 * 1024))
    f = tmp_path / "p.jsonl"  # line 6 alone is more than 1 MiB
    f.write_text("".join(line(i, "x" * 1_100_000 if i == 5 else None) for i in range(8)))
    code, _, err = cli(capsys, "--target", api.target, "submit", str(f), "--batch-size", "4")
    assert code == 1, err
    assert "RESOURCE_EXHAUSTED: batch 2 of 2 (prompts 5-8, lines 5-8) was refused" in err, err
    assert ("Batch 2 was not queued. The 4 prompts of batch 1 (lines 1-4) were accepted before it; the trainer keeps "
            "them. Prompt 6, line 6 (id q5) alone is more than the trainer takes in one message (1048576 bytes): "
            "shorten it, or have the trainer's limits.max_message_bytes raised; then run the same command again") \
        in err, err
    # Nothing of batch 2 was sent in smaller pieces, so the fixed file's batch 2 has the key it had.
    assert submitted_ids(api) == [f"q{i}" for i in range(4)]
    code, out, _ = cli(capsys, "--json", "--target", api.target, "submit", str(f), "--batch-size", "4")
    assert code == 1
    doc = json.loads(out)["error"]["submission"]
    assert doc["alone_too_large"] == [{"index": 5, "id": "q5", "line": 6}], doc

    f.write_text("".join(line(i) for i in range(8)))  # line 6 shortened: the rest goes in
    code, _, err = cli(capsys, "--target", api.target, "submit", str(f), "--batch-size", "4")
    assert code == 0, err
    assert submitted_ids(api) == [f"q{i}" for i in range(8)]


def test_a_batch_over_the_trainers_prompt_count_limit_is_sent_in_batches_of_that_many(
    make_api, tmp_path: Path, capsys
) -> None:
    from grpo_server.api.settings import ApiLimits

    api = make_api(limits=ApiLimits(max_prompts_per_request=3))
    f = tmp_path / "p.jsonl"
    f.write_text("".join(line(i) for i in range(10)))
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f), "--request-id", "r")
    assert code == 0, err
    assert "note: the trainer takes at most 3 prompts per request; batches of 3 from prompt 1 (line 1) on" in err
    assert "submitted 10 prompts in 4 batches; queue depth 10" in out, out
    assert submitted_ids(api) == [f"q{i}" for i in range(10)]
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f), "--request-id", "r")
    assert code == 0 and "nothing queued: all 4 batches (10 prompts) had been submitted before" in out, (out, err)
    assert submitted_ids(api) == [f"q{i}" for i in range(10)]


def test_a_batch_over_the_trainers_queue_depth_is_sent_in_batches_that_fit(make_api, tmp_path: Path, capsys) -> None:
    """A batch of more prompts than limits.max_queue_depth can never be queued: it was refused with "Fix what
    is named above" (nothing in the file was wrong, and the same command failed the same way). It is now
    sent in batches within that depth, the later ones waiting for the queue to drain as for a full queue."""
    import threading

    from grpo_server.api.settings import ApiLimits

    api = make_api(limits=ApiLimits(max_queue_depth=3, retry_after_seconds=0.2))
    f = tmp_path / "p.jsonl"
    f.write_text("".join(line(i) for i in range(5)))

    def drain() -> None:  # the training loop takes the first 3 once they are queued
        while api.store.queue_depth() < 3:
            time.sleep(0.05)
        api.store.lease(3, 1)

    threading.Thread(target=drain, daemon=True).start()
    code, out, err = cli(capsys, "--target", api.target, "submit", str(f))
    assert code == 0, err
    assert "note: the trainer takes at most 3 prompts per request; batches of 3 from prompt 1 (line 1) on" in err
    assert "submitted 5 prompts in 2 batches" in out, out
    assert submitted_ids(api) == [f"q{i}" for i in range(5)]


class AnswerLosingProxy:
    """A loopback TCP proxy in front of the trainer that loses one answer: once a connection has carried
    more than `threshold` bytes to the trainer (the request got through), what the trainer sends back on
    it is dropped and the connection closed a moment later, as a network failing after the request."""

    def __init__(self, upstream: str, threshold: int) -> None:
        import socket
        import threading

        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.threshold = threshold
        self.lost = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            trainer = socket.create_connection(self.upstream)
            state = {"sent": 0, "dropping": False}
            threading.Thread(target=self._pump, args=(client, trainer, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(trainer, client, state, False), daemon=True).start()

    def _pump(self, src: Any, dst: Any, state: dict[str, Any], upward: bool) -> None:
        import threading

        try:
            while data := src.recv(65536):
                if upward:
                    state["sent"] += len(data)
                    if state["sent"] > self.threshold and not self.lost:
                        self.lost = state["dropping"] = True
                        threading.Timer(1.0, lambda: (_close(src), _close(dst))).start()
                    dst.sendall(data)
                elif not state["dropping"]:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)

    def close(self) -> None:
        self.listener.close()


def _close(sock: Any) -> None:
    import contextlib
    import socket

    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def test_a_batch_whose_answer_was_lost_is_counted_as_queued_by_this_run(api: TrainerApi, tmp_path: Path,
                                                                        capsys) -> None:
    """The trainer queued the batch and its answer was lost; the retry was answered as a duplicate, and
    `grpo submit` said "nothing queued: ... had been submitted before" and advised a new --request-id,
    which would have queued (and trained) the 60 prompts twice."""
    proxy = AnswerLosingProxy(api.target, threshold=20_000)
    try:
        f = tmp_path / "p.jsonl"
        f.write_text("".join(line(i, "what is 1+1? " * 40) for i in range(60)))
        code, out, err = cli(capsys, "--target", proxy.target, "--json", "submit", str(f))
    finally:
        proxy.close()
    assert proxy.lost and code == 0, err
    assert "sending it again" in err  # the answer was lost: sent again, answered from the store
    doc = json.loads(out)
    assert (doc["duplicate_batches"], doc["replayed_ids"], len(doc["accepted_ids"])) == (0, [], 60), doc
    assert len(submitted_ids(api)) == 60  # queued once
