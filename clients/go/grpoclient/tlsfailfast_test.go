package grpoclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// testCA is a throwaway CA that signs certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf is a certificate the CA signs for 127.0.0.1 and `names`, for a server or a client.
func (ca *testCA) leaf(t *testing.T, usage x509.ExtKeyUsage, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: names, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsServer accepts connections on loopback and runs the TLS handshake of cfg on each (no gRPC: a
// failed handshake never gets that far); it returns the address.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestDialGivesUpAtOnceOnATLSFailureNoRetryMends(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	server := ca.leaf(t, x509.ExtKeyUsageServerAuth, "trainer.test")
	cases := []struct {
		name   string
		server *tls.Config
		client *tls.Config
		want   string
		as     interface{}
	}{
		{"a CA the client does not trust", &tls.Config{Certificates: []tls.Certificate{server}},
			&tls.Config{RootCAs: other.pool}, "x509: certificate signed by unknown authority", &x509.UnknownAuthorityError{}},
		{"a certificate for another name", &tls.Config{Certificates: []tls.Certificate{server}},
			&tls.Config{RootCAs: ca.pool, ServerName: "elsewhere.test"}, "x509: certificate is valid for trainer.test, not elsewhere.test",
			&x509.HostnameError{}},
		{"a TLS 1.2 server refusing a missing client certificate", &tls.Config{Certificates: []tls.Certificate{server},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool, MaxVersion: tls.VersionTLS12},
			&tls.Config{RootCAs: ca.pool, ServerName: "trainer.test"}, "remote error: tls: bad certificate", new(*net.OpError)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := tlsServer(t, c.server)
			start := time.Now()
			_, err := Dial(context.Background(), addr, Options{TLS: c.client, DialTimeout: 10 * time.Second})
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("Dial took %s (waited for DialTimeout): %v", took, err)
			}
			var he *HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("err = %#v, want a *HandshakeError", err)
			}
			want := `connection error: desc = "transport: authentication handshake failed: ` + c.want
			if !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("err = %q, want it to start with %q", err, want)
			}
			if !errors.As(err, c.as) {
				t.Fatalf("errors.As(%v, %T) = false", err, c.as)
			}
		})
	}
}

func TestDialOverTLSWaitsForARefusedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens: connection refused, as from a trainer not up yet
	start := time.Now()
	_, err = Dial(context.Background(), addr, Options{TLS: &tls.Config{}, DialTimeout: 1500 * time.Millisecond})
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Fatalf("Dial gave up after %s, before DialTimeout: %v", took, err)
	}
	var he *HandshakeError
	if err == nil || errors.As(err, &he) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want the refused connection after the timeout", err)
	}
}

func TestFailFastTLSClonesIntoAFailFastTLS(t *testing.T) {
	failed := &dialFailure{stop: func() {}}
	var creds credentials.TransportCredentials = failFastTLS{TransportCredentials: credentials.NewTLS(&tls.Config{}), failed: failed}
	clone, ok := creds.Clone().(failFastTLS)
	if !ok || clone.failed != failed {
		t.Fatalf("Clone() = %#v, want a failFastTLS recording in the same place", creds.Clone())
	}
}

// mtlsGRPCServer is a gRPC server on loopback over TLS 1.3 that requires a client certificate signed by
// ca; it returns the address.
func mtlsGRPCServer(t *testing.T, ca *testCA) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, x509.ExtKeyUsageServerAuth, "trainer.test")},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool, MinVersion: tls.VersionTLS13}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// closingTLS13Server asks for a client certificate in a TLS 1.3 handshake and then, as gRPC core does when
// the certificate is not one it accepts, closes the TCP connection without an alert; with accept it
// writes "hello" instead. It returns the address.
func closingTLS13Server(t *testing.T, ca *testCA, accept bool) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, x509.ExtKeyUsageServerAuth, "trainer.test")},
		ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				c := tls.Server(raw, cfg)
				if c.Handshake() != nil {
					return
				}
				if accept {
					_, _ = c.Write([]byte("hello"))
					time.Sleep(5 * time.Second)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestDialGivesUpAtOnceWhenATLS13ServerRefusesTheClientCertificate(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	client := ca.leaf(t, x509.ExtKeyUsageClientAuth)
	stranger := other.leaf(t, x509.ExtKeyUsageClientAuth)
	grpcServer, silentClose := mtlsGRPCServer(t, ca), closingTLS13Server(t, ca, false)
	cases := []struct {
		name    string
		addr    string
		certs   []tls.Certificate
		offered bool
	}{
		{"no certificate, a server that sends an alert", grpcServer, nil, false},
		{"a certificate of another CA, a server that sends an alert", grpcServer, []tls.Certificate{stranger}, true},
		{"no certificate, a server that closes without an alert (gRPC core)", silentClose, nil, false},
		{"a certificate, a server that closes without an alert (gRPC core)", silentClose, []tls.Certificate{client}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: ca.pool, ServerName: "trainer.test", Certificates: c.certs}
			start := time.Now()
			_, err := Dial(context.Background(), c.addr, Options{TLS: cfg, DialTimeout: 20 * time.Second})
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("Dial took %s (waited for DialTimeout): %v", took, err)
			}
			var he *HandshakeError
			var refused *ClientCertificateRefusedError
			if !errors.As(err, &he) || !errors.As(err, &refused) || refused.Offered != c.offered {
				t.Fatalf("err = %#v (%v), want a *HandshakeError of a *ClientCertificateRefusedError with Offered %v",
					err, err, c.offered)
			}
			want := "the server closed the connection after the TLS 1.3 handshake: it requires a client certificate and none was given"
			if c.offered {
				want = "the server closed the connection after the TLS 1.3 handshake: it did not accept the client certificate given"
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %q, want it to say %q", err, want)
			}
		})
	}
}

func TestDialPresentsAnAcceptedClientCertificateToATLS13Server(t *testing.T) {
	ca := newTestCA(t)
	cfg := &tls.Config{RootCAs: ca.pool, ServerName: "trainer.test",
		Certificates: []tls.Certificate{ca.leaf(t, x509.ExtKeyUsageClientAuth)}}
	// The server's first bytes, read to see that it kept the connection, reach gRPC: the dial gets READY.
	client, err := Dial(context.Background(), mtlsGRPCServer(t, ca), Options{TLS: cfg, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
}

func TestTheCheckHandsOnTheServersFirstBytesOrLetsASilentServerThrough(t *testing.T) {
	ca := newTestCA(t)
	certs := []tls.Certificate{ca.leaf(t, x509.ExtKeyUsageClientAuth)}
	creds := newFailFastTLS(&tls.Config{RootCAs: ca.pool, ServerName: "trainer.test", Certificates: certs},
		&dialFailure{stop: func() {}})
	handshake := func(addr string) net.Conn {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn, _, err := creds.ClientHandshake(context.Background(), addr, raw)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	readAll := func(conn net.Conn, n int) string {
		buf := make([]byte, n)
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatal(err)
		}
		return string(buf)
	}
	if got := readAll(handshake(closingTLS13Server(t, ca, true)), 5); got != "hello" {
		t.Fatalf("read %q after the handshake, want the server's first bytes %q", got, "hello")
	}

	// A server that accepts the certificate but says nothing: after clientCertCheckWait the connection is
	// handed on as it is, and what the server sends later is read from it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		defer raw.Close()
		c := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, x509.ExtKeyUsageServerAuth, "trainer.test")},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool, MinVersion: tls.VersionTLS13})
		if c.Handshake() != nil {
			return
		}
		time.Sleep(clientCertCheckWait + 500*time.Millisecond)
		_, _ = c.Write([]byte("later"))
		time.Sleep(5 * time.Second)
	}()
	start := time.Now()
	conn := handshake(ln.Addr().String())
	if took := time.Since(start); took < clientCertCheckWait || took > clientCertCheckWait+2*time.Second {
		t.Fatalf("the handshake of a silent server took %s, want about clientCertCheckWait (%s)", took, clientCertCheckWait)
	}
	if got := readAll(conn, 5); got != "later" {
		t.Fatalf("read %q, want %q", got, "later")
	}
}
