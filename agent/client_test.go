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

	"github.com/prometheus/common/config"
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

// tlsCfg is an http_config with the given TLS settings.
func tlsCfg(tc config.TLSConfig) config.HTTPClientConfig {
	return config.HTTPClientConfig{TLSConfig: tc}
}

// tokenFileCfg is an http_config with a bearer token from a file.
func tokenFileCfg(path string) config.HTTPClientConfig {
	return config.HTTPClientConfig{Authorization: &config.Authorization{CredentialsFile: path}}
}

// TestClientTokenRotation: the credentials file is re-read at every request (projected
// service-account tokens rotate), whatever its length or mtime; a file that disappears is an
// errAuth error (nothing sent) until it is back.
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
	c, err := newSourceClient(tokenFileCfg(tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	// Same length, same mtime: picked up at the next request all the same.
	fi, _ := os.Stat(tokenFile)
	writeTestFile(t, tokenFile, "opaque-token-2\n")
	_ = os.Chtimes(tokenFile, fi.ModTime(), fi.ModTime())
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if _, err := clientGet(t, c, srv.URL); !errors.Is(err, errAuth) || strings.Contains(err.Error(), "opaque") {
		t.Fatalf("request without token file: %v, want errAuth without the token", err)
	}
	writeTestFile(t, tokenFile, "opaque-token-33")
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatal(err)
	}
	want := []string{"Bearer opaque-token-1", "Bearer opaque-token-2", "Bearer opaque-token-33"}
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
	c, err := newSourceClient(config.HTTPClientConfig{Authorization: &config.Authorization{Credentials: "static"}})
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

func TestClientFileErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	writeTestFile(t, empty, " \n")
	for _, tc := range []struct {
		name string
		cfg  config.HTTPClientConfig
		want string
	}{
		{"missing token file", tokenFileCfg(filepath.Join(dir, "nope")), "no such file"},
		{"missing password file", config.HTTPClientConfig{BasicAuth: &config.BasicAuth{Username: "u", PasswordFile: filepath.Join(dir, "nope")}}, "no such file"},
		{"missing ca", tlsCfg(config.TLSConfig{CAFile: filepath.Join(dir, "ca")}), "no such file"},
		{"ca without pem", tlsCfg(config.TLSConfig{CAFile: empty}), "unable to use specified CA cert"},
		{"bad key pair", tlsCfg(config.TLSConfig{CertFile: empty, KeyFile: empty}), "client cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newSourceClient(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errAuth) {
				t.Fatalf("error %v, want %q and errAuth", err, tc.want)
			}
		})
	}
	if _, err := newSourceClient(tlsCfg(config.TLSConfig{CertFile: empty})); err == nil || errors.Is(err, errAuth) {
		t.Fatalf("certificate without key: %v, want a configuration error", err)
	}
}

// TestClientTLS: verification is on by default (a missing CA file means the system roots, not
// "skip") and off only with insecure_skip_verify.
func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	other := newTestPKI(t, t.TempDir()) // an unknown CA
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	srv := pki.mTLSServer(t, ok)
	for _, tc := range []struct {
		name    string
		tls     config.TLSConfig
		wantErr string
	}{
		{"mTLS", config.TLSConfig{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}, ""},
		{"no client certificate", config.TLSConfig{CAFile: pki.caFile}, "certificate"},
		{"unknown CA", config.TLSConfig{CAFile: other.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}, "certificate signed by unknown authority"},
		{"system roots without CA file", config.TLSConfig{CertFile: pki.certFile, KeyFile: pki.keyFile}, "certificate signed by unknown authority"},
		{"explicit insecure", config.TLSConfig{InsecureSkipVerify: true, CertFile: pki.certFile, KeyFile: pki.keyFile}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newSourceClient(tlsCfg(tc.tls))
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

// TestClientReloadsRotatedTLSFiles: CA, certificate and key rotated in place are used at the
// next request, without a restart and whatever their mtime.
func TestClientReloadsRotatedTLSFiles(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	other := newTestPKI(t, t.TempDir())
	srv := pki.mTLSServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	// Start with the other CA's files at the configured paths: verification fails.
	dir := t.TempDir()
	tc := config.TLSConfig{CAFile: filepath.Join(dir, "ca"), CertFile: filepath.Join(dir, "crt"), KeyFile: filepath.Join(dir, "key")}
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, to, string(b))
	}
	copyFile(other.caFile, tc.CAFile)
	copyFile(other.certFile, tc.CertFile)
	copyFile(other.keyFile, tc.KeyFile)
	c, err := newSourceClient(tlsCfg(tc))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := clientGet(t, c, srv.URL); err == nil {
		t.Fatal("request with the wrong CA succeeded")
	}
	copyFile(pki.caFile, tc.CAFile)
	copyFile(pki.certFile, tc.CertFile)
	copyFile(pki.keyFile, tc.KeyFile)
	if _, err := clientGet(t, c, srv.URL); err != nil {
		t.Fatalf("rotated files not picked up: %v", err)
	}
}

// TestClientRedirects: a redirect is returned, not followed, unless follow_redirects; followed to
// another host, it carries no credentials.
func TestClientRedirects(t *testing.T) {
	auth := make(chan string, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { auth <- r.Header.Get("Authorization") }))
	defer other.Close()
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1) // another host name
	srv := httptest.NewServer(http.RedirectHandler(otherURL, http.StatusFound))
	defer srv.Close()
	for _, follow := range []bool{false, true} {
		cfg := config.HTTPClientConfig{Authorization: &config.Authorization{Credentials: "s3cr3t"}, FollowRedirects: follow}
		c, err := newSourceClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := clientGet(t, c, srv.URL)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !follow {
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("follow_redirects false: status %d, want 302", resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("follow_redirects true: status %d, want 200", resp.StatusCode)
		}
		if got := <-auth; got != "" {
			t.Fatalf("credentials sent to another host: %q", got)
		}
	}
}

// TestSourceUserinfoAndAuthorization: a source URL with userinfo is sent as basic auth, which
// would win over a configured authorization: the two together are refused, naming neither
// password.
func TestSourceUserinfoAndAuthorization(t *testing.T) {
	withToken := config.HTTPClientConfig{Authorization: &config.Authorization{Credentials: "tok"}}
	for _, tc := range []struct {
		name    string
		cfg     SourceConfig
		wantErr string
	}{
		{"userinfo alone", SourceConfig{ID: "c1", From: "https://u:pw-1@prom:9091"}, ""},
		{"token alone", SourceConfig{ID: "c1", From: "https://prom:9091", HTTPClientConfig: withToken}, ""},
		{"userinfo and token", SourceConfig{ID: "c1", From: "https://u:pw-1@prom:9091", HTTPClientConfig: withToken}, "from: url https://prom:9091 has userinfo"},
		{"query userinfo and token", SourceConfig{ID: "c1", From: "https://prom:9091", FromQuery: "https://u:pw-1@q", HTTPClientConfig: withToken}, "from_query: url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "pw-1") {
				t.Fatalf("Validate = %v, want %q without the password", err, tc.wantErr)
			}
		})
	}
}
