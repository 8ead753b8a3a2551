// decodeStatusDetails and GrpoError on hand-built google.rpc.Status trailers (no server needed).
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';

import { Metadata, status } from '@grpc/grpc-js';

import { GrpoError, SubmitError, decodeStatusDetails } from '../src';
import { toGrpoError } from '../src/errors';
import { googleRpcRoot } from '../src/protos';

function trailer(details: Array<[string, Record<string, unknown>]>): Metadata {
  const root = googleRpcRoot();
  const any = details.map(([type, value]) => {
    const t = root.lookupType(type);
    // Both spellings: protobufjs's built-in Any names the field `type_url`.
    const typeUrl = `type.googleapis.com/${type}`;
    return { typeUrl, type_url: typeUrl, value: t.encode(t.fromObject(value)).finish() };
  });
  const Status = root.lookupType('google.rpc.Status');
  const md = new Metadata();
  md.set('grpc-status-details-bin', Buffer.from(Status.encode(Status.fromObject({ code: 3, message: 'bad', details: any })).finish()));
  return md;
}

describe('status details', () => {
  it('decodes BadRequest field violations and RetryInfo into the typed error', () => {
    const md = trailer([
      ['google.rpc.BadRequest', { fieldViolations: [{ field: 'prompts[2].id', description: 'duplicate id' }] }],
      ['google.rpc.RetryInfo', { retryDelay: { seconds: 2, nanos: 500_000_000 } }],
    ]);
    const err = new GrpoError('SubmitPrompts', status.INVALID_ARGUMENT, 'bad', decodeStatusDetails(md));
    assert.deepEqual(err.fieldViolations, [{ field: 'prompts[2].id', description: 'duplicate id' }]);
    assert.equal(err.retryDelayMs, 2500);
    assert.deepEqual(err.statusDetails.map((d) => d.type), ['google.rpc.BadRequest', 'google.rpc.RetryInfo']);
    assert.match(err.message, /SubmitPrompts failed with INVALID_ARGUMENT: bad: prompts\[2\]\.id: duplicate id/);
  });

  it('does not repeat in its message the violations the server message already says', () => {
    // The trainer's message spells its violations already: "invalid request: ids: required: ...".
    const md = trailer([
      ['google.rpc.BadRequest', { fieldViolations: [
        { field: 'ids', description: 'required: 1 to 1000 ids' },
        { field: 'page_size', description: 'must be >= 0' },
      ] }],
    ]);
    const err = new GrpoError('CancelPrompts', status.INVALID_ARGUMENT, 'invalid request: ids: required: 1 to 1000 ids',
      decodeStatusDetails(md));
    assert.equal(err.message,
      'CancelPrompts failed with INVALID_ARGUMENT: invalid request: ids: required: 1 to 1000 ids: page_size: must be >= 0');
    assert.equal(err.fieldViolations.length, 2); // the list keeps both
  });

  it('decodes PreconditionFailure violation types', () => {
    const md = trailer([
      ['google.rpc.PreconditionFailure', { violations: [{ type: 'WEIGHTS_INCONSISTENT', subject: 'run', description: 'restart' }] }],
    ]);
    const err = new GrpoError('ExportCheckpoint', status.FAILED_PRECONDITION, 'step 3 failed', decodeStatusDetails(md));
    assert.deepEqual(err.preconditions, ['WEIGHTS_INCONSISTENT']);
    assert.deepEqual(err.fieldViolations, []);
  });

  it('decodes ResourceInfo and QuotaFailure', () => {
    const notFound = new GrpoError('StepStatus', status.NOT_FOUND, 'step 99 has not run', decodeStatusDetails(trailer([
      ['google.rpc.ResourceInfo', { resourceType: 'step', resourceName: '99', description: 'step 99 has not run' }],
    ])));
    assert.deepEqual(notFound.resource, { type: 'step', name: '99' });
    assert.deepEqual(notFound.quotaSubjects, []);
    const full = new GrpoError('SubmitPrompts', status.RESOURCE_EXHAUSTED, 'the prompt queue is full', decodeStatusDetails(trailer([
      ['google.rpc.RetryInfo', { retryDelay: { seconds: 1 } }],
      ['google.rpc.QuotaFailure', { violations: [{ subject: 'queue', description: 'full' }] }],
    ])));
    assert.deepEqual(full.quotaSubjects, ['queue']);
    assert.equal(full.resource, undefined);
    assert.equal(full.retryDelayMs, 1000);
  });

  it('keeps an unknown detail type as raw bytes instead of failing', () => {
    const root = googleRpcRoot();
    const Status = root.lookupType('google.rpc.Status');
    const md = new Metadata();
    md.set('grpc-status-details-bin', Buffer.from(Status.encode(Status.fromObject({
      code: 13, details: [{ typeUrl: 'type.googleapis.com/acme.Custom', type_url: 'type.googleapis.com/acme.Custom', value: Buffer.from([1, 2, 3]) }],
    })).finish()));
    const details = decodeStatusDetails(md);
    assert.equal(details.length, 1);
    assert.equal(details[0].type, 'acme.Custom');
    assert.deepEqual(details[0].value, Buffer.from([1, 2, 3]));
  });

  it('serializes as the Python client\'s TrainerError.to_dict, member for member and in its order', () => {
    const err = new GrpoError('SubmitPrompts', status.RESOURCE_EXHAUSTED, 'full', decodeStatusDetails(trailer([
      ['google.rpc.QuotaFailure', { violations: [{ subject: 'queue' }] }],
      ['google.rpc.ResourceInfo', { resourceType: 'step', resourceName: '9' }],
      ['google.rpc.ErrorInfo', { reason: 'QUEUE_FULL' }],
      ['google.rpc.PreconditionFailure', { violations: [{ type: 'RUN_STATE' }] }],
      ['google.rpc.RetryInfo', { retryDelay: { seconds: 2, nanos: 500_000_000 } }],
      ['google.rpc.BadRequest', { fieldViolations: [{ field: 'prompts', description: 'too many' }] }],
    ])));
    // json.dumps(TrainerError(...).to_dict(), separators=(",", ":")) for the same status; a detail type it
    // does not decode is listed by name.
    assert.equal(JSON.stringify(err), '{"code":"RESOURCE_EXHAUSTED","message":"full","field_violations":'
      + '[{"field":"prompts","description":"too many"}],"retry_delay_seconds":2.5,"preconditions":["RUN_STATE"],'
      + '"details":["google.rpc.ErrorInfo"],"resource":{"type":"step","name":"9"},"quota_subjects":["queue"]}');
    assert.equal(JSON.stringify(new GrpoError('StepStatus', status.UNAVAILABLE, 'down', [])),
      '{"code":"UNAVAILABLE","message":"down"}');
  });

  it('says a refusal for a full store disk is not a full queue', () => {
    for (const [subject, want] of [
      ['store', "Batch 2 was not queued. The 2 prompts of batch 1 (prompts 1-2) were accepted before it; the trainer keeps "
        + "them. The trainer's store disk stayed full through the retries: once its operator has made room, run the same "
        + 'command again'],
      ['queue', "The trainer's queue stayed full through the retries: once it has room, run the same command again"],
    ]) {
      const cause = new GrpoError('SubmitPrompts', status.RESOURCE_EXHAUSTED, 'full', decodeStatusDetails(trailer([
        ['google.rpc.RetryInfo', { retryDelay: { seconds: 60 } }],
        ['google.rpc.QuotaFailure', { violations: [{ subject, description: 'full' }] }],
      ])));
      const err = new SubmitError(cause, {
        batchIndex: 1, batches: 2, batchSize: 2, batchFirst: 2, batchPrompts: 2, aloneTooLarge: [], resized: [],
        acceptedIds: ['a', 'b'], refusedBatchQueued: false, located: [], source: undefined, lines: undefined, totalPrompts: 4,
      });
      assert.ok(err.progress().includes(want), `${subject}: ${err.progress()}`);
    }
  });

  it('reads several details of a type as the Python client does: entries added up, the last delay', () => {
    const err = new GrpoError('SubmitPrompts', status.INVALID_ARGUMENT, 'bad', decodeStatusDetails(trailer([
      ['google.rpc.BadRequest', { fieldViolations: [{ field: 'prompts[0].id', description: 'first' }] }],
      ['google.rpc.RetryInfo', { retryDelay: { seconds: 1 } }],
      ['google.rpc.BadRequest', { fieldViolations: [{ field: 'prompts[0].answer', description: 'second' }] }],
      ['google.rpc.RetryInfo', { retryDelay: { seconds: 2 } }],
      ['google.rpc.QuotaFailure', { violations: [{ subject: 'queue' }] }],
      ['google.rpc.QuotaFailure', { violations: [{ subject: 'store' }] }],
    ])));
    assert.deepEqual(err.fieldViolations.map((v) => v.description), ['first', 'second']);
    assert.equal(err.retryDelayMs, 2000);
    assert.deepEqual(err.quotaSubjects, ['queue', 'store']);
    assert.match(JSON.stringify(err), /"retry_delay_seconds":2,/);
  });

  it('reads a RetryInfo without a delay as a delay of 0, not as no RetryInfo', () => {
    const err = new GrpoError('SubmitPrompts', status.RESOURCE_EXHAUSTED, 'full', decodeStatusDetails(trailer([
      ['google.rpc.RetryInfo', {}],
    ])));
    assert.equal(err.retryDelayMs, 0);
    assert.match(JSON.stringify(err), /"retry_delay_seconds":0/);
  });

  it('drops details whose status contradicts the call, as the Python client does', () => {
    const md = trailer([['google.rpc.BadRequest', { fieldViolations: [{ field: 'id', description: 'x' }] }]]); // code 3, 'bad'
    const rewritten = toGrpoError('SubmitPrompts', { code: status.UNAVAILABLE, details: 'bad', metadata: md }) as GrpoError;
    assert.equal(rewritten.code, status.UNAVAILABLE);
    assert.deepEqual(rewritten.fieldViolations, []);
    assert.deepEqual(rewritten.statusDetails, []);
    const agreeing = toGrpoError('SubmitPrompts', { code: status.INVALID_ARGUMENT, details: 'bad', metadata: md }) as GrpoError;
    assert.deepEqual(agreeing.fieldViolations, [{ field: 'id', description: 'x' }]);
  });

  it('returns no details when the trailer is missing', () => {
    assert.deepEqual(decodeStatusDetails(new Metadata()), []);
    const err = new GrpoError('StepStatus', status.UNAVAILABLE, 'down', []);
    assert.equal(err.retryDelayMs, undefined);
    assert.deepEqual(err.fieldViolations, []);
    assert.deepEqual(err.preconditions, []);
  });
});
