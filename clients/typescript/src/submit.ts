// submitFile: a prompt file sent in idempotent batches, as the Python client's submit_file does
// (clients/python/grpo_client/client.py): the same batches, the same request ids, the same re-chunking
// when the trainer names its message size or prompts-per-request limit, the same retries.
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';

import type { Prompt } from './generated/grpo/trainer/v1/Prompt';
import type { SubmitPromptsResponse__Output } from './generated/grpo/trainer/v1/SubmitPromptsResponse';
import { DECODED_DETAILS, FieldViolation, GrpoError } from './errors';
import { batchRequestId, marshalPrompt } from './prompts';
import { counted, span } from './words';

export interface SubmitOptions {
  /** The most prompts per SubmitPrompts request (default 256). */
  batchSize?: number;
  /** Names the batches "<requestId>-<index>"; unset derives each batch's id from its content. */
  requestId?: string;
  /** Sends of one batch refused with RESOURCE_EXHAUSTED (queue full) or UNAVAILABLE (default 5); an
   * UNAVAILABLE that is a refused client certificate (GrpoError.clientCertificateRefused) is not sent again. */
  maxAttempts?: number;
  /** Called after each accepted batch with its number of prompts and the answer. */
  onBatch?: (prompts: number, response: SubmitPromptsResponse__Output) => void;
  /** Called before each wait to send again a batch the trainer refused as full (RESOURCE_EXHAUSTED) or
   * unavailable: the refusal, the wait in milliseconds, and the attempt that failed (1-based; the last retry
   * is attempt `maxAttempts - 1`). Without it a wait of seconds looks like a hang. */
  onRetry?: (error: GrpoError, waitMs: number, attempt: number) => void;
}

/** What a submission did: the accepted ids (new and replayed), the request ids of the batches sent, how
 * many of them the trainer had seen before (`replayedIds` are their prompts: nothing was queued again),
 * the queue depth after the last batch queued now, and `resized`: a sentence for each batch the trainer
 * refused as over its message size or prompt count limit, which was then sent in smaller batches. */
export interface SubmitResult {
  acceptedIds: string[];
  batches: number;
  duplicateBatches: number;
  queueDepth: number;
  requestIds: string[];
  resized: string[];
  replayedIds: string[];
  /** The ids this submission queued (accepted, not replayed). */
  queuedIds: string[];
}

/** A field violation of a refused batch traced back to its prompt: `index` in the whole submission,
 * `promptId`, `promptField` ('' for the prompt as a whole) and `line` in the file (undefined without one). */
export interface LocatedViolation {
  violation: FieldViolation;
  index: number;
  promptId: string;
  promptField: string;
  line: number | undefined;
}

/** `FILE:LINE: id ID: field: message`, or `prompts[INDEX] (id ID): field: message` without a file. */
export function formatLocated(l: LocatedViolation, source: string | undefined): string {
  const where = source && l.line !== undefined ? `${source}:${l.line}: id ${l.promptId}` : `prompts[${l.index}] (id ${l.promptId})`;
  return `${where}: ${l.promptField ? `${l.promptField}: ` : ''}${l.violation.description}`;
}

interface Where {
  batchIndex: number;
  batches: number;
  batchSize: number;
  batchFirst: number;
  batchPrompts: number;
  aloneTooLarge: Array<{ index: number; id: string }>;
  resized: string[];
  acceptedIds: string[];
  refusedBatchQueued: boolean | undefined;
  located: LocatedViolation[];
  source: string | undefined;
  lines: number[] | undefined;
  totalPrompts: number;
}

/** A submission that stopped at a batch the trainer refused: `cause` is that batch's GrpoError (its code,
 * violations and retry delay are repeated here), and the rest says where it stopped: batch `batchIndex`
 * (0-based) of `batches`, `batchPrompts` prompts from prompt `batchFirst` on; `acceptedIds` are the prompts
 * of the batches before it, which the trainer keeps; `refusedBatchQueued` is false when the code says the
 * batch was not stored, undefined when it cannot tell (UNAVAILABLE, DEADLINE_EXCEEDED). `located` traces
 * each `prompts[i]...` violation to its prompt and file line. Submitting the same prompts again with the same
 * batch size and request id is safe: the accepted batches are answered as duplicates. */
export class SubmitError extends Error implements Where {
  readonly cause: GrpoError;
  readonly code: grpc.status;
  readonly codeName: string;
  readonly details: string;
  readonly fieldViolations: FieldViolation[];
  readonly retryDelayMs: number | undefined;
  readonly batchIndex: number;
  readonly batches: number;
  readonly batchSize: number;
  readonly batchFirst: number;
  readonly batchPrompts: number;
  readonly aloneTooLarge: Array<{ index: number; id: string }>;
  readonly resized: string[];
  readonly acceptedIds: string[];
  readonly refusedBatchQueued: boolean | undefined;
  readonly located: LocatedViolation[];
  readonly source: string | undefined;
  readonly lines: number[] | undefined;
  readonly totalPrompts: number;

  constructor(cause: GrpoError, where: Where) {
    super('');
    this.name = 'SubmitError';
    this.cause = cause;
    this.code = cause.code;
    this.codeName = cause.codeName;
    this.details = cause.details;
    this.fieldViolations = cause.fieldViolations;
    this.retryDelayMs = cause.retryDelayMs;
    this.batchIndex = where.batchIndex;
    this.batches = where.batches;
    this.batchSize = where.batchSize;
    this.batchFirst = where.batchFirst;
    this.batchPrompts = where.batchPrompts;
    this.aloneTooLarge = where.aloneTooLarge;
    this.resized = where.resized;
    this.acceptedIds = where.acceptedIds;
    this.refusedBatchQueued = where.refusedBatchQueued;
    this.located = where.located;
    this.source = where.source;
    this.lines = where.lines;
    this.totalPrompts = where.totalPrompts;
    this.message = this.render();
  }

  /** The refused batch, a single prompt, was bigger than the trainer's limits.max_message_bytes. */
  get tooLarge(): boolean { return tooLarge(this.cause); }

  /** The batch was refused because the trainer did not accept the client certificate (or wanted one):
   * GrpoError.clientCertificateRefused of the cause. */
  get clientCertificateRefused(): boolean { return this.cause.clientCertificateRefused; }

  private span(first: number, last: number): string {
    let text = span('prompt', first + 1, last + 1);
    if (this.lines) text += `, ${span('line', this.lines[first], this.lines[last])}`;
    return text;
  }

  private acceptedThroughLine(): number | undefined {
    const n = this.acceptedIds.length;
    return this.lines && n ? this.lines[n - 1] : undefined;
  }

  /** What was queued before the refused batch and how to carry on, in words (the Python client's text). */
  progress(): string {
    const n = this.acceptedIds.length;
    const k = this.batchIndex + 1;
    let refused = this.refusedBatchQueued === false ? `Batch ${k} was not queued`
      : `Batch ${k} may or may not have been queued (its answer was lost)`;
    if (this.batches > k + 1) refused += `; batches ${k + 1}-${this.batches} were not sent.`;
    else if (this.batches === k + 1) refused += `; batch ${k + 1} was not sent.`;
    else refused += '.';
    let before = 'Nothing was accepted before it.';
    if (n) {
      const batches = k === 2 ? 'batch 1' : `batches 1-${k - 1}`;
      const where = this.lines ? span('line', this.lines[0], this.lines[n - 1]) : span('prompt', 1, n);
      const [were, them] = n === 1 ? ['was', 'it'] : ['were', 'them'];
      before = `The ${counted(n, 'prompt')} of ${batches} (${where}) ${were} accepted before it; the trainer keeps ${them}.`;
    }
    const rerun = 'run the same command again (same batch size and request id): the trainer answers the batches it '
      + 'already accepted as duplicates, by their request ids, and queues nothing twice.';
    if (this.tooLarge) {
      const limit = messageLimit(this.cause);
      const over = this.aloneTooLarge.length ? this.aloneTooLarge
        : this.batchPrompts === 1 ? [{ index: this.batchFirst, id: '' }] : [];
      let fix: string;
      if (over.length) {
        let named = over.slice(0, 5).map((p) => this.span(p.index, p.index) + (p.id ? ` (id ${p.id})` : '')).join('; ');
        if (over.length > 5) named += `; and ${over.length - 5} more`;
        fix = `${named[0].toUpperCase()}${named.slice(1)} alone ${over.length === 1 ? 'is' : 'are each'} more than `
          + `the trainer takes in one message${limit ? ` (${limit} bytes)` : ''}: shorten ${over.length === 1 ? 'it' : 'them'}, `
          + "or have the trainer's limits.max_message_bytes raised";
      } else {
        fix = 'The batch is more than the trainer takes in one message: use a smaller --batch-size';
      }
      return n === 0 ? `${refused} ${before} ${fix}; then run the command again.` : `${refused} ${before} ${fix}; then ${rerun}`;
    }
    if (this.code === grpc.status.RESOURCE_EXHAUSTED && this.retryDelayMs !== undefined) {
      if (this.cause.quotaSubjects.includes('store')) {
        return `${refused} ${before} The trainer's store disk stayed full through the retries: once its operator has made room, ${rerun}`;
      }
      return `${refused} ${before} The trainer's queue stayed full through the retries: once it has room, ${rerun}`;
    }
    if (this.clientCertificateRefused) {
      return `${refused} ${before} The trainer refused the client certificate: with one it accepts `
        + `(--cert, --key), ${rerun}`;
    }
    if (this.cause.serverCertificateUnverified) {
      return `${refused} ${before} The trainer's certificate could not be verified: with the CA that signed it `
        + `(--ca) and a name it holds (--server-name), ${rerun}`;
    }
    if (this.code === grpc.status.UNAVAILABLE || this.code === grpc.status.DEADLINE_EXCEEDED) {
      return `${refused} ${before} Once the trainer answers again, ${rerun}`;
    }
    if (this.fieldViolations.length && this.fieldViolations.every((v) => v.description.includes('already queued'))) {
      return `${refused} ${before} The ids named are queued already: wait until they are trained, or cancel `
        + 'them (grpo cancel), to submit them again. (Running a file again with another --batch-size '
        + 'or --request-id sends its batches under new keys, so the prompts queued the first time '
        + 'are refused like this rather than answered as duplicates.)';
    }
    if (n === 0 && this.refusedBatchQueued === false) return `${refused} ${before} Fix what is named above and run the command again.`;
    const after = n && this.lines ? ` (editing only lines after line ${this.acceptedThroughLine()})` : '';
    return `${refused} ${before} Fix what is named above${after} and ${rerun}`;
  }

  /** The error as the Python client's SubmitError.to_dict gives it (JSON.stringify calls this): the refused
   * batch's GrpoError.toJSON, each field violation traced to a prompt with its `file` and `line` (from a
   * file), `index`, `id` and `prompt_field`, and a `submission` object saying where the submission stopped;
   * null where Python has None. */
  toJSON(): Record<string, unknown> {
    const out = this.cause.toJSON();
    if (this.fieldViolations.length) {
      out.field_violations = this.fieldViolations.map((v) => {
        const item: Record<string, unknown> = { field: v.field, description: v.description };
        const loc = this.located.find((l) => l.violation === v);
        if (loc) {
          if (this.source !== undefined && loc.line !== undefined) Object.assign(item, { file: this.source, line: loc.line });
          Object.assign(item, { index: loc.index, id: loc.promptId, prompt_field: loc.promptField });
        }
        return item;
      });
    }
    out.submission = {
      file: this.source ?? null, batch_index: this.batchIndex, batches: this.batches, batch_size: this.batchSize,
      batch_first: this.batchFirst, batch_prompts: this.batchPrompts, refused_batch_queued: this.refusedBatchQueued ?? null,
      alone_too_large: this.aloneTooLarge.map((p) => ({ index: p.index, id: p.id, line: this.lines ? this.lines[p.index] : null })),
      accepted_prompts: this.acceptedIds.length, accepted_through_line: this.acceptedThroughLine() ?? null,
      accepted_ids: this.acceptedIds, resized: this.resized, progress: this.progress(),
    };
    return out;
  }

  private render(): string {
    const first = this.batchFirst;
    const last = first + this.batchPrompts - 1;
    const lines = [`${this.codeName}: batch ${this.batchIndex + 1} of ${this.batches} (${this.span(first, last)}) `
      + `was refused: ${this.details}`];
    this.fieldViolations.forEach((v) => {
      const loc = this.located.find((l) => l.violation === v);
      lines.push(loc ? `  ${formatLocated(loc, this.source)}` : `  ${v.field}: ${v.description}`);
    });
    if (this.retryDelayMs !== undefined) lines.push(`  retry after ${Number((this.retryDelayMs / 1000).toPrecision(6))} s`);
    for (const p of this.cause.preconditions) lines.push(`  precondition: ${p}`);
    for (const d of this.cause.statusDetails) {
      if (!DECODED_DETAILS.includes(d.type)) lines.push(`  ${d.type}`);
    }
    for (const note of this.resized) lines.push(`(Before it, ${note}.)`);
    lines.push(this.progress());
    return lines.join('\n');
  }
}

// Codes after which the refused batch is known not to be stored; after any other it may have been.
const NOT_STORED = new Set([
  grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED, grpc.status.FAILED_PRECONDITION,
  grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS, grpc.status.OUT_OF_RANGE, grpc.status.UNIMPLEMENTED,
]);
const PROMPT_FIELD = /^prompts\[(\d+)\]([\s\S]*)$/; // "prompts[23].messages[0].content"
const MESSAGE_LIMIT = /larger than max \((\d+) vs\. (\d+)\)/; // gRPC core's wording
// The trainer's "prompts" violations that cap a request: limits.max_prompts_per_request, limits.max_queue_depth.
const COUNT_LIMIT = /at most (\d+) are allowed per request|can never fit a queue of at most (\d+)/;
const REQUEST_ID_SLACK_BYTES = 64; // a SubmitPromptsRequest's request_id field beyond the user's prefix

/** A request refused for its size (a full queue is RESOURCE_EXHAUSTED too, with a retry delay). */
function tooLarge(e: GrpoError): boolean {
  return e.code === grpc.status.RESOURCE_EXHAUSTED && e.retryDelayMs === undefined && e.details.includes('larger than max');
}

function messageLimit(e: GrpoError): number | undefined {
  const m = tooLarge(e) ? MESSAGE_LIMIT.exec(e.details) : null;
  return m ? Number(m[2]) : undefined;
}

function countLimit(e: GrpoError): number | undefined {
  if (e.code !== grpc.status.INVALID_ARGUMENT) return undefined;
  for (const v of e.fieldViolations) {
    const m = v.field === 'prompts' ? COUNT_LIMIT.exec(v.description) : null;
    if (m) return Number(m[1] ?? m[2]);
  }
  return undefined;
}

function whereIs(index: number, lines: number[] | undefined): string {
  return `prompt ${index + 1}${lines ? ` (line ${lines[index]})` : ''}`;
}

/** How a submission is cut into requests (the Python client's _BatchPlan). Internal. */
export class BatchPlan {
  maxBytes: number | undefined;
  private readonly overhead: number;
  private sizes: number[] | undefined;

  constructor(readonly prompts: Prompt[], public maxPrompts: number, requestId: string | undefined) {
    this.overhead = REQUEST_ID_SLACK_BYTES + Buffer.byteLength(requestId ?? '', 'utf8');
  }

  /** Prompt i's bytes inside the request (the field's tag and length prefix included). */
  size(i: number): number {
    this.sizes ??= this.prompts.map((p) => marshalPrompt(p).length);
    const n = this.sizes[i];
    return n + 1 + Math.max(1, Math.floor((n.toString(2).length * (n > 0 ? 1 : 0) + 6) / 7));
  }

  batch(start: number): Prompt[] {
    let end = Math.min(start + this.maxPrompts, this.prompts.length);
    if (this.maxBytes !== undefined) {
      let total = this.overhead;
      let stop = start;
      while (stop < end && (stop === start || total + this.size(stop) <= this.maxBytes)) {
        total += this.size(stop);
        stop++;
      }
      end = stop;
    }
    return this.prompts.slice(start, end);
  }

  count(start: number): number {
    let n = 0;
    while (start < this.prompts.length) {
      start += this.batch(start).length;
      n++;
    }
    return n;
  }

  aloneTooLarge(start: number): number[] {
    if (this.maxBytes === undefined) return [];
    const out: number[] = [];
    for (let i = start; i < this.prompts.length; i++) if (this.overhead + this.size(i) > this.maxBytes) out.push(i);
    return out;
  }

  shrink(e: GrpoError, start: number, sent: number, where: string): string | undefined {
    if (sent <= 1) return undefined;
    if (tooLarge(e)) {
      const limit = messageLimit(e);
      if (limit !== undefined) this.maxBytes = limit;
      if (limit === undefined || this.batch(start).length >= sent) this.maxPrompts = Math.max(1, Math.floor(sent / 2));
      return `the batch of ${sent} prompts from ${where} on was more than the trainer takes in one message`
        + `${limit !== undefined ? ` (${limit} bytes)` : ''}; sent in smaller batches from there`;
    }
    const count = countLimit(e);
    if (count === undefined) return undefined;
    this.maxPrompts = Math.max(1, Math.min(count, sent - 1));
    return `the trainer takes at most ${counted(count, 'prompt')} per request; batches of ${this.maxPrompts} from ${where} on`;
  }
}

export type SendBatch = (batch: Prompt[], requestId: string) => Promise<SubmitPromptsResponse__Output>;

/** The submission loop, apart from the client: `send` makes one SubmitPrompts call. Internal. */
export async function submitBatches(send: SendBatch, prompts: Prompt[], source: string | undefined,
  lines: number[] | undefined, options: SubmitOptions, wait: (ms: number) => Promise<unknown> = sleep): Promise<SubmitResult> {
  const batchSize = options.batchSize ?? 256;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new TypeError(`submitFile: batchSize must be a whole number >= 1, got ${batchSize}`);
  const maxAttempts = options.maxAttempts ?? 5;
  // NaN retried for ever (attempt >= NaN is never true), 0 sent once: refused as the Python client does.
  if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) throw new TypeError(`submitFile: maxAttempts must be a whole number >= 1, got ${maxAttempts}`);
  const accepted: string[] = [];
  const replayed: string[] = [];
  const requestIds: string[] = [];
  const resized: string[] = [];
  let duplicates = 0;
  let depth: number | undefined;
  const plan = new BatchPlan(prompts, batchSize, options.requestId);
  let start = 0;
  let index = 0;
  while (start < prompts.length) {
    const batch = plan.batch(start);
    const rid = batchRequestId(batch, index, options.requestId);
    let response: SubmitPromptsResponse__Output;
    let maybeStored: boolean;
    try {
      ({ response, maybeStored } = await sendWithRetry(send, batch, rid, maxAttempts, wait, options.onRetry));
    } catch (err) {
      if (!(err instanceof GrpoError)) throw err;
      const note = plan.shrink(err, start, batch.length, whereIs(start, lines));
      const over = note !== undefined ? plan.aloneTooLarge(start) : [];
      if (note !== undefined && !over.length) {
        resized.push(note);
        continue;
      }
      const located: LocatedViolation[] = [];
      for (const v of err.fieldViolations) {
        const m = PROMPT_FIELD.exec(v.field);
        if (!m || Number(m[1]) >= batch.length) continue;
        const at = start + Number(m[1]);
        located.push({ violation: v, index: at, promptId: prompts[at].id ?? '', promptField: m[2].replace(/^\./, ''), line: lines?.[at] });
      }
      throw new SubmitError(err, {
        batchIndex: index, batches: index + 1 + plan.count(start + batch.length), batchSize, batchFirst: start,
        batchPrompts: batch.length, aloneTooLarge: over.map((i) => ({ index: i, id: prompts[i].id ?? '' })),
        resized: [...resized], acceptedIds: [...accepted],
        // a refused client certificate: the connection closed before any request was sent
        refusedBatchQueued: NOT_STORED.has(err.code) || err.tlsRefused ? false : undefined,
        located, source, lines, totalPrompts: prompts.length,
      });
    }
    requestIds.push(rid);
    accepted.push(...response.acceptedIds);
    // A duplicate after an attempt of this run that may have been stored (its answer lost) is this run's own
    // batch, queued now: counted as a replay, the advice to use a new request id would queue it twice.
    if (response.duplicate && !maybeStored) {
      duplicates++;
      replayed.push(...response.acceptedIds);
    }
    if (!response.duplicate || depth === undefined) depth = Number(response.queueDepth);
    start += batch.length;
    index++;
    options.onBatch?.(batch.length, response);
  }
  const replayedSet = new Set(replayed);
  return {
    acceptedIds: accepted, batches: requestIds.length, duplicateBatches: duplicates, queueDepth: depth ?? 0,
    requestIds, resized, replayedIds: replayed, queuedIds: accepted.filter((id) => !replayedSet.has(id)),
  };
}

/** The answer, and whether an earlier attempt may have been stored (it failed with a code after which the
 * trainer may have stored the batch, its answer lost). */
async function sendWithRetry(send: SendBatch, batch: Prompt[], rid: string, maxAttempts: number,
  wait: (ms: number) => Promise<unknown>, onRetry?: SubmitOptions['onRetry'],
): Promise<{ response: SubmitPromptsResponse__Output; maybeStored: boolean }> {
  let delayMs = 1000;
  let maybeStored = false;
  for (let attempt = 1; ; attempt++) {
    try {
      return { response: await send(batch, rid), maybeStored };
    } catch (err) {
      if (!(err instanceof GrpoError) || !NOT_STORED.has(err.code)) maybeStored = true;
      const retryable = err instanceof GrpoError && (err.code === grpc.status.RESOURCE_EXHAUSTED
        || err.code === grpc.status.UNAVAILABLE) && !tooLarge(err) && !err.tlsRefused;
      if (!retryable || attempt >= maxAttempts) throw err;
      const waitMs = err.retryDelayMs ?? delayMs;
      onRetry?.(err, waitMs, attempt);
      await wait(waitMs);
      delayMs = Math.min(delayMs * 2, 30_000);
    }
  }
}
