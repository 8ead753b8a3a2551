package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tlsFlags are the global flags that make the connection TLS, as `grpo`'s --tls, --ca, --cert, --key and
// --server-name: -ca, -cert (with -key) and -server-name each imply -tls.
type tlsFlags struct {
	on                        bool
	ca, cert, key, serverName string
	serverNameSet             bool // -server-name given (an empty name is refused, not ignored)
}

// addTLSFlags defines the TLS flags on fs.
func addTLSFlags(fs *flag.FlagSet) *tlsFlags {
	f := &tlsFlags{}
	fs.BoolVar(&f.on, "tls", false, "connect with TLS (system roots unless -ca)")
	fs.StringVar(&f.ca, "ca", "", "PEM file of the CA to trust (implies -tls)")
	fs.StringVar(&f.cert, "cert", "", "PEM file of a client certificate, for a trainer that requires one (mTLS; "+
		"with -key; implies -tls)")
	fs.StringVar(&f.key, "key", "", "PEM file of the -cert certificate's private key")
	fs.StringVar(&f.serverName, "server-name", "", "the name the trainer's certificate must carry when it is not "+
		"-target's host, e.g. through kubectl port-forward (implies -tls)")
	return f
}

// tlsFlagError is a TLS flag `grpo` refuses before any call: a bad command line or file content (USAGE,
// exit status 2), or a file that cannot be read (local: LOCAL, exit status 1).
type tlsFlagError struct {
	msg   string
	local bool
}

func (e *tlsFlagError) Error() string { return e.msg }

// config is the TLS config the flags ask for, nil for plaintext. The files are checked as `grpo` checks
// them (clients/python/grpo_client/cli.py, _check_tls_files), in its order and words: -cert and -key
// together; each file readable and holding the PEM block it should (a key unencrypted). Go also parses
// them here, so a CA or a certificate and key pair that do not parse are refused too (as USAGE).
func (f *tlsFlags) config(fs *flag.FlagSet) (*tls.Config, error) {
	fs.Visit(func(fl *flag.Flag) { f.serverNameSet = f.serverNameSet || fl.Name == "server-name" })
	if f.serverNameSet && strings.TrimSpace(f.serverName) == "" {
		return nil, &tlsFlagError{msg: "-server-name: must not be empty"}
	}
	if (f.cert == "") != (f.key == "") {
		given, missing := "-cert", "-key"
		if f.cert == "" {
			given, missing = "-key", "-cert"
		}
		return nil, &tlsFlagError{msg: given + " needs " + missing + ": a client certificate and its private key go together"}
	}
	if !f.on && f.ca == "" && f.cert == "" && !f.serverNameSet {
		return nil, nil
	}
	files := []struct {
		flag, path, marker, what string
	}{
		{"-ca", f.ca, "-----BEGIN CERTIFICATE-----", "a CA file holds -----BEGIN CERTIFICATE----- blocks"},
		{"-cert", f.cert, "-----BEGIN CERTIFICATE-----", "a certificate file holds -----BEGIN CERTIFICATE----- blocks"},
		{"-key", f.key, "PRIVATE KEY-----", "a key file holds a -----BEGIN PRIVATE KEY----- block, or an EC or RSA " +
			"one, unencrypted"},
	}
	pems := map[string][]byte{}
	for _, file := range files {
		if file.path == "" {
			continue
		}
		pem, err := ioutil.ReadFile(file.path)
		if err != nil {
			return nil, &tlsFlagError{msg: fmt.Sprintf("%s: cannot read %s: %s", file.flag, file.path, strerror(err)),
				local: true}
		}
		if !bytes.Contains(pem, []byte(file.marker)) || (file.flag == "-key" && bytes.Contains(pem, []byte("ENCRYPTED"))) {
			what := "PEM certificate"
			if file.flag == "-key" {
				what = "unencrypted private key"
			}
			return nil, &tlsFlagError{msg: fmt.Sprintf("%s %s: no %s in it (%s)", file.flag, file.path, what, file.what)}
		}
		pems[file.flag] = pem
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.serverName}
	if f.ca != "" {
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pems["-ca"]) {
			return nil, &tlsFlagError{msg: fmt.Sprintf("-ca %s: no PEM certificate in it (%s)", f.ca, files[0].what)}
		}
	}
	if f.cert != "" {
		pair, err := tls.X509KeyPair(pems["-cert"], pems["-key"])
		if err != nil {
			return nil, &tlsFlagError{msg: fmt.Sprintf("-cert %s, -key %s: not a certificate and its private key: %v",
				f.cert, f.key, err)}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// strerror is what the system says of a failed read, as Python's OSError.strerror words it ("No such file
// or directory", "Permission denied", "Is a directory"), without the operation and path Go adds.
func strerror(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	msg := err.Error()
	if msg == "" {
		return msg
	}
	r, n := utf8.DecodeRuneInString(msg)
	return string(unicode.ToUpper(r)) + msg[n:]
}
