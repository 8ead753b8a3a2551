// The exports the trainer knows of, the newest first, as `grpo exports` lists them (the same flags, table
// and --json document).
//   node dist/examples/exports.js --target 127.0.0.1:50051 [--token T] [TLS FLAGS] [--json]
//        [--state pending|writing|done|failed] [--limit N]
// TLS FLAGS: [--tls] [--ca F] [--cert F --key F] [--server-name NAME], as `grpo`'s (cli.ts TLS_OPTIONS).
// One row per export: id, state, step, done (progress), started (UTC; "-" when the trainer recorded no
// start time), destination (and "  (ERROR)" for a failed one); "no exports (start one with `grpo export`)"
// or "no STATE exports" when none matches. A bad flag is one "error: ..." line and exit status 2; a call
// the trainer refuses prints "CODE: message" and each field violation, and exits 2 for INVALID_ARGUMENT,
// else 1.
import { parseArgs } from 'node:util';

import { ExportState, TrainerClient } from '../src';
import {
  CONNECTION_OPTIONS, UsageError, clientOptions, enumName, firstOf, pad, printDocument, protoJson, runCommand, wholeNumber,
} from './cli';

const STATES = ['pending', 'writing', 'done', 'failed'];

function row(id: string, state: string, step: string | number, done: string, started: string,
  destination: string): string {
  return `${pad(id, 16, true)} ${pad(state, 7, true)} ${pad(step, 6)} ${pad(done, 5)}  ${pad(started, 20, true)}  ${destination}`;
}

/** A fraction as Python's f"{p:.0%}" writes it: times 100, rounded half to even, no decimals ("100%"). */
function percent(p: number): string {
  const x = p * 100;
  if (!Number.isFinite(x)) return `${Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf'}%`;
  let n = Math.floor(x);
  const rest = x - n; // exact for these magnitudes
  if (rest > 0.5 || (rest === 0.5 && n % 2 !== 0)) n += 1;
  return `${n === 0 && (x < 0 || Object.is(x, -0)) ? '-0' : n}%`;
}

/** A Timestamp's whole seconds as `time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))` writes them. */
function utc(seconds: number): string {
  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}Z`;
}

async function listExports(): Promise<number> {
  const { values } = parseArgs({
    options: {
      ...CONNECTION_OPTIONS,
      state: { type: 'string' },
      limit: { type: 'string', default: '0' },
    },
  });
  const state = values.state;
  if (state !== undefined && !STATES.includes(state)) {
    throw new UsageError(`--state: '${state}' is not an export state; give one of ${STATES.join(', ')}`);
  }
  const limit = wholeNumber('--limit', values.limit!, 0);
  const client = new TrainerClient(values.target!, clientOptions(values)); // the TLS flags checked: see cli.ts
  try {
    const request = {
      state: `EXPORT_STATE_${(state ?? 'unspecified').toUpperCase()}` as ExportState,
      pageSize: limit ? Math.min(limit, 1000) : 0,
    };
    const found = await firstOf(client.allExports(request), limit); // no further page past them
    if (values.json) {
      printDocument({ exports: found.map((e) => protoJson('grpo.trainer.v1.Export', e)) });
      return 0;
    }
    if (!found.length) {
      console.log(state ? `no ${state} exports` : 'no exports (start one with `grpo export`)');
      return 0;
    }
    console.log(row('id', 'state', 'step', 'done', 'started (UTC)', 'destination'));
    for (const e of found) {
      const started = e.startedAt ? utc(Number(e.startedAt.seconds)) : '-';
      console.log(row(e.exportId, enumName(e.state, 'EXPORT_STATE_'), e.step, percent(e.progress), started,
        e.destination + (e.error ? `  (${e.error})` : '')));
    }
    return 0;
  } finally {
    client.close();
  }
}

runCommand(listExports);
