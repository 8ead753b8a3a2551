// Take queued prompts out of the queue before a step trains on them, as `grpo cancel` does (the same
// flags, lines, --json document and exit status).
//   node dist/examples/cancel.js --target 127.0.0.1:50051 [--token T] [TLS FLAGS] [--json] [ID ...] [--file FILE.jsonl]
// TLS FLAGS: [--tls] [--ca F] [--cert F --key F] [--server-name NAME], as `grpo`'s (cli.ts TLS_OPTIONS).
// Prints "cancelled N queued prompts; queue depth D" ("1 queued prompt"), a "not cancelled: ID: STATE (why)" line for each id
// that was not queued and "unknown: ... (never submitted, or deleted under retention.prompt_rows_seconds)"
// for the ids the trainer does not know; exit status 1 when an id was not cancelled (other than one
// cancelled before) or is unknown. --file adds every id
// of a prompt file, read whole first: a bad file is exit status 2 and cancels nothing. A bad flag is one
// "error: ..." line and exit status 2; a call the trainer refuses prints "CODE: message" and each field
// violation, and exits 2 for INVALID_ARGUMENT, else 1.
import { parseArgs } from 'node:util';

import { CancelPromptsResponse, TrainerClient, idChunks, loadPromptFile } from '../src';
import { counted } from '../src/words';
import { CONNECTION_OPTIONS, UsageError, clientOptions, enumName, printDocument, protoJson, runCommand } from './cli';

const WHY: Record<string, (p: { step: number; checkpointStep: number }) => string> = {
  // A leased prompt stays held by its step until a checkpoint covers it, after the step too.
  PROMPT_STATE_LEASED: (p) => `held by step ${p.step}: in training, or trained and not yet in a checkpoint`,
  PROMPT_STATE_TRAINED: (p) => `trained, in checkpoint ${p.checkpointStep}`,
  PROMPT_STATE_FAILED: () => 'failed',
  PROMPT_STATE_CANCELLED: () => 'cancelled before',
};

async function cancel(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      file: { type: 'string' },
    },
  });
  if (!positionals.length && values.file === undefined) {
    throw new UsageError('name the prompts to cancel: IDs, or --file FILE.jsonl');
  }
  const options = clientOptions(values); // the TLS flags before the file, as `grpo` checks them
  let ids = [...positionals];
  if (values.file !== undefined) ids.push(...loadPromptFile(values.file).prompts.map((p) => p.id!));
  ids = [...new Set(ids)]; // each once, in order
  const res: CancelPromptsResponse = { cancelledIds: [], notCancelled: [], unknownIds: [], queueDepth: 0 };
  if (!ids.length) { // an empty prompt file: nothing to send, so no queue depth to tell (null, as `grpo`)
    if (values.json) printDocument({ ...protoJson('grpo.trainer.v1.CancelPromptsResponse', res), queue_depth: null });
    else console.log(`${values.file} holds no prompts: nothing to cancel`);
    return 0;
  }
  const client = new TrainerClient(values.target!, options);
  try {
    // Any number of ids, IDS_PER_REQUEST at a time, the answers merged into one (its queue depth from the last call).
    for (const chunk of idChunks(ids)) {
      const part = await client.cancelPrompts(chunk);
      res.cancelledIds.push(...part.cancelledIds);
      res.notCancelled.push(...part.notCancelled);
      res.unknownIds.push(...part.unknownIds);
      res.queueDepth = part.queueDepth;
    }
  } finally {
    client.close();
  }
  if (values.json) {
    printDocument(protoJson('grpo.trainer.v1.CancelPromptsResponse', res));
  } else {
    console.log(`cancelled ${counted(res.cancelledIds.length, 'queued prompt')}; queue depth ${res.queueDepth}`);
    for (const p of res.notCancelled) {
      console.log(`not cancelled: ${p.id}: ${enumName(p.state, 'PROMPT_STATE_')} (${WHY[p.state]?.(p) ?? 'not queued'})`);
    }
    if (res.unknownIds.length) console.log(`unknown: ${res.unknownIds.join(', ')} (never submitted, or deleted under retention.prompt_rows_seconds)`);
  }
  const done = res.notCancelled.every((p) => p.state === 'PROMPT_STATE_CANCELLED');
  return done && !res.unknownIds.length ? 0 : 1;
}

runCommand(cancel);
