// Why a TLS connection to the trainer fails when grpc-js says only "Failed to connect".
//
// With TLS 1.3 a server checks the client certificate after the client's side of the handshake is done,
// and a trainer (gRPC core) refuses a certificate, or the lack of one, by closing the connection without
// an alert. grpc-js then sees the connection close before the server's HTTP/2 settings and says "No
// connection established. Last error: Failed to connect (TIME)". `clientCertificateRefusal` repeats the
// handshake with Node's `tls` and waits for the server's first bytes (a gRPC server sends its HTTP/2
// settings at once): a server that closes the connection instead refused the client certificate. The
// Python client (grpo_client/tlscheck.py) and the Go client (grpoclient/tlsfailfast.go) do the same.
import * as net from 'node:net';
import * as tls from 'node:tls';

/** How long to wait for the server's first bytes after the handshake: a server silent that long is let be. */
export const FIRST_BYTES_WAIT_MS = 1_000;

/** What grpc-js says of a connection the server closed after the TLS handshake, before its HTTP/2
 * settings (`Last error: Failed to connect (TIME)`): the only message the check is made for. */
export const CLOSED_BEFORE_SETTINGS = /\bLast error: Failed to connect \(/;

/** The TLS settings of the client whose connection is looked into: the PEM data grpc-js was given
 * (`ca` unset = the system's roots), `certFile` the file `cert` was read from (named in the message),
 * and `serverName` the name the trainer's certificate is checked against (`grpc.ssl_target_name_override`)
 * when it is not the target's host. */
export interface TlsCheckOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  certFile?: string;
  serverName?: string;
  /** The limit on connecting and the handshake, in milliseconds (default 5000). */
  timeoutMs?: number;
}

/** [host, port] of a gRPC target "HOST:PORT", "[V6]:PORT", "dns:///HOST:PORT", "ipv4:A.B.C.D:PORT" or
 * "ipv6:[V6]:PORT"; undefined for any other form (unix sockets, several addresses, no port). */
export function hostPort(target: string): [string, number] | undefined {
  for (const scheme of ['dns:///', 'dns:', 'ipv4:', 'ipv6:']) {
    if (target.startsWith(scheme)) {
      target = target.slice(scheme.length);
      break;
    }
  }
  const colon = target.lastIndexOf(':');
  const host = target.slice(0, Math.max(colon, 0));
  const port = target.slice(colon + 1);
  if (colon < 0 || !/^\d+$/.test(port) || Number(port) > 65535 || !host || host.includes(',') || host.includes('/')) {
    return undefined;
  }
  return [host.replace(/^\[/, '').replace(/\]$/, ''), Number(port)];
}

function refusal(certFile: string | undefined, offered: boolean): string {
  if (!offered) return 'it requires a client certificate and none was given';
  return `it did not accept the client certificate ${certFile ?? 'given'} (is it signed by a CA the trainer trusts for clients?)`;
}

/** The OpenSSL reason of a TLS alert from the server about the client certificate (such as
 * TLSV13_ALERT_CERTIFICATE_REQUIRED, SSLV3_ALERT_BAD_CERTIFICATE or TLSV1_ALERT_UNKNOWN_CA), from Node's
 * error code `ERR_SSL_<reason>`; undefined for any other error. */
function certificateAlert(err: NodeJS.ErrnoException): string | undefined {
  const reason = (err.code ?? '').replace(/^ERR_SSL_/, '');
  return reason.includes('ALERT') && (reason.includes('CERTIFICATE') || reason.includes('UNKNOWN_CA')) ? reason : undefined;
}

/** Why the trainer at `target` (TLS, with `options` as the client has them) closes connections, when that is
 * a refused client certificate: "the trainer closed the connection right after the TLS 1.3 handshake: it
 * requires a client certificate and none was given", or "... it did not accept the client certificate
 * FILE (is it signed by a CA the trainer trusts for clients?)"; a server that ends the handshake with a
 * TLS alert about the certificate, or sends one after it, is named the same way ("the trainer refused the
 * TLS handshake (REASON): ..."). Resolves to undefined for anything else (no connection, a handshake that
 * fails for another reason, TLS 1.2 without an alert, a server that answers or stays silent for
 * FIRST_BYTES_WAIT_MS): grpc-js' own message says that. Never rejects. */
export function clientCertificateRefusal(target: string, options: TlsCheckOptions = {}): Promise<string | undefined> {
  const where = hostPort(target);
  if (where === undefined) return Promise.resolve(undefined);
  const [host, port] = where;
  const offered = options.cert !== undefined && options.key !== undefined;
  const closed = `the trainer closed the connection right after the TLS 1.3 handshake: ${refusal(options.certFile, offered)}`;
  return new Promise((resolve) => {
    let socket: tls.TLSSocket | undefined;
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (answer: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(answer);
    };
    let secure = false;
    try {
      socket = tls.connect({
        host, port, ca: options.ca, cert: offered ? options.cert : undefined, key: offered ? options.key : undefined,
        ALPNProtocols: ['h2'],
        // Node checks the certificate against `servername`, else `host`; an IP address is not sent as SNI.
        servername: options.serverName ?? (net.isIP(host) ? undefined : host),
      });
    } catch { // a CA, certificate or key Node does not take: grpc-js said what it made of them
      resolve(undefined);
      return;
    }
    timer = setTimeout(() => finish(undefined), options.timeoutMs ?? 5_000);
    socket.once('secureConnect', () => {
      secure = true;
      if (socket?.getProtocol() !== 'TLSv1.3') {
        finish(undefined);
        return;
      }
      clearTimeout(timer);
      timer = setTimeout(() => finish(undefined), FIRST_BYTES_WAIT_MS); // silent: nothing to say
    });
    socket.on('data', () => finish(undefined)); // it answered: the certificate was accepted
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const alert = certificateAlert(err);
      if (alert !== undefined) finish(`the trainer refused the TLS handshake (${alert}): ${refusal(options.certFile, offered)}`);
      else if (secure && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) finish(closed);
      else finish(undefined); // no connection, a server certificate not trusted, no TLS server, ...
    });
    socket.on('end', () => finish(secure ? closed : undefined));
    socket.on('close', () => finish(secure ? closed : undefined));
  });
}
