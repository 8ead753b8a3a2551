// followSteps without a trainer: the bookkeeping that picks WatchSteps up again after a restart
// (FollowState), the retry loop against a port nothing listens on, and its give-up count across an
// in-process TrainerService that answers a stream and stays idle. The restart itself, with a real
// trainer killed and started again: tests/integration/clients/test_typescript_client.py.
import { strict as assert } from 'node:assert';
import { getEventListeners } from 'node:events';
import * as net from 'node:net';
import { describe, it } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';

import { GrpoError, MAX_RECONNECT_BACKOFF_MS, TrainerClient, WatchStepsResponse } from '../src';
import { FollowState } from '../src/client';
import { googleRpcRoot, trainerGrpcTypes } from '../src/protos';

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

  it('passes on a gap only past what was yielded', () => {
    const f = new FollowState(2);
    const gapped = (through: number, r: WatchStepsResponse) => Object.assign(r, { forgottenThrough: through });
    // Retention deleted steps 3-5: the first stream says so on step 6.
    const first = gapped(5, response(6, 'STEP_STATE_COMPLETED', 100, 6));
    admitAll(f, first, response(7, 'STEP_STATE_COMPLETED', 110, 6), response(8, 'STEP_STATE_COMPLETED', 120, 6));
    assert.equal(first.forgottenThrough, 5, 'after step 2, steps 3-5 are gone');
    // The next stream starts after the checkpoint (6) and finds 7 deleted since: the caller has 7 and 8.
    assert.deepEqual(admitAll(f, gapped(7, response(8, 'STEP_STATE_COMPLETED', 120, 8))), [], 'step 8 was yielded');
    const next = response(9, 'STEP_STATE_COMPLETED', 130, 8);
    admitAll(f, next);
    assert.equal(next.forgottenThrough, 0, 'the caller missed none of the deleted steps');
    const lost = gapped(12, response(13, 'STEP_STATE_COMPLETED', 140, 13));
    admitAll(f, lost);
    assert.equal(lost.forgottenThrough, 12, 'steps 10-12 deleted, past step 9');
  });

  it('does not repeat on a resumed stream what the caller had before following', () => {
    const f = new FollowState(10); // the caller has the reports up to step 10
    assert.deepEqual(admitAll(f, response(11, 'STEP_STATE_COMPLETED', 200, 8)), [11]);
    assert.equal(f.resumeAfter(), 8, 'the next stream starts at the checkpoint, below the caller\'s 10');
    // A dropped connection, no restart: steps 9 and 10 come again unchanged.
    assert.deepEqual(admitAll(f, response(9, 'STEP_STATE_COMPLETED', 180, 8), response(10, 'STEP_STATE_COMPLETED', 190, 8),
      response(11, 'STEP_STATE_COMPLETED', 200, 8), response(12, 'STEP_STATE_COMPLETED', 210, 8)), [12]);
  });

  it('reports again what a restart during the follow runs again', () => {
    const f = new FollowState(10);
    admitAll(f, response(11, 'STEP_STATE_COMPLETED', 200, 8));
    const lost = (step: number, startedAt: number) => {
      const r = response(step, 'STEP_STATE_FAILED', startedAt, 8);
      r.step!.error = 'lost: the trainer stopped before a checkpoint contained this step; its prompts went back';
      return r;
    };
    assert.deepEqual(admitAll(f, lost(9, 180), lost(10, 190), lost(11, 200), response(9, 'STEP_STATE_COMPLETED', 300, 8),
      response(10, 'STEP_STATE_COMPLETED', 310, 8), response(11, 'STEP_STATE_COMPLETED', 320, 8)), [9, 10, 11, 9, 10, 11]);
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

/** An in-process TrainerService whose WatchSteps answers as the trainer does: response headers at once,
 * then `sends` (none: an idle trainer), then the stream stays open until `stop()`. `opened` resolves once
 * a stream has sent its headers. Clients reach it on `port` through a TCP relay, so that stop() drops
 * their connections as a killed trainer does (grpc-js' forceShutdown would cancel the calls instead:
 * CANCELLED, where a dead trainer is UNAVAILABLE). */
async function serveTrainer(port: number, ...sends: WatchStepsResponse[]): Promise<{ opened: Promise<void>; stop: () => void }> {
  let markOpened = () => {};
  const opened = new Promise<void>((resolve) => { markOpened = resolve; });
  const server = new grpc.Server();
  server.addService(trainerGrpcTypes().grpo.trainer.v1.TrainerService.service, {
    watchSteps: (call: grpc.ServerWritableStream<unknown, WatchStepsResponse>) => {
      call.sendMetadata(new grpc.Metadata());
      markOpened();
      for (const message of sends) call.write(message);
    },
  } as grpc.UntypedServiceImplementation);
  const innerPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((downstream) => {
    const upstream = net.connect(innerPort, '127.0.0.1');
    for (const [from, to] of [[downstream, upstream], [upstream, downstream]]) {
      sockets.add(from);
      from.pipe(to);
      from.on('error', () => to.destroy());
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((resolve, reject) => {
    relay.once('error', reject);
    relay.listen(port, '127.0.0.1', resolve);
  });
  const stop = () => {
    relay.close();
    for (const socket of sockets) socket.destroy();
    server.forceShutdown();
  };
  return { opened, stop };
}

const sleepMs = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for `promise` at most `ms` milliseconds; false when the time ran out. Its timer is cleared, so
 * it does not keep the test process alive. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const IDLE_RETRY_MS = 50;
const IDLE_GIVE_UP_MS = 1_000;

/** How a followSteps iteration ended: the error (undefined: it ended quietly) and when. */
interface Ending {
  err?: unknown;
  at: number;
}

/** Runs followSteps (IDLE_RETRY_MS, IDLE_GIVE_UP_MS) through a trainer that is down at first, then
 * answers a stream, stays idle longer than giveUpMs and stops: the case where counting from the last
 * report gave up at once. `onReport` sees each report; returning true ends the loop. */
async function followAcrossAnIdleStream(onReport: (r: WatchStepsResponse) => boolean) {
  const port = await deadPort();
  // grpc-js spaces a channel's connection attempts by its own backoff (1 s at first, growing) and has no
  // public way to restart it, so a trainer back within the 500 ms these tests allow would be found late.
  const client = new TrainerClient(`127.0.0.1:${port}`, {
    channelOptions: { 'grpc.initial_reconnect_backoff_ms': IDLE_RETRY_MS, 'grpc.max_reconnect_backoff_ms': IDLE_RETRY_MS },
  });
  const reconnects: number[] = []; // when onReconnect was called
  let ending: Ending | undefined;
  const iteration = (async () => {
    for await (const r of client.followSteps({
      retryMs: IDLE_RETRY_MS, giveUpMs: IDLE_GIVE_UP_MS, onReconnect: () => reconnects.push(Date.now()),
    })) {
      if (onReport(r)) break;
    }
  })().then(() => { ending = { at: Date.now() }; }, (err) => { ending = { err, at: Date.now() }; });
  const done = () => ending;
  try {
    const deadline = Date.now() + 5_000;
    while (reconnects.length === 0) {
      assert.ok(Date.now() < deadline, 'no reconnect while the trainer is down');
      await sleepMs(10);
    }
    const trainer = await serveTrainer(port);
    try {
      assert.ok(await within(trainer.opened, 5_000), 'followSteps opened no stream on the started trainer');
      await sleepMs(IDLE_GIVE_UP_MS * 1.5); // idle, with the stream open: no report, no reconnect
      assert.equal(done(), undefined, `followSteps ended while the stream was open: ${done()?.err}`);
    } finally {
      trainer.stop();
    }
  } catch (err) {
    client.close();
    throw err;
  }
  // Taken after stop(): followSteps sees the stream fail on a later tick, never before this.
  return { port, client, reconnects, stopped: Date.now(), done, iteration };
}

describe('followSteps across an idle trainer', () => {
  it('counts giveUpMs from the trainer\'s last answer (an open stream), not from its last report', async () => {
    const run = await followAcrossAnIdleStream(() => assert.fail('the idle trainer sends no report'));
    try {
      await within(run.iteration, 5_000);
    } finally {
      run.client.close();
    }
    const ending = run.done();
    assert.ok(ending, 'followSteps did not give up');
    assert.ok(ending.err instanceof GrpoError && ending.err.code === status.UNAVAILABLE, `want UNAVAILABLE, got ${ending.err}`);
    const elapsed = ending.at - run.stopped;
    assert.ok(elapsed >= IDLE_GIVE_UP_MS,
      `gave up ${elapsed} ms after the idle trainer stopped, before giveUpMs (${IDLE_GIVE_UP_MS}): the open stream was its answer`);
    const after = run.reconnects.filter((at) => at >= run.stopped).length;
    assert.ok(after >= 5, `want a reconnect every ${IDLE_RETRY_MS} ms after the trainer stopped, got ${after}`);
  });

  it('reconnects to a trainer restarted within giveUpMs after an idle stream', async () => {
    const delivered: number[] = [];
    const run = await followAcrossAnIdleStream((r) => { delivered.push(r.step!.step); return true; });
    try {
      await sleepMs(IDLE_GIVE_UP_MS / 2);
      const early = run.done();
      assert.equal(early, undefined,
        `followSteps ended (${early?.err}) ${(early?.at ?? 0) - run.stopped} ms after the trainer stopped, before giveUpMs (${IDLE_GIVE_UP_MS})`);
      const restarted = await serveTrainer(run.port, response(1, 'STEP_STATE_COMPLETED', 100, 1));
      try {
        await within(run.iteration, 5_000);
      } finally {
        restarted.stop();
      }
    } finally {
      run.client.close();
    }
    const ending = run.done();
    assert.ok(ending, 'followSteps did not reconnect to the restarted trainer');
    assert.equal(ending.err, undefined, `want the loop to end quietly after the report, got ${ending.err}`);
    assert.deepEqual(delivered, [1]);
    assert.ok(run.reconnects.some((at) => at >= run.stopped), 'want onReconnect called after the trainer stopped');
  });
});

describe('reconnecting to a trainer that is down', () => {
  it('tries again at least every MAX_RECONNECT_BACKOFF_MS (+ jitter), not on the 120 s default backoff', async () => {
    // A port that takes each connection and closes it at once: the trainer cannot be reached, and every
    // attempt of the client's channel to connect is seen. grpc-js' default backoff (1 s x 1.6^n, +-20%)
    // waits 8-12 s after the 16th to 20th second, so 32 s shows the difference.
    const watchedMs = 32_000;
    const attempts: number[] = [];
    const listener = net.createServer((socket) => { attempts.push(Date.now()); socket.destroy(); });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const client = new TrainerClient(`127.0.0.1:${(listener.address() as net.AddressInfo).port}`);
    const began = Date.now();
    const iteration = (async () => {
      for await (const _ of client.followSteps({ retryMs: 200, giveUpMs: Infinity })) {
        assert.fail('the trainer cannot be reached: no report can come');
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, watchedMs));
    const ended = Date.now();
    client.close();
    await iteration;
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    const times = [began, ...attempts, ended]; // the wait before the first attempt and after the last count
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    assert.ok(attempts.length >= watchedMs / (MAX_RECONNECT_BACKOFF_MS * 1.2), `${attempts.length} attempts`);
    // grpc-js adds up to 20% jitter to each wait; the slack is for a loaded machine.
    assert.ok(Math.max(...gaps) <= MAX_RECONNECT_BACKOFF_MS * 1.2 + 1000, `gaps (ms): ${gaps.join(', ')}`);
  });
});

describe('followSteps and a trainer with no room for another stream', () => {
  it('waits the retry delay of RESOURCE_EXHAUSTED and tries again, without giving up', async () => {
    const root = googleRpcRoot();
    const RetryInfo = root.lookupType('google.rpc.RetryInfo');
    const Status = root.lookupType('google.rpc.Status');
    const typeUrl = 'type.googleapis.com/google.rpc.RetryInfo';
    const detail = { typeUrl, type_url: typeUrl, value: RetryInfo.encode(RetryInfo.fromObject({ retryDelay: { nanos: 300_000_000 } })).finish() };
    const trailer = new grpc.Metadata();
    trailer.set('grpc-status-details-bin', Buffer.from(Status.encode(Status.fromObject({
      code: status.RESOURCE_EXHAUSTED, message: '48 WatchSteps streams are open', details: [detail] })).finish()));
    let refusals = 2;
    const server = new grpc.Server();
    server.addService(trainerGrpcTypes().grpo.trainer.v1.TrainerService.service, {
      watchSteps: (call: grpc.ServerWritableStream<unknown, WatchStepsResponse>) => {
        if (refusals-- > 0) {
          call.emit('error', { code: status.RESOURCE_EXHAUSTED, details: '48 WatchSteps streams are open', metadata: trailer });
          return;
        }
        call.sendMetadata(new grpc.Metadata());
        call.write(response(1, 'STEP_STATE_COMPLETED', 10, 0));
      },
    } as grpc.UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    const client = new TrainerClient(`127.0.0.1:${port}`);
    const reasons: string[] = [];
    const started = Date.now();
    try {
      // giveUpMs shorter than the two delays: a busy trainer has answered, so it is never given up on.
      for await (const r of client.followSteps({ retryMs: 10, giveUpMs: 100, onReconnect: (why) => reasons.push(why) })) {
        assert.equal(r.step!.step, 1);
        break;
      }
    } finally {
      client.close();
      server.forceShutdown();
    }
    assert.equal(reasons.length, 2, `one reconnect per refusal: ${reasons}`);
    assert.match(reasons[0], /no room for another stream/);
    assert.ok(Date.now() - started >= 600, 'the refusals\' retry delays (2 x 300 ms) were waited');
  });
});

/** A trainer that sends step 1 and stays open, a client of it, and `watchSteps(options)` running into
 * `got` (the step numbers); the trainer stops and the client closes after `body`. */
async function watchingOneStep(options: { signal?: AbortSignal },
  body: (client: TrainerClient, got: number[], iteration: Promise<void>) => Promise<void>): Promise<void> {
  const port = await deadPort();
  const trainer = await serveTrainer(port, response(1, 'STEP_STATE_COMPLETED', 100, 1));
  const client = new TrainerClient(`127.0.0.1:${port}`);
  try {
    const got: number[] = [];
    const iteration = (async () => {
      for await (const r of client.watchSteps(options)) got.push(r.step!.step);
    })();
    await body(client, got, iteration);
  } finally {
    client.close();
    trainer.stop();
  }
}

describe('watchSteps and stopping', () => {
  it('ends an open stream when the client is closed', async () => {
    await watchingOneStep({}, async (client, got, iteration) => {
      while (got.length === 0) await sleepMs(10);
      client.close(); // closing the channel alone left the stream open for good
      assert.ok(await within(iteration, 2_000), 'watchSteps went on after close()');
      await iteration; // and quietly
      assert.deepEqual(got, [1]);
    });
  });

  it('opens no stream for a signal that is aborted already', async () => {
    await watchingOneStep({ signal: AbortSignal.abort() }, async (_client, got, iteration) => {
      assert.ok(await within(iteration, 2_000), 'watchSteps streamed under an aborted signal');
      assert.deepEqual(got, []);
    });
  });

  it('leaves no abort listener behind when followSteps refuses its afterStep', async () => {
    const client = new TrainerClient(`127.0.0.1:${await deadPort()}`);
    const signal = new AbortController().signal;
    try {
      for (let i = 0; i < 3; i++) {
        await assert.rejects(async () => {
          for await (const _ of client.followSteps({ afterStep: 1.5, signal })) assert.fail('no stream');
        }, TypeError);
      }
      assert.equal(getEventListeners(signal, 'abort').length, 0);
    } finally {
      client.close();
    }
  });
});
