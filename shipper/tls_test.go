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

func TestMTLSWithRotation(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "server-ca"), newTestCA(t, "client-ca")
	srv := newTLSServer(t, serverCA, clientCA)
	files := newTLSFiles(t)
	writeFile(t, files.ca, string(serverCA.pem))
	files.writeClient(t, clientCA, "client-1")

	clock := newFakeClock()
	opts := DefaultOptions()
	opts.TLS = TLSOptions{CAFile: files.ca, CertFile: files.cert, KeyFile: files.key}
	opts.ReloadInterval = time.Minute
	opts.Now = clock.Now
	c := newTestClient(t, srv.URL, opts)
	send := func() error { return c.Send(context.Background(), testSeries()) }
	// newConn forces a new handshake, as after a server restart.
	newConn := func() { _ = c.Close() }

	steps := []struct {
		name    string
		prepare func()
		wantCN  string // empty: the send must fail TLS verification
	}{
		{name: "mutual TLS", wantCN: "client-1"},
		{name: "client cert rotated on disk, interval not over", prepare: func() {
			files.writeClient(t, clientCA, "client-2")
			newConn()
		}, wantCN: "client-1"},
		{name: "client cert picked up", prepare: func() { clock.Advance(time.Minute); newConn() }, wantCN: "client-2"},
		{name: "half-rotated pair keeps the previous one", prepare: func() {
			certPEM, _ := clientCA.issue(t, "client-3", false) // new certificate, old key
			writeFile(t, files.cert, string(certPEM))
			clock.Advance(time.Minute)
			newConn()
		}, wantCN: "client-2"},
		{name: "server moves to a new CA", prepare: func() {
			files.writeClient(t, clientCA, "client-4")
			newCA := newTestCA(t, "server-ca-2")
			srv.setCert(t, newCA)
			writeFile(t, files.ca+".next", string(newCA.pem))
			clock.Advance(time.Minute)
			newConn()
		}},
		{name: "CA file rotated", prepare: func() {
			if err := os.Rename(files.ca+".next", files.ca); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Minute)
			newConn()
		}, wantCN: "client-4"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.prepare != nil {
				s.prepare()
			}
			err := send()
			if s.wantCN == "" {
				e := tlsError(t, err)
				var uae x509.UnknownAuthorityError
				if !errors.As(e, &uae) {
					t.Fatalf("want x509.UnknownAuthorityError in %v", err)
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

func TestServerVerification(t *testing.T) {
	ca, otherCA := newTestCA(t, "ca"), newTestCA(t, "other-ca")
	for _, tc := range []struct {
		name      string
		serverDNS []string // empty: an IP SAN for 127.0.0.1
		caPEM     []byte
		opts      TLSOptions
		wantErr   bool
	}{
		{name: "trusted CA", caPEM: ca.pem},
		{name: "unknown CA", caPEM: otherCA.pem, wantErr: true},
		{name: "unknown CA, verification off", caPEM: otherCA.pem, opts: TLSOptions{InsecureSkipVerify: true}},
		{name: "name mismatch", serverDNS: []string{"receive.hub.example"}, caPEM: ca.pem, wantErr: true},
		{name: "server name override", serverDNS: []string{"receive.hub.example"}, caPEM: ca.pem,
			opts: TLSOptions{ServerName: "receive.hub.example"}},
		{name: "system roots", opts: TLSOptions{}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTLSServer(t, ca, nil, tc.serverDNS...)
			files := newTLSFiles(t)
			opts := DefaultOptions()
			opts.TLS = tc.opts
			if tc.caPEM != nil {
				writeFile(t, files.ca, string(tc.caPEM))
				opts.TLS.CAFile = files.ca
			}
			err := newTestClient(t, srv.URL, opts).Send(context.Background(), testSeries())
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
		opts TLSOptions
		want string
	}{
		{name: "CA without certificates", opts: TLSOptions{CAFile: files.ca}, want: "no PEM certificates"},
		{name: "missing CA", opts: TLSOptions{CAFile: files.ca + ".missing"}, want: "no such file"},
		{name: "mismatched key", opts: TLSOptions{CertFile: files.cert, KeyFile: files.key}, want: "private key does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.TLS = tc.opts
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
