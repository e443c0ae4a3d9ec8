package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHealthzAndPprof(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pprof     bool
		wantPprof int
	}{
		{"pprof off by default", false, http.StatusNotFound},
		{"pprof on", true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.EnablePprof = tc.pprof
			a, err := New(discardLogger(), prometheus.NewRegistry(), testConfig("http://127.0.0.1:1", "http://127.0.0.1:1/w"), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			h := a.Handler()
			if code, body := get(t, h, http.MethodGet, "/healthz"); code != http.StatusOK || body != "ok\n" {
				t.Errorf("/healthz: %d %q", code, body)
			}
			if code, _ := get(t, h, http.MethodGet, "/debug/pprof/"); code != tc.wantPprof {
				t.Errorf("/debug/pprof/: %d, want %d", code, tc.wantPprof)
			}
			if code, body := get(t, h, http.MethodGet, "/metrics"); code != http.StatusOK || !strings.Contains(body, `collector_build_info{`) {
				t.Errorf("/metrics: %d, build info missing", code)
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	src := newFederateServer(t)
	src.fail.Store(true)
	good := newWriteReceiver(t, http.StatusNoContent)
	bad := newWriteReceiver(t, http.StatusServiceUnavailable)
	cfg := testConfig(src.URL, good.URL+"/w")
	cfg.Endpoints = append(cfg.Endpoints, EndpointConfig{Name: "bad", URL: bad.URL + "/w"})
	a, err := New(discardLogger(), prometheus.NewRegistry(), cfg, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	h := a.Handler()

	// Before the first scrape: 503, and why.
	code, body := get(t, h, http.MethodGet, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "source c1: first scrape not attempted yet") {
		t.Fatalf("/readyz before Run: %d %q", code, body)
	}
	// The seeds' path answers the same.
	if c2, b2 := get(t, h, http.MethodGet, "/healthz/ready"); c2 != code || b2 != body {
		t.Fatalf("/healthz/ready before Run: %d %q, want %d %q as /readyz", c2, b2, code, body)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// A failed first scrape is an attempt: ready, the source listed as failing.
	waitFor(t, "first scrape attempted", 10*time.Second, func() bool {
		code, _ := get(t, h, http.MethodGet, "/readyz")
		return code == http.StatusOK
	})
	_, body = get(t, h, http.MethodGet, "/readyz")
	if !strings.HasPrefix(body, "ready\n") || !strings.Contains(body, "source c1: last scrape failed") {
		t.Errorf("/readyz after a failed scrape: %q", body)
	}

	// Once data flows, the failing endpoint is listed and the good one is not.
	src.fail.Store(false)
	waitFor(t, "the bad endpoint listed", 10*time.Second, func() bool {
		_, body := get(t, h, http.MethodGet, "/readyz")
		return strings.Contains(body, "endpoint bad (source c1): last request failed") && !strings.Contains(body, "source c1: last scrape failed")
	})
	code, body = get(t, h, http.MethodGet, "/readyz")
	if code != http.StatusOK || strings.Contains(body, "endpoint 127.0.0.1_") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, body := get(t, h, http.MethodGet, "/healthz/ready"); code != http.StatusOK || !strings.HasPrefix(body, "ready\n") ||
		!strings.Contains(body, "endpoint bad (source c1): last request failed") {
		t.Errorf("/healthz/ready: %d %q, want what /readyz answers", code, body)
	}
}

func TestReloadEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   string
		reload   func() error
		disabled bool
		wantCode int
		wantBody string
	}{
		{"get", http.MethodGet, func() error { return nil }, false, http.StatusMethodNotAllowed, "use POST"},
		{"not configured", http.MethodPost, nil, false, http.StatusNotImplemented, "not configured"},
		{"refused", http.MethodPost, func() error { return errors.New("match file m line 1: bad") }, false, http.StatusBadRequest,
			"reload refused, the running configuration is kept: match file m line 1: bad"},
		{"ok", http.MethodPost, func() error { return nil }, false, http.StatusOK, "reloaded"},
		{"put", http.MethodPut, func() error { return nil }, false, http.StatusOK, "reloaded"},
		{"lifecycle disabled", http.MethodPost, func() error { t.Error("reload called"); return nil }, true, http.StatusForbidden, "Lifecycle API is not enabled."},
		{"lifecycle disabled put", http.MethodPut, func() error { t.Error("reload called"); return nil }, true, http.StatusForbidden, "Lifecycle API is not enabled."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.Reload = tc.reload
			opts.EnableLifecycle = !tc.disabled
			a, err := New(discardLogger(), prometheus.NewRegistry(), testConfig("http://127.0.0.1:1", "http://127.0.0.1:1/w"), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			code, body := get(t, a.Handler(), tc.method, "/-/reload")
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestServerTimeouts(t *testing.T) {
	s := newServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 {
		t.Errorf("server without limits: %+v", s)
	}
}

// TestListen serves the endpoints on a real listener while Run runs, and stops serving after.
func TestListen(t *testing.T) {
	opts := testOptions(t)
	opts.Listen = "127.0.0.1:0"
	hook := &listenHook{addr: make(chan string, 1)}
	logger := discardLogger()
	logger.AddHook(hook)
	a, err := New(logger, prometheus.NewRegistry(), testConfig("http://127.0.0.1:1", "http://127.0.0.1:1/w"), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var addr string
	select {
	case addr = <-hook.addr:
	case <-time.After(10 * time.Second):
		t.Fatal("no listening log line")
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
		t.Errorf("/healthz over TCP: %d %q", resp.StatusCode, b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("server still answers after Run returned")
	}
}

// listenHook passes on the address of the "http server listening" log line.
type listenHook struct{ addr chan string }

func (h *listenHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *listenHook) Fire(e *logrus.Entry) error {
	if addr, ok := e.Data["listen"].(string); ok && e.Message == "http server listening" {
		select {
		case h.addr <- addr:
		default:
		}
	}
	return nil
}

// TestScrapeKinds: /readyz lists each kind of scrape failure once, with its count and status,
// never the error text.
func TestScrapeKinds(t *testing.T) {
	err := errors.Join(
		&scrapeError{Reason: reasonStatus, Code: 500, Err: errors.New("body with a secret")},
		&scrapeError{Reason: reasonTimeout, Err: errors.New("timeout")},
		&scrapeError{Reason: reasonStatus, Code: 500, Err: errors.New("body with a secret")},
		&scrapeError{Reason: reasonStatus, Code: 414, Err: errors.New("body")},
	)
	if got, want := scrapeKinds(err), "status (HTTP 500) x2, timeout, status (HTTP 414); see the log"; got != want {
		t.Errorf("scrapeKinds = %q, want %q", got, want)
	}
	if got, want := scrapeKinds(&scrapeError{Reason: reasonParse, Err: errors.New("line 3")}), "parse; see the log"; got != want {
		t.Errorf("scrapeKinds = %q, want %q", got, want)
	}
}
