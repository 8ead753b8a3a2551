// Typed errors: the gRPC status plus the google.rpc.Status details the server puts in the
// `grpc-status-details-bin` trailer (BadRequest field violations, RetryInfo, ErrorInfo, ...).
import * as grpc from '@grpc/grpc-js';

import type { BadRequest__Output } from './generated/google/rpc/BadRequest';
import type { ErrorInfo__Output } from './generated/google/rpc/ErrorInfo';
import type { PreconditionFailure__Output } from './generated/google/rpc/PreconditionFailure';
import type { QuotaFailure__Output } from './generated/google/rpc/QuotaFailure';
import type { ResourceInfo__Output } from './generated/google/rpc/ResourceInfo';
import type { RetryInfo__Output } from './generated/google/rpc/RetryInfo';
import { googleRpcRoot } from './protos';

/** One bad field of a rejected request: `field` is a path into the request (`prompts[0].messages[0].role`). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** One decoded entry of google.rpc.Status.details. `type` is the full message name
 * (`google.rpc.BadRequest`); `value` the decoded message, or the raw bytes for an unknown type. */
export interface StatusDetail {
  type: string;
  value: Record<string, unknown> | Buffer;
}

const DETAILS_KEY = 'grpc-status-details-bin';
const TO_OBJECT = { longs: Number, enums: String, defaults: true, arrays: true };

/** A failed call to the trainer. `code` is the gRPC status (`grpc.status.INVALID_ARGUMENT` = 3);
 * `codeName` its name; `fieldViolations` and `retryDelayMs` come from the status details. */
// Node's words (grpc-js passes them on) for a trainer certificate that fails verification: not signed by a
// trusted CA, expired, not naming the host. (A name mismatch under an explicit server name grpc-js reports
// only as "Failed to connect": that one is retried as an outage.) And gRPC core's, as the Python client's.
const SERVER_NOT_VERIFIED = new RegExp(['unable to verify', 'self[- ]signed certificate', 'certificate signature failure',
  'unable to get (local )?issuer certificate', 'certificate has expired', "does not match certificate's altnames",
  'Hostname Verification Check failed', 'CERTIFICATE_VERIFY_FAILED', 'certificate verify failed'].join('|'));

export class GrpoError extends Error {
  readonly code: grpc.status;
  readonly codeName: string;
  /** The server's message, without the code prefix grpc-js adds to `message`. */
  readonly details: string;
  /** Every decoded google.rpc.Status detail, in order. */
  readonly statusDetails: StatusDetail[];
  /** The fields a google.rpc.BadRequest detail named (INVALID_ARGUMENT); empty when there was none. */
  readonly fieldViolations: FieldViolation[];
  /** How long to wait before retrying, in milliseconds, from a google.rpc.RetryInfo detail; else undefined. */
  readonly retryDelayMs: number | undefined;
  /** The violation types of a google.rpc.PreconditionFailure detail (FAILED_PRECONDITION), such as
   * `DESTINATION_NOT_EMPTY` or `WEIGHTS_INCONSISTENT`; empty when there was none. */
  readonly preconditions: string[];
  /** What a google.rpc.ResourceInfo detail names (NOT_FOUND), such as `{ type: 'step', name: '99' }`;
   * else undefined. */
  readonly resource: { type: string; name: string } | undefined;
  /** What a google.rpc.QuotaFailure detail says is full (RESOURCE_EXHAUSTED): `queue` or `watch_streams`;
   * empty when there was none. */
  readonly quotaSubjects: string[];
  /** The google.rpc.ErrorInfo detail, when the server sent one. */
  readonly errorInfo: ErrorInfo__Output | undefined;
  /** An UNAVAILABLE that is the trainer refusing the client certificate (or wanting one where none was
   * given), which no retry mends: `details` then ends with a parenthesised sentence saying so (src/tlscheck.ts),
   * and submitFile and followSteps reject at once instead of trying again. */
  readonly clientCertificateRefused: boolean;
  /** An UNAVAILABLE that is the trainer's certificate failing verification (not signed by the CA given,
   * not naming the target or the server name), which no retry mends either: submitFile and followSteps
   * reject at once (as the Python client's `server_certificate_unverified`). */
  readonly serverCertificateUnverified: boolean;
  readonly method: string;

  constructor(method: string, code: grpc.status, details: string, statusDetails: StatusDetail[],
    clientCertificateRefused = false) {
    const codeName = grpc.status[code] ?? `CODE_${code}`;
    // As the Python client reads them: every BadRequest, PreconditionFailure and QuotaFailure adds its
    // entries; of RetryInfo and ResourceInfo the last one counts.
    const violations = allDetails<BadRequest__Output>(statusDetails, 'google.rpc.BadRequest')
      .flatMap((b) => b.fieldViolations ?? []).map((v) => ({ field: v.field, description: v.description }));
    // Each violation only when the message does not say it already (the trainer's messages usually do).
    const unsaid = violations.map((v) => `${v.field}: ${v.description}`).filter((text) => !details.includes(text));
    const suffix = unsaid.length ? `: ${unsaid.join('; ')}` : '';
    super(`${method} failed with ${codeName}: ${details}${suffix}`);
    this.name = 'GrpoError';
    this.method = method;
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.statusDetails = statusDetails;
    this.fieldViolations = violations;
    const retry = lastDetail<RetryInfo__Output>(statusDetails, 'google.rpc.RetryInfo');
    // A RetryInfo without a delay says 0 (retry at once), as in Python and Go, not "no RetryInfo".
    this.retryDelayMs = retry === undefined ? undefined : retry.retryDelay
      ? Number(retry.retryDelay.seconds) * 1000 + Math.round(retry.retryDelay.nanos / 1e6)
      : 0;
    this.preconditions = allDetails<PreconditionFailure__Output>(statusDetails, 'google.rpc.PreconditionFailure')
      .flatMap((f) => f.violations ?? []).map((v) => v.type);
    const resource = lastDetail<ResourceInfo__Output>(statusDetails, 'google.rpc.ResourceInfo');
    this.resource = resource ? { type: resource.resourceType, name: resource.resourceName } : undefined;
    this.quotaSubjects = allDetails<QuotaFailure__Output>(statusDetails, 'google.rpc.QuotaFailure')
      .flatMap((q) => q.violations ?? []).map((v) => v.subject);
    this.errorInfo = allDetails<ErrorInfo__Output>(statusDetails, 'google.rpc.ErrorInfo')[0];
    this.clientCertificateRefused = clientCertificateRefused;
    this.serverCertificateUnverified = code === grpc.status.UNAVAILABLE && SERVER_NOT_VERIFIED.test(details);
  }

  /** A TLS handshake that failed in a way no retry mends: the client certificate refused, or the trainer's
   * certificate not verified. */
  get tlsRefused(): boolean {
    return this.clientCertificateRefused || this.serverCertificateUnverified;
  }

  /** The error as the Python client's TrainerError.to_dict gives it (what `grpo --json` prints under
   * "error"; JSON.stringify calls this): `code` and `message`, then, each only when the status carried
   * it, `field_violations` ([{ field, description }]), `retry_delay_seconds` (RetryInfo),
   * `preconditions` (PreconditionFailure types), `details` (the type names of any other detail),
   * `resource` ({ type, name }: ResourceInfo) and `quota_subjects` (QuotaFailure). */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { code: this.codeName, message: this.details };
    if (this.fieldViolations.length) {
      out.field_violations = this.fieldViolations.map((v) => ({ field: v.field, description: v.description }));
    }
    const retry = lastDetail<RetryInfo__Output>(this.statusDetails, 'google.rpc.RetryInfo');
    if (retry) { // as Python adds them: seconds + nanos / 1e9
      out.retry_delay_seconds = retry.retryDelay ? Number(retry.retryDelay.seconds) + retry.retryDelay.nanos / 1e9 : 0;
    }
    if (this.preconditions.length) out.preconditions = this.preconditions;
    const other = this.statusDetails.map((d) => d.type).filter((t) => !DECODED_DETAILS.includes(t));
    if (other.length) out.details = other;
    if (this.resource) out.resource = { type: this.resource.type, name: this.resource.name };
    if (this.quotaSubjects.length) out.quota_subjects = this.quotaSubjects;
    return out;
  }
}

/** The detail types the Python client decodes; it lists any other by its type name. */
export const DECODED_DETAILS = ['google.rpc.BadRequest', 'google.rpc.RetryInfo', 'google.rpc.PreconditionFailure',
  'google.rpc.ResourceInfo', 'google.rpc.QuotaFailure'];

/** The decoded details of one type, in order. */
function allDetails<T>(details: StatusDetail[], type: string): T[] {
  return details.filter((x) => x.type === type && !Buffer.isBuffer(x.value)).map((x) => x.value as T);
}

function lastDetail<T>(details: StatusDetail[], type: string): T | undefined {
  const all = allDetails<T>(details, type);
  return all[all.length - 1];
}

/** Decode the serialized google.rpc.Status of a `grpc-status-details-bin` trailer into its details.
 * Unknown detail types are kept as raw bytes. Returns [] for a missing or undecodable trailer. */
export function decodeStatusDetails(metadata: grpc.Metadata | undefined): StatusDetail[] {
  return decodeStatus(metadata)?.details ?? [];
}

/** The google.rpc.Status of a `grpc-status-details-bin` trailer (its code, message and decoded details),
 * or undefined for a missing or undecodable trailer. */
function decodeStatus(metadata: grpc.Metadata | undefined):
  { code: number; message: string; details: StatusDetail[] } | undefined {
  const raw = metadata?.get(DETAILS_KEY)[0];
  if (!raw || typeof raw === 'string') return undefined;
  const root = googleRpcRoot();
  // protobufjs's built-in google/protobuf/any.proto keeps the snake_case name `type_url`.
  let status: { code?: number; message?: string; details?: Array<{ typeUrl?: string; type_url?: string; value: Uint8Array }> };
  try {
    status = root.lookupType('google.rpc.Status').decode(raw) as unknown as typeof status;
  } catch {
    return undefined;
  }
  const details = (status.details ?? []).map((any) => {
    const url = any.typeUrl ?? any.type_url ?? '';
    const type = url.slice(url.lastIndexOf('/') + 1);
    const value = Buffer.from(any.value);
    try {
      const messageType = root.lookupType(type);
      return { type, value: messageType.toObject(messageType.decode(value), TO_OBJECT) };
    } catch {
      return { type, value };
    }
  });
  return { code: status.code ?? 0, message: status.message ?? '', details };
}

/** Turn a grpc-js error (a ServiceError with code and trailers) into a GrpoError; other errors pass through. */
export function toGrpoError(method: string, err: unknown): unknown {
  const e = err as Partial<grpc.ServiceError>;
  if (e && typeof e.code === 'number' && e.metadata !== undefined) {
    const details = e.details ?? '';
    const status = decodeStatus(e.metadata);
    // Details whose status has another code than the call (a proxy rewrote one of them) are dropped, as
    // the Python client drops them: what the call says is kept (INVALID_ARGUMENT's violations must not be
    // read into an UNAVAILABLE, which may have been stored).
    const agree = status !== undefined && status.code === e.code;
    return new GrpoError(method, e.code, details, agree ? status.details : []);
  }
  return err;
}
