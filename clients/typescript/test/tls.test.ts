// The TLS option against a TLS-only trainer. The pytest wrapper sets GRPO_TLS_TARGET and GRPO_TLS_CA
// (the PEM CA that signed the trainer's certificate for 127.0.0.1).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { describe, it } from 'node:test';

import { status } from '@grpc/grpc-js';

import { GrpoError, TrainerClient } from '../src';

const target = process.env.GRPO_TLS_TARGET;
const caFile = process.env.GRPO_TLS_CA;
const skip = target && caFile ? false : 'GRPO_TLS_TARGET/GRPO_TLS_CA not set: run through test_typescript_client.py';

describe('TrainerClient over TLS', { skip }, () => {
  it('talks to a TLS trainer when given the CA that signed its certificate', async () => {
    const client = new TrainerClient(target!, { tls: { rootCerts: fs.readFileSync(caFile!) } });
    try {
      const res = await client.stepStatus();
      assert.ok(res.run?.state.startsWith('RUN_STATE_'));
    } finally {
      client.close();
    }
  });

  it('fails UNAVAILABLE in plaintext or when the certificate is not trusted', async () => {
    for (const options of [{}, { tls: true as const }]) {
      const client = new TrainerClient(target!, { ...options, timeoutMs: 5_000 });
      try {
        await assert.rejects(client.stepStatus(), (err: unknown) => {
          assert.ok(err instanceof GrpoError);
          assert.equal(err.code, status.UNAVAILABLE);
          return true;
        });
      } finally {
        client.close();
      }
    }
  });
});
