// Submitted prompts and where each is, as `grpo prompts` lists them (the same flags, table and --json
// document).
//   node dist/examples/prompts.js --target 127.0.0.1:50051 [--token T] [TLS FLAGS] [--json] [ID ...]
//        [--state queued|leased|trained|failed|cancelled] [--limit N]
// TLS FLAGS: [--tls] [--ca F] [--cert F --key F] [--server-name NAME], as `grpo`'s (cli.ts TLS_OPTIONS).
// One row per prompt: id, state, step, checkpoint, attempts, reason; "unknown: ... (never submitted, or
// deleted under retention.prompt_rows_seconds)" for the IDs the trainer does not know (without --state
// and --limit). A bad flag is one "error: ..." line and exit
// status 2; a call the trainer refuses prints "CODE: message" and each field violation, and exits 2 for
// INVALID_ARGUMENT, else 1.
import { parseArgs } from 'node:util';

import { PromptState, TrainerClient } from '../src';
import {
  CONNECTION_OPTIONS, UsageError, clientOptions, enumName, firstOf, pad, printDocument, protoJson, runCommand, wholeNumber,
} from './cli';

const STATES = ['queued', 'leased', 'trained', 'failed', 'cancelled'];

function row(id: string, state: string, step: string | number, checkpoint: string | number,
  attempts: string | number, reason: string): string {
  return `${pad(id, 24, true)} ${pad(state, 8, true)} ${pad(step, 6)} ${pad(checkpoint, 10)} ${pad(attempts, 8)}  ${reason}`;
}

async function prompts(): Promise<number> {
  const { values, positionals: ids } = parseArgs({
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      state: { type: 'string' },
      limit: { type: 'string', default: '0' },
    },
  });
  const state = values.state;
  if (state !== undefined && !STATES.includes(state)) {
    throw new UsageError(`--state: '${state}' is not a prompt state; give one of ${STATES.join(', ')}`);
  }
  const limit = wholeNumber('--limit', values.limit!, 0);
  const client = new TrainerClient(values.target!, clientOptions(values)); // the TLS flags checked: see cli.ts
  try {
    const request = {
      ids,
      state: `PROMPT_STATE_${(state ?? 'unspecified').toUpperCase()}` as PromptState,
      pageSize: limit ? Math.min(limit, 1000) : 0,
    };
    const found = await firstOf(client.allPrompts(request), limit); // no further page past them
    if (values.json) {
      printDocument({ prompts: found.map((p) => protoJson('grpo.trainer.v1.PromptStatus', p)) });
      return 0;
    }
    if (!found.length && (!ids.length || state || limit)) { // with ids and neither: `unknown:` says it
      console.log(state ? `no ${state} prompts` : 'no prompts (none submitted, or deleted under retention.prompt_rows_seconds)');
      return 0;
    }
    console.log(row('id', 'state', 'step', 'checkpoint', 'attempts', 'reason'));
    for (const p of found) {
      console.log(row(p.id, enumName(p.state, 'PROMPT_STATE_'), p.step || '-', p.checkpointStep || '-', p.attempts,
        p.reason));
    }
    const known = new Set(found.map((p) => p.id));
    const missing = [...new Set(ids.filter((id) => !known.has(id)))].sort();
    if (missing.length && !state && !limit) console.log(`unknown: ${missing.join(', ')} (never submitted, or deleted under retention.prompt_rows_seconds)`);
    return 0;
  } finally {
    client.close();
  }
}

runCommand(prompts);
