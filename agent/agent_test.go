package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/collector-dev/collector/wal"
)

// federateServer serves one series per request with a timestamp advancing by a second per
// request; fail makes it answer 500.
type federateServer struct {
	*httptest.Server
	requests atomic.Int64
	fail     atomic.Bool
}

func newFederateServer(t *testing.T) *federateServer {
	t.Helper()
	fs := &federateServer{}
	base := time.Now().Add(-time.Minute).UnixMilli()
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := fs.requests.Add(1)
		if fs.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE up untyped\nup{job=\"a\",instance=\"i1\"} 1 %d\n", base+n*1000)
	}))
	t.Cleanup(fs.Close)
	return fs
}

// writeReceiver answers every remote-write request with status code.
type writeReceiver struct {
	*httptest.Server
	requests atomic.Int64
}

func newWriteReceiver(t *testing.T, code int) *writeReceiver {
	t.Helper()
	wr := &writeReceiver{}
	wr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wr.requests.Add(1)
		w.WriteHeader(code)
	}))
	t.Cleanup(wr.Close)
	return wr
}

func testOptions(t *testing.T) Options {
	o := DefaultOptions()
	o.Version = "test"
	o.WALDir = t.TempDir()
	o.Queue.BatchSendDeadline = 50 * time.Millisecond
	o.Queue.FlushDeadline = 2 * time.Second
	o.Queue.MinBackoff = 10 * time.Millisecond
	o.Queue.MaxBackoff = 50 * time.Millisecond
	return o
}

func testConfig(from string, endpoints ...string) Config {
	c := Config{Sources: []SourceConfig{{ID: "c1", From: from, Interval: time.Second}}}
	for _, u := range endpoints {
		c.Endpoints = append(c.Endpoints, EndpointConfig{URL: u})
	}
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-poll.C:
		}
	}
}

func TestNewValidation(t *testing.T) {
	good := "http://127.0.0.1:1/api/v1/write"
	for _, tc := range []struct {
		name string
		cfg  Config
		opts func(*Options)
		want string
	}{
		{"no sources", Config{Endpoints: []EndpointConfig{{URL: good}}}, nil, "no source configured"},
		{"no endpoints", testConfig("http://127.0.0.1:1"), nil, "no remote-write endpoint configured"},
		{"duplicate endpoint names", Config{
			Sources:   testConfig("http://127.0.0.1:1").Sources,
			Endpoints: []EndpointConfig{{Name: "hub", URL: good}, {Name: "hub", URL: "http://127.0.0.2:1/w"}},
		}, nil, `name "hub" is already used by endpoint 1`},
		{"same host twice", testConfig("http://127.0.0.1:1", good, good), nil, `name "127.0.0.1_1" is already used`},
		{"bad url scheme", testConfig("http://127.0.0.1:1", "ftp://hub/write"), nil, `url "ftp://hub/write" is not an http(s) URL`},
		{"url without host", testConfig("http://127.0.0.1:1", "http:///write"), nil, "is not an http(s) URL with a host"},
		{"password not in the error", testConfig("http://127.0.0.1:1", "ftp://user:s3cret@hub/write"), nil, "ftp://hub/write"},
		{"reserved name", Config{
			Sources:   testConfig("http://127.0.0.1:1").Sources,
			Endpoints: []EndpointConfig{{Name: "replay-hub", URL: good}},
		}, nil, "reserved for the positions of collector replay"},
		{"bad source", Config{
			Sources:   []SourceConfig{{ID: "c1", From: "localhost:9090"}},
			Endpoints: []EndpointConfig{{URL: good}},
		}, nil, `source "c1": from: url`},
		{"no wal dir", testConfig("http://127.0.0.1:1", good), func(o *Options) { o.WALDir = "" }, "wal directory is required"},
		{"bad queue options", testConfig("http://127.0.0.1:1", good), func(o *Options) { o.Queue.MaxShards = 0 }, "queue of source c1 to endpoint 127.0.0.1_1"},
		{"bad wal options", testConfig("http://127.0.0.1:1", good), func(o *Options) { o.WAL.SegmentSize = 1000 }, "source c1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			if tc.opts != nil {
				tc.opts(&opts)
			}
			a, err := New(discardLogger(), prometheus.NewRegistry(), tc.cfg, opts)
			if err == nil {
				a.close()
				t.Fatal("New accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q leaks the password", err)
			}
		})
	}
}

// TestNewClosesOnError checks that a failing New leaves no WAL locked: the next New opens it.
func TestNewClosesOnError(t *testing.T) {
	opts := testOptions(t)
	cfg := testConfig("http://127.0.0.1:1", "http://127.0.0.1:1/w")
	cfg.Sources = append(cfg.Sources, SourceConfig{ID: "c2", From: "http://127.0.0.1:1", MatchFile: filepath.Join(t.TempDir(), "missing")})
	if _, err := New(discardLogger(), prometheus.NewRegistry(), cfg, opts); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("New with a missing match file: %v", err)
	}
	cfg.Sources = cfg.Sources[:1]
	a, err := New(discardLogger(), prometheus.NewRegistry(), cfg, opts)
	if err != nil {
		t.Fatalf("WAL of c1 left locked: %v", err)
	}
	a.close()
}

// TestRunShipsAndCommits: every source is shipped to every endpoint, each pair with its own
// committed position, and Run returns after the shutdown.
func TestRunShipsAndCommits(t *testing.T) {
	src := newFederateServer(t)
	rcv1 := newWriteReceiver(t, http.StatusNoContent)
	rcv2 := newWriteReceiver(t, http.StatusNoContent)
	opts := testOptions(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(src.URL, rcv1.URL+"/api/v1/write")
	cfg.Endpoints = append(cfg.Endpoints, EndpointConfig{Name: "second", URL: rcv2.URL + "/api/v1/write"})
	cfg.Sources = append(cfg.Sources, SourceConfig{ID: "c2", From: src.URL, Interval: time.Second})
	a, err := New(discardLogger(), reg, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	ep1 := "127.0.0.1_" + strings.Split(rcv1.Listener.Addr().String(), ":")[1]
	delivered := func(id, ep string) int64 {
		st, err := wal.ReadPosition(filepath.Join(opts.WALDir, id), ep)
		if err != nil {
			return 0
		}
		return st.Delivered
	}
	waitFor(t, "samples of both sources delivered to both endpoints", 10*time.Second, func() bool {
		return delivered("c1", ep1) > 0 && delivered("c2", ep1) > 0 && delivered("c1", "second") > 0 && delivered("c2", "second") > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The WALs are closed: they open again.
	for _, id := range []string{"c1", "c2"} {
		w, err := wal.Open(discardLogger(), prometheus.NewRegistry(), opts.WALDir, id, wal.DefaultOptions())
		if err != nil {
			t.Fatalf("WAL %s still locked after Run: %v", id, err)
		}
		w.Close()
	}
	if ready, problems := a.Ready(); ready || !strings.Contains(strings.Join(problems, "\n"), "shutting down") {
		t.Errorf("after Run: ready %v, problems %q", ready, problems)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "collector_build_info" {
			found = true
			if l := mf.GetMetric()[0].GetLabel(); len(l) < 2 || l[1].GetName() != "version" || l[1].GetValue() != "test" {
				t.Errorf("collector_build_info labels %v", l)
			}
		}
	}
	if !found {
		t.Error("collector_build_info not registered")
	}
}

// TestListenError: a taken port fails New before any WAL directory is created.
func TestListenError(t *testing.T) {
	ln := httptest.NewServer(http.NotFoundHandler())
	defer ln.Close()
	opts := testOptions(t)
	opts.WALDir = filepath.Join(t.TempDir(), "wal")
	opts.Listen = ln.Listener.Addr().String() // taken
	_, err := New(discardLogger(), prometheus.NewRegistry(), testConfig("http://127.0.0.1:1", "http://127.0.0.1:1/w"), opts)
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("New on a taken port: %v", err)
	}
	if _, err := os.Stat(opts.WALDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("wal directory touched before the listener was bound: %v", err)
	}
	// A free port: New binds it, and close releases it.
	opts.Listen = "127.0.0.1:0"
	a, err := New(discardLogger(), prometheus.NewRegistry(), testConfig("http://127.0.0.1:1", "http://127.0.0.1:1/w"), opts)
	if err != nil {
		t.Fatal(err)
	}
	addr := a.ln.Addr().String()
	a.close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listener not released by close: %v", err)
	}
	l.Close()
}

func TestAgentReload(t *testing.T) {
	dir := t.TempDir()
	matchFile := filepath.Join(dir, "match.txt")
	if err := os.WriteFile(matchFile, []byte("{__name__=\"up\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := "http://127.0.0.1:1/api/v1/write"
	base := func() Config {
		c := testConfig("http://127.0.0.1:1", ep)
		c.Sources[0].MatchFile = matchFile
		c.Sources = append(c.Sources, SourceConfig{ID: "c2", From: "http://127.0.0.1:1", Interval: time.Second})
		return c
	}
	a, err := New(discardLogger(), prometheus.NewRegistry(), base(), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	matchers := func(id string) []string {
		for _, c := range a.clusters {
			if c.id == id {
				return c.source.getState().matchers
			}
		}
		t.Fatalf("no source %s", id)
		return nil
	}

	for _, tc := range []struct {
		name   string
		change func(*Config)
		setup  func()
		want   string
	}{
		{"source added", func(c *Config) {
			c.Sources = append(c.Sources, SourceConfig{ID: "c3", From: "http://127.0.0.1:1"})
		}, nil, "restart to add or remove sources"},
		{"source removed", func(c *Config) { c.Sources = c.Sources[:1] }, nil, "restart to add or remove sources"},
		{"endpoint added", func(c *Config) {
			c.Endpoints = append(c.Endpoints, EndpointConfig{URL: "http://127.0.0.2:1/w"})
		}, nil, "reload adds 127.0.0.2_1: restart"},
		{"endpoint changed", func(c *Config) { c.Endpoints[0].Tenant = "other" }, nil, "reload changes 127.0.0.1_1"},
		{"endpoint removed", func(c *Config) { c.Endpoints = nil }, nil, "reload removes 127.0.0.1_1"},
		{"invalid matcher", func(c *Config) { c.Sources[1].Matchers = []string{"up{"} }, nil, `source "c2": matcher "up{"`},
		{"broken match file", func(c *Config) { c.Sources[1].Matchers = []string{`{__name__="b"}`} }, func() {
			if err := os.WriteFile(matchFile, []byte("up{\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "match file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			cfg := base()
			tc.change(&cfg)
			err := a.Reload(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload: %v, want an error containing %q", err, tc.want)
			}
			// Nothing applied: c2 keeps the default matcher even when its own change was valid.
			if got := matchers("c2"); len(got) != 1 || got[0] != DefaultMatcher {
				t.Errorf("c2 matchers after a refused reload: %q", got)
			}
		})
	}

	t.Run("good", func(t *testing.T) {
		if err := os.WriteFile(matchFile, []byte("{__name__=\"a\"}\n{__name__=\"b\"}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := base()
		cfg.Sources[1].Matchers = []string{`{__name__="c"}`}
		if err := a.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		if got := matchers("c1"); len(got) != 2 || got[1] != `{__name__="b"}` {
			t.Errorf("c1 matchers %q", got)
		}
		if got := matchers("c2"); len(got) != 1 || got[0] != `{__name__="c"}` {
			t.Errorf("c2 matchers %q", got)
		}
	})
}

func TestLoadConfigEndpointsAndFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write("good.yaml", `
flags:
  interval: 1m
  match: ['{__name__="up"}', '{job="a"}']
  enable-pprof: true
remote_write:
  - url: http://hub.example.com:19291/api/v1/receive
    tls_config:
      ca_file: ca.crt
  - name: backup
    url: https://backup.example.com/receive
    bearer_token_file: /abs/token
    headers: {X-A: b}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sources) != 0 || len(c.Endpoints) != 2 {
		t.Fatalf("decoded %+v", c)
	}
	if e := c.Endpoints[0]; e.Name != "hub.example.com_19291" || e.HTTPClientConfig.TLSConfig.CAFile != filepath.Join(dir, "ca.crt") {
		t.Errorf("endpoint 0: %+v", e)
	}
	if e := c.Endpoints[1]; e.Name != "backup" || e.HTTPClientConfig.BearerTokenFile != "/abs/token" || e.Headers["X-A"] != "b" {
		t.Errorf("endpoint 1: %+v", e)
	}
	if v := c.Flags["interval"]; len(v.Values) != 1 || v.Values[0] != "1m" || v.Line != 3 {
		t.Errorf("flags.interval %+v", v)
	}
	if v := c.Flags["match"]; len(v.Values) != 2 || v.Values[1] != `{job="a"}` {
		t.Errorf("flags.match %+v", v)
	}
	if v := c.Flags["enable-pprof"]; len(v.Values) != 1 || v.Values[0] != "true" {
		t.Errorf("flags.enable-pprof %+v", v)
	}

	for _, tc := range []struct {
		name, body, want string
	}{
		{"duplicate endpoint", "remote_write:\n- {name: a, url: 'http://x/w'}\n- {name: a, url: 'http://y/w'}\n", `line 3, column 3: remote_write[1] (a): name "a" is already used by the entry at line 2`},
		{"same host", "remote_write:\n- {url: 'http://x/w'}\n- {url: 'http://x/v'}\n", `name "x" is already used`},
		{"unknown endpoint key", "remote_write:\n- {url: 'http://x/w', tenantt: a}\n", "line 2, column 23: field tenantt not found in a remote_write entry"},
		{"bad endpoint url", "remote_write:\n- {url: 'x/w'}\n", "is not an http(s) URL"},
		{"endpoints removed", "endpoints:\n- {url: 'http://x/w'}\n", "line 1, column 1: endpoints: was replaced by remote_write:"},
		{"flag map value", "flags:\n  interval: {a: 1}\n", "line 2: a flag's value is a scalar or a list"},
		{"flag null", "flags:\n  interval:\n", "flags.interval has no value"},
		{"flag nested list", "flags:\n  match: [[a]]\n", "holds scalars only"},
		{"unknown top-level key", "flag:\n  interval: 1m\n", "field flag not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(write(tc.name+".yaml", tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadConfig: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestMergeFlagEndpoints(t *testing.T) {
	file := []EndpointConfig{{Name: "hub", URL: "http://hub/w"}}
	got, err := MergeFlagEndpoints(file, []EndpointConfig{{URL: "http://other:8080/w"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "hub" || got[1].Name != "other_8080" {
		t.Errorf("merged %+v", got)
	}
	if _, err := MergeFlagEndpoints(file, []EndpointConfig{{URL: "http://hub/x"}}); err == nil || !strings.Contains(err.Error(), `name "hub" is already used`) {
		t.Errorf("a --to-upload named like a file endpoint: %v", err)
	}
	// MergeFlagSource keeps the file's endpoints.
	cfg, err := MergeFlagSource(Config{Endpoints: file}, &SourceConfig{ID: "a", From: "http://p"})
	if err != nil || len(cfg.Endpoints) != 1 {
		t.Errorf("MergeFlagSource: %+v, %v", cfg, err)
	}
}

// TestRunFinalCommitFails: a queue that cannot commit its position at shutdown makes Run fail
// with ErrFinalCommit, logged once with the source and the endpoint.
func TestRunFinalCommitFails(t *testing.T) {
	src := newFederateServer(t)
	rcv := newWriteReceiver(t, http.StatusOK)
	opts := testOptions(t)
	opts.Queue.CommitInterval = time.Hour // only the final commit writes
	logger, hook := logtest.NewNullLogger()
	a, err := New(logger, prometheus.NewRegistry(), testConfig(src.URL, rcv.URL+"/w"), opts)
	if err != nil {
		t.Fatal(err)
	}
	// The position directory becomes a file: every commit fails.
	posDir := filepath.Join(opts.WALDir, "c1", "positions")
	if err := os.Remove(posDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(posDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "a delivered request", 10*time.Second, func() bool { return rcv.requests.Load() > 0 })
	cancel()
	err = <-done
	if !errors.Is(err, ErrFinalCommit) || !strings.Contains(err.Error(), "source c1") {
		t.Fatalf("Run returned %v, want ErrFinalCommit naming the source", err)
	}
	n := 0
	for _, e := range hook.AllEntries() {
		if e.Message == "final position commit failed; the next start resends from the last committed position" {
			n++
			if e.Level != logrus.ErrorLevel || e.Data["cluster_id"] != "c1" || e.Data["err"] == nil {
				t.Errorf("log entry %v %v", e.Level, e.Data)
			}
		}
	}
	if n != 1 {
		t.Fatalf("final commit failure logged %d times, want 1", n)
	}
}
