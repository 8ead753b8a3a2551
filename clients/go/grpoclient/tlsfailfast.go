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
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"
)

// HandshakeError is a TLS handshake with the trainer that failed in a way no retry can mend: its
// certificate is not signed by a trusted CA (x509.UnknownAuthorityError), does not name the host or
// Options.TLS.ServerName (x509.HostnameError), or is invalid (x509.CertificateInvalidError: expired, not
// for a server, ...); or the trainer ended the handshake with a TLS alert (a *net.OpError with Op "remote
// error"), as a TLS 1.2 server does when it refuses the client certificate. Dial returns it as soon as the
// handshake fails; Err is the TLS error (errors.As finds the x509 error types in it).
//
// With TLS 1.3 a server checks the client certificate after the client's side of the handshake is done;
// the trainer (gRPC core) then closes the connection without an alert, which looks the same as a trainer
// going away, so Dial waits that out (DialTimeout) and names the failure that came last.
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

// failFastTLS is TLS TransportCredentials that record a permanent failure of the handshake in failed.
type failFastTLS struct {
	credentials.TransportCredentials
	failed *dialFailure
}

// ClientHandshake is the TLS handshake; a permanent failure is recorded, which ends the dial.
func (c failFastTLS) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil && permanentTLSError(err) {
		c.failed.record(err)
	}
	return conn, info, err
}

// Clone is a failFastTLS too (grpc-go clones the credentials it dials with), recording in the same place.
func (c failFastTLS) Clone() credentials.TransportCredentials {
	return failFastTLS{TransportCredentials: c.TransportCredentials.Clone(), failed: c.failed}
}

// withDialFailure is ctx with a dialFailure whose record ends it.
func withDialFailure(ctx context.Context) (context.Context, *dialFailure) {
	ctx, stop := context.WithCancel(ctx)
	return ctx, &dialFailure{stop: stop}
}
