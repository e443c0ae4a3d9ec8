package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, written as
// PEM files (agent/client_test.go's, copied: test files are not imported across packages).
type testPKI struct {
	caFile, certFile, keyFile string // client side
	serverCert                tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	leaf := func(n int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf("CERTIFICATE", der), pemOf("EC PRIVATE KEY", kb)
	}
	srvPEM, srvKey := leaf(2, x509.ExtKeyUsageServerAuth)
	srvCert, err := tls.X509KeyPair(srvPEM, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	cliPEM, cliKey := leaf(3, x509.ExtKeyUsageClientAuth)
	p := testPKI{
		caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		serverCert: srvCert, pool: x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	writeFile(t, p.caFile, string(pemOf("CERTIFICATE", caDER)))
	writeFile(t, p.certFile, string(cliPEM))
	writeFile(t, p.keyFile, string(cliKey))
	return p
}

// TestTelemeterCommandLine: telemeter-client's flags. --tls-cert-file and --tls-private-key-file
// authenticate to the source (which requires a client certificate); the flags of the Telemeter
// upload protocol are refused with what to use instead.
func TestTelemeterCommandLine(t *testing.T) {
	t.Parallel()
	bin := seedBinary(t, "telemeter-client")

	t.Run("tls client certificate", func(t *testing.T) {
		pki := newTestPKI(t, t.TempDir())
		fed := newFederate(t)
		src := httptest.NewUnstartedServer(fed.Config.Handler)
		src.Config.ErrorLog = log.New(io.Discard, "", 0)
		src.TLS = &tls.Config{Certificates: []tls.Certificate{pki.serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}
		src.StartTLS()
		t.Cleanup(src.Close)
		recv := newReceiver(t, false)
		p := startBin(t, bin, nil,
			"--id", "tc1", "--from", src.URL, "--from-ca-file", pki.caFile,
			"--tls-cert-file", pki.certFile, "--tls-private-key-file", pki.keyFile,
			"--match", `{__name__="up"}`, "--interval", "1s", "--label", "_id=tc1",
			"--to-upload", recv.url, "--listen", "", "--wal-dir", filepath.Join(t.TempDir(), "wal"))
		waitFor(t, "series federated over mTLS at the receiver", 30*time.Second, func() bool {
			for k := range recv.set() {
				if strings.HasPrefix(k, `{__name__="up", _id="tc1", clusterID="tc1", instance="i1"}@`) {
					return true
				}
			}
			return false
		})
		p.signal(syscall.SIGTERM)
		if code := p.wait(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
	})

	base := []string{"--id", "tc1", "--from", "http://127.0.0.1:1", "--listen", "", "--wal-dir", filepath.Join(t.TempDir(), "wal")}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"to", []string{"--to", "https://infogw.api.openshift.com"}, "--to: the Telemeter protocol (a token exchanged at /authorize, then /upload) is not supported, collector sends Prometheus remote-write: give the remote-write URL with --to-upload"},
		{"to-auth", []string{"--to-upload", "http://127.0.0.1:1/upload", "--to-auth", "http://127.0.0.1:1/authorize"}, "--to-auth: the Telemeter protocol"},
		{"to-token", []string{"--to-upload", "http://127.0.0.1:1/w", "--to-token", "pull-secret"}, "--to-token: the Telemeter protocol (a token exchanged at /authorize, then /upload) is not supported, collector sends Prometheus remote-write: a bearer token for the remote-write endpoint goes in --to-upload-token-file"},
		{"to-token-file", []string{"--to-upload", "http://127.0.0.1:1/w", "--to-token-file", "/etc/telemeter/token"}, "--to-token-file: the Telemeter protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, bin, nil, append(append([]string(nil), base...), tc.args...)...)
			if r.code != 2 {
				t.Errorf("exit code %d, want 2; stderr %q", r.code, r.stderr)
			}
			if lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n"); len(lines) != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q, want one line with %q", r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "pull-secret") {
				t.Error("the token reached standard error")
			}
		})
	}
}
