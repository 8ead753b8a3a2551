// The wording the examples print as `grpo` does: counts with their nouns ("1 prompt", "2 batches"), spans
// of lines, and the retry notice of submit.ts, which quotes the trainer's own reason for refusing a batch
// (a trainer whose tokenizer is still loading says so) rather than generic words; checked against an
// in-process TrainerService on loopback that answers UNAVAILABLE with a message, then without one.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';

import { GrpoError, TrainerClient } from '../src';
import { googleRpcRoot, trainerGrpcTypes } from '../src/protos';
import { counted, shortReason, span } from '../src/words';
import { retryNotice } from '../examples/cli';

type Callback = (err: Partial<grpc.ServiceError> | null, res?: unknown) => void;

/** A google.rpc.Status trailer with a RetryInfo of `ms` milliseconds, as the trainer sends with UNAVAILABLE. */
function retryInfo(code: status, ms: number): grpc.Metadata {
  const root = googleRpcRoot();
  const RetryInfo = root.lookupType('google.rpc.RetryInfo');
  const typeUrl = 'type.googleapis.com/google.rpc.RetryInfo';
  const value = RetryInfo.encode(RetryInfo.fromObject({ retryDelay: { seconds: 0, nanos: ms * 1e6 } })).finish();
  const Status = root.lookupType('google.rpc.Status');
  const md = new grpc.Metadata();
  md.set('grpc-status-details-bin', Buffer.from(Status.encode(Status.fromObject({
    code, details: [{ typeUrl, type_url: typeUrl, value }],
  })).finish()));
  return md;
}

describe('counts and spans', () => {
  it('says one of a thing in the singular and any other number in the plural', () => {
    assert.equal(counted(1, 'prompt'), '1 prompt');
    assert.equal(counted(0, 'prompt'), '0 prompts');
    assert.equal(counted(1, 'batch'), '1 batch');
    assert.equal(counted(2, 'batch'), '2 batches');
    assert.equal(counted(3, 'queued prompt'), '3 queued prompts');
    assert.equal(counted(1, 'completed step'), '1 completed step');
    assert.equal(span('line', 3, 3), 'line 3');
    assert.equal(span('line', 3, 4), 'lines 3-4');
  });

  it('quotes a reason on one line, cut to 200 characters', () => {
    assert.equal(shortReason(''), '');
    assert.equal(shortReason(' the tokenizer\n  is loading '), 'the tokenizer is loading');
    const long = 'é'.repeat(250); // code points, not UTF-16 units or bytes, as Python and Go count them
    assert.equal(shortReason(long), `${'é'.repeat(197)}...`);
    assert.equal(shortReason('x'.repeat(200)), 'x'.repeat(200));
  });
});

describe('the retry notice against an in-process trainer on loopback', () => {
  const server = new grpc.Server();
  const reasons = ["the model's tokenizer is still loading; retry shortly", ''];
  let client: TrainerClient;

  before(async () => {
    let calls = 0;
    server.addService(trainerGrpcTypes().grpo.trainer.v1.TrainerService.service, {
      // UNAVAILABLE with the trainer's reason, then with none, then accepted.
      submitPrompts: (call: grpc.ServerUnaryCall<{ prompts: { id: string }[] }, unknown>, cb: Callback) => {
        if (calls < reasons.length) {
          cb({ code: status.UNAVAILABLE, details: reasons[calls++], metadata: retryInfo(status.UNAVAILABLE, 20) });
          return;
        }
        cb(null, { acceptedIds: call.request.prompts.map((p) => p.id), queueDepth: 1, duplicate: false });
      },
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    client = new TrainerClient(`127.0.0.1:${port}`);
  });

  after(() => {
    client.close();
    server.forceShutdown();
  });

  it("names the trainer's reason when it gave one, and what the code means when it did not", async () => {
    const notices: string[] = [];
    const res = await client.submitAll([{ id: 'p1', messages: [{ role: 'user', content: 'q' }], answer: '1' }], {
      onRetry: (err, waitMs, attempt) => notices.push(retryNotice(err, waitMs, attempt)),
    });
    assert.deepEqual(res.acceptedIds, ['p1']);
    assert.deepEqual(notices, [
      "the trainer refused a batch (UNAVAILABLE: the model's tokenizer is still loading; retry shortly); "
        + 'sending it again in 0.02 s (retry 1 of 4)',
      'the trainer refused a batch (UNAVAILABLE: it is unavailable); sending it again in 0.02 s (retry 2 of 4)',
    ]);
  });

  it('says a full queue in the generic words only when the trainer gave no reason', () => {
    const full = new GrpoError('SubmitPrompts', status.RESOURCE_EXHAUSTED, '', []);
    assert.equal(retryNotice(full, 1000, 1),
      'the trainer refused a batch (RESOURCE_EXHAUSTED: its queue is full); sending it again in 1 s (retry 1 of 4)');
  });
});
