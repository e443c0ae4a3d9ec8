package shipper

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/sigv4"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Replace atomically, as a Kubernetes secret volume does.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func authorization(t *testing.T, c *Client, ch <-chan received) string {
	t.Helper()
	if err := c.Send(context.Background(), toSeries(testSeries())); err != nil {
		t.Fatalf("Send: %v", err)
	}
	return next(t, ch).header.Get("Authorization")
}

// TestCredentialsFileRotation: prometheus/common/config re-reads credentials_file at every
// request, so a rotated token is sent without a restart; a file that disappears costs a
// recoverable, local error (nothing sent, the data stays queued) until it is back.
func TestCredentialsFileRotation(t *testing.T) {
	srv, ch := newRecordingServer(t, http.StatusNoContent)
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, "token-one\n")

	opts := DefaultOptions()
	opts.HTTPClientConfig.Authorization = &config.Authorization{CredentialsFile: path}
	log, hook := testLogger()
	c, err := New(log, prometheus.NewRegistry(), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	steps := []struct {
		name    string
		prepare func()
		want    string // empty: the send fails with ErrCredentials
	}{
		{name: "initial", want: "Bearer token-one"},
		{name: "rotated", prepare: func() { writeFile(t, path, "token-two") }, want: "Bearer token-two"},
		{name: "file removed", prepare: func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "file back", prepare: func() { writeFile(t, path, "token-three") }, want: "Bearer token-three"},
		{name: "any format", prepare: func() { writeFile(t, path, "a.b-c_d~e+f/g=\r\n") }, want: "Bearer a.b-c_d~e+f/g="},
	}
	for _, s := range steps {
		// Sequential steps of one scenario: each depends on the previous one.
		t.Run(s.name, func(t *testing.T) {
			if s.prepare != nil {
				s.prepare()
			}
			if s.want == "" {
				err := c.Send(context.Background(), toSeries(testSeries()))
				var e *Error
				if !errors.As(err, &e) || !e.Recoverable() || e.Reason() != "credentials" || !errors.Is(err, ErrCredentials) || !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("Send = %v, want a recoverable credentials *Error wrapping ErrCredentials and ErrNotExist", err)
				}
				if strings.Contains(err.Error(), "token-") {
					t.Fatalf("error leaks the token: %v", err)
				}
				return
			}
			if got := authorization(t, c, ch); got != s.want {
				t.Fatalf("Authorization = %q, want %q", got, s.want)
			}
		})
	}
	for _, e := range hook.AllEntries() {
		if line, _ := e.String(); strings.Contains(line, "token-") {
			t.Fatalf("log line leaks the token: %s", line)
		}
	}
}

func TestAuthorizationKinds(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	writeFile(t, pwFile, "from-file\n")
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		user   string
		pw     string
		bearer string
	}{
		{name: "none"},
		{name: "static bearer", mutate: func(o *Options) { o.HTTPClientConfig.BearerToken = "static-token" }, bearer: "Bearer static-token"},
		{name: "authorization credentials", mutate: func(o *Options) {
			o.HTTPClientConfig.Authorization = &config.Authorization{Credentials: "inline-token"}
		}, bearer: "Bearer inline-token"},
		{name: "authorization type", mutate: func(o *Options) {
			o.HTTPClientConfig.Authorization = &config.Authorization{Type: "Token", CredentialsFile: pwFile}
		}, bearer: "Token from-file"},
		{name: "basic inline", mutate: func(o *Options) { o.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "u1", Password: "p1"} },
			user: "u1", pw: "p1"},
		{name: "basic password file", mutate: func(o *Options) {
			o.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "u2", PasswordFile: pwFile}
		}, user: "u2", pw: "from-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, ch := newRecordingServer(t, http.StatusOK)
			opts := DefaultOptions()
			if tc.mutate != nil {
				tc.mutate(&opts)
			}
			c := newTestClient(t, srv.URL, opts)
			got := authorization(t, c, ch)
			r := &http.Request{Header: http.Header{"Authorization": {got}}}
			user, pw, basic := r.BasicAuth()
			switch {
			case tc.user != "":
				if !basic || user != tc.user || pw != tc.pw {
					t.Fatalf("basic auth = %q/%q (%v), want %q/%q", user, pw, basic, tc.user, tc.pw)
				}
			case got != tc.bearer:
				t.Fatalf("Authorization = %q, want %q", got, tc.bearer)
			}
		})
	}
}

func TestBasicAuthPasswordFileRotation(t *testing.T) {
	srv, ch := newRecordingServer(t, http.StatusOK)
	path := filepath.Join(t.TempDir(), "pw")
	writeFile(t, path, "first")
	opts := DefaultOptions()
	opts.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "u", PasswordFile: path}
	c := newTestClient(t, srv.URL, opts)
	for _, pw := range []string{"first", "second", "third"} {
		writeFile(t, path, pw)
		r := &http.Request{Header: http.Header{"Authorization": {authorization(t, c, ch)}}}
		if _, got, _ := r.BasicAuth(); got != pw {
			t.Fatalf("password = %q, want %q", got, pw)
		}
	}
}

func TestTenantHeader(t *testing.T) {
	for _, tc := range []struct {
		name, header, tenant, wantHeader string
	}{
		{name: "default header", tenant: "cluster-1", wantHeader: "Thanos-Tenant"},
		{name: "custom header", header: "X-Scope-OrgID", tenant: "cluster-2", wantHeader: "X-Scope-Orgid"},
		{name: "no tenant", wantHeader: "Thanos-Tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, ch := newRecordingServer(t, http.StatusOK)
			opts := DefaultOptions()
			opts.Tenant = tc.tenant
			if tc.header != "" {
				opts.TenantHeader = tc.header
			}
			c := newTestClient(t, srv.URL, opts)
			if err := c.Send(context.Background(), toSeries(testSeries())); err != nil {
				t.Fatal(err)
			}
			if got := next(t, ch).header.Get(tc.wantHeader); got != tc.tenant {
				t.Fatalf("%s = %q, want %q", tc.wantHeader, got, tc.tenant)
			}
		})
	}
}

// TestSigV4SignsRequests: with sigv4, requests are signed for AWS (Amazon Managed Service for
// Prometheus) as by Prometheus' remote_write, and the secret key is never sent.
func TestSigV4SignsRequests(t *testing.T) {
	dir := t.TempDir()
	// Keep the AWS SDK away from the user's files.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	srv, ch := newRecordingServer(t, http.StatusOK)
	opts := DefaultOptions()
	opts.SigV4Config = &sigv4.SigV4Config{Region: "eu-west-1", AccessKey: "AKIDTEST", SecretKey: "sigv4-secret-key"}
	c := newTestClient(t, srv.URL+"/workspaces/ws-1/api/v1/remote_write", opts)
	if err := c.Send(context.Background(), toSeries(testSeries())); err != nil {
		t.Fatal(err)
	}
	r := next(t, ch)
	if r.err != nil || len(r.req.Timeseries) == 0 {
		t.Fatalf("signed request not decoded: %v", r.err)
	}
	got := r.header.Get("Authorization")
	if !strings.HasPrefix(got, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || !strings.Contains(got, "/eu-west-1/aps/aws4_request") {
		t.Fatalf("Authorization = %q, want an AWS SigV4 signature for aps in eu-west-1", got)
	}
	if r.header.Get("X-Amz-Date") == "" {
		t.Fatal("no X-Amz-Date header")
	}
	for name, vals := range r.header {
		for _, v := range vals {
			if strings.Contains(v, "sigv4-secret-key") {
				t.Fatalf("header %s carries the secret key", name)
			}
		}
	}
}

// TestOAuth2ClientCredentials: with oauth2, the client fetches a token with its client
// credentials (the secret from a file) and sends it as a bearer token.
func TestOAuth2ClientCredentials(t *testing.T) {
	type tokenRequest struct{ user, secret, grant string }
	asked := make(chan tokenRequest, 4)
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, secret, _ := r.BasicAuth()
		_ = r.ParseForm()
		asked <- tokenRequest{user, secret, r.Form.Get("grant_type")}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"access-1","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(tokenSrv.Close)
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	writeFile(t, secretFile, "client-s3cret\n")
	srv, ch := newRecordingServer(t, http.StatusOK)
	opts := DefaultOptions()
	opts.HTTPClientConfig.OAuth2 = &config.OAuth2{ClientID: "collector", ClientSecretFile: secretFile, TokenURL: tokenSrv.URL}
	c := newTestClient(t, srv.URL, opts)
	if got := authorization(t, c, ch); got != "Bearer access-1" {
		t.Fatalf("Authorization = %q, want the fetched token", got)
	}
	if got := <-asked; got != (tokenRequest{"collector", "client-s3cret", "client_credentials"}) {
		t.Fatalf("token request %+v", got)
	}
}
