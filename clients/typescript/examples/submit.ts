// Submit one arithmetic prompt to a trainer and print its run status, or submit a prompt file.
//   node dist/examples/submit.js --target 127.0.0.1:50051 [--token T] [TLS FLAGS] [--bad]
//   node dist/examples/submit.js --target 127.0.0.1:50051 [--token T] [TLS FLAGS] --file FILE.jsonl [--batch-size N]
//        [--request-id ID] [--json] [--dry-run]
// TLS FLAGS: [--tls] [--ca F] [--cert F --key F] [--server-name NAME], as `grpo`'s (cli.ts TLS_OPTIONS).
// --bad sends a prompt with an invalid role to show how field-level errors come back. --file submits a
// prompt file with submitFile (the same request ids as `grpo submit`: a file sent before is not queued
// again); --dry-run prints its batches and request ids without connecting. Failures are reported and exit
// as `grpo` reports them (see cli.ts): a bad flag is one "error: ..." line and exit status 2, and so is a
// bad prompt file (each problem as FILE:LINE: field: message); a call refused with INVALID_ARGUMENT exits
// 2, any other failure 1; with --json each is the one document {"error": {...}} on stdout. Ctrl-C during a
// call or a wait is `grpo`'s INTERRUPTED error, exit status 130 (with --file it lists the ids the trainer
// had accepted: accepted_ids).
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import { TrainerClient, batchRequestId, loadPromptFile } from '../src';
import { counted, span } from '../src/words';
import {
  CONNECTION_OPTIONS, ConnectionFlags, SUBMIT_ATTEMPTS, clientOptions, onInterrupt, printDocument, retryNotice,
  runCommand, submitInterruption,
} from './cli';

async function submit(): Promise<number> {
  const { values } = parseArgs({
    options: {
      ...CONNECTION_OPTIONS,
      bad: { type: 'boolean', default: false },
      file: { type: 'string' },
      'batch-size': { type: 'string', default: '256' },
      'request-id': { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
    },
  });
  if (values.file !== undefined) return submitFile(values);
  const client = new TrainerClient(values.target!, clientOptions(values));
  try {
    const res = await client.submitPrompts([{
      id: `example-${randomUUID()}`,
      messages: [{ role: values.bad ? 'robot' : 'user', content: 'What is 17 + 25?' }],
      answer: '42',
      rewards: [{ backend: 'math', weight: 1 }],
    }]);
    console.log(`accepted ${counted(res.acceptedIds.length, 'prompt')}: ${res.acceptedIds.join(', ')}; queue depth ${res.queueDepth}`);
    const status = await client.stepStatus();
    console.log(`run state: ${status.run?.state}, latest step ${status.run?.latestStep}`);
    if (status.step) {
      console.log(`step ${status.step.step} ${status.step.state}: reward mean ${status.step.metrics?.rewardMean}`);
    }
    return 0;
  } finally {
    client.close();
  }
}

interface FileFlags extends ConnectionFlags {
  target?: string; file?: string; 'batch-size'?: string; 'request-id'?: string; json?: boolean; 'dry-run'?: boolean;
}

/** --file: the whole file first (a bad one sends nothing), then submitFile, reported as `grpo submit` does. */
async function submitFile(values: FileFlags): Promise<number> {
  const batchSize = Number(values['batch-size']);
  if (!/^\d+$/.test(values['batch-size'] ?? '') || batchSize < 1) {
    throw new TypeError(`--batch-size: '${values['batch-size']}' is not a whole number >= 1`);
  }
  const options = clientOptions(values); // the TLS flags before the file, even for --dry-run, as `grpo` checks them
  const file = loadPromptFile(values.file!); // a bad or unreadable file: reported by runCommand
  const requestId = values['request-id'];
  if (values['dry-run']) {
    for (let i = 0, start = 0; start < file.prompts.length; i++) {
      const end = Math.min(start + batchSize, file.prompts.length);
      const rid = batchRequestId(file.prompts.slice(start, end), i, requestId);
      console.log(`batch ${i + 1}: ${counted(end - start, 'prompt')} (${span('line', file.lines[start], file.lines[end - 1])}): ${rid}`);
      start = end;
    }
    return 0;
  }
  if (!file.prompts.length) { // nothing is sent, so there is no queue depth to report (as `grpo submit`)
    if (values.json) {
      printDocument({
        accepted_ids: [], queue_depth: null, batches: 0, duplicate_batches: 0, request_ids: [], resized: [], replayed_ids: [],
      });
    } else {
      console.log(`${file.source} holds no prompts: nothing submitted`);
    }
    return 0;
  }
  const client = new TrainerClient(values.target!, options);
  const accepted: string[] = []; // what Ctrl-C reports, as `grpo submit`
  onInterrupt(() => submitInterruption(accepted, file.prompts.length));
  try {
    let sent = 0;
    const res = await client.submitFile(file, {
      batchSize, requestId,
      onBatch: (n, response) => {
        accepted.push(...response.acceptedIds);
        sent += n;
        if (!values.json) console.error(`submit: ${sent}/${file.prompts.length} prompts`);
      },
      maxAttempts: SUBMIT_ATTEMPTS,
      // As `grpo submit` says it: a wait must not look like a hang.
      onRetry: (err, waitMs, attempt) => console.error(retryNotice(err, waitMs, attempt)),
    }).finally(() => onInterrupt()); // the submission is over: from here Ctrl-C is the plain INTERRUPTED error
    if (values.json) {
      printDocument({
        accepted_ids: res.acceptedIds, queue_depth: res.queueDepth, batches: res.batches,
        duplicate_batches: res.duplicateBatches, request_ids: res.requestIds, resized: res.resized,
        replayed_ids: res.replayedIds,
      });
    }
    for (const note of res.resized) console.error(`note: ${note}`);
    if (values.json) return 0;
    const n = res.queuedIds.length;
    const dup = res.duplicateBatches;
    const batches = counted(res.batches, 'batch');
    const replayed = counted(res.replayedIds.length, 'prompt');
    if (dup && dup === res.batches) {
      const which = dup === 1 ? 'the batch' : `all ${batches}`; // not "all 1 batch"
      console.log(`nothing queued: ${which} (${replayed}) had been submitted before `
        + 'under the same request ids, and the trainer answered with its first answers. To queue these prompts again '
        + '(after they were trained, failed or cancelled), give --request-id a new value.');
    } else if (dup) {
      console.log(`submitted ${counted(n, 'new prompt')} in ${batches} (${dup} of them, ${replayed}, `
        + `already submitted before: not queued again); queue depth ${res.queueDepth}`);
    } else {
      console.log(`submitted ${counted(n, 'prompt')} in ${batches}; queue depth ${res.queueDepth}`);
    }
    return 0;
  } finally {
    client.close();
  }
}

runCommand(submit);
