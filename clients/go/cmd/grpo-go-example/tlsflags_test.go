package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"io/ioutil"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeKeyPair writes a self-signed certificate and its PKCS#8 key as PEM files under dir.
func writeKeyPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := ioutil.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

func parseTLSFlags(t *testing.T, args ...string) (*tlsFlags, *flag.FlagSet) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := addTLSFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f, fs
}

// -ca, -cert/-key and -server-name each make the connection TLS with what they name; a certificate and a
// key that are not a pair (each file well formed) are refused before any call.
func TestTLSFlagsMakeTheConfigAndRefuseAKeyOfAnotherCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "client")
	_, otherKey := writeKeyPair(t, dir, "other")

	f, fs := parseTLSFlags(t)
	if cfg, err := f.config(fs); cfg != nil || err != nil {
		t.Fatalf("no TLS flags: config %v, error %v; want plaintext", cfg, err)
	}
	f, fs = parseTLSFlags(t, "-server-name", "grpo-trainer.test")
	if cfg, err := f.config(fs); err != nil || cfg == nil || cfg.ServerName != "grpo-trainer.test" || cfg.RootCAs != nil {
		t.Fatalf("-server-name: config %+v, error %v; want TLS with the system roots checking that name", cfg, err)
	}
	f, fs = parseTLSFlags(t, "-ca", cert, "-cert", cert, "-key", key)
	if cfg, err := f.config(fs); err != nil || cfg == nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 ||
		cfg.ServerName != "" {
		t.Fatalf("-ca -cert -key: config %+v, error %v; want the CA and the client certificate", cfg, err)
	}
	f, fs = parseTLSFlags(t, "-cert", cert, "-key", otherKey)
	_, err := f.config(fs)
	bad, ok := err.(*tlsFlagError)
	if !ok || bad.local || !strings.HasPrefix(bad.msg, "-cert "+cert+", -key "+otherKey+": not a certificate and its "+
		"private key: ") {
		t.Fatalf("a key of another certificate: error %v; want a usage error naming both files", err)
	}
}
