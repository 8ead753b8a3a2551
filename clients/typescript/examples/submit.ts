// Submit one arithmetic prompt to a trainer and print its run status.
//   node dist/examples/submit.js --target 127.0.0.1:50051 [--token T] [--tls] [--bad]
// --bad sends a prompt with an invalid role to show how field-level errors come back. A bad flag is one
// "error: ..." line and exit status 2.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import { GrpoError, TrainerClient } from '../src';

async function main(): Promise<number> {
  try {
    return await submit();
  } catch (err) {
    // parseArgs' errors (an unknown flag, a missing value) and a token the client refuses: exit status 2.
    if (err instanceof TypeError) {
      console.error(`error: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

async function submit(): Promise<number> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', default: '127.0.0.1:50051' },
      token: { type: 'string' },
      tls: { type: 'boolean', default: false },
      bad: { type: 'boolean', default: false },
    },
  });
  const client = new TrainerClient(values.target!, { token: values.token, tls: values.tls });
  try {
    const res = await client.submitPrompts([{
      id: `example-${randomUUID()}`,
      messages: [{ role: values.bad ? 'robot' : 'user', content: 'What is 17 + 25?' }],
      answer: '42',
      rewards: [{ backend: 'math', weight: 1 }],
    }]);
    console.log(`accepted ${res.acceptedIds.length} prompt(s): ${res.acceptedIds.join(', ')}; queue depth ${res.queueDepth}`);
    const status = await client.stepStatus();
    console.log(`run state: ${status.run?.state}, latest step ${status.run?.latestStep}`);
    if (status.step) {
      console.log(`step ${status.step.step} ${status.step.state}: reward mean ${status.step.metrics?.rewardMean}`);
    }
    return 0;
  } catch (err) {
    if (err instanceof GrpoError) {
      console.error(`${err.codeName}: ${err.details}`);
      for (const v of err.fieldViolations) console.error(`  ${v.field}: ${v.description}`);
      if (err.retryDelayMs !== undefined) console.error(`  retry after ${err.retryDelayMs} ms`);
      return 1;
    }
    throw err;
  } finally {
    client.close();
  }
}

main().then((code) => { process.exitCode = code; });
