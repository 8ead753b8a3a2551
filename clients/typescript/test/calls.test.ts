// The unary calls against an in-process TrainerService (no trainer needed): ListPrompts and ListExports
// paging (more ids than one request takes), CancelPrompts, a per-call deadline for ExportCheckpoint with
// wait, and step numbers checked before they are sent. The same calls against a live trainer: test/client.test.ts.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';

import { Export, GrpoError, PromptStatus, TrainerClient } from '../src';
import { googleRpcRoot, trainerGrpcTypes } from '../src/protos';

type Callback = (err: Partial<grpc.ServiceError> | null, res?: unknown) => void;

const PROMPTS = ['a', 'b', 'c', 'd', 'e'].map((id, i) => ({
  id, state: i % 2 ? 'PROMPT_STATE_QUEUED' : 'PROMPT_STATE_TRAINED', step: i, attempts: 0, reason: '',
}));

// Newest first, as the trainer lists them.
const EXPORTS = ['e5', 'e4', 'e3', 'e2', 'e1'].map((exportId, i) => ({
  exportId, state: i % 2 ? 'EXPORT_STATE_FAILED' : 'EXPORT_STATE_DONE', step: 50 - 10 * i,
}));

/** A google.rpc.Status trailer with one BadRequest violation. */
function badRequest(field: string, description: string): grpc.Metadata {
  const root = googleRpcRoot();
  const BadRequest = root.lookupType('google.rpc.BadRequest');
  const typeUrl = 'type.googleapis.com/google.rpc.BadRequest';
  const value = BadRequest.encode(BadRequest.fromObject({ fieldViolations: [{ field, description }] })).finish();
  const md = new grpc.Metadata();
  md.set('grpc-status-details-bin', Buffer.from(root.lookupType('google.rpc.Status').encode(
    root.lookupType('google.rpc.Status').fromObject({ code: status.INVALID_ARGUMENT, details: [{ typeUrl, type_url: typeUrl, value }] }),
  ).finish()));
  return md;
}

describe('unary calls against an in-process trainer', () => {
  const server = new grpc.Server();
  const tokens: string[] = [];
  const exportRequests: string[] = []; // each ListExports request: its state and page token
  const listedIds: number[] = []; // each ListPrompts request: how many ids it named
  let client: TrainerClient;
  let port: number;

  before(async () => {
    server.addService(trainerGrpcTypes().grpo.trainer.v1.TrainerService.service, {
      // Two prompts a page, filtered by state and ids; the page token is the index to go on from. More
      // than 1000 ids is INVALID_ARGUMENT naming ids, as the trainer answers.
      listPrompts: (call: grpc.ServerUnaryCall<{ ids: string[]; state: string; pageToken: string }, unknown>, cb: Callback) => {
        tokens.push(String(call.metadata.get('authorization')[0]));
        const { ids } = call.request;
        listedIds.push(ids.length);
        if (ids.length > 1000) {
          cb({ code: status.INVALID_ARGUMENT, details: 'invalid request: ids: at most 1000 ids', metadata: badRequest('ids', 'at most 1000 ids') });
          return;
        }
        const match = PROMPTS.filter((p) => (call.request.state === 'PROMPT_STATE_UNSPECIFIED' || p.state === call.request.state)
          && (!ids.length || ids.includes(p.id)));
        const start = Number(call.request.pageToken || 0);
        const next = start + 2 < match.length ? String(start + 2) : '';
        cb(null, { prompts: match.slice(start, start + 2), nextPageToken: next });
      },
      // Two exports a page, filtered by state; the page token is "<state>:<index to go on from>", and one
      // passed with another state is INVALID_ARGUMENT naming page_token, as the trainer answers.
      listExports: (call: grpc.ServerUnaryCall<{ state: string; pageToken: string }, unknown>, cb: Callback) => {
        tokens.push(String(call.metadata.get('authorization')[0]));
        const { state, pageToken } = call.request;
        exportRequests.push(`${state} ${JSON.stringify(pageToken)}`);
        const [tokenState, index] = pageToken ? pageToken.split(':') : [state, '0'];
        if (tokenState !== state) {
          cb({ code: status.INVALID_ARGUMENT, details: 'invalid request: page_token: not from a request with this state',
            metadata: badRequest('page_token', 'not from a request with this state') });
          return;
        }
        const match = EXPORTS.filter((x) => state === 'EXPORT_STATE_UNSPECIFIED' || x.state === state);
        const start = Number(index);
        const next = start + 2 < match.length ? `${state}:${start + 2}` : '';
        cb(null, { exports: match.slice(start, start + 2), nextPageToken: next });
      },
      cancelPrompts: (call: grpc.ServerUnaryCall<{ ids: string[] }, unknown>, cb: Callback) => {
        tokens.push(String(call.metadata.get('authorization')[0]));
        const ids = call.request.ids;
        if (!ids.length) {
          cb({ code: status.INVALID_ARGUMENT, details: 'invalid request: ids: required', metadata: badRequest('ids', 'required') });
          return;
        }
        const known = PROMPTS.filter((p) => ids.includes(p.id));
        cb(null, {
          cancelledIds: known.filter((p) => p.state === 'PROMPT_STATE_QUEUED').map((p) => p.id),
          notCancelled: known.filter((p) => p.state !== 'PROMPT_STATE_QUEUED'),
          unknownIds: ids.filter((id) => !PROMPTS.some((p) => p.id === id)),
          queueDepth: 1,
        });
      },
      // An export that takes 400 ms to write.
      exportCheckpoint: (_call: unknown, cb: Callback) => {
        setTimeout(() => cb(null, { export: { exportId: 'x1', state: 'EXPORT_STATE_DONE' } }), 400);
      },
      stepStatus: (_call: unknown, cb: Callback) => cb(null, { run: { state: 'RUN_STATE_IDLE' } }),
    } as grpc.UntypedServiceImplementation);
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    client = new TrainerClient(`127.0.0.1:${port}`, { token: 't0k', timeoutMs: 150 });
  });

  after(() => {
    client.close();
    server.forceShutdown();
  });

  it('listPrompts reads one page and allPrompts every page, with the token', async () => {
    const page = await client.listPrompts();
    assert.deepEqual(page.prompts.map((p) => p.id), ['a', 'b']);
    assert.equal(page.nextPageToken, '2');
    const trained: PromptStatus[] = [];
    for await (const p of client.allPrompts({ state: 'PROMPT_STATE_TRAINED' })) trained.push(p);
    assert.deepEqual(trained.map((p) => p.id), ['a', 'c', 'e']);
    assert.equal(trained[1].state, 'PROMPT_STATE_TRAINED');
    assert.ok(tokens.length >= 3 && tokens.every((t) => t === 'Bearer t0k'), `authorization headers: ${tokens}`);
  });

  it('allPrompts asks more ids than one request takes 1000 at a time, each run in submission order', async () => {
    const ids = ['c', 'a', ...Array.from({ length: 998 }, (_, i) => `none${i}`), 'd', 'b',
      ...Array.from({ length: 1000 }, (_, i) => `late${i}`)];
    listedIds.length = 0;
    const seen: string[] = [];
    for await (const p of client.allPrompts({ ids })) seen.push(p.id);
    assert.deepEqual(seen, ['a', 'c', 'b', 'd']);
    assert.deepEqual(listedIds, [1000, 1000, 2]);
    await assert.rejects(async () => {
      for await (const p of client.allPrompts({ ids, pageToken: '2' })) seen.push(p.id);
    }, (err: unknown) => err instanceof RangeError && /a page token belongs to one request of at most 1000 ids/.test(err.message));
  });

  it('listExports reads one page and allExports every page, with the token', async () => {
    tokens.length = 0;
    exportRequests.length = 0;
    const page = await client.listExports();
    assert.deepEqual(page.exports.map((x) => x.exportId), ['e5', 'e4']);
    assert.equal(page.nextPageToken, 'EXPORT_STATE_UNSPECIFIED:2');
    const all: Export[] = [];
    for await (const x of client.allExports()) all.push(x);
    assert.deepEqual(all.map((x) => x.exportId), ['e5', 'e4', 'e3', 'e2', 'e1']);
    assert.deepEqual(all.map((x) => x.step), [50, 40, 30, 20, 10]);
    assert.deepEqual(exportRequests, [
      'EXPORT_STATE_UNSPECIFIED ""',
      'EXPORT_STATE_UNSPECIFIED ""', 'EXPORT_STATE_UNSPECIFIED "EXPORT_STATE_UNSPECIFIED:2"', 'EXPORT_STATE_UNSPECIFIED "EXPORT_STATE_UNSPECIFIED:4"',
    ]);
    assert.ok(tokens.length === 4 && tokens.every((t) => t === 'Bearer t0k'), `authorization headers: ${tokens}`);
  });

  it('listExports and allExports send the state filter with every page, and a token of another state is rejected with its field', async () => {
    exportRequests.length = 0;
    const done: Export[] = [];
    for await (const x of client.allExports({ state: 'EXPORT_STATE_DONE' })) done.push(x);
    assert.deepEqual(done.map((x) => [x.exportId, x.state]), [['e5', 'EXPORT_STATE_DONE'], ['e3', 'EXPORT_STATE_DONE'], ['e1', 'EXPORT_STATE_DONE']]);
    assert.deepEqual(exportRequests, ['EXPORT_STATE_DONE ""', 'EXPORT_STATE_DONE "EXPORT_STATE_DONE:2"']);
    const failed = await client.listExports({ state: 'EXPORT_STATE_FAILED' });
    assert.deepEqual(failed.exports.map((x) => x.exportId), ['e4', 'e2']);
    assert.equal(failed.nextPageToken, '');
    await assert.rejects(client.listExports({ state: 'EXPORT_STATE_FAILED', pageToken: 'EXPORT_STATE_DONE:2' }), (err: unknown) => {
      assert.ok(err instanceof GrpoError, String(err));
      assert.equal(err.method, 'ListExports');
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.deepEqual(err.fieldViolations, [{ field: 'page_token', description: 'not from a request with this state' }]);
      return true;
    });
  });

  it('cancelPrompts reports each id and rejects a bad request with its field', async () => {
    const res = await client.cancelPrompts(['b', 'c', 'never']);
    assert.deepEqual(res.cancelledIds, ['b']);
    assert.deepEqual(res.notCancelled.map((p) => [p.id, p.state]), [['c', 'PROMPT_STATE_TRAINED']]);
    assert.deepEqual(res.unknownIds, ['never']);
    assert.equal(res.queueDepth, 1);
    await assert.rejects(client.cancelPrompts([]), (err: unknown) => {
      assert.ok(err instanceof GrpoError, String(err));
      assert.equal(err.method, 'CancelPrompts');
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.deepEqual(err.fieldViolations, [{ field: 'ids', description: 'required' }]);
      return true;
    });
  });

  it('exportCheckpoint with wait takes its own deadline, longer than the client\'s timeoutMs', async () => {
    await assert.rejects(client.exportCheckpoint('', true), (err: unknown) => err instanceof GrpoError && err.code === status.DEADLINE_EXCEEDED);
    const done = await client.exportCheckpoint('', true, 5_000);
    assert.equal(done.state, 'EXPORT_STATE_DONE');
  });

  it('close() cancels the calls in flight at once', async () => {
    // grpc-js's close leaves them running to their deadline (the 400 ms export here; 30 s by default),
    // holding the process; the doc comment said they were cancelled.
    const other = new TrainerClient(`127.0.0.1:${port}`, { timeoutMs: 10_000 });
    const started = Date.now();
    const pending = other.exportCheckpoint('', true, 10_000);
    setTimeout(() => other.close(), 50);
    await assert.rejects(pending, (err: unknown) => err instanceof GrpoError && err.code === status.CANCELLED);
    assert.ok(Date.now() - started < 300, `rejected after ${Date.now() - started} ms`);
  });

  it('a step number that is not a whole number is refused before it is sent (not sent as another step)', async () => {
    for (const bad of [1.5, Number.NaN, 2 ** 60, '3' as unknown as number]) {
      await assert.rejects(client.stepStatus(bad), (err: unknown) => err instanceof TypeError && /StepStatus: step must be a whole number/.test(err.message),
        `stepStatus(${String(bad)})`);
      await assert.rejects(async () => {
        for await (const _ of client.watchSteps({ afterStep: bad })) break;
      }, (err: unknown) => err instanceof TypeError && /afterStep must be a whole number/.test(err.message), `watchSteps(${String(bad)})`);
    }
    assert.equal((await client.stepStatus()).run?.state, 'RUN_STATE_IDLE');
  });

  it('followSteps refuses a retryMs or giveUpMs that is not a number of milliseconds', async () => {
    for (const options of [{ retryMs: Number.NaN }, { retryMs: -1 }, { retryMs: Infinity }, { giveUpMs: Number.NaN }, { giveUpMs: -5 }]) {
      await assert.rejects(async () => {
        for await (const _ of client.followSteps(options)) break;
      }, (err: unknown) => err instanceof TypeError && /followSteps: (retryMs|giveUpMs) must be/.test(err.message), JSON.stringify(options));
    }
  });
});

describe('connections', () => {
  it('a new client reaches a trainer that an older client, still open, could not reach before it came up', async () => {
    const free = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) => {
      free.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    free.forceShutdown(); // the port is free again: nothing listens there yet
    const target = `127.0.0.1:${port}`;
    const early = new TrainerClient(target, { timeoutMs: 2_000 });
    const server = new grpc.Server();
    try {
      await assert.rejects(early.stepStatus(), (err: unknown) => err instanceof GrpoError && err.code === status.UNAVAILABLE);
      server.addService(trainerGrpcTypes().grpo.trainer.v1.TrainerService.service, {
        stepStatus: (_call: unknown, cb: Callback) => cb(null, { run: { state: 'RUN_STATE_IDLE' } }),
      } as grpc.UntypedServiceImplementation);
      await new Promise<void>((resolve, reject) => {
        server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
      });
      const late = new TrainerClient(target, { timeoutMs: 2_000 });
      try {
        assert.equal((await late.stepStatus()).run?.state, 'RUN_STATE_IDLE');
      } finally {
        late.close();
      }
    } finally {
      early.close();
      server.forceShutdown();
    }
  });
});

describe('the token option', () => {
  it('a token an authorization header cannot carry is a TypeError at once that does not print the token', () => {
    for (const [token, where] of [['s3cret\n', 'U+000A at character 7 of 7'], ['s3 cret', 'U+0020 at character 3'], ['sé', 'U+00E9 at character 2']]) {
      assert.throws(() => new TrainerClient('127.0.0.1:1', { token }), (err: unknown) => {
        assert.ok(err instanceof TypeError, String(err));
        assert.ok(err.message.includes(where), err.message);
        assert.ok(!err.message.includes('s3cret') && !err.message.includes('cret'), `the message shows the token: ${err.message}`);
        return true;
      });
    }
    new TrainerClient('127.0.0.1:1', { token: 'A-z_0.9~+/=' }).close();
    new TrainerClient('127.0.0.1:1', { token: '' }).close(); // empty: no header, as unset
  });
});
