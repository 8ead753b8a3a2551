// submitFile's retries, apart from the network: a batch the trainer refuses as full is sent again after
// its retry delay, and onRetry hears of each wait before it starts (the example prints it, as `grpo
// submit` does: a silent wait looks like a hang).
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';

import { status } from '@grpc/grpc-js';

import { GrpoError, SubmitError } from '../src';
import { submitBatches } from '../src/submit';

// A full queue, as the trainer says it: RetryInfo and QuotaFailure.
const FULL = new GrpoError('SubmitPrompts', status.RESOURCE_EXHAUSTED, 'the prompt queue is full', [
  { type: 'google.rpc.RetryInfo', value: { retryDelay: { seconds: 0, nanos: 250_000_000 } } },
  { type: 'google.rpc.QuotaFailure', value: { violations: [{ subject: 'queue', description: 'full' }] } },
]);

describe('submitFile retries', () => {
  it('calls onRetry with the refusal, the wait and the attempt before each wait', async () => {
    let calls = 0;
    const events: string[] = [];
    const result = await submitBatches(async (batch) => {
      calls++;
      if (calls <= 2) throw FULL;
      return { acceptedIds: batch.map((p) => p.id ?? ''), queueDepth: 1, duplicate: false };
    }, [{ id: 'a', messages: [{ role: 'user', content: 'q' }], answer: '1' }], undefined, undefined, {
      onRetry: (err, waitMs, attempt) => events.push(`retry ${err.codeName} ${waitMs} ${attempt}`),
    }, async (ms) => { events.push(`wait ${ms}`); });
    assert.deepEqual(result.acceptedIds, ['a']);
    assert.equal(calls, 3);
    assert.deepEqual(events, ['retry RESOURCE_EXHAUSTED 250 1', 'wait 250', 'retry RESOURCE_EXHAUSTED 250 2', 'wait 250']);
  });

  it('a batch answered as a duplicate after an attempt whose answer was lost is queued by this run', async () => {
    // The trainer stored the batch and its answer was lost (UNAVAILABLE); the retry is answered as a
    // duplicate. Counted as a replay, the example said "submitted before" and advised a new request id.
    let calls = 0;
    const result = await submitBatches(async (batch) => {
      calls++;
      if (calls === 1) throw new GrpoError('SubmitPrompts', status.UNAVAILABLE, 'Connection reset by peer', []);
      return { acceptedIds: batch.map((p) => p.id ?? ''), queueDepth: 1, duplicate: calls === 2 };
    }, [{ id: 'a', messages: [{ role: 'user', content: 'q' }], answer: '1' }], undefined, undefined, {},
    async () => undefined);
    assert.deepEqual([result.acceptedIds, result.replayedIds, result.duplicateBatches], [['a'], [], 0]);
    // Refused as full (known not stored), then a duplicate: a replay of an earlier run.
    calls = 0;
    const replay = await submitBatches(async (batch) => {
      calls++;
      if (calls === 1) throw FULL;
      return { acceptedIds: batch.map((p) => p.id ?? ''), queueDepth: 1, duplicate: true };
    }, [{ id: 'a', messages: [{ role: 'user', content: 'q' }], answer: '1' }], undefined, undefined, {},
    async () => undefined);
    assert.deepEqual([replay.replayedIds, replay.duplicateBatches], [['a'], 1]);
  });

  it('a batch of more prompts than the queue holds is sent again in batches that fit it', async () => {
    // "N prompts can never fit a queue of at most 3" was a SubmitError telling the user to fix the file.
    const sizes: number[] = [];
    const prompts = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id, messages: [{ role: 'user', content: 'q' }], answer: '1' }));
    const result = await submitBatches(async (batch) => {
      sizes.push(batch.length);
      if (batch.length > 3) {
        throw new GrpoError('SubmitPrompts', status.INVALID_ARGUMENT, 'invalid request', [{ type: 'google.rpc.BadRequest',
          value: { fieldViolations: [{ field: 'prompts', description: `${batch.length} prompts can never fit a queue of at most 3; send fewer` }] } }]);
      }
      return { acceptedIds: batch.map((p) => p.id ?? ''), queueDepth: batch.length, duplicate: false };
    }, prompts, undefined, undefined, {}, async () => undefined);
    assert.deepEqual(sizes, [5, 3, 2]);
    assert.deepEqual(result.acceptedIds, ['a', 'b', 'c', 'd', 'e']);
    assert.equal(result.resized.length, 1);
  });

  it('a maxAttempts that is not a whole number >= 1 is a TypeError before anything is sent', async () => {
    // NaN retried for ever (attempt >= NaN is never true); 0 sent once. Python refuses both.
    for (const maxAttempts of [Number.NaN, 0, 1.5]) {
      let calls = 0;
      await assert.rejects(submitBatches(async () => { calls++; throw new Error('not sent'); },
        [{ id: 'a', messages: [{ role: 'user', content: 'q' }], answer: '1' }], undefined, undefined, { maxAttempts },
        async () => undefined), (err: unknown) => err instanceof TypeError && /maxAttempts/.test(err.message));
      assert.equal(calls, 0);
    }
  });

  it('a trainer certificate that fails verification is not sent again', async () => {
    // It was retried as a trainer that is down (UNAVAILABLE), four times over 15 s.
    let calls = 0;
    const unverified = new GrpoError('SubmitPrompts', status.UNAVAILABLE,
      'No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ', []);
    assert.ok(unverified.serverCertificateUnverified && unverified.tlsRefused);
    await assert.rejects(submitBatches(async () => { calls++; throw unverified; },
      [{ id: 'a', messages: [{ role: 'user', content: 'q' }], answer: '1' }], undefined, undefined, {},
      async () => undefined), (err: unknown) => {
      assert.ok(err instanceof SubmitError);
      assert.match(err.progress(), /The trainer's certificate could not be verified: with the CA that signed it \(--ca\)/);
      return true;
    });
    assert.equal(calls, 1);
  });

  it('a queue full through every attempt is a SubmitError that reads as the Python client\'s', async () => {
    const prompts = [{ id: 'a', messages: [{ role: 'user', content: 'q' }], answer: '1' }];
    await assert.rejects(submitBatches(async () => { throw FULL; }, prompts, undefined, undefined, { maxAttempts: 2 },
      async () => undefined), (err: unknown) => {
      assert.ok(err instanceof SubmitError);
      // The retry delay, and no bare "google.rpc.QuotaFailure" line: Python decodes that detail too.
      assert.match(err.message, /\n {2}retry after 0\.25 s\n/);
      assert.doesNotMatch(err.message, /google\.rpc\./);
      return true;
    });
  });
});
