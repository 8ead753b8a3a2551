// clientCertificateRefusal (src/tlscheck.ts) and TrainerClient's use of it, against Node TLS servers on
// loopback: one that closes the connection right after a TLS 1.3 handshake when the client certificate is
// missing or not signed by its CA (as a trainer, gRPC core, does), one that sends an alert instead, one that
// answers, one that stays silent, a TLS 1.2 one, one that is no TLS server, and a port nothing listens on.
// The certificates are made with the openssl command (skipped without it). The same against a real mTLS
// trainer: tests/integration/clients/test_typescript_client.py.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { after, before, describe, it } from 'node:test';

import { status } from '@grpc/grpc-js';

import { GrpoError, SubmitError, TrainerClient, clientCertificateRefusal } from '../src';
import { FIRST_BYTES_WAIT_MS, TlsCheckOptions, hostPort } from '../src/tlscheck';

const NONE_GIVEN = 'it requires a client certificate and none was given';
const CLOSED = 'the trainer closed the connection right after the TLS 1.3 handshake';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const skip = hasOpenssl() ? false : 'the openssl command is not installed (it makes the test certificates)';

interface Pki {
  ca: Buffer;
  serverCert: Buffer;
  serverKey: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
  /** A client certificate (and key) of another CA. */
  otherCert: Buffer;
  otherKey: Buffer;
  otherCertFile: string;
}

/** Two CAs; of the first a server certificate for localhost and 127.0.0.1 and a client certificate, of the
 * second a client certificate: PEM files under `dir`, made with the openssl command. */
function makePki(dir: string): Pki {
  const cnf = path.join(dir, 'openssl.cnf');
  fs.writeFileSync(cnf, [
    '[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', 'CN = tlscheck test',
    '[ca]', 'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign',
    '[server]', 'basicConstraints = CA:FALSE', 'subjectAltName = DNS:localhost,IP:127.0.0.1', 'extendedKeyUsage = serverAuth',
    '[client]', 'basicConstraints = CA:FALSE', 'extendedKeyUsage = clientAuth', '',
  ].join('\n'));
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const ca = (name: string) => openssl('req', '-x509', '-config', cnf, '-extensions', 'ca', ...ecKey, '-keyout',
    `${name}-key.pem`, '-out', `${name}.pem`, '-days', '1', '-subj', `/CN=${name}`);
  const leaf = (name: string, caName: string, kind: string) => {
    openssl('req', '-new', '-config', cnf, ...ecKey, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}-key.pem`, '-set_serial',
      String(Date.now()), '-days', '1', '-extfile', cnf, '-extensions', kind, '-out', `${name}.pem`);
  };
  ca('ca');
  ca('other-ca');
  leaf('server', 'ca', 'server');
  leaf('client', 'ca', 'client');
  leaf('other-client', 'other-ca', 'client');
  const read = (name: string) => fs.readFileSync(path.join(dir, name));
  return {
    ca: read('ca.pem'), serverCert: read('server.pem'), serverKey: read('server-key.pem'),
    clientCert: read('client.pem'), clientKey: read('client-key.pem'),
    otherCert: read('other-client.pem'), otherKey: read('other-client-key.pem'), otherCertFile: path.join(dir, 'other-client.pem'),
  };
}

/** Starts `server` on a free loopback port; resolves to "127.0.0.1:PORT". */
async function listen(server: net.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

/** A TLS server that asks for a client certificate signed by `pki.ca` and, as gRPC core does with TLS 1.3,
 * closes the connection right after the handshake, without an alert, when it has none; to a client with one
 * it sends a few bytes (a gRPC server's first bytes are its HTTP/2 settings). `answer` false: it sends
 * nothing to anyone. */
function closingServer(pki: Pki, options: tls.TlsOptions = {}, answer = true): tls.Server {
  return tls.createServer({
    key: pki.serverKey, cert: pki.serverCert, ca: pki.ca, requestCert: true, rejectUnauthorized: false,
    ALPNProtocols: ['h2'], ...options,
  }, (socket) => {
    socket.on('error', () => {});
    if (!socket.authorized) socket.end();
    else if (answer) socket.write('settings');
  });
}

describe('clientCertificateRefusal', { skip }, () => {
  let dir: string;
  let pki: Pki;
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  let closing: string;

  /** `server` started and tracked (its connections destroyed at the end). */
  async function start(server: net.Server): Promise<string> {
    servers.push(server);
    server.on('connection', (s: net.Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
    server.on('secureConnection', (s: net.Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
    return listen(server);
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tlscheck-'));
    pki = makePki(dir);
    closing = await start(closingServer(pki));
  });

  after(() => {
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const client = (extra: TlsCheckOptions = {}): TlsCheckOptions => ({ ca: pki.ca, ...extra });

  it('names a missing client certificate, and one of another CA by its file, when the server closes after the handshake', async () => {
    assert.equal(await clientCertificateRefusal(closing, client()), `${CLOSED}: ${NONE_GIVEN}`);
    assert.equal(await clientCertificateRefusal(closing, client({ cert: pki.otherCert, key: pki.otherKey, certFile: pki.otherCertFile })),
      `${CLOSED}: it did not accept the client certificate ${pki.otherCertFile} (is it signed by a CA the trainer trusts for clients?)`);
    assert.equal(await clientCertificateRefusal(closing, client({ cert: pki.otherCert, key: pki.otherKey })),
      `${CLOSED}: it did not accept the client certificate given (is it signed by a CA the trainer trusts for clients?)`);
    // The name the server's certificate is checked against, as grpc.ssl_target_name_override gives it.
    const [, port] = hostPort(closing)!;
    assert.equal(await clientCertificateRefusal(`dns:///localhost:${port}`, client()), `${CLOSED}: ${NONE_GIVEN}`);
    assert.equal(await clientCertificateRefusal(closing, client({ serverName: 'localhost' })), `${CLOSED}: ${NONE_GIVEN}`);
  });

  it('says nothing of a server that answers, one silent after the handshake, or a certificate it accepts', async () => {
    assert.equal(await clientCertificateRefusal(closing, client({ cert: pki.clientCert, key: pki.clientKey })), undefined);
    const silent = await start(closingServer(pki, {}, false));
    const t0 = Date.now();
    assert.equal(await clientCertificateRefusal(silent, client({ cert: pki.clientCert, key: pki.clientKey })), undefined);
    assert.ok(Date.now() - t0 >= FIRST_BYTES_WAIT_MS - 50, 'it waited for the first bytes');
  });

  it('names a refusal the server sends as a TLS alert', async () => {
    const alerting = await start(tls.createServer({
      key: pki.serverKey, cert: pki.serverCert, ca: pki.ca, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'],
    }, (socket) => socket.write('settings')));
    const none = await clientCertificateRefusal(alerting, client());
    assert.match(none ?? '', /^the trainer refused the TLS handshake \(TLSV13_ALERT_CERTIFICATE_REQUIRED\): it requires a client certificate and none was given$/);
    const other = await clientCertificateRefusal(alerting, client({ cert: pki.otherCert, key: pki.otherKey, certFile: 'other.pem' }));
    // Node's server refuses a certificate of another CA by closing the connection (no alert): a refusal too.
    assert.match(other ?? '', /: it did not accept the client certificate other\.pem \(is it signed by a CA the trainer trusts for clients\?\)$/);
  });

  it('says nothing when there is no connection, no TLS server, TLS 1.2, or a server certificate not trusted', async () => {
    const freed = net.createServer();
    const free = await listen(freed);
    await new Promise((resolve) => freed.close(resolve));
    assert.equal(await clientCertificateRefusal(free, client()), undefined, 'nothing listening');
    const plain = await start(net.createServer((s) => s.once('data', () => s.destroy())));
    assert.equal(await clientCertificateRefusal(plain, client()), undefined, 'no TLS server: it closes on the ClientHello');
    const tls12 = await start(closingServer(pki, { maxVersion: 'TLSv1.2' }));
    assert.equal(await clientCertificateRefusal(tls12, client()), undefined, 'TLS 1.2: a refusal would be an alert');
    assert.equal(await clientCertificateRefusal(closing, {}), undefined, 'the system roots do not trust the server');
    assert.equal(await clientCertificateRefusal(closing, client({ serverName: 'other.test' })), undefined, 'a name the server certificate lacks');
    assert.equal(await clientCertificateRefusal('unix:/tmp/trainer.sock', client()), undefined);
  });
});

describe('TrainerClient and a refused client certificate', { skip }, () => {
  let dir: string;
  let pki: Pki;
  let server: tls.Server;
  let target: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tlscheck-client-'));
    pki = makePki(dir);
    server = closingServer(pki);
    target = await listen(server);
  });

  after(() => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const refused = (why: string) => (err: unknown) => {
    const e = err instanceof SubmitError ? err.cause : err;
    assert.ok(e instanceof GrpoError, String(err));
    assert.equal(e.code, status.UNAVAILABLE);
    assert.ok(e.clientCertificateRefused, e.message);
    assert.ok(e.details.endsWith(`(${CLOSED}: ${why})`), e.details);
    assert.match(e.details, /Failed to connect/);
    assert.deepEqual(Object.keys(e.toJSON()), ['code', 'message']);
    return true;
  };

  it('says why a call fails UNAVAILABLE and marks the error', async () => {
    const none = new TrainerClient(target, { tls: { rootCerts: pki.ca }, timeoutMs: 5_000 });
    const other = new TrainerClient(target, {
      tls: { rootCerts: pki.ca, certChain: pki.otherCert, privateKey: pki.otherKey, certChainFile: pki.otherCertFile },
      timeoutMs: 5_000,
    });
    try {
      await assert.rejects(none.stepStatus(), refused(NONE_GIVEN));
      await assert.rejects(other.listBackends(), refused(`it did not accept the client certificate ${pki.otherCertFile} `
        + '(is it signed by a CA the trainer trusts for clients?)'));
    } finally {
      none.close();
      other.close();
    }
  });

  it('stops submitFile and followSteps at once instead of trying again', async () => {
    const client = new TrainerClient(target, { tls: { rootCerts: pki.ca }, timeoutMs: 5_000 });
    try {
      const retries: number[] = [];
      await assert.rejects(client.submitAll([{ id: 'p1', messages: [{ role: 'user', content: '1+1?' }], answer: '2' }], {
        maxAttempts: 5, onRetry: (_err, _ms, attempt) => retries.push(attempt),
      }), (err: unknown) => {
        assert.ok(err instanceof SubmitError && err.clientCertificateRefused, String(err));
        return refused(NONE_GIVEN)(err);
      });
      assert.deepEqual(retries, [], 'no batch was sent again');
      const reconnects: string[] = [];
      const follow = async () => {
        for await (const _ of client.followSteps({ retryMs: 10, giveUpMs: 3_000, onReconnect: (r) => reconnects.push(r) })) {
          assert.fail('no step report comes');
        }
      };
      await assert.rejects(follow(), refused(NONE_GIVEN));
      assert.deepEqual(reconnects, [], 'it did not reconnect');
    } finally {
      client.close();
    }
  });

  it('leaves other UNAVAILABLE errors as they are', async () => {
    const freed = net.createServer();
    const free = await listen(freed);
    await new Promise((resolve) => freed.close(resolve));
    const clients = [
      new TrainerClient(free, { tls: { rootCerts: pki.ca }, timeoutMs: 5_000 }), // nothing listening
      new TrainerClient(target, { tls: true, timeoutMs: 5_000 }), // the server's certificate is not trusted
    ];
    try {
      for (const c of clients) {
        await assert.rejects(c.stepStatus(), (err: unknown) => {
          assert.ok(err instanceof GrpoError && err.code === status.UNAVAILABLE, String(err));
          assert.ok(!err.clientCertificateRefused && !err.details.includes('client certificate'), err.details);
          return true;
        });
      }
    } finally {
      for (const c of clients) c.close();
    }
  });
});

describe('hostPort', () => {
  it('finds the host and port of the targets grpc-js takes, and only of those that name one address', () => {
    assert.deepEqual(hostPort('127.0.0.1:50051'), ['127.0.0.1', 50051]);
    assert.deepEqual(hostPort('dns:///trainer.example:443'), ['trainer.example', 443]);
    assert.deepEqual(hostPort('dns:trainer:1'), ['trainer', 1]);
    assert.deepEqual(hostPort('ipv4:10.0.0.1:7'), ['10.0.0.1', 7]);
    assert.deepEqual(hostPort('[::1]:50051'), ['::1', 50051]);
    assert.deepEqual(hostPort('ipv6:[::1]:9'), ['::1', 9]);
    for (const t of ['unix:/tmp/trainer.sock', 'trainer', ':50051', 'trainer:http', 'ipv4:1.2.3.4:1,1.2.3.5:1',
      'dns://8.8.8.8/trainer:1', 'trainer:99999']) {
      assert.equal(hostPort(t), undefined, t);
    }
  });
});
