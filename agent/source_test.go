package agent

import (
	"context"
	"fmt"

	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a Clock moved by hand. Waiters fire when Advance passes their time.
type fakeClock struct {
	mtx     sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	changed chan struct{} // closed and replaced when a waiter is added
}

type fakeWaiter struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mtx.Lock()
	defer c.mtx.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mtx.Lock()
	defer c.mtx.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), c: ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// Advance moves the clock and fires the waiters due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mtx.Lock()
	defer c.mtx.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.c <- c.now
	}
	c.waiters = kept
}

// waitForWaiter blocks until a waiter due at at is registered, or fails after a deadline.
func (c *fakeClock) waitForWaiter(t *testing.T, at time.Time) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mtx.Lock()
		changed := c.changed
		for _, w := range c.waiters {
			if w.at.Equal(at) {
				c.mtx.Unlock()
				return
			}
		}
		c.mtx.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no waiter for %s registered", at)
		}
	}
}

// gatedServer answers federate requests; a request blocks while the gate is closed.
type gatedServer struct {
	arrived chan []string // match[] of each request, as it arrives
	mtx     sync.Mutex
	gate    chan struct{} // requests wait until it is closed; guarded by mtx
	n       int64         // requests served; guarded by mtx
}

func newGatedServer() *gatedServer {
	g := &gatedServer{arrived: make(chan []string, 100), gate: make(chan struct{})}
	close(g.gate)
	return g
}

func (g *gatedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.arrived <- r.URL.Query()["match[]"]
	g.mtx.Lock()
	gate := g.gate
	g.n++
	n := g.n
	g.mtx.Unlock()
	<-gate
	w.Header().Set("Content-Type", promTextType)
	fmt.Fprintf(w, "up 1 %d\n", time.Now().UnixMilli()+n) // a new sample each time, however fast

}

func (g *gatedServer) hold() {
	g.mtx.Lock()
	g.gate = make(chan struct{})
	g.mtx.Unlock()
}

func (g *gatedServer) release() {
	g.mtx.Lock()
	close(g.gate)
	g.mtx.Unlock()
}

func waitArrival(t *testing.T, c <-chan []string) []string {
	t.Helper()
	select {
	case m := <-c:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no request arrived")
		return nil
	}
}

func noArrival(t *testing.T, c <-chan []string) {
	t.Helper()
	select {
	case m := <-c:
		t.Fatalf("unexpected request %v", m)
	default:
	}
}

// startRun runs the source and returns a function that stops it and checks that Run returned.
// The function may be called more than once.
func startRun(t *testing.T, s *Source) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() { stopRun(t, cancel, done) })
	}
}

func stopRun(t *testing.T, cancel func(), done <-chan error) {
	{
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
	}
}

func TestRunSchedule(t *testing.T) {
	g := newGatedServer()
	srv := httptest.NewServer(g)
	defer srv.Close()
	const interval = time.Minute
	ts := newTestSource(t, SourceConfig{From: srv.URL, Interval: interval})
	t0 := ts.clock.Now()
	if st := ts.Status(); st.Attempted {
		t.Fatal("attempted before Run")
	}

	g.hold()
	stop := startRun(t, ts.Source)
	defer stop()
	waitArrival(t, g.arrived) // first scrape at start, no clock movement
	// The scrape takes 1.5 intervals: the tick at t0+1m is missed, not queued.
	ts.clock.Advance(interval * 3 / 2)
	g.release()
	ts.clock.waitForWaiter(t, t0.Add(2*interval))
	noArrival(t, g.arrived)
	if n := testutil.ToFloat64(ts.metrics.overruns); n != 1 {
		t.Fatalf("overruns %v, want 1", n)
	}
	if st := ts.Status(); !st.Attempted || st.LastError != nil || !st.LastSuccess.Equal(t0.Add(interval*3/2)) {
		t.Fatalf("status %+v", st)
	}
	ts.clock.Advance(interval / 2) // t0+2m
	waitArrival(t, g.arrived)
	ts.clock.waitForWaiter(t, t0.Add(3*interval))
	ts.clock.Advance(interval - time.Nanosecond)
	noArrival(t, g.arrived)
	ts.clock.Advance(time.Nanosecond) // t0+3m
	waitArrival(t, g.arrived)
	ts.clock.waitForWaiter(t, t0.Add(4*interval))
	if n := testutil.ToFloat64(ts.metrics.overruns); n != 1 {
		t.Fatalf("overruns %v, want 1", n)
	}
	stop()
	if got, batches := readSourceWAL(t, ts.w); len(got) != 3 || batches != 3 {
		t.Fatalf("%d samples in %d commits, want 3 in 3", len(got), batches)
	}
	if err := ts.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
}

func TestNextTick(t *testing.T) {
	t0 := time.Unix(0, 0)
	for _, tc := range []struct {
		elapsed, want time.Duration
		overrun       bool
	}{
		{0, time.Minute, false},
		{59 * time.Second, time.Minute, false},
		{time.Minute, 2 * time.Minute, true},
		{150 * time.Second, 3 * time.Minute, true},
	} {
		t.Run(tc.elapsed.String(), func(t *testing.T) {
			next, overrun := nextTick(t0, t0.Add(tc.elapsed), time.Minute)
			if next.Sub(t0) != tc.want || overrun != tc.overrun {
				t.Fatalf("got %s %v", next.Sub(t0), overrun)
			}
		})
	}
}

func TestReload(t *testing.T) {
	g := newGatedServer()
	srv := httptest.NewServer(g)
	defer srv.Close()
	cfg := SourceConfig{ID: "c1", From: srv.URL, Interval: 5 * time.Minute, Matchers: []string{`{__name__="a"}`}, Elide: []string{}}
	ts := newTestSource(t, cfg)
	t0 := ts.clock.Now()
	stop := startRun(t, ts.Source)
	defer stop()
	if m := waitArrival(t, g.arrived); !reflect.DeepEqual(m, []string{`{__name__="a"}`}) {
		t.Fatalf("matchers %v", m)
	}
	ts.clock.waitForWaiter(t, t0.Add(5*time.Minute))

	for _, tc := range []struct {
		name string
		mod  func(*SourceConfig)
		want string
	}{
		{"id change", func(c *SourceConfig) { c.ID = "c2" }, "id changed"},
		{"bad matcher", func(c *SourceConfig) { c.Matchers = []string{"up{"} }, `matcher "up{"`},
		{"missing match file", func(c *SourceConfig) { c.MatchFile = filepath.Join(t.TempDir(), "nope") }, "read match file"},
		{"missing CA", func(c *SourceConfig) { c.HTTPClientConfig.TLSConfig.CAFile = filepath.Join(t.TempDir(), "nope") }, "no such file"},
		{"anonymize without salt file", func(c *SourceConfig) {
			c.Anonymize, c.AnonymizeSaltFile = []string{"pod"}, filepath.Join(t.TempDir(), "nope")
		}, "read anonymize salt file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := cfg
			tc.mod(&bad)
			if err := ts.Reload(bad); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}

	// A good reload: new matchers, labels and a shorter interval, picked up by the waiting loop.
	next := cfg
	next.Matchers = []string{`{__name__="b"}`}
	next.Labels = map[string]string{"env": "prod"}
	next.Interval = time.Minute
	if err := ts.Reload(next); err != nil {
		t.Fatal(err)
	}
	ts.clock.waitForWaiter(t, t0.Add(time.Minute))
	ts.clock.Advance(time.Minute)
	if m := waitArrival(t, g.arrived); !reflect.DeepEqual(m, []string{`{__name__="b"}`}) {
		t.Fatalf("matchers after reload %v", m)
	}
	ts.clock.waitForWaiter(t, t0.Add(2*time.Minute))
	stop()
	got, _ := readSourceWAL(t, ts.w)
	if len(got) != 2 || strings.Contains(got[0].Series, "env") || !strings.Contains(got[1].Series, `env="prod"`) {
		t.Fatalf("samples %v", got)
	}
}

func TestNewSourceErrors(t *testing.T) {
	w := openSourceWAL(t)
	for _, tc := range []struct {
		name string
		cfg  SourceConfig
		w    bool
		want string
	}{
		{"nil wal", SourceConfig{ID: "c1", From: "http://localhost:1"}, false, "nil WAL"},
		{"invalid config", SourceConfig{ID: "c1"}, true, "from: url is empty"},
		{"bad allowlist key", SourceConfig{ID: "c1", From: "http://localhost:1", Allowlist: "testdata/allowlist/rhacm-metrics-allowlist.yaml", AllowlistKey: "x.yaml"}, true, `ConfigMap has no key "x.yaml"`},
		{"rule in config and allowlist", SourceConfig{
			ID: "c1", From: "http://localhost:1", Allowlist: "testdata/allowlist/rhacm-metrics-allowlist.yaml", AllowlistKey: UWLAllowlistKey,
			RecordingRules: []RecordingRule{{Name: "sum:apiserver_request_total:5m", Query: "up"}},
		}, true, "defined twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ww := w
			if !tc.w {
				ww = nil
			}
			_, err := NewSource(discardLogger(), prometheus.NewRegistry(), tc.cfg, ww, DefaultSourceOptions())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSourceWithAllowlist(t *testing.T) {
	rec := &federateRecorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ts := newTestSource(t, SourceConfig{
		From: srv.URL, Allowlist: "testdata/allowlist/rhacm-metrics-allowlist.yaml", WorkerNumber: 4,
		Renames: map[string]string{"etcd_mvcc_db_total_size_in_bytes": "overridden"},
	})
	st := ts.getState()
	if len(st.matchers) != 228 || len(st.rules) != 15 || len(st.groups) != 4 {
		t.Fatalf("matchers %d rules %d workers %d", len(st.matchers), len(st.rules), len(st.groups))
	}
	if st.transform.Renames["mixin_pod_workload"] != "namespace_workload_pod:kube_pod_owner:relabel" ||
		st.transform.Renames["etcd_mvcc_db_total_size_in_bytes"] != "overridden" {
		t.Fatalf("renames %v", st.transform.Renames)
	}
	if w := ts.warnings(); len(w) != 0 || len(st.collect) != 0 {
		t.Fatalf("warnings %v, collect rules %d (no clusterType: the SNO group is not selected)", w, len(st.collect))
	}
	sno, err := buildState(SourceConfig{
		ID: "c1", From: srv.URL, Allowlist: "testdata/allowlist/rhacm-metrics-allowlist.yaml",
		Labels: map[string]string{"clusterType": "SNO"},
	}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	sno.client.Close()
	if len(sno.matchers) != 216 || len(sno.collect) != 2 {
		t.Fatalf("clusterType SNO: %d matchers, %d collect rules; want 216, 2", len(sno.matchers), len(sno.collect))
	}
	// Federate only (the rules' query API is this server too, which answers them with text).
	st2 := *st
	st2.rules = nil
	ts.mtx.Lock()
	ts.state = &st2
	ts.mtx.Unlock()
	ts.runCycle(t)
	reqs, _ := rec.requests()
	n := 0
	for _, r := range reqs {
		n += len(r)
	}
	if len(reqs) != 4 || n != 228 {
		t.Fatalf("%d requests with %d matchers", len(reqs), n)
	}
}
