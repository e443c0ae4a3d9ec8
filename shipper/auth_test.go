package shipper

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	if err := c.Send(context.Background(), testSeries()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	return next(t, ch).header.Get("Authorization")
}

func TestBearerTokenFileRotation(t *testing.T) {
	srv, ch := newRecordingServer(t, http.StatusNoContent)
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, "token-one\n")

	opts := DefaultOptions()
	opts.BearerTokenFile = path
	opts.ReloadInterval = 10 * time.Second
	opts.Now = clock.Now
	log, hook := testLogger()
	c, err := New(log, prometheus.NewRegistry(), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	steps := []struct {
		name    string
		prepare func()
		want    string
	}{
		{name: "initial", want: "Bearer token-one"},
		{name: "rotated, interval not over", prepare: func() { writeFile(t, path, "token-two") }, want: "Bearer token-one"},
		{name: "interval over", prepare: func() { clock.Advance(10 * time.Second) }, want: "Bearer token-two"},
		{name: "file removed keeps last", prepare: func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Minute)
		}, want: "Bearer token-two"},
		{name: "empty file keeps last", prepare: func() { writeFile(t, path, " \n"); clock.Advance(time.Minute) }, want: "Bearer token-two"},
		{name: "any format", prepare: func() { writeFile(t, path, "a.b-c_d~e+f/g=\r\n"); clock.Advance(time.Minute) }, want: "Bearer a.b-c_d~e+f/g="},
	}
	for _, s := range steps {
		// Sequential steps of one scenario: each depends on the previous one.
		t.Run(s.name, func(t *testing.T) {
			if s.prepare != nil {
				s.prepare()
			}
			if got := authorization(t, c, ch); got != s.want {
				t.Fatalf("Authorization = %q, want %q", got, s.want)
			}
		})
	}
	warned := false
	for _, e := range hook.AllEntries() {
		line, _ := e.String()
		if strings.Contains(line, "token-") {
			t.Fatalf("log line leaks the token: %s", line)
		}
		warned = warned || e.Message == "cannot reload credential file, keeping the previous value"
	}
	if !warned {
		t.Fatal("no warning logged for the unreadable token file")
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
		{name: "static bearer", mutate: func(o *Options) { o.BearerToken = "static-token" }, bearer: "Bearer static-token"},
		{name: "basic inline", mutate: func(o *Options) { o.BasicAuth = &BasicAuth{Username: "u1", Password: "p1"} },
			user: "u1", pw: "p1"},
		{name: "basic password file", mutate: func(o *Options) { o.BasicAuth = &BasicAuth{Username: "u2", PasswordFile: pwFile} },
			user: "u2", pw: "from-file"},
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
	opts.BasicAuth = &BasicAuth{Username: "u", PasswordFile: path}
	opts.ReloadInterval = 0 // every request
	c := newTestClient(t, srv.URL, opts)
	for _, pw := range []string{"first", "second", "third"} {
		writeFile(t, path, pw)
		r := &http.Request{Header: http.Header{"Authorization": {authorization(t, c, ch)}}}
		if _, got, _ := r.BasicAuth(); got != pw {
			t.Fatalf("password = %q, want %q", got, pw)
		}
	}
}

func TestCredentialsLostBeforeFirstRead(t *testing.T) {
	// A secret that never loaded is a local, recoverable error: the data stays queued.
	log, _ := testLogger()
	s := &secret{log: log, file: newWatchedFile(filepath.Join(t.TempDir(), "missing"), 0, time.Now)}
	a := &authenticator{bearer: s}
	err := a.authorize(http.Header{})
	if !errors.Is(err, ErrCredentials) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("authorize = %v, want ErrCredentials wrapping ErrNotExist", err)
	}
	e := localError("http://h/", "credentials", true, false, err)
	if !e.Recoverable() || e.Reason() != "credentials" || e.StatusCode() != 0 {
		t.Fatalf("unexpected classification %+v", e)
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
			if err := c.Send(context.Background(), testSeries()); err != nil {
				t.Fatal(err)
			}
			if got := next(t, ch).header.Get(tc.wantHeader); got != tc.tenant {
				t.Fatalf("%s = %q, want %q", tc.wantHeader, got, tc.tenant)
			}
		})
	}
}
