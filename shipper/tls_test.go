package shipper

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/config"
)

// testCA is a certificate authority generated for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key in PEM. server certificates get 127.0.0.1 and the
// given DNS names; client certificates get clientAuth usage.
func (ca *testCA) issue(t *testing.T, cn string, server bool, dnsNames ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = dnsNames
		if len(dnsNames) == 0 {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// tlsServer is an mTLS remote-write receiver whose certificate can be swapped.
type tlsServer struct {
	*httptest.Server
	cert atomic.Pointer[tls.Certificate]
	ch   <-chan received
}

func newTLSServer(t *testing.T, ca *testCA, clientCA *testCA, dnsNames ...string) *tlsServer {
	t.Helper()
	ch := make(chan received, 16)
	s := &tlsServer{ch: ch}
	s.setCert(t, ca, dnsNames...)
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- decodeRequest(r)
		w.WriteHeader(http.StatusNoContent)
	}))
	// GetConfigForClient takes precedence over the certificate httptest installs.
	s.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cfg := &tls.Config{Certificates: []tls.Certificate{*s.cert.Load()}}
		if clientCA != nil {
			cfg.ClientCAs = x509.NewCertPool()
			cfg.ClientCAs.AddCert(clientCA.cert)
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return cfg, nil
	}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *tlsServer) setCert(t *testing.T, ca *testCA, dnsNames ...string) {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "receiver", true, dnsNames...)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s.cert.Store(&pair)
}

// tlsFiles writes the client's CA, certificate and key files.
type tlsFiles struct{ dir, ca, cert, key string }

func newTLSFiles(t *testing.T) tlsFiles {
	dir := t.TempDir()
	return tlsFiles{dir: dir, ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key")}
}

func (f tlsFiles) writeClient(t *testing.T, ca *testCA, cn string) {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, cn, false)
	writeFile(t, f.cert, string(certPEM))
	writeFile(t, f.key, string(keyPEM))
}

func tlsError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Reason() != "tls" || !e.Recoverable() {
		t.Fatalf("Send = %v, want a recoverable *Error with reason tls", err)
	}
	return e
}

// TestMTLSWithRotation: prometheus/common/config compares the CA, certificate and key files at
// every request and builds a new transport when one changed, so rotations are picked up without
// a restart; a half-rotated pair or an untrusted server costs a recoverable error, never data.
func TestMTLSWithRotation(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "server-ca"), newTestCA(t, "client-ca")
	srv := newTLSServer(t, serverCA, clientCA)
	files := newTLSFiles(t)
	writeFile(t, files.ca, string(serverCA.pem))
	files.writeClient(t, clientCA, "client-1")

	opts := DefaultOptions()
	opts.HTTPClientConfig.TLSConfig = config.TLSConfig{CAFile: files.ca, CertFile: files.cert, KeyFile: files.key}
	c := newTestClient(t, srv.URL, opts)
	send := func() error { return c.Send(context.Background(), toSeries(testSeries())) }
	// newConn forces a new handshake, as after a server restart.
	newConn := func() { _ = c.Close() }

	steps := []struct {
		name    string
		prepare func()
		wantCN  string // empty: the send must fail recoverably
		wantUAE bool   // the failure is the server's unknown authority
	}{
		{name: "mutual TLS", wantCN: "client-1"},
		{name: "client cert rotated on disk", prepare: func() { files.writeClient(t, clientCA, "client-2") }, wantCN: "client-2"},
		{name: "half-rotated pair fails recoverably", prepare: func() {
			certPEM, _ := clientCA.issue(t, "client-3", false) // new certificate, old key
			writeFile(t, files.cert, string(certPEM))
		}},
		{name: "pair complete", prepare: func() { files.writeClient(t, clientCA, "client-4") }, wantCN: "client-4"},
		{name: "server moves to a new CA", prepare: func() {
			newCA := newTestCA(t, "server-ca-2")
			srv.setCert(t, newCA)
			writeFile(t, files.ca+".next", string(newCA.pem))
			newConn()
		}, wantUAE: true},
		{name: "CA file rotated", prepare: func() {
			if err := os.Rename(files.ca+".next", files.ca); err != nil {
				t.Fatal(err)
			}
		}, wantCN: "client-4"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.prepare != nil {
				s.prepare()
			}
			err := send()
			if s.wantCN == "" {
				var e *Error
				if !errors.As(err, &e) || !e.Recoverable() {
					t.Fatalf("Send = %v, want a recoverable *Error", err)
				}
				if s.wantUAE {
					tlsError(t, err)
					var uae x509.UnknownAuthorityError
					if !errors.As(e, &uae) {
						t.Fatalf("want x509.UnknownAuthorityError in %v", err)
					}
				}
				if strings.Contains(err.Error(), "PRIVATE KEY") {
					t.Fatalf("error leaks key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := next(t, srv.ch).peerCN; got != s.wantCN {
				t.Fatalf("server saw client certificate %q, want %q", got, s.wantCN)
			}
		})
	}
}

// TestServerVerification: verification is on by default (system roots, which do not know the
// test CA) and off only with insecure_skip_verify.
func TestServerVerification(t *testing.T) {
	ca, otherCA := newTestCA(t, "ca"), newTestCA(t, "other-ca")
	for _, tc := range []struct {
		name      string
		serverDNS []string // empty: an IP SAN for 127.0.0.1
		caPEM     []byte
		opts      config.TLSConfig
		wantErr   bool
	}{
		{name: "trusted CA", caPEM: ca.pem},
		{name: "unknown CA", caPEM: otherCA.pem, wantErr: true},
		{name: "unknown CA, verification off", caPEM: otherCA.pem, opts: config.TLSConfig{InsecureSkipVerify: true}},
		{name: "name mismatch", serverDNS: []string{"receive.hub.example"}, caPEM: ca.pem, wantErr: true},
		{name: "server name override", serverDNS: []string{"receive.hub.example"}, caPEM: ca.pem,
			opts: config.TLSConfig{ServerName: "receive.hub.example"}},
		{name: "system roots", opts: config.TLSConfig{}, wantErr: true},
		{name: "self-signed without CA", opts: config.TLSConfig{ServerName: "receive.hub.example"}, serverDNS: []string{"receive.hub.example"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTLSServer(t, ca, nil, tc.serverDNS...)
			files := newTLSFiles(t)
			opts := DefaultOptions()
			opts.HTTPClientConfig.TLSConfig = tc.opts
			if tc.caPEM != nil {
				writeFile(t, files.ca, string(tc.caPEM))
				opts.HTTPClientConfig.TLSConfig.CAFile = files.ca
			}
			err := newTestClient(t, srv.URL, opts).Send(context.Background(), toSeries(testSeries()))
			if tc.wantErr {
				tlsError(t, err)
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
		})
	}
}

// TestTLSMinVersion: tls_config.min_version refuses a server that offers less.
func TestTLSMinVersion(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name    string
		min     config.TLSVersion
		wantErr bool
	}{
		{name: "TLS 1.2 accepted", min: config.TLSVersion(tls.VersionTLS12)},
		{name: "TLS 1.3 required", min: config.TLSVersion(tls.VersionTLS13), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.HTTPClientConfig.TLSConfig = config.TLSConfig{InsecureSkipVerify: true, MinVersion: tc.min}
			err := newTestClient(t, srv.URL, opts).Send(context.Background(), toSeries(testSeries()))
			if tc.wantErr {
				var e *Error
				if !errors.As(err, &e) || !e.Recoverable() {
					t.Fatalf("Send = %v, want a recoverable *Error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
		})
	}
}

func TestTLSFilesInvalidAtStart(t *testing.T) {
	ca := newTestCA(t, "ca")
	files := newTLSFiles(t)
	writeFile(t, files.ca, "not a certificate")
	certPEM, _ := ca.issue(t, "c", false)
	_, otherKey := ca.issue(t, "d", false)
	writeFile(t, files.cert, string(certPEM))
	writeFile(t, files.key, string(otherKey))
	for _, tc := range []struct {
		name string
		opts config.TLSConfig
		want string
	}{
		{name: "CA without certificates", opts: config.TLSConfig{CAFile: files.ca}, want: "unable to use specified CA cert"},
		{name: "missing CA", opts: config.TLSConfig{CAFile: files.ca + ".missing"}, want: "no such file"},
		{name: "mismatched key", opts: config.TLSConfig{CertFile: files.cert, KeyFile: files.key}, want: "private key does not match"},
		{name: "cert without key", opts: config.TLSConfig{CertFile: files.cert}, want: "key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.HTTPClientConfig.TLSConfig = tc.opts
			log, _ := testLogger()
			_, err := New(log, nil, "https://127.0.0.1:1/", opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error leaks key material: %v", err)
			}
		})
	}
}
