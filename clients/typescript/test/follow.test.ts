// followSteps without a trainer: the bookkeeping that picks WatchSteps up again after a restart
// (FollowState), and the retry loop against a port nothing listens on. The restart itself, with a real
// trainer killed and started again: tests/integration/clients/test_typescript_client.py.
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { describe, it } from 'node:test';

import { status } from '@grpc/grpc-js';

import { GrpoError, TrainerClient, WatchStepsResponse } from '../src';
import { FollowState } from '../src/client';

type State = 'STEP_STATE_RUNNING' | 'STEP_STATE_COMPLETED' | 'STEP_STATE_FAILED';

/** A WatchSteps message: `step`'s report, started at second `startedAt`, and the run's checkpoint step. */
function response(step: number, state: State, startedAt: number, checkpointStep: number): WatchStepsResponse {
  return {
    step: { step, state, startedAt: { seconds: startedAt, nanos: 7 } },
    run: { checkpointStep },
  } as unknown as WatchStepsResponse;
}

/** Feed one stream's messages; the steps admitted, in order. */
function admitAll(f: FollowState, ...messages: WatchStepsResponse[]): number[] {
  return messages.filter((m) => f.admit(m)).map((m) => m.step!.step);
}

describe('FollowState', () => {
  it('resumes after the lower of the last finished step and the checkpoint', () => {
    const f = new FollowState(5);
    assert.equal(f.resumeAfter(), 5, 'before any response: the caller\'s afterStep');
    admitAll(f, response(6, 'STEP_STATE_COMPLETED', 100, 4), response(7, 'STEP_STATE_COMPLETED', 110, 4));
    assert.equal(f.resumeAfter(), 4, 'last 7, checkpoint 4: a restart runs 5-7 again');
    admitAll(f, response(8, 'STEP_STATE_COMPLETED', 120, 8));
    assert.equal(f.resumeAfter(), 8);
  });

  it('does not move the resume point for a step that only started', () => {
    const f = new FollowState(0);
    admitAll(f, response(1, 'STEP_STATE_COMPLETED', 100, 1), response(2, 'STEP_STATE_RUNNING', 110, 1));
    assert.equal(f.resumeAfter(), 1);
  });

  it('skips reports yielded before and keeps the new run of a step', () => {
    const f = new FollowState(0);
    // The first trainer: steps 1-3 finish, the checkpoint is at 2; then it is killed.
    assert.deepEqual(admitAll(f, response(1, 'STEP_STATE_COMPLETED', 100, 1), response(2, 'STEP_STATE_COMPLETED', 110, 2),
      response(3, 'STEP_STATE_COMPLETED', 120, 2)), [1, 2, 3]);
    assert.equal(f.resumeAfter(), 2);
    // The backlog after step 2 repeats step 3, then the restart turns it FAILED ("lost: ...") and runs it again.
    assert.deepEqual(admitAll(f,
      response(3, 'STEP_STATE_COMPLETED', 120, 2), // yielded already: skipped
      response(3, 'STEP_STATE_FAILED', 120, 2), // the same run, now lost
      response(3, 'STEP_STATE_COMPLETED', 130, 2), // the new run
      response(4, 'STEP_STATE_COMPLETED', 140, 4)), [3, 3, 4]);
    assert.equal(f.resumeAfter(), 4);
    assert.deepEqual(admitAll(f, response(5, 'STEP_STATE_COMPLETED', 150, 4), response(5, 'STEP_STATE_COMPLETED', 150, 4)), [5]);
  });

  it('forgets steps at or below the resume point', () => {
    const f = new FollowState(0);
    admitAll(f, response(1, 'STEP_STATE_COMPLETED', 100, 0), response(2, 'STEP_STATE_COMPLETED', 110, 0),
      response(3, 'STEP_STATE_COMPLETED', 120, 2));
    assert.deepEqual([...f.yielded.keys()], [3], 'only step 3, after the checkpoint, can come again');
  });
});

/** A loopback port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('followSteps without a trainer', () => {
  it('retries every retryMs, calling onReconnect, then gives up with UNAVAILABLE after giveUpMs', async () => {
    const client = new TrainerClient(`127.0.0.1:${await deadPort()}`);
    const reasons: string[] = [];
    const started = Date.now();
    try {
      await assert.rejects(async () => {
        for await (const _ of client.followSteps({ retryMs: 50, giveUpMs: 500, onReconnect: (r) => reasons.push(r) })) {
          assert.fail('nothing listens: no report can come');
        }
      }, (err: unknown) => err instanceof GrpoError && err.code === status.UNAVAILABLE);
    } finally {
      client.close();
    }
    assert.ok(Date.now() - started >= 500, 'gave up before giveUpMs');
    assert.ok(reasons.length >= 3, `expected a reconnect every 50 ms, got ${reasons.length}`);
    assert.match(reasons[0], /^the trainer is unavailable \(/);
  });

  it('ends quietly when the client is closed while it waits to reconnect', async () => {
    const client = new TrainerClient(`127.0.0.1:${await deadPort()}`);
    const reasons: string[] = [];
    const iteration = (async () => {
      for await (const _ of client.followSteps({ retryMs: 60_000, onReconnect: (r) => reasons.push(r) })) {
        assert.fail('nothing listens: no report can come');
      }
    })();
    while (reasons.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    client.close();
    await iteration; // resolves (no error) long before retryMs
  });
});
