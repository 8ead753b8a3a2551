// Specification of the TypeScript client against a live trainer. The pytest wrapper
// tests/integration/clients/test_typescript_client.py starts the trainer (tiny model, math verifier,
// bearer-token auth) and sets GRPO_TARGET, GRPO_ADMIN_TOKEN, GRPO_READER_TOKEN, GRPO_MATH_ADDRESS.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { status } from '@grpc/grpc-js';

import { GrpoError, Prompt, TrainerClient } from '../src';

const target = process.env.GRPO_TARGET;
const adminToken = process.env.GRPO_ADMIN_TOKEN ?? '';
const readerToken = process.env.GRPO_READER_TOKEN ?? '';
const mathAddress = process.env.GRPO_MATH_ADDRESS ?? '';
const skip = target ? false : 'GRPO_TARGET is not set: run through tests/integration/clients/test_typescript_client.py';

function sumPrompt(a: number, b: number): Prompt {
  return { id: `ts-${randomUUID()}`, messages: [{ role: 'user', content: `What is ${a} + ${b}?` }], answer: String(a + b) };
}

async function rejection(p: Promise<unknown>): Promise<GrpoError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof GrpoError, `expected a GrpoError, got ${err}`);
    return err;
  }
  assert.fail('the call succeeded but should have failed');
}

describe('TrainerClient against a live trainer', { skip }, () => {
  let admin: TrainerClient;
  let reader: TrainerClient;
  let anonymous: TrainerClient;

  before(async () => {
    admin = new TrainerClient(target!, { token: adminToken });
    reader = new TrainerClient(target!, { token: readerToken });
    anonymous = new TrainerClient(target!);
    await admin.waitForReady(20_000);
  });

  after(() => {
    for (const c of [admin, reader, anonymous]) c.close();
  });

  it('submitPrompts queues prompts and replays a request id without storing twice', async () => {
    const prompts = [sumPrompt(2, 3), sumPrompt(4, 4)];
    const requestId = `req-${randomUUID()}`;
    const first = await admin.submitPrompts(prompts, requestId);
    assert.deepEqual(first.acceptedIds, prompts.map((p) => p.id));
    assert.equal(first.duplicate, false);
    assert.equal(typeof first.queueDepth, 'number');

    const again = await admin.submitPrompts(prompts, requestId);
    assert.equal(again.duplicate, true);
    assert.deepEqual(again.acceptedIds, first.acceptedIds);
  });

  it('watchSteps yields a finished step that stepStatus then reports the same way', async () => {
    await admin.submitPrompts([sumPrompt(1, 1), sumPrompt(5, 2)]);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 180_000);
    let seen;
    try {
      for await (const update of admin.watchSteps({ afterStep: 0, signal: abort.signal })) {
        assert.ok(update.step, 'every report carries its step');
        if (update.step.state !== 'STEP_STATE_RUNNING') {
          seen = update.step;
          break;
        }
      }
    } finally {
      clearTimeout(timer);
    }
    assert.ok(seen, 'no finished step arrived within 180 s');
    assert.ok(seen.step >= 1);
    assert.equal(seen.state, 'STEP_STATE_COMPLETED', `step ${seen.step} ended ${seen.state}: ${seen.error}`);
    assert.equal(seen.rolloutEngine, 'hf');
    assert.equal(seen.promptIds.length, 2);
    assert.equal(seen.metrics?.completions, 4, '2 prompts x group size 2');

    const status1 = await reader.stepStatus(seen.step);
    assert.equal(status1.step?.step, seen.step);
    assert.deepEqual(status1.step?.promptIds, seen.promptIds);
    assert.ok(status1.run && status1.run.latestStep >= seen.step);
    assert.deepEqual(status1.samples, [], 'samples only when asked for');

    // The step kept its completions (training.samples_per_step, 4 by default) with the verifier's answer.
    const withSamples = await reader.stepStatus(seen.step, { includeSamples: true });
    assert.equal(withSamples.samples.length, 4);
    assert.equal(withSamples.samplesLeftOut, 0, 'all four fit in the response');
    for (const c of withSamples.samples) {
      assert.ok(seen.promptIds.includes(c.promptId), `sample of ${c.promptId}, not a prompt of the step`);
      assert.equal(typeof c.text, 'string');
      assert.ok(c.completionTokens > 0);
      assert.deepEqual(c.scores.map((b) => [b.backend, b.status]), [['math', 'ok']]);
      assert.match(c.scores[0].feedback, /^expected \d+/);
    }
  });

  it('stepStatus of a step that does not exist rejects with NOT_FOUND', async () => {
    const err = await rejection(reader.stepStatus(1_000_000));
    assert.equal(err.code, status.NOT_FOUND);
  });

  it('a bad prompt rejects with INVALID_ARGUMENT naming each bad field, and nothing is queued', async () => {
    const good = sumPrompt(3, 3);
    const bad: Prompt = { id: `ts-${randomUUID()}`, messages: [{ role: 'robot', content: 'hi' }], answer: '1' };
    const err = await rejection(admin.submitPrompts([good, bad]));
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.equal(err.codeName, 'INVALID_ARGUMENT');
    const fields = err.fieldViolations.map((v) => v.field);
    assert.deepEqual(fields, ['prompts[1].messages[0].role']);
    assert.match(err.fieldViolations[0].description, /robot/);
    assert.ok(err.statusDetails.some((d) => d.type === 'google.rpc.BadRequest'));
    assert.match(err.message, /prompts\[1\]\.messages\[0\]\.role/);

    // Nothing of the rejected request was stored: the good prompt's id is still free.
    const res = await admin.submitPrompts([good]);
    assert.deepEqual(res.acceptedIds, [good.id]);
  });

  it('calls without a token are UNAUTHENTICATED; a read-only token may read but not submit', async () => {
    const noToken = await rejection(anonymous.stepStatus());
    assert.equal(noToken.code, status.UNAUTHENTICATED);

    const forbidden = await rejection(reader.submitPrompts([sumPrompt(1, 2)]));
    assert.equal(forbidden.code, status.PERMISSION_DENIED);

    const ok = await reader.stepStatus();
    assert.ok(ok.run);
  });

  it('backends can be listed, set and deleted, each change bumping the registry version', async () => {
    const before1 = await reader.listBackends();
    const math = before1.backends.find((b) => b.name === 'math');
    assert.ok(math, 'the math backend is registered');
    assert.equal(math.address, mathAddress);
    assert.equal(math.source, 'BACKEND_SOURCE_FLAG');

    const name = `ts-extra-${process.pid}`;
    const set = await admin.setBackend({ name, address: mathAddress, timeoutSeconds: 5 });
    assert.equal(set.backend?.name, name);
    assert.equal(set.backend?.source, 'BACKEND_SOURCE_API');
    assert.ok(set.registryVersion > before1.registryVersion);
    assert.ok((await reader.listBackends()).backends.some((b) => b.name === name));

    const version = await admin.deleteBackend(name);
    assert.ok(version > set.registryVersion);
    assert.ok(!(await reader.listBackends()).backends.some((b) => b.name === name));

    const badName = await rejection(admin.setBackend({ name: 'Bad Name!', address: mathAddress }));
    assert.equal(badName.code, status.INVALID_ARGUMENT);
    assert.ok(badName.fieldViolations.length >= 1);
  });

  it('cancelPrompts takes a queued prompt out (or says which step has it) and listPrompts shows where it is', async () => {
    const prompt = sumPrompt(3, 3);
    const id = prompt.id!;
    await admin.submitPrompts([prompt]);
    const denied = await rejection(reader.cancelPrompts([id]));
    assert.equal(denied.code, status.PERMISSION_DENIED);

    const never = `never-${randomUUID()}`;
    const res = await admin.cancelPrompts([id, never]);
    assert.deepEqual(res.unknownIds, [never]);
    assert.equal(typeof res.queueDepth, 'number');
    // A step may have leased it between the two calls (another test's prompt filled the batch).
    const cancelled = res.cancelledIds.includes(id);
    assert.ok(cancelled || res.notCancelled.some((p) => p.id === id && p.state !== 'PROMPT_STATE_QUEUED'),
      `neither cancelled nor reported: ${JSON.stringify(res)}`);

    const listed = await reader.listPrompts({ ids: [id] });
    assert.equal(listed.prompts.length, 1);
    assert.equal(listed.prompts[0].id, id);
    if (cancelled) assert.equal(listed.prompts[0].state, 'PROMPT_STATE_CANCELLED');
    assert.equal(listed.nextPageToken, '');

    const bad = await rejection(admin.cancelPrompts([]));
    assert.equal(bad.code, status.INVALID_ARGUMENT);
    assert.equal(bad.fieldViolations[0]?.field, 'ids');
  });

  it('allPrompts reads every page of listPrompts', async () => {
    const seen: string[] = [];
    for await (const p of reader.allPrompts({ pageSize: 1 })) seen.push(p.id);
    const firstPage = await reader.listPrompts({ pageSize: 1000 });
    assert.ok(seen.length >= 2, `prompts: ${seen}`);
    assert.deepEqual(seen.slice(0, firstPage.prompts.length), firstPage.prompts.map((p) => p.id));
  });

  it('pause then resume changes the run state', async () => {
    const paused = await admin.pause();
    assert.ok(paused.state === 'RUN_STATE_PAUSED' || paused.pauseRequested,
      `after pause: ${paused.state}, pauseRequested=${paused.pauseRequested}`);
    const resumed = await admin.resume();
    assert.notEqual(resumed.state, 'RUN_STATE_PAUSED');
    assert.equal(resumed.pauseRequested, false);
  });

  it('exportCheckpoint with wait writes a Hugging Face directory that getExport and allExports report', async () => {
    const dest = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'grpo-ts-export-')), 'model');
    const exp = await admin.exportCheckpoint(dest, true);
    assert.equal(exp.state, 'EXPORT_STATE_DONE', exp.error);
    assert.equal(exp.destination, dest);
    const names = exp.files.map((f) => f.path);
    assert.ok(names.includes('config.json'), `files: ${names}`);
    assert.ok(exp.files.every((f) => /^[0-9a-f]{64}$/.test(f.sha256)));
    assert.ok(fs.existsSync(path.join(dest, 'config.json')));

    const again = await reader.getExport(exp.exportId);
    assert.equal(again.exportId, exp.exportId);
    assert.equal(again.state, 'EXPORT_STATE_DONE');
    const listed: string[] = [];
    for await (const e of reader.allExports({ state: 'EXPORT_STATE_DONE', pageSize: 1 })) listed.push(e.exportId);
    assert.ok(listed.includes(exp.exportId), `allExports: ${listed}`);
    const first = await reader.listExports({ pageSize: 1 });
    assert.equal(first.exports.length, 1);

    const missing = await rejection(reader.getExport('no-such-export'));
    assert.equal(missing.code, status.NOT_FOUND);
  });
});
