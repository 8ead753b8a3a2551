// What the command-line examples submit.ts, backends.ts, prompts.ts and cancel.ts share: exit statuses,
// error lines and error documents as the Python CLI's (`grpo`), and its --json documents (protobuf
// messages in their JSON mapping).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';

import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';

import { ClientOptions, GrpoError, PROTO_DIR, PromptFileError, SubmitError } from '../src';
import { counted, shortReason } from '../src/words';

/** The flags that make the connection TLS, as `grpo`'s: --tls (the system's roots unless --ca), --ca F,
 * --cert F with --key F (a client certificate, for a trainer that requires one: mTLS) and --server-name
 * NAME (the name the trainer's certificate must carry when it is not --target's host); --ca, --cert and
 * --server-name each imply --tls. `clientOptions` checks them. */
export const TLS_OPTIONS = {
  tls: { type: 'boolean', default: false },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'server-name': { type: 'string' },
} as const;

/** The flags every command takes: where the trainer is, how to authenticate and connect, and --json. */
export const CONNECTION_OPTIONS = {
  target: { type: 'string', default: '127.0.0.1:50051' },
  token: { type: 'string' },
  ...TLS_OPTIONS,
  json: { type: 'boolean', default: false },
} as const;

// gRPC's own target URIs, passed as they are; else HOST:PORT, an IPv6 address in brackets (`grpo`'s rule).
const GRPC_SCHEMES = ['dns:', 'unix:', 'unix-abstract:', 'ipv4:', 'ipv6:', 'vsock:'];
const HOST_PORT = /^(?:\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]|[^\s:/[\]@]+):(\d{1,5})$/;

/** Refuse a --target that is not HOST:PORT (or one of gRPC's target URIs), in `grpo`'s words: grpc-js dialled
 * port 443 for a missing port and failed UNAVAILABLE for the rest, exit status 1 instead of 2. */
export function checkTarget(target: string): void {
  if (GRPC_SCHEMES.some((s) => target.startsWith(s))) return;
  const m = HOST_PORT.exec(target);
  if (m !== null && Number(m[1]) >= 1 && Number(m[1]) <= 65535) return;
  let why = '';
  if (target.includes('://')) why = '; give HOST:PORT without a scheme (and --tls for TLS)';
  else if ((target.match(/:/g) ?? []).length > 1 && !target.startsWith('[')) why = '; write an IPv6 address in brackets: [::1]:50051';
  else if (target !== '' && !target.includes(':')) why = '; the port is missing';
  throw new UsageError(`--target: ${JSON.stringify(target).replace(/^"|"$/g, "'")} is not HOST:PORT (a host name or IP address `
    + `and a port 1-65535, such as localhost:50051)${why}`);
}

/** A bad flag or value: printed as one "error: ..." line, exit status 2. */
export class UsageError extends Error {}

/** A local file that cannot be read: LOCAL, exit status 1 (as `grpo`). */
export class LocalError extends Error {}

/** The values of the target, token and TLS flags. */
export interface ConnectionFlags {
  target?: string;
  token?: string;
  tls?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
  'server-name'?: string;
}

/** What the C library says of a failed read, as Python's OSError.strerror (Node words some differently). */
const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
};

/** The TrainerClient options the token and TLS flags ask for. The TLS files are checked before any call as
 * `grpo` checks them (clients/python/grpo_client/cli.py, _check_tls_files), in its order and words (with
 * the same flag names): --cert and --key together; each file readable (else LocalError) and holding the
 * PEM block it should, a key unencrypted (else UsageError). A certificate and key that do not make a pair
 * (Node loads them here) are a UsageError too. */
export function clientOptions(values: ConnectionFlags): ClientOptions {
  if (values.target !== undefined) checkTarget(values.target);
  if (values.token === '') throw new UsageError('--token: the token is empty');  // it was sent as no token
  const serverName = values['server-name'];
  if (serverName !== undefined && serverName.trim() === '') throw new UsageError('--server-name: must not be empty');
  if ((values.cert === undefined) !== (values.key === undefined)) {
    const [given, missing] = values.key === undefined ? ['--cert', '--key'] : ['--key', '--cert'];
    throw new UsageError(`${given} needs ${missing}: a client certificate and its private key go together`);
  }
  if (!values.tls && values.ca === undefined && values.cert === undefined && serverName === undefined) {
    return { token: values.token };
  }
  const read = (flag: string, file: string | undefined, marker: string, what: string): Buffer | undefined => {
    if (file === undefined) return undefined;
    let pem: Buffer;
    try {
      pem = fs.readFileSync(file);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new LocalError(`${flag}: cannot read ${file}: ${STRERROR[e.code ?? ''] ?? e.message}`);
    }
    if (!pem.includes(marker) || (flag === '--key' && pem.includes('ENCRYPTED'))) {
      throw new UsageError(`${flag} ${file}: no ${flag === '--key' ? 'unencrypted private key' : 'PEM certificate'} `
        + `in it (${what})`);
    }
    return pem;
  };
  const rootCerts = read('--ca', values.ca, '-----BEGIN CERTIFICATE-----',
    'a CA file holds -----BEGIN CERTIFICATE----- blocks');
  const certChain = read('--cert', values.cert, '-----BEGIN CERTIFICATE-----',
    'a certificate file holds -----BEGIN CERTIFICATE----- blocks');
  const privateKey = read('--key', values.key, 'PRIVATE KEY-----',
    'a key file holds a -----BEGIN PRIVATE KEY----- block, or an EC or RSA one, unencrypted');
  if (certChain !== undefined) {
    try {
      tls.createSecureContext({ cert: certChain, key: privateKey });
    } catch (err) {
      throw new UsageError(`--cert ${values.cert}, --key ${values.key}: not a certificate and its private key: `
        + `${(err as Error).message}`);
    }
  }
  return {
    token: values.token,
    tls: { rootCerts, certChain, privateKey, certChainFile: values.cert },
    channelOptions: serverName === undefined ? undefined : { 'grpc.ssl_target_name_override': serverName },
  };
}

/** A failure as `grpo` reports it: the "error" object of its --json document, the text it prints on
 * stderr without --json, the exit status, and whether it is a bad command line (whose text argparse
 * prints with --json too). */
interface Failure {
  doc: Record<string, unknown>;
  text: string;
  status: number;
  usage: boolean;
}

/** `err` as `grpo` reports it, or undefined for an error it does not expect (a bug: left to crash).
 * Usage errors (parseArgs' own, an unknown flag or a missing value, are TypeErrors, as is a token the
 * client refuses) are USAGE, exit status 2; a call the trainer refuses is its status (GrpoError.toJSON; a
 * refused submission SubmitError.toJSON), exit status 2 for INVALID_ARGUMENT, else 1; a bad prompt file is
 * INVALID_ARGUMENT with a field violation "line N: field" for each problem, exit status 2; a file that
 * cannot be read (a prompt file, a TLS file: LocalError) is LOCAL, exit status 1. */
function failure(err: unknown): Failure | undefined {
  const callStatus = (code: grpc.status) => (code === grpc.status.INVALID_ARGUMENT ? 2 : 1);
  if (err instanceof LocalError) {
    return { doc: { code: 'LOCAL', message: err.message }, text: `error: ${err.message}`, status: 1, usage: false };
  }
  if (err instanceof UsageError || err instanceof TypeError) {
    return { doc: { code: 'USAGE', message: err.message }, text: `error: ${err.message}`, status: 2, usage: true };
  }
  if (err instanceof SubmitError) {
    return { doc: err.toJSON(), text: `error: ${err.message}`, status: callStatus(err.code), usage: false };
  }
  if (err instanceof GrpoError) {
    const lines = [`${err.codeName}: ${err.details}`, ...err.fieldViolations.map((v) => `  ${v.field}: ${v.description}`)];
    if (err.retryDelayMs !== undefined) lines.push(`  retry after ${err.retryDelayMs} ms`);
    lines.push(...err.preconditions.map((p) => `  precondition: ${p}`));
    return { doc: err.toJSON(), text: lines.join('\n'), status: callStatus(err.code), usage: false };
  }
  if (err instanceof PromptFileError) {
    const violations = err.errors.map((e) => ({
      field: `line ${e.line}${e.field ? `: ${e.field}` : ''}`, description: e.message,
    }));
    const doc = { code: 'INVALID_ARGUMENT', message: `bad prompt file ${err.source}`, field_violations: violations };
    return { doc, text: `error: bad prompt file\n${err.message}`, status: 2, usage: false };
  }
  if (err instanceof Error && 'code' in err && 'syscall' in err) { // fs: missing, a directory, no permission
    return { doc: { code: 'LOCAL', message: err.message }, text: `error: ${err.message}`, status: 1, usage: false };
  }
  return undefined;
}

/** Whether the command line asks for --json (before any `--`), as `grpo` looks for it in a command line
 * it refuses. */
function wantsJson(): boolean {
  const args = process.argv.slice(2);
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}

/** The exit status of a command Ctrl-C ended, as `grpo`'s (that of a process killed by SIGINT). */
export const EXIT_INTERRUPTED = 128 + 2;

/** What Ctrl-C reports, as `grpo` does: the "error" object of its --json document and the text it prints
 * on stderr without --json. */
export interface Interruption {
  doc: Record<string, unknown>;
  text: string;
}

const INTERRUPTED: Interruption = { doc: { code: 'INTERRUPTED', message: 'interrupted' }, text: 'interrupted' };
let interruption: () => Interruption = () => INTERRUPTED;

/** Makes Ctrl-C report `describe()` (called when it comes) instead of the plain INTERRUPTED error, until
 * called again without it. */
export function onInterrupt(describe?: () => Interruption): void {
  interruption = describe ?? (() => INTERRUPTED);
}

/** `grpo submit`'s INTERRUPTED error: the prompts the trainer had accepted (`accepted`, of `total`) and how
 * to carry on. */
export function submitInterruption(accepted: string[], total: number): Interruption {
  const message = `interrupted: the trainer had accepted ${accepted.length} of the ${counted(total, 'prompt')}; the batch in `
    + 'flight may or may not have been queued. To carry on, run the same command again (same batch size and '
    + 'request id): the trainer answers the batches it already accepted as duplicates, by their request ids, and '
    + 'queues nothing twice.';
  return { doc: { code: 'INTERRUPTED', message, accepted_ids: [...accepted] }, text: message };
}

/** Tries of a batch the trainer refuses as full or unavailable, as `grpo submit` makes. */
export const SUBMIT_ATTEMPTS = 5;

/** The line `grpo submit` prints before waiting to send a refused batch again (`retry_notice` in the Python
 * CLI): the trainer's own reason (its status message, on one line and at most 200 characters) when it gave
 * one, else what the code means; the wait in seconds; and which retry of how many this is. */
export function retryNotice(err: GrpoError, waitMs: number, attempt: number): string {
  const why = shortReason(err.details)
    || (err.code === grpc.status.RESOURCE_EXHAUSTED ? 'its queue is full' : 'it is unavailable');
  return `the trainer refused a batch (${err.codeName}: ${why}); sending it again in `
    + `${Number((waitMs / 1000).toPrecision(6))} s (retry ${attempt} of ${SUBMIT_ATTEMPTS - 1})`;
}

/** Runs `command` and sets the exit status it returns. A failure is reported as `grpo` reports it
 * (`failure`): with --json as the one document {"error": {...}} on stdout (a bad command line also prints
 * its "error: ..." line on stderr, as argparse does), else as text on stderr. Ctrl-C (SIGINT) while it runs
 * ends it as it ends `grpo`: the INTERRUPTED error (`onInterrupt`), exit status 130. */
export function runCommand(command: () => Promise<number>): void {
  const interrupt = () => {
    const { doc, text } = interruption();
    if (wantsJson()) printDocument({ error: doc });
    else console.error(text);
    process.exit(EXIT_INTERRUPTED); // the calls in flight end with the process, as they would on the signal
  };
  process.once('SIGINT', interrupt);
  command().catch((err: unknown) => {
    const f = failure(err);
    if (f === undefined) throw err;
    if (!wantsJson() || f.usage) console.error(f.text);
    if (wantsJson()) printDocument({ error: f.doc });
    return f.status;
  }).then((code) => {
    process.off('SIGINT', interrupt);
    if (code !== undefined) process.exitCode = code;
  });
}

/** `text` as a whole number from `min` to `max`, else a UsageError naming `flag`. */
export function wholeNumber(flag: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(text);
  if (!/^\s*[+-]?\d+\s*$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`${flag}: '${text}' is not a whole number from ${min} to ${max}`);
  }
  return value;
}

/** The first `limit` items of `items` (0: all); a listing's generator reads no page past them. */
export async function firstOf<T>(items: AsyncIterable<T>, limit: number): Promise<T[]> {
  const found: T[] = [];
  for await (const item of items) {
    found.push(item);
    if (limit && found.length >= limit) break;
  }
  return found;
}

/** `text` padded to `width` on the right (`left`) or the left, as Python's format does. */
export function pad(text: string | number, width: number, left = false): string {
  return left ? String(text).padEnd(width) : String(text).padStart(width);
}

/** An enum value's name without `prefix`, in lower case (`PROMPT_STATE_QUEUED` -> `queued`), as `grpo`
 * prints it. */
export function enumName(name: string | number, prefix: string): string {
  return String(name).replace(prefix, '').toLowerCase();
}

/** Prints `doc` as `grpo --json` does: one JSON document, indented by 2. */
export function printDocument(doc: unknown): void {
  console.log(JSON.stringify(doc, null, 2));
}

let root: protobuf.Root | undefined;

/** The trainer's protos with their proto field names (for protoJson). */
function protoRoot(): protobuf.Root {
  if (!root) {
    root = new protobuf.Root();
    root.resolvePath = (_origin: string, target: string) => path.join(PROTO_DIR, target);
    root.loadSync('grpo/trainer/v1/trainer.proto', { keepCase: true });
    root.resolveAll();
  }
  return root;
}

/** `value`, a message of type `typeName` as the client returns it (camelCase, int64 as numbers, enums by
 * name), in the protobuf JSON mapping as the Python CLI prints it (json_format.MessageToDict with proto
 * field names, fields without presence included): int64 as strings, timestamps as RFC 3339, unset message
 * fields left out, and the fields that are set first, by number, then those at their defaults. */
export function protoJson(typeName: string, value: object): Record<string, unknown> {
  return messageJson(protoRoot().lookupType(typeName), value as Record<string, unknown>) as Record<string, unknown>;
}

const INT64 = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

function messageJson(type: protobuf.Type, value: Record<string, unknown>): unknown {
  const special = wellKnownJson(type.fullName, value);
  if (special !== undefined) return special;
  const set: Record<string, unknown> = {};
  const defaults: Record<string, unknown> = {};
  for (const field of [...type.fieldsArray].sort((a, b) => a.id - b.id)) {
    const v = value[protobuf.util.camelCase(field.name)];
    const hasPresence = field.partOf !== null || (!field.repeated && !field.map && field.resolvedType instanceof protobuf.Type);
    if (v === undefined || v === null) {
      if (hasPresence) continue; // unset: MessageToDict leaves it out
    }
    const isSet = hasPresence || !isDefault(field, v);
    (isSet ? set : defaults)[field.name] = fieldJson(field, v);
  }
  // The defaults in the order the proto declares them (MessageToDict walks the descriptor's fields).
  const ordered: Record<string, unknown> = { ...set };
  for (const field of type.fieldsArray) if (field.name in defaults) ordered[field.name] = defaults[field.name];
  return ordered;
}

function isDefault(field: protobuf.Field, v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (field.map) return Object.keys(v as object).length === 0;
  if (field.repeated) return (v as unknown[]).length === 0;
  if (field.resolvedType instanceof protobuf.Enum) return v === 0 || field.resolvedType.values[v as string] === 0;
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return v.length === 0;
  return v === 0 || v === '' || v === false || (typeof v === 'object' && Number(v) === 0);
}

function fieldJson(field: protobuf.Field, v: unknown): unknown {
  if (field.map) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries((v ?? {}) as Record<string, unknown>)) out[k] = scalarJson(field, x);
    return out;
  }
  if (field.repeated) return ((v ?? []) as unknown[]).map((x) => scalarJson(field, x));
  return scalarJson(field, v);
}

function scalarJson(field: protobuf.Field, v: unknown): unknown {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) return messageJson(t, (v ?? {}) as Record<string, unknown>);
  if (t instanceof protobuf.Enum) return typeof v === 'number' ? (t.valuesById[v] ?? v) : v;
  if (INT64.has(field.type)) return String(v ?? 0);
  if (field.type === 'double' || field.type === 'float') {
    const x = Number(v ?? 0);
    if (Number.isNaN(x)) return 'NaN';
    if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
    return field.type === 'float' ? shortestFloat32(x) : x;
  }
  if (field.type === 'bytes') return Buffer.from((v ?? []) as Uint8Array).toString('base64');
  return v;
}

/** The shortest decimal that reads back as the same float32 (as Python prints a float field). */
function shortestFloat32(x: number): number {
  for (let digits = 1; digits < 17; digits++) {
    const y = Number(x.toPrecision(digits));
    if (Math.fround(y) === Math.fround(x)) return y;
  }
  return x;
}

/** A google.protobuf.Timestamp as RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits (as protobuf's JSON
 * mapping writes it); undefined for other types. */
function wellKnownJson(fullName: string, v: Record<string, unknown>): string | undefined {
  if (fullName !== '.google.protobuf.Timestamp') return undefined;
  const nanos = Number(v.nanos ?? 0);
  const fraction = nanos === 0 ? '' : nanos % 1e6 === 0 ? `.${String(nanos / 1e6).padStart(3, '0')}`
    : nanos % 1e3 === 0 ? `.${String(nanos / 1e3).padStart(6, '0')}` : `.${String(nanos).padStart(9, '0')}`;
  return `${new Date(Number(v.seconds ?? 0) * 1000).toISOString().slice(0, 19)}${fraction}Z`;
}
