package grpoclient

// Dial over TLS gives up at once on a handshake failure no retry can mend, instead of retrying it until
// DialTimeout runs out.
//
// grpc-go 1.33 has FailOnNonTempDialError for this, but it cannot be used here: it also makes a refused
// connection (*net.OpError of ECONNREFUSED, whose Temporary() is false) fail the dial at once, and a
// trainer that is not up yet must be waited for. So the TLS credentials are wrapped instead: a permanent
// failure is recorded and ends the dial's context, and Dial returns it. Everything else (a refused
// connection, a reset, a timeout) is retried by grpc-go as before.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// HandshakeError is a TLS handshake with the trainer that failed in a way no retry can mend: its
// certificate is not signed by a trusted CA (x509.UnknownAuthorityError), does not name the host or
// Options.TLS.ServerName (x509.HostnameError), or is invalid (x509.CertificateInvalidError: expired, not
// for a server, ...); or the trainer ended the handshake with a TLS alert (a *net.OpError with Op "remote
// error"), as a TLS 1.2 server does when it refuses the client certificate. Dial returns it as soon as the
// handshake fails; Err is the TLS error (errors.As finds the x509 error types in it).
//
// With TLS 1.3 a server checks the client certificate after the client's side of the handshake is done,
// and the trainer (gRPC core) refuses one by closing the connection without an alert. So when the server
// asked for a client certificate in a TLS 1.3 handshake, the first bytes after it are awaited (at most
// clientCertCheckWait): a server that closes the connection then refused the certificate, and Err is a
// *ClientCertificateRefusedError.
type HandshakeError struct {
	Err error
}

// Error is the text grpc-go gives the same failure when it waits it out ("connection error: desc =
// \"transport: authentication handshake failed: x509: ...\""), without the "context deadline exceeded: "
// it puts in front then.
func (e *HandshakeError) Error() string {
	return fmt.Sprintf("connection error: desc = %q", "transport: authentication handshake failed: "+e.Err.Error())
}

// Unwrap gives the TLS error.
func (e *HandshakeError) Unwrap() error { return e.Err }

// permanentTLSError reports whether err, from a TLS handshake, cannot go away by trying again: the
// server's certificate is not trusted, does not name the server or is invalid, there are no roots to check
// it against, or the server ended the handshake with an alert other than internal_error (which a server
// may send for a passing problem of its own).
func permanentTLSError(err error) bool {
	for _, target := range []interface{}{
		&x509.UnknownAuthorityError{}, &x509.HostnameError{}, &x509.CertificateInvalidError{},
		&x509.SystemRootsError{}, &x509.ConstraintViolationError{}, &x509.UnhandledCriticalExtension{},
		new(x509.InsecureAlgorithmError),
	} {
		if errors.As(err, target) {
			return true
		}
	}
	// crypto/tls reports an alert from the peer as &net.OpError{Op: "remote error", Err: alert}.
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && op.Err != nil && op.Err.Error() != "tls: internal error"
}

// dialFailure is where the credentials of one Dial record the first permanent TLS failure; stop ends that
// Dial's wait for the connection.
type dialFailure struct {
	mu   sync.Mutex
	err  error
	stop context.CancelFunc
}

// record keeps err (the first one) and stops the dial.
func (f *dialFailure) record(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
	f.stop()
}

// failure is the recorded failure as a *HandshakeError, or nil.
func (f *dialFailure) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		return nil
	}
	return &HandshakeError{Err: f.err}
}

// ClientCertificateRefusedError is a TLS 1.3 server that asked for a client certificate and closed the
// connection right after the handshake, before sending anything: it did not accept the certificate
// offered, or wanted one where none was given. Err is what reading the connection gave (io.EOF, a reset,
// or a TLS alert from a server that sends one).
type ClientCertificateRefusedError struct {
	Offered bool // a client certificate was sent
	Err     error
}

func (e *ClientCertificateRefusedError) Error() string {
	if e.Offered {
		return fmt.Sprintf("the server closed the connection after the TLS 1.3 handshake: it did not accept the "+
			"client certificate given (not signed by a CA it trusts for clients?) (%v)", e.Err)
	}
	return fmt.Sprintf("the server closed the connection after the TLS 1.3 handshake: it requires a client "+
		"certificate and none was given (%v)", e.Err)
}

// Unwrap gives what reading the connection gave.
func (e *ClientCertificateRefusedError) Unwrap() error { return e.Err }

// clientCertCheckWait bounds the wait for a server's first bytes after a TLS 1.3 handshake in which it asked
// for a client certificate. A gRPC server sends its SETTINGS at once, and one that refuses the certificate
// closes the connection at once; a server still silent after this is let through as it is.
const clientCertCheckWait = time.Second

// failFastTLS is TLS TransportCredentials (config, as given to credentials.NewTLS) that record a permanent
// failure of the handshake in failed.
type failFastTLS struct {
	config *tls.Config
	credentials.TransportCredentials
	failed *dialFailure
}

// newFailFastTLS is TLS credentials of config that record a permanent failure in failed.
func newFailFastTLS(config *tls.Config, failed *dialFailure) failFastTLS {
	return failFastTLS{config: config, TransportCredentials: credentials.NewTLS(config), failed: failed}
}

// ClientHandshake is the TLS handshake; a permanent failure is recorded, which ends the dial. When the
// server asked for a client certificate in a TLS 1.3 handshake, it waits for the server's first bytes (see
// HandshakeError) and hands them on.
func (c failFastTLS) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg := c.config.Clone()
	asked, offered := false, false
	certs := cfg.Certificates
	if cfg.GetClientCertificate == nil { // the choice crypto/tls makes from Certificates, noting the request
		cfg.GetClientCertificate = func(req *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			for i := range certs {
				if req.SupportsCertificate(&certs[i]) == nil {
					offered = true
					return &certs[i], nil
				}
			}
			return new(tls.Certificate), nil
		}
	}
	conn, info, err := credentials.NewTLS(cfg).ClientHandshake(ctx, authority, raw)
	if err != nil {
		if permanentTLSError(err) {
			c.failed.record(err)
		}
		return conn, info, err
	}
	// asked and offered were set by the handshake, which has returned.
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !asked || !ok || tlsInfo.State.Version != tls.VersionTLS13 {
		return conn, info, nil
	}
	first, err := firstBytes(ctx, conn)
	if err != nil {
		conn.Close()
		if ctx.Err() == nil {
			err = &ClientCertificateRefusedError{Offered: offered, Err: err}
			c.failed.record(err)
		}
		return nil, nil, err
	}
	return &replayConn{Conn: conn, pending: first}, info, nil
}

// firstBytes reads what the server sends first, waiting at most clientCertCheckWait (and not past ctx's
// deadline): nil with no error when it sends nothing in that time; an error when it closes the connection.
func firstBytes(ctx context.Context, conn net.Conn) ([]byte, error) {
	deadline := time.Now().Add(clientCertCheckWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	buf := make([]byte, 16<<10)
	n, err := conn.Read(buf)
	if clear := conn.SetReadDeadline(time.Time{}); clear != nil && err == nil {
		err = clear
	}
	var ne net.Error
	if n == 0 && err != nil && errors.As(err, &ne) && ne.Timeout() {
		return nil, nil // silent so far: crypto/tls keeps a timed-out read's partial record for the next
	}
	if n > 0 {
		return buf[:n], nil
	}
	return nil, err
}

// replayConn is a connection whose pending bytes, already read from it, are read first.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// Clone is a failFastTLS too (grpc-go clones the credentials it dials with), recording in the same place.
func (c failFastTLS) Clone() credentials.TransportCredentials {
	return failFastTLS{config: c.config.Clone(), TransportCredentials: c.TransportCredentials.Clone(), failed: c.failed}
}

// withDialFailure is ctx with a dialFailure whose record ends it.
func withDialFailure(ctx context.Context) (context.Context, *dialFailure) {
	ctx, stop := context.WithCancel(ctx)
	return ctx, &dialFailure{stop: stop}
}
