// loadPromptFile / batchRequestId against values the Python client (the reference) gives for the same
// bytes; tests/integration/clients/test_prompt_files.py compares many more files against Python directly.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';

import { PromptFileError, batchRequestId, parsePromptFile } from '../src';

describe('prompt files', () => {
  it('gives the request ids the Python client gives', () => {
    const f = parsePromptFile(Buffer.from('{"id":"a","messages":[{"role":"user","content":"hi"}],"answer":2.50}\n\n'
      + '{"id":"b","messages":[{"role":"user","content":"x"}],"metadata":{"10":"a","9":"b"},"rewards":[{"backend":"math","weight":0.5}]}\n'), 'p.jsonl');
    assert.deepEqual(f.lines, [1, 3]);
    assert.equal(f.prompts[0].answer, '2.50');
    assert.equal(batchRequestId(f.prompts.slice(0, 1), 0), 'sub-da543f6f14fc4425aef3cdc329435d5788f3e935');
    assert.equal(batchRequestId(f.prompts.slice(1), 1), 'sub-3e7d5afdec331e2719fb0a9e070ca00cdaa5c7e9');
    assert.equal(batchRequestId(f.prompts, 0), 'sub-922be0c90e88c95a5bc4bedbc41b0d89ad1c5006');
    assert.equal(batchRequestId(f.prompts, 3, 'run'), 'run-3');
    assert.equal(batchRequestId(f.prompts, 3, ''), batchRequestId(f.prompts, 3), 'an empty prefix is none, as in Go and Python');
  });

  it('reads a string of a million characters', () => {
    // Every code point was spread as one call's arguments: past ~150k of them the stack overflowed
    // (RangeError), where Python reads the file. Code tests and io cases are not bounded by a token limit.
    const stdin = '7 '.repeat(500_000);
    const line = JSON.stringify({ id: 'big', messages: [{ role: 'user', content: 'sum' }],
      code: { io_cases: [{ stdin, expected_stdout: '3500000' }] } });
    const f = parsePromptFile(Buffer.from(`${line}\n`), 'big.jsonl');
    assert.equal(f.prompts[0].code?.ioCases?.[0]?.stdin, stdin);
  });

  it('names each problem by line, field and the Python client\'s words', () => {
    const data = Buffer.concat([Buffer.from('{"id": "a", "prompt": "hi"}\n'
      + '{"id": "b", "messages": [{"role": "user", "content": "c"}], "rewards": [{"backend": "m", "weight": "abc"}, {"backend": "m", "weight": 0}]}\n'
      + '[1,]\n{"id": "a", "messages": [{"role": "user", "content": "\\ud800"}]}\ncaf'), Buffer.from([0xc3, 0x0a])]);
    assert.throws(() => parsePromptFile(data, 'f.jsonl'), (err: unknown) => {
      assert.ok(err instanceof PromptFileError);
      assert.equal(err.message, [
        'f.jsonl:1: prompt: unknown field (allowed: answer, code, id, messages, metadata, rewards); the text goes in "messages": [{"role": "user", "content": ...}]',
        'f.jsonl:1: messages: required: a non-empty list of {"role", "content"}',
        "f.jsonl:2: rewards[0].weight: must be a finite number, got 'abc'",
        'f.jsonl:2: rewards[1].weight: must be > 0, got 0.0',
        'f.jsonl:3: not valid JSON: Expecting value at column 4',
        'f.jsonl:4: messages[0].content: contains an unpaired surrogate ("\\ud800"), which is not valid UTF-8 text; write the character itself or its surrogate pair',
        'f.jsonl:5: not valid UTF-8: byte 0xc3 at byte 4; prompt files are UTF-8',
      ].join('\n'));
      return true;
    });
  });
});
