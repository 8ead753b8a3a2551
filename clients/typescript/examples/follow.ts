// Follow a trainer's steps across restarts and print one line per report.
//   node dist/examples/follow.js --target 127.0.0.1:50051 [--token T] [TLS FLAGS] [--after N] [--running]
//                                [--retry-ms MS] [--give-up-ms MS] [-n COUNT]
// TLS FLAGS: [--tls] [--ca F] [--cert F --key F] [--server-name NAME], as `grpo`'s (cli.ts TLS_OPTIONS).
// Each report: "step N STATE started SECONDS.NANOS, checkpoint step C, reward mean R[, error: E]". Before
// each reconnect "reconnecting: REASON" goes to stderr. SIGINT or SIGTERM end it (exit status 0); a bad
// flag or value is one "error: ..." line and exit status 2 (a TLS file that cannot be read: exit status 1).
import { parseArgs } from 'node:util';

import { GrpoError, TrainerClient } from '../src';
import { LocalError, TLS_OPTIONS, UsageError, clientOptions } from './cli';

/** `text` as a whole number >= `min` (or Infinity when `infinity`), else a UsageError naming `flag`. */
function wholeNumber(flag: string, text: string, min: number, infinity = false): number {
  const value = infinity && text === 'Infinity' ? Infinity : Number(text);
  if (text.trim() === '' || !(Number.isSafeInteger(value) || (infinity && value === Infinity)) || value < min) {
    throw new UsageError(`${flag}: '${text}' is not a whole number >= ${min}${infinity ? ' (or Infinity)' : ''}`);
  }
  return value;
}

async function main(): Promise<number> {
  try {
    return await follow();
  } catch (err) {
    // parseArgs' own errors (an unknown flag, a missing value) and a token the client refuses, too.
    if (err instanceof UsageError || err instanceof TypeError) {
      console.error(`error: ${err.message}`);
      return 2;
    }
    if (err instanceof LocalError) { // a TLS file that cannot be read
      console.error(`error: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

async function follow(): Promise<number> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', default: '127.0.0.1:50051' },
      token: { type: 'string' },
      ...TLS_OPTIONS,
      after: { type: 'string', default: '0' },
      running: { type: 'boolean', default: false },
      'retry-ms': { type: 'string', default: '2000' },
      'give-up-ms': { type: 'string', default: '600000' },
      n: { type: 'string', short: 'n', default: '0' },
    },
  });
  const count = wholeNumber('-n', values.n!, 0);
  const afterStep = wholeNumber('--after', values.after!, 0);
  const retryMs = wholeNumber('--retry-ms', values['retry-ms']!, 0);
  const giveUpMs = wholeNumber('--give-up-ms', values['give-up-ms']!, 0, true);
  const client = new TrainerClient(values.target!, clientOptions(values));
  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());
  let seen = 0;
  try {
    for await (const update of client.followSteps({
      afterStep,
      includeRunning: values.running,
      retryMs,
      giveUpMs,
      onReconnect: (reason) => console.error(`reconnecting: ${reason}`),
      signal: stop.signal,
    })) {
      if (update.forgottenThrough > 0) {
        console.error(`no longer kept: the reports of the steps before this one, up to step ${update.forgottenThrough} (retention.step_reports_seconds)`);
      }
      const s = update.step!;
      const nanos = String(s.startedAt?.nanos ?? 0).padStart(9, '0');
      let line = `step ${s.step} ${s.state} started ${s.startedAt?.seconds ?? 0}.${nanos}, `
        + `checkpoint step ${update.run?.checkpointStep ?? 0}, reward mean ${(s.metrics?.rewardMean ?? 0).toFixed(4)}`;
      if (s.error) line += `, error: ${s.error}`;
      console.log(line);
      if (count > 0 && ++seen >= count) break;
    }
    return 0;
  } catch (err) {
    if (err instanceof GrpoError) {
      console.error(`${err.codeName}: ${err.details}`);
      return 1;
    }
    throw err;
  } finally {
    client.close();
  }
}

main().then((code) => { process.exitCode = code; });
