// Add, replace or delete a reward backend, as `grpo backends set` and `grpo backends delete` do (the same
// flags, lines and --json documents).
//   node dist/examples/backends.js --target 127.0.0.1:50051 [--token T] [TLS FLAGS] [--json] set NAME HOST:PORT
//        [--timeout S] [--max-batch N] [--max-concurrency N] [--backend-tls] [--backend-token-file PATH]
//        [--backend-ca-file PATH] [--backend-cert-file PATH] [--backend-key-file PATH]
//   node dist/examples/backends.js --target 127.0.0.1:50051 [--token T] [TLS FLAGS] [--json] delete NAME
// TLS FLAGS: [--tls] [--ca F] [--cert F --key F] [--server-name NAME], as `grpo`'s (cli.ts TLS_OPTIONS).
// Prints "set NAME -> HOST:PORT (registry version V)", or with --json the SetRewardBackendResponse;
// "deleted NAME (registry version V)", or with --json {"registry_version": "V"}. The --backend-* files are
// paths on the trainer. A bad flag is one "error: ..." line and exit status 2; a call the trainer refuses
// prints "CODE: message" and each field violation, and exits 2 for INVALID_ARGUMENT (a bad name or
// address), else 1 (NOT_FOUND: no backend of that name to delete); with --json a failure is the one
// document {"error": {...}} on stdout, as `grpo --json` prints it.
import { parseArgs } from 'node:util';

import { TrainerClient } from '../src';
import { counted } from '../src/words';
import {
  CONNECTION_OPTIONS, ConnectionFlags, UsageError, clientOptions, printDocument, protoJson, runCommand, wholeNumber,
} from './cli';

const INT32_MAX = 2 ** 31 - 1;

async function backends(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      timeout: { type: 'string', default: '0' },
      'max-batch': { type: 'string', default: '0' },
      'max-concurrency': { type: 'string', default: '0' },
      'backend-tls': { type: 'boolean', default: false },
      'backend-token-file': { type: 'string', default: '' },
      'backend-ca-file': { type: 'string', default: '' },
      'backend-cert-file': { type: 'string', default: '' },
      'backend-key-file': { type: 'string', default: '' },
    },
  });
  if (positionals[0] === 'delete') return deleteBackend(positionals.slice(1), values);
  if (positionals[0] !== 'set') {
    throw new UsageError(`'${positionals[0] ?? ''}' is not an action; give set NAME HOST:PORT or delete NAME`);
  }
  if (positionals.length !== 3) {
    throw new UsageError(`set: give NAME and HOST:PORT (got ${counted(positionals.length - 1, 'argument')})`);
  }
  const timeoutSeconds = Number(values.timeout);
  if (values.timeout!.trim() === '' || !Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) {
    throw new UsageError(`--timeout: '${values.timeout}' is not a finite number of seconds >= 0`);
  }
  const backend = {
    name: positionals[1],
    address: positionals[2],
    timeoutSeconds,
    maxBatchSize: wholeNumber('--max-batch', values['max-batch']!, 0, INT32_MAX),
    maxConcurrency: wholeNumber('--max-concurrency', values['max-concurrency']!, 0, INT32_MAX),
    tls: values['backend-tls'],
    tokenFile: values['backend-token-file'],
    caFile: values['backend-ca-file'],
    certFile: values['backend-cert-file'],
    keyFile: values['backend-key-file'],
  };
  // The TLS flags after the others, before any call, as `grpo` checks them.
  const client = new TrainerClient(values.target!, clientOptions(values));
  try {
    const stored = await client.setBackend(backend);
    if (values.json) {
      printDocument(protoJson('grpo.trainer.v1.SetRewardBackendResponse', stored));
    } else {
      console.log(`set ${stored.backend?.name} -> ${stored.backend?.address} (registry version ${stored.registryVersion})`);
    }
    return 0;
  } finally {
    client.close();
  }
}

/** `delete NAME`: as `grpo backends delete` (the registry version as a string, as int64 is in JSON). */
async function deleteBackend(names: string[], values: ConnectionFlags & { target?: string; json?: boolean }):
  Promise<number> {
  if (names.length !== 1) throw new UsageError(`delete: give NAME (got ${counted(names.length, 'argument')})`);
  const client = new TrainerClient(values.target!, clientOptions(values));
  try {
    const version = await client.deleteBackend(names[0]);
    if (values.json) printDocument({ registry_version: String(version) });
    else console.log(`deleted ${names[0]} (registry version ${version})`);
    return 0;
  } finally {
    client.close();
  }
}

runCommand(backends);
