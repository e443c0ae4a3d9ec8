package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, written as
// PEM files.
type testPKI struct {
	caFile, certFile, keyFile string // client side
	serverCert                tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(n int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
		return der, k
	}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		b, _ := x509.MarshalECPrivateKey(k)
		return pemOf("EC PRIVATE KEY", b)
	}
	srvDER, srvKey := leaf(2, x509.ExtKeyUsageServerAuth)
	srvCert, err := tls.X509KeyPair(pemOf("CERTIFICATE", srvDER), keyPEM(srvKey))
	if err != nil {
		t.Fatal(err)
	}
	cliDER, cliKey := leaf(3, x509.ExtKeyUsageClientAuth)
	p := testPKI{
		caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		serverCert: srvCert, pool: x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	writeTestFile(t, p.caFile, string(pemOf("CERTIFICATE", caDER)))
	writeTestFile(t, p.certFile, string(pemOf("CERTIFICATE", cliDER)))
	writeTestFile(t, p.keyFile, string(keyPEM(cliKey)))
	return p
}

// mTLSServer requires a client certificate signed by p's CA.
func (p testPKI) mTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are the point of some tests
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func clientGet(t *testing.T, c *sourceClient, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestClientTokenRotation(t *testing.T) {
	var mtx sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mtx.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mtx.Unlock()
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeTestFile(t, tokenFile, "opaque-token-1\n") // not a JWT
	now := time.Unix(1000, 0)
	c, err := newSourceClient(AuthConfig{TokenFile: tokenFile}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	// A rotated token of another length and mtime: picked up at the next request, same clock.
	writeTestFile(t, tokenFile, "opaque-token-22")
	if err := os.Chtimes(tokenFile, time.Now(), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	// Same length, same mtime: picked up once the cached token is older than tokenMaxAge.
	fi, _ := os.Stat(tokenFile)
	writeTestFile(t, tokenFile, "opaque-token-33")
	_ = os.Chtimes(tokenFile, fi.ModTime(), fi.ModTime())
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	now = now.Add(tokenMaxAge)
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	want := []string{"Bearer opaque-token-1", "Bearer opaque-token-22", "Bearer opaque-token-22", "Bearer opaque-token-33"}
	mtx.Lock()
	defer mtx.Unlock()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Authorization headers %q, want %q", got, want)
	}
}

func TestClientStaticToken(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("Authorization") }))
	defer srv.Close()
	c, err := newSourceClient(AuthConfig{Token: "static"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	if h := <-got; h != "Bearer static" {
		t.Fatalf("Authorization %q", h)
	}
}

func TestClientTokenErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	writeTestFile(t, empty, " \n")
	for _, tc := range []struct {
		name string
		auth AuthConfig
		want string
	}{
		{"missing file", AuthConfig{TokenFile: filepath.Join(dir, "nope")}, "stat "},
		{"empty file", AuthConfig{TokenFile: empty}, "empty"},
		{"missing ca", AuthConfig{CAFile: filepath.Join(dir, "ca")}, "stat "},
		{"ca without pem", AuthConfig{CAFile: empty}, "no PEM certificate"},
		{"bad key pair", AuthConfig{CertFile: empty, KeyFile: empty}, "load client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newSourceClient(tc.auth, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errAuth) {
				t.Fatalf("error %v, want %q and errAuth", err, tc.want)
			}
		})
	}
	// The token never reaches an error.
	tf := filepath.Join(dir, "two-lines")
	writeTestFile(t, tf, "s3cr3t\nmore")
	if _, err := newSourceClient(AuthConfig{TokenFile: tf}, nil); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("error %v", err)
	}
}

func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	other := newTestPKI(t, t.TempDir()) // an unknown CA
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	srv := pki.mTLSServer(t, ok)
	for _, tc := range []struct {
		name    string
		auth    AuthConfig
		wantErr string
	}{
		{"mTLS", AuthConfig{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}, ""},
		{"no client certificate", AuthConfig{CAFile: pki.caFile}, "certificate"},
		{"unknown CA", AuthConfig{CAFile: other.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}, "certificate signed by unknown authority"},
		{"system roots without CA file", AuthConfig{CertFile: pki.certFile, KeyFile: pki.keyFile}, "certificate signed by unknown authority"},
		{"explicit insecure", AuthConfig{InsecureSkipVerify: true, CertFile: pki.certFile, KeyFile: pki.keyFile}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newSourceClient(tc.auth, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			resp, err := clientGet(t, c, srv.URL)
			if tc.wantErr == "" {
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("got %v %v", resp, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestClientReloadsRotatedTLSFiles(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	other := newTestPKI(t, t.TempDir())
	srv := pki.mTLSServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	// Start with the other CA's files at the configured paths: verification fails.
	dir := t.TempDir()
	auth := AuthConfig{CAFile: filepath.Join(dir, "ca"), CertFile: filepath.Join(dir, "crt"), KeyFile: filepath.Join(dir, "key")}
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, to, string(b))
		_ = os.Chtimes(to, time.Now(), time.Now().Add(time.Hour))
	}
	copyFile(other.caFile, auth.CAFile)
	copyFile(other.certFile, auth.CertFile)
	copyFile(other.keyFile, auth.KeyFile)
	c, err := newSourceClient(auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := clientGet(t, c, srv.URL); err == nil {
		t.Fatal("request with the wrong CA succeeded")
	}
	copyFile(pki.caFile, auth.CAFile)
	copyFile(pki.certFile, auth.CertFile)
	copyFile(pki.keyFile, auth.KeyFile)
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatalf("rotated files not picked up: %v", err)
	}
}
