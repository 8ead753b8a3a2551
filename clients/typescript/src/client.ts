// A small typed client for grpo.trainer.v1.TrainerService: promises for unary calls, an async iterator
// for WatchSteps, bearer-token and TLS options, and GrpoError (with decoded status details) on failure.
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';

import type { DeleteRewardBackendResponse__Output } from './generated/grpo/trainer/v1/DeleteRewardBackendResponse';
import type { Export__Output } from './generated/grpo/trainer/v1/Export';
import type { ExportCheckpointResponse__Output } from './generated/grpo/trainer/v1/ExportCheckpointResponse';
import type { GetExportResponse__Output } from './generated/grpo/trainer/v1/GetExportResponse';
import type { CancelPromptsResponse__Output } from './generated/grpo/trainer/v1/CancelPromptsResponse';
import type { ListExportsRequest } from './generated/grpo/trainer/v1/ListExportsRequest';
import type { ListExportsResponse__Output } from './generated/grpo/trainer/v1/ListExportsResponse';
import type { ListPromptsRequest } from './generated/grpo/trainer/v1/ListPromptsRequest';
import type { ListPromptsResponse__Output } from './generated/grpo/trainer/v1/ListPromptsResponse';
import type { ListRewardBackendsResponse__Output } from './generated/grpo/trainer/v1/ListRewardBackendsResponse';
import type { PromptStatus__Output } from './generated/grpo/trainer/v1/PromptStatus';
import type { Prompt } from './generated/grpo/trainer/v1/Prompt';
import type { RewardBackend } from './generated/grpo/trainer/v1/RewardBackend';
import type { PauseTrainingResponse__Output } from './generated/grpo/trainer/v1/PauseTrainingResponse';
import type { ResumeTrainingResponse__Output } from './generated/grpo/trainer/v1/ResumeTrainingResponse';
import type { RunStatus__Output } from './generated/grpo/trainer/v1/RunStatus';
import type { SetRewardBackendResponse__Output } from './generated/grpo/trainer/v1/SetRewardBackendResponse';
import type { StepStatusResponse__Output } from './generated/grpo/trainer/v1/StepStatusResponse';
import type { SubmitPromptsResponse__Output } from './generated/grpo/trainer/v1/SubmitPromptsResponse';
import type { TrainerServiceClient } from './generated/grpo/trainer/v1/TrainerService';
import type { WatchStepsResponse__Output } from './generated/grpo/trainer/v1/WatchStepsResponse';
import { GrpoError, toGrpoError } from './errors';
import { PromptFile, loadPromptFile } from './prompts';
import { trainerGrpcTypes } from './protos';
import { SubmitOptions, SubmitResult, submitBatches } from './submit';
import { CLOSED_BEFORE_SETTINGS, TlsCheckOptions, clientCertificateRefusal } from './tlscheck';

/** TLS settings. Buffers hold PEM data. `rootCerts` unset = the system's roots; `privateKey` and
 * `certChain` together make it mTLS. */
export interface TlsOptions {
  rootCerts?: Buffer;
  privateKey?: Buffer;
  certChain?: Buffer;
  /** The file `certChain` was read from, only to name it when the trainer refuses the certificate
   * (GrpoError.clientCertificateRefused); unset, the message says "the client certificate given". */
  certChainFile?: string;
}

export interface ClientOptions {
  /** Bearer token sent as `authorization: Bearer <token>` on every call (the trainer's tokens file). */
  token?: string;
  /** `true` for TLS with the system's roots, or the certificates to use; unset = plaintext. */
  tls?: boolean | TlsOptions;
  /** Deadline of each unary call in milliseconds (default 30 000). WatchSteps has none. */
  timeoutMs?: number;
  /** The largest message accepted from the server, in bytes (default 64 MiB: an export lists many files). */
  maxReceiveMessageBytes?: number;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

export interface WatchOptions {
  /** Send the finished steps after this one first (0 = from the first step), then live steps. */
  afterStep?: number;
  /** Also yield a report when a step starts (state STEP_STATE_RUNNING). */
  includeRunning?: boolean;
  /** Aborting ends the iteration (the call is cancelled) without an error. */
  signal?: AbortSignal;
}

export interface FollowOptions extends WatchOptions {
  /** Wait before each reconnect, in milliseconds (default 2000). */
  retryMs?: number;
  /** Once the trainer has been UNAVAILABLE this long (milliseconds) since it last answered, reject with
   * that UNAVAILABLE GrpoError (default 600 000; `Infinity`: never give up). Any answer counts, not only
   * a report: a stream's response headers (a trainer sends them as soon as it accepts the stream, idle or
   * not) and a stream the trainer ended with status OK. */
  giveUpMs?: number;
  /** Called with the reason before each reconnect. */
  onReconnect?: (reason: string) => void;
}

type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/** Client of one trainer. Create it, call methods, `close()` when done. Every method rejects with a
 * GrpoError carrying the gRPC code and the decoded google.rpc details (field violations, retry delay). */
/** The longest wait between two attempts to connect to a trainer that is down (grpc-js' default: 120 s);
 * `channelOptions['grpc.max_reconnect_backoff_ms']` overrides it. */
export const MAX_RECONNECT_BACKOFF_MS = 5_000;

export class TrainerClient {
  readonly target: string;
  private readonly stub: TrainerServiceClient;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  /** Aborted by close(): ends each followSteps loop, in a stream or waiting to reconnect. */
  private readonly closing = new AbortController();
  /** The unary calls in flight, for close() to cancel. */
  private readonly inFlight = new Set<grpc.ClientUnaryCall>();
  /** Over TLS, what clientCertificateRefusal needs to look into a connection the trainer closed; else undefined. */
  private readonly tlsCheck: TlsCheckOptions | undefined;

  /** `target` is "HOST:PORT" (or any grpc-js target such as "dns:///trainer:50051"). */
  constructor(target: string, options: ClientOptions = {}) {
    this.target = target;
    this.token = sendableToken(options.token);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    const tls = options.tls;
    const credentials = tls
      ? grpc.credentials.createSsl(
        tls === true ? null : tls.rootCerts ?? null,
        tls === true ? null : tls.privateKey ?? null,
        tls === true ? null : tls.certChain ?? null,
      )
      : grpc.credentials.createInsecure();
    const serverName = options.channelOptions?.['grpc.ssl_target_name_override'];
    this.tlsCheck = !tls ? undefined : {
      ...(tls === true ? {} : { ca: tls.rootCerts, cert: tls.certChain, key: tls.privateKey, certFile: tls.certChainFile }),
      serverName: typeof serverName === 'string' ? serverName : undefined,
    };
    const Service = trainerGrpcTypes().grpo.trainer.v1.TrainerService;
    this.stub = new Service(target, credentials, {
      'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? 64 * 1024 * 1024,
      // grpc-js spaces connection attempts with a backoff that grows to 120 s, and a call made meanwhile
      // fails at once without trying: a trainer back after a long outage would be found up to 2 minutes
      // late (and followSteps could give up on it).
      'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS,
      // This client's own connections: grpc-js otherwise shares them by address within the process, and
      // a new client took over an older one's failed connection to a trainer that had since come up,
      // failing its first calls at once with UNAVAILABLE.
      'grpc.use_local_subchannel_pool': 1,
      ...options.channelOptions,
    });
  }

  /** Resolves once the channel is connected; rejects after `timeoutMs` milliseconds (default 10 000). */
  waitForReady(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stub.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Queue prompts for training. `requestId` makes a retry idempotent (the first answer comes back with
   * `duplicate: true`). Bad input rejects with INVALID_ARGUMENT and `fieldViolations`
   * (`prompts[0].messages[0].role`); a full queue with RESOURCE_EXHAUSTED and `retryDelayMs`. */
  submitPrompts(prompts: Prompt[], requestId = ''): Promise<SubmitPromptsResponse__Output> {
    return this.unary('SubmitPrompts', this.stub.submitPrompts, { prompts, requestId });
  }

  /** Submit a prompt file (a path, or what `loadPromptFile` read) in batches of `batchSize` (default 256),
   * each with a request id derived from its content (or `<requestId>-<batch index>`), the same ids the
   * Python and Go clients send: running it again, from any of them, queues nothing twice.
   *
   * The whole file is parsed first: a bad one throws PromptFileError (every problem, by line and field)
   * and nothing is sent. A batch the trainer refuses rejects with SubmitError, naming the file line of each
   * bad field and the prompts already accepted. A batch refused with RESOURCE_EXHAUSTED (queue full) or
   * UNAVAILABLE is sent again after the server's retry delay (or 1 s, doubling up to 30 s), up to
   * `maxAttempts` times (`onRetry(error, waitMs, attempt)` is called before each wait), but not an UNAVAILABLE
   * that is the trainer refusing the client certificate (GrpoError.clientCertificateRefused). A batch over the
   * trainer's message size or prompts-per-request limit is sent again in smaller batches within the limit it
   * names (each change a sentence in `resized`); only one prompt over the message limit by itself is an error
   * (SubmitError.tooLarge). */
  async submitFile(file: string | PromptFile, options: SubmitOptions = {}): Promise<SubmitResult> {
    const loaded = typeof file === 'string' ? loadPromptFile(file) : file;
    return submitBatches((batch, rid) => this.submitPrompts(batch, rid), loaded.prompts, loaded.source, loaded.lines, options);
  }

  /** `submitFile` for prompts already in memory (a SubmitError then names prompts by index). */
  async submitAll(prompts: Prompt[], options: SubmitOptions = {}): Promise<SubmitResult> {
    return submitBatches((batch, rid) => this.submitPrompts(batch, rid), prompts, undefined, undefined, options);
  }

  /** One step's report (the latest when `step` is 0 or unset) and the run's state. `step` is unset
   * in the answer before the first step. A step that does not exist rejects with NOT_FOUND. With
   * `includeSamples`, `samples` holds the completions the trainer kept of that step, each with its
   * text and every reward backend's score and feedback. */
  stepStatus(step = 0, options: { includeSamples?: boolean } = {}): Promise<StepStatusResponse__Output> {
    const bad = notWholeNumber('StepStatus', 'step', step);
    if (bad) return Promise.reject(bad);
    return this.unary('StepStatus', this.stub.stepStatus, { step, includeSamples: options.includeSamples ?? false });
  }

  /** Stream step reports: the finished steps after `afterStep`, then each step as it finishes. Ends when
   * the server closes the stream, the loop breaks, or `signal` aborts. */
  watchSteps(options: WatchOptions = {}): AsyncGenerator<WatchStepsResponse__Output, void, undefined> {
    return this.watch(options);
  }

  /** watchSteps that calls `onAnswer` when the stream's response headers come: the trainer answered. A
   * trainer sends them as soon as it accepts the request, before any report, so an idle trainer answers
   * too. A stream that fails before its headers does not call it. */
  private async *watch(options: WatchOptions, onAnswer?: () => void): AsyncGenerator<WatchStepsResponse__Output, void, undefined> {
    const bad = notWholeNumber('WatchSteps', 'afterStep', options.afterStep ?? 0);
    if (bad) throw bad;
    // Stopped already (an aborted signal, or close()): no stream. Closing the channel does not cancel the
    // calls on it, so close() ends an open stream through `closing` as an abort does.
    const stopped = () => options.signal?.aborted === true || this.closing.signal.aborted;
    if (stopped()) return;
    const call = this.stub.watchSteps(
      { afterStep: options.afterStep ?? 0, includeRunning: options.includeRunning ?? false },
      this.metadata(),
    );
    if (onAnswer) call.on('metadata', onAnswer); // attached at once: the call's events come on later ticks
    const onAbort = () => call.cancel();
    const signals = [options.signal, this.closing.signal];
    for (const s of signals) s?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const message of call) {
        yield message as WatchStepsResponse__Output;
      }
    } catch (err) {
      // Cancelling on purpose (abort, close(), or the caller leaving the loop) is not an error.
      if ((err as grpc.ServiceError).code === grpc.status.CANCELLED && stopped()) return;
      throw await this.callError('WatchSteps', err);
    } finally {
      for (const s of signals) s?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  /** `watchSteps` that outlives trainer restarts. When the stream ends (the trainer drained) or the
   * trainer is UNAVAILABLE, it calls `onReconnect(reason)` and opens a new stream after `retryMs`, until
   * the trainer answers again (or rejects with the UNAVAILABLE GrpoError once `giveUpMs` pass without an
   * answer, counted from the first failure since the trainer last answered; a stream it accepted is an
   * answer, even one that then stayed idle for hours). A trainer serving as many streams as it takes
   * (RESOURCE_EXHAUSTED with a retry delay) is asked again after that delay, without giving up. Other
   * errors (UNAUTHENTICATED, ...) reject at once, and so does an UNAVAILABLE that is the trainer refusing the
   * client certificate (GrpoError.clientCertificateRefused). It ends quietly when the loop breaks, `signal` aborts or the client is closed.
   *
   * A restarted trainer resumes from its latest checkpoint and runs the steps after it again under the
   * same numbers (their earlier reports turn FAILED, "lost: ..." or "abandoned: ..."). So each new stream
   * starts after min(last finished step yielded, the run's checkpointStep), and a report already yielded
   * (the same step, startedAt and state) is skipped: each report that changed comes once, the replaced
   * ones included (docs/api.md, "StepStatus and WatchSteps"). A response's forgottenThrough is nonzero
   * only when retention deleted reports of steps after the last finished step yielded (or afterStep). */
  async *followSteps(options: FollowOptions = {}): AsyncGenerator<WatchStepsResponse__Output, void, undefined> {
    const retryMs = options.retryMs ?? 2_000;
    const giveUpMs = options.giveUpMs ?? 600_000;
    // NaN would retry at once without end (a tight loop) and never give up; a negative wait is a mistake.
    if (!(Number.isFinite(retryMs) && retryMs >= 0)) throw new TypeError(`followSteps: retryMs must be a number of milliseconds >= 0, got ${retryMs}`);
    if (!(giveUpMs >= 0)) throw new TypeError(`followSteps: giveUpMs must be a number of milliseconds >= 0 (or Infinity), got ${giveUpMs}`);
    const bad = notWholeNumber('WatchSteps', 'afterStep', options.afterStep ?? 0);
    if (bad) throw bad; // before the listeners below, which only the try's finally removes
    // One signal for "stop": the caller's abort or close().
    const stop = new AbortController();
    const onStop = () => stop.abort();
    for (const s of [options.signal, this.closing.signal]) {
      if (s?.aborted) stop.abort();
      s?.addEventListener('abort', onStop, { once: true });
    }
    const state = new FollowState(options.afterStep ?? 0);
    let downSince: number | undefined; // when the trainer was first UNAVAILABLE since it last answered
    // The stream's headers come before any report, so resetting on them covers the reports too.
    const answered = () => { downSince = undefined; };
    try {
      while (!stop.signal.aborted) {
        let reason: string;
        let waitMs = retryMs;
        try {
          const stream = this.watch({
            afterStep: state.resumeAfter(), includeRunning: options.includeRunning, signal: stop.signal,
          }, answered);
          for await (const response of stream) {
            if (state.admit(response)) yield response;
          }
          if (stop.signal.aborted) return;
          answered(); // it ended the stream itself, with status OK
          reason = 'the trainer ended the stream (it is shutting down)';
        } catch (err) {
          if (stop.signal.aborted) return; // closed while a call was starting: "Channel has been shut down"
          if (err instanceof GrpoError && err.code === grpc.status.RESOURCE_EXHAUSTED && err.retryDelayMs !== undefined) {
            // Up, but serving as many streams as it takes (limits.max_watch_streams): an answer; wait its delay.
            answered();
            waitMs = Math.max(retryMs, err.retryDelayMs);
            reason = `the trainer has no room for another stream now (${err.details})`;
          } else {
            // A refused client certificate, or a trainer certificate not verified, is UNAVAILABLE too, but no
            // reconnect mends it.
            if (!(err instanceof GrpoError) || err.code !== grpc.status.UNAVAILABLE || err.tlsRefused) throw err;
            const now = Date.now();
            downSince ??= now;
            if (now - downSince >= giveUpMs) throw err;
            reason = `the trainer is unavailable (${err.details})`;
          }
        }
        options.onReconnect?.(reason);
        try {
          await sleep(waitMs, undefined, { signal: stop.signal });
        } catch {
          return; // aborted while waiting
        }
      }
    } finally {
      options.signal?.removeEventListener('abort', onStop);
      this.closing.signal.removeEventListener('abort', onStop);
    }
  }

  /** Start a Hugging Face export of the current weights into `destination` (a path on the trainer;
   * empty = `<store-dir>/exports/step-<N>`). With `wait`, resolves when it is done or failed; the call's
   * deadline is then `timeoutMs` (default: the client's `timeoutMs`), since writing a real model's files
   * may take longer than an ordinary call (or start it without `wait` and poll `getExport`). */
  async exportCheckpoint(destination = '', wait = false, timeoutMs?: number): Promise<Export__Output> {
    const res = await this.unary<object, ExportCheckpointResponse__Output>('ExportCheckpoint', this.stub.exportCheckpoint,
      { destination, wait }, timeoutMs);
    return required(res.export, 'ExportCheckpoint', 'export');
  }

  /** The progress of an export (`progress` 0..1, `state`, `files` with sha256), also of one started before
   * the trainer restarted (one it was writing when it stopped is FAILED, "interrupted: ..."). */
  async getExport(exportId: string): Promise<Export__Output> {
    const res = await this.unary<object, GetExportResponse__Output>('GetExport', this.stub.getExport, { exportId });
    return required(res.export, 'GetExport', 'export');
  }

  /** One page of the exports the trainer's store knows of, also those started before the trainer
   * restarted, the newest first: only `state` when given (`'EXPORT_STATE_DONE'`, ...), at most `pageSize`
   * (1 to 1000; 0 = 100). Pass the answer's `nextPageToken` as `pageToken`, with the same `state`, to read
   * on (empty at the end); `allExports` reads every page. */
  listExports(request: ListExportsRequest = {}): Promise<ListExportsResponse__Output> {
    return this.unary('ListExports', this.stub.listExports, request);
  }

  /** `listExports` page after page: every export it matches (an async generator). */
  allExports(request: ListExportsRequest = {}): AsyncGenerator<Export__Output, void, undefined> {
    return everyPage(request.pageToken ?? '', async (pageToken) => {
      const page = await this.listExports({ ...request, pageToken });
      return [page.exports, page.nextPageToken];
    });
  }

  /** Pause training after the current step; resolves to the run's status after the request. */
  async pause(): Promise<RunStatus__Output> {
    const res = await this.unary<object, PauseTrainingResponse__Output>('PauseTraining', this.stub.pauseTraining, {});
    return required(res.run, 'PauseTraining', 'run');
  }

  /** Resume a paused run; resolves to the run's status after the request. */
  async resume(): Promise<RunStatus__Output> {
    const res = await this.unary<object, ResumeTrainingResponse__Output>('ResumeTraining', this.stub.resumeTraining, {});
    return required(res.run, 'ResumeTraining', 'run');
  }

  /** The reward backends of the trainer's registry, sorted by name, and the registry version. */
  listBackends(): Promise<ListRewardBackendsResponse__Output> {
    return this.unary('ListRewardBackends', this.stub.listRewardBackends, {});
  }

  /** Add or replace a reward backend (`name`, `address` "HOST:PORT", optional limits); the next step uses it. */
  setBackend(backend: RewardBackend): Promise<SetRewardBackendResponse__Output> {
    return this.unary('SetRewardBackend', this.stub.setRewardBackend, { backend });
  }

  /** Remove a reward backend; resolves to the registry version after the change. */
  async deleteBackend(name: string): Promise<number> {
    const res = await this.unary<object, DeleteRewardBackendResponse__Output>('DeleteRewardBackend', this.stub.deleteRewardBackend, { name });
    return res.registryVersion;
  }

  /** One page of the submitted prompts and where each is (queued, leased, trained, failed and why,
   * cancelled), in submission order: only `ids` when given (at most 1000), only `state` when given
   * (`'PROMPT_STATE_FAILED'`, ...), at most `pageSize` (1 to 1000; 0 = 100). Pass the answer's
   * `nextPageToken` as `pageToken` to read on (empty at the end); `allPrompts` reads every page. */
  listPrompts(request: ListPromptsRequest = {}): Promise<ListPromptsResponse__Output> {
    return this.unary('ListPrompts', this.stub.listPrompts, request);
  }

  /** `listPrompts` page after page: every prompt it matches (an async generator). More than
   * IDS_PER_REQUEST ids are asked IDS_PER_REQUEST at a time, each run's prompts in submission order, as
   * the Python client's `iter_prompts` does; `pageToken` must then be empty (a page token belongs to one
   * request): a RangeError otherwise. */
  async* allPrompts(request: ListPromptsRequest = {}): AsyncGenerator<PromptStatus__Output, void, undefined> {
    const chunks = idChunks(request.ids ?? []);
    if (chunks.length > 1 && request.pageToken) {
      throw new RangeError(`allPrompts: a pageToken with ${(request.ids ?? []).length} ids: a page token belongs to one request of at most ${IDS_PER_REQUEST} ids`);
    }
    for (const ids of chunks) {
      yield* everyPage(request.pageToken ?? '', async (pageToken) => {
        const page = await this.listPrompts({ ...request, ids, pageToken });
        return [page.prompts, page.nextPageToken];
      });
    }
  }

  /** Take the queued prompts among `ids` (1 to IDS_PER_REQUEST, each once) out of the queue. Resolves to the ids it
   * cancelled (`cancelledIds`), where each other known id is (`notCancelled`: LEASED, TRAINED, FAILED or
   * CANCELLED before), the ids the trainer does not know (`unknownIds`: never submitted, or deleted under
   * retention.prompt_rows_seconds) and the queue depth. */
  cancelPrompts(ids: string[]): Promise<CancelPromptsResponse__Output> {
    return this.unary('CancelPrompts', this.stub.cancelPrompts, { ids });
  }

  /** Close the channel. Calls in flight are cancelled (they reject with CANCELLED at once: grpc-js's close
   * leaves them running to their deadline, holding the process). */
  close(): void {
    this.closing.abort();
    for (const call of this.inFlight) call.cancel();
    this.stub.close();
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.token) md.set('authorization', `Bearer ${this.token}`);
    return md;
  }

  private unary<Req, Res>(method: string, fn: Unary<Req, Res>, request: Req, timeoutMs = this.timeoutMs): Promise<Res> {
    return new Promise((resolve, reject) => {
      const call = fn.call(this.stub, request, this.metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        this.inFlight.delete(call);
        if (err) void this.callError(method, err).then(reject);
        else resolve(res as Res);
      });
      this.inFlight.add(call);
    });
  }

  /** The GrpoError of a failed call (toGrpoError). Over TLS, an UNAVAILABLE connection that the trainer
   * closed before its HTTP/2 settings (grpc-js: "Failed to connect") is looked into (src/tlscheck.ts):
   * when it is the trainer refusing the client certificate, the error's details end with a sentence
   * saying so and it is marked clientCertificateRefused, which no retry mends. Never rejects. */
  private async callError(method: string, err: unknown): Promise<unknown> {
    const error = toGrpoError(method, err);
    if (error instanceof GrpoError && error.code === grpc.status.UNAVAILABLE && this.tlsCheck !== undefined
      && CLOSED_BEFORE_SETTINGS.test(error.details)) {
      const why = await clientCertificateRefusal(this.target, this.tlsCheck);
      if (why !== undefined) {
        return new GrpoError(method, error.code, `${error.details.trimEnd()} (${why})`, error.statusDetails, true);
      }
    }
    return error;
  }
}

/** followSteps' bookkeeping, apart from the network: where the next stream starts, and which reports a
 * new stream may send again that were yielded already. Internal (exported for the tests). */
export class FollowState {
  /** The caller's afterStep: it has the reports up to this step. */
  private readonly after: number;
  /** [seconds, nanos] of the start of the follow's first report; undefined before one. */
  private firstStarted: [number, number] | undefined;
  /** The last finished step yielded (at first: the caller's afterStep). */
  private last: number;
  /** The run's checkpoint step in the latest response; undefined before one. */
  private checkpoint: number | undefined;
  /** For each step a new stream may send again (above resumeAfter()), the key of its report yielded last:
   * "seconds.nanos state" of startedAt (nanoseconds overflow a JS number). */
  readonly yielded = new Map<number, string>();
  /** The highest forgottenThrough a stream sent past `last`, not yielded yet. */
  private gap = 0;

  constructor(afterStep: number) {
    this.after = afterStep;
    this.last = afterStep;
  }

  /** The afterStep of the next stream: min(last finished step yielded, checkpoint step), because a restart
   * runs every step after the checkpoint again. */
  resumeAfter(): number {
    return this.checkpoint === undefined ? this.last : Math.min(this.last, this.checkpoint);
  }

  /** Record a response; true when it is to be yielded, false when its report was yielded already. It sets
   * the response's forgottenThrough against what was yielded: a new stream starts at the checkpoint, maybe
   * below the last step yielded, so a gap it reports may hold only steps yielded already. */
  admit(response: WatchStepsResponse__Output): boolean {
    const report = response.step;
    this.checkpoint = response.run?.checkpointStep ?? 0;
    this.gap = Math.max(this.gap, response.forgottenThrough ?? 0);
    const step = report?.step ?? 0;
    const key = `${report?.startedAt?.seconds ?? 0}.${report?.startedAt?.nanos ?? 0} ${report?.state}`;
    if (this.yielded.get(step) === key) return false;
    const started: [number, number] = [Number(report?.startedAt?.seconds ?? 0), report?.startedAt?.nanos ?? 0];
    this.firstStarted ??= started;
    if (this.hadBefore(step, report, started)) return false;
    this.yielded.set(step, key);
    response.forgottenThrough = this.gap > this.last ? this.gap : 0;
    this.gap = 0;
    if (report?.state !== 'STEP_STATE_RUNNING') this.last = step;
    const floor = this.resumeAfter();
    for (const old of this.yielded.keys()) {
      if (old <= floor) this.yielded.delete(old); // no stream sends it again: the next one starts after it
    }
    return true;
  }

  /** True for a report the caller had when it began following: of a step up to its afterStep, never yielded
   * here, started before the follow's first report, and not a restart's notice that the step is lost. A
   * stream resumed below afterStep (at the checkpoint) sends such reports. */
  private hadBefore(step: number, report: WatchStepsResponse__Output['step'], started: [number, number]): boolean {
    const first = this.firstStarted!;
    const later = started[0] > first[0] || (started[0] === first[0] && started[1] > first[1]);
    if (step > this.after || this.yielded.has(step) || later) return false;
    const error = report?.error ?? '';
    return !(report?.state === 'STEP_STATE_FAILED' && (error.startsWith('lost:') || error.startsWith('abandoned:')));
  }
}

/** `token` when an `authorization` header can carry it (printable ASCII, no spaces or line breaks), else
 * a TypeError that names the bad character but not the secret. Without this check every call failed with
 * grpc-js' 'Metadata string value "Bearer <the token>" contains illegal characters', a plain Error that
 * printed the token (a token read from a file keeps its line break: trim it). */
function sendableToken(token: string | undefined): string | undefined {
  if (token === undefined || token === '') return undefined;
  if (typeof token !== 'string') throw new TypeError(`TrainerClient: options.token must be a string, got ${typeof token}`);
  const at = [...token].findIndex((c) => c.codePointAt(0)! < 0x21 || c.codePointAt(0)! > 0x7e);
  if (at >= 0) {
    const code = token.codePointAt([...token].slice(0, at).join('').length)!;
    throw new TypeError(`TrainerClient: options.token has U+${code.toString(16).toUpperCase().padStart(4, '0')} at `
      + `character ${at + 1} of ${[...token].length}, which an authorization header cannot carry; tokens are printable `
      + 'ASCII without spaces (trim the line break of a token read from a file)');
  }
  return token;
}

/** A TypeError for a step number that is not a whole number JS represents exactly (protobufjs would
 * silently send 1.5 as 1 and 'abc' as 0, the latest step); undefined when `value` is fine. Negative
 * numbers go to the trainer, which names the field and what it allows. */
function notWholeNumber(method: string, field: string, value: unknown): TypeError | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return undefined;
  return new TypeError(`${method}: ${field} must be a whole number below 2^53, got ${typeof value === 'string' ? `'${value}'` : String(value)}`);
}

function required<T>(value: T | null | undefined, method: string, field: string): T {
  if (value === null || value === undefined) throw new Error(`${method}: the server's answer has no \`${field}\``);
  return value;
}

/** The most prompt ids one ListPrompts or CancelPrompts request takes. */
export const IDS_PER_REQUEST = 1000;

/** `ids` in runs of at most IDS_PER_REQUEST, in order; no ids is one empty run (a listing of every prompt). */
export function idChunks(ids: readonly string[]): string[][] {
  if (!ids.length) return [[]];
  const out: string[][] = [];
  for (let start = 0; start < ids.length; start += IDS_PER_REQUEST) out.push(ids.slice(start, start + IDS_PER_REQUEST));
  return out;
}

/** The items of every page `readPage(pageToken)` answers ([items, nextPageToken]), from `pageToken`
 * until a page has no next token; each page is read once the one before it has been consumed. */
async function* everyPage<T>(pageToken: string, readPage: (pageToken: string) => Promise<[T[], string]>): AsyncGenerator<T, void, undefined> {
  for (;;) {
    const [items, next] = await readPage(pageToken);
    yield* items;
    if (!next) return;
    pageToken = next;
  }
}
