package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/sirupsen/logrus"
)

// lockedBuffer is an io.Writer for a logger shared by goroutines.
type lockedBuffer struct {
	mtx sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mtx.Lock()
	defer b.mtx.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mtx.Lock()
	defer b.mtx.Unlock()
	return b.buf.String()
}

// echo writes the request line and headers into the body of an error answer, as some proxies
// and receivers do.
func echo(w http.ResponseWriter, r *http.Request, code int) {
	w.WriteHeader(code)
	fmt.Fprintf(w, "refused %s %s\n", r.Method, r.URL.RequestURI())
	_ = r.Header.Write(w)
}

// TestCredentialsNotLeaked: the source and the receivers echo the request (URL with its query,
// Authorization header) in their error bodies. No password, token or query value of --from or
// --to-upload appears in the log, in the errors of the source and the endpoints, or in /readyz;
// /readyz names the failing parts and their status codes only.
func TestCredentialsNotLeaked(t *testing.T) {
	const (
		srcKey   = "srckey-111"
		srcToken = "srctoken-222"
		rcvPass  = "rcvpass-333"
		rcvKey   = "rcvkey-444"
		rcvToken = "rcvtoken-555"
	)
	var srcFail atomic.Bool
	srcFail.Store(true)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if srcFail.Load() {
			echo(w, r, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "up{job=\"a\"} 1 %d\n", time.Now().UnixMilli())
	}))
	t.Cleanup(src.Close)
	var rcvRequests atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rcvRequests.Add(1)
		echo(w, r, http.StatusInternalServerError)
	}))
	t.Cleanup(rcv.Close)

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(rcvToken), 0o600); err != nil {
		t.Fatal(err)
	}
	withUser, _ := url.Parse(rcv.URL + "/w?apikey=" + rcvKey)
	withUser.User = url.UserPassword("alice", rcvPass)
	cfg := testConfig(src.URL + "/federate?apikey=" + srcKey)
	cfg.Sources[0].HTTPClientConfig.Authorization = &config.Authorization{Credentials: config.Secret(srcToken)}
	cfg.Endpoints = []EndpointConfig{
		{Name: "userinfo", URL: withUser.String()},
		{Name: "bearer", URL: rcv.URL + "/w?apikey=" + rcvKey, HTTPClientConfig: config.HTTPClientConfig{BearerTokenFile: tokenFile}},
	}
	logs := &lockedBuffer{}
	logger := logrus.New()
	logger.SetOutput(logs)
	logger.SetLevel(logrus.DebugLevel)
	a, err := New(logger, prometheus.NewRegistry(), cfg, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	h := a.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	var texts []string
	waitFor(t, "the source listed as failing", 10*time.Second, func() bool {
		_, body := get(t, h, http.MethodGet, "/readyz")
		return strings.Contains(body, "source c1: last scrape failed: status (HTTP 401)")
	})
	_, body := get(t, h, http.MethodGet, "/readyz")
	texts = append(texts, body)
	st := a.clusters[0].source.Status()
	if st.LastError == nil || !strings.Contains(st.LastError.Error(), "refused GET /federate") {
		t.Fatalf("the source's error does not quote its body, the test proves nothing: %v", st.LastError)
	}
	texts = append(texts, st.LastError.Error())

	srcFail.Store(false)
	waitFor(t, "both endpoints listed as failing", 10*time.Second, func() bool {
		_, body := get(t, h, http.MethodGet, "/readyz")
		return strings.Contains(body, "endpoint userinfo (source c1): last request failed: HTTP 500 (http_500)") &&
			strings.Contains(body, "endpoint bearer (source c1): last request failed: HTTP 500 (http_500)")
	})
	_, body = get(t, h, http.MethodGet, "/readyz")
	texts = append(texts, body)
	if strings.Contains(body, "refused") {
		t.Errorf("/readyz quotes an error body: %q", body)
	}
	for _, eq := range a.clusters[0].queues {
		err := eq.sender.lastError()
		if err == nil || !strings.Contains(err.Error(), "refused POST /w") {
			t.Fatalf("endpoint %s: error %v does not quote the body, the test proves nothing", eq.name, err)
		}
		texts = append(texts, err.Error())
	}
	cancel()
	<-done
	done <- nil // for the deferred receive
	texts = append(texts, logs.String())
	if !strings.Contains(logs.String(), "apikey=xxxxx") {
		t.Errorf("the log never names a redacted URL: %s", logs.String())
	}
	for _, text := range texts {
		for _, sec := range []string{srcKey, srcToken, rcvPass, rcvKey, rcvToken, base64.StdEncoding.EncodeToString([]byte("alice:" + rcvPass))} {
			if strings.Contains(text, sec) {
				t.Errorf("leaks %q: %s", sec, text)
			}
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://h/federate", "https://h/federate"},
		{"https://u:p@h:8443/federate?apikey=abc&x=1&flag#frag", "https://h:8443/federate?apikey=xxxxx&x=xxxxx&flag"},
		{"http://u@h/w?", "http://h/w"},
		{"%zz", "<unparsable url>"},
	} {
		if got := redactRawURL(tc.in); got != tc.want {
			t.Errorf("redactRawURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
