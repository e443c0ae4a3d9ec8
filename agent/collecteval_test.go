package agent

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// collectServer answers instant queries with the series set by setResult (or a 500 while
// failing) and federate requests like federateRecorder, recording the match[] of each.
type collectServer struct {
	mtx     sync.Mutex
	result  []string // the job label of each series of the vector
	failing bool
	queries []string
	fed     federateRecorder
	arrived chan []string // when set, receives the match[] of every federate request
}

func (c *collectServer) setResult(jobs ...string) {
	c.mtx.Lock()
	defer c.mtx.Unlock()
	c.result = jobs
}

func (c *collectServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" {
		c.fed.ServeHTTP(w, r)
		if c.arrived != nil {
			c.arrived <- r.URL.Query()["match[]"]
		}
		return
	}
	c.mtx.Lock()
	defer c.mtx.Unlock()
	c.queries = append(c.queries, r.URL.Query().Get("query"))
	if c.failing {
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	var el []string
	for _, j := range c.result {
		el = append(el, fmt.Sprintf(`{"metric":{"job":%q},"value":[%s,"1"]}`, j, r.URL.Query().Get("time")))
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, strings.Join(el, ","))
}

// TestCollectCycle drives a source's collect rule with a fake clock, evaluation by evaluation:
// pending, firing after for with its dynamic metrics federated as their own scrape, kept across
// a reload and across a new Source on the same WAL (whose rule now has for: 1h), unchanged by a
// failed query, resolved 15 minutes after the series went; a reload without the rule drops its
// state and metrics.
func TestCollectCycle(t *testing.T) {
	srv := &collectServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	rule := CollectRule{
		Name: "r", Expr: `up{job="a"} > 0`, For: "1m",
		Names:   []string{"dyn_a"},
		Matches: []string{`__name__="dyn_b",job="{{ $labels.job }}"`},
	}
	cfg := SourceConfig{ID: "c1", From: hs.URL, Elide: []string{}, Interval: time.Hour, EvaluateInterval: 30 * time.Second, CollectRules: []CollectRule{rule}}
	ts := newTestSource(t, cfg)
	eval := func(s *Source) { s.collectCycle(t.Context(), s.getState(), ts.clock.Now()) }
	gauges := func(s *Source) []float64 {
		return []float64{
			testutil.ToFloat64(s.cmetrics.pending.WithLabelValues("r")),
			testutil.ToFloat64(s.cmetrics.firing.WithLabelValues("r")),
			testutil.ToFloat64(s.cmetrics.matchers.WithLabelValues("r")),
		}
	}
	check := func(s *Source, step string, pending, firing, matchers float64, federated int) {
		t.Helper()
		if got, want := gauges(s), []float64{pending, firing, matchers}; !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: pending, firing, active matchers %v, want %v", step, got, want)
		}
		if reqs, _ := srv.fed.requests(); len(reqs) != federated {
			t.Fatalf("%s: %d federate requests, want %d: %v", step, len(reqs), federated, reqs)
		}
	}
	srv.setResult("a")
	eval(ts.Source)
	check(ts.Source, "first evaluation", 1, 0, 0, 0)
	ts.clock.Advance(time.Minute)
	eval(ts.Source)
	check(ts.Source, "after for", 0, 1, 2, 1)
	reqs, _ := srv.fed.requests()
	if want := []string{`{__name__="dyn_a"}`, `{__name__="dyn_b",job="a"}`}; !reflect.DeepEqual(reqs[0], want) {
		t.Fatalf("federated %v, want %v", reqs[0], want)
	}
	if _, scrapes := readSourceWAL(t, ts.w); scrapes != 1 {
		t.Fatalf("%d WAL commits, want 1 (the dynamic scrape)", scrapes)
	}

	// A reload keeps the state; the series is gone now but fires on for 15 minutes.
	srv.setResult()
	if err := ts.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	ts.clock.Advance(30 * time.Second)
	eval(ts.Source)
	check(ts.Source, "after reload", 0, 1, 2, 2)

	// A new Source on the same WAL (a restart) loads the state: still firing although for is
	// now an hour.
	cfg2 := cfg
	cfg2.CollectRules = []CollectRule{rule}
	cfg2.CollectRules[0].For = "1h"
	opts := DefaultSourceOptions()
	opts.Clock = ts.clock
	s2, err := NewSource(discardLogger(), prometheus.NewRegistry(), cfg2, ts.w, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.getState().client.Close()
	ts.clock.Advance(30 * time.Second)
	eval(s2)
	check(s2, "after restart", 0, 1, 2, 3)

	// A failed query changes nothing, even past the 15 minutes.
	srv.mtx.Lock()
	srv.failing = true
	srv.mtx.Unlock()
	ts.clock.Advance(15 * time.Minute)
	eval(s2)
	check(s2, "failed query", 0, 1, 2, 4)
	if n := testutil.ToFloat64(s2.cmetrics.failures.WithLabelValues("r")); n != 1 {
		t.Fatalf("evaluation failures %v, want 1", n)
	}
	srv.mtx.Lock()
	srv.failing = false
	srv.mtx.Unlock()
	ts.clock.Advance(30 * time.Second)
	eval(s2)
	check(s2, "resolved", 0, 0, 0, 4)

	// Firing again, then a reload without the rule: state and metrics go.
	srv.setResult("a")
	cfg3 := cfg
	cfg3.CollectRules = []CollectRule{{Name: "r", Expr: "up", Names: []string{"dyn_a"}}}
	if err := s2.Reload(cfg3); err != nil {
		t.Fatal(err)
	}
	eval(s2)
	check(s2, "for 0", 0, 1, 1, 5)
	cfg3.CollectRules = nil
	if err := s2.Reload(cfg3); err != nil {
		t.Fatal(err)
	}
	eval(s2)
	if n := testutil.CollectAndCount(s2.cmetrics.firing); n != 0 {
		t.Fatalf("%d firing series gauges after the rule was removed, want 0", n)
	}
	raw, err := ts.w.ReadSidecar(collectStateFile)
	if err != nil || strings.Contains(string(raw), `"r"`) {
		t.Fatalf("saved state %s (%v), want the rule gone", raw, err)
	}
}

// TestCollectRun: Run evaluates the collect rules at start and at every evaluate interval,
// alongside the hourly scrape, federating the firing rule's metrics each time; a reload that
// adds a rule to a source without one wakes the evaluator.
func TestCollectRun(t *testing.T) {
	srv := &collectServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	srv.setResult("a")
	cfg := SourceConfig{ID: "c1", From: hs.URL, Elide: []string{}, Interval: time.Hour, EvaluateInterval: 30 * time.Second}
	ts := newTestSource(t, cfg)
	t0 := ts.clock.Now()
	srv.arrived = make(chan []string, 16)
	waitDynamic := func() {
		t.Helper()
		if got := waitArrival(t, srv.arrived); !reflect.DeepEqual(got, []string{`{__name__="dyn_a"}`}) {
			t.Fatalf("federated %v, want the rule's dyn_a", got)
		}
	}
	stop := startRun(t, ts.Source)
	defer stop()
	if got := waitArrival(t, srv.arrived); !reflect.DeepEqual(got, []string{DefaultMatcher}) {
		t.Fatalf("first scrape %v", got)
	}
	ts.clock.waitForWaiter(t, t0.Add(time.Hour)) // the scrape loop waits; no evaluator tick
	cfg.CollectRules = []CollectRule{{Name: "r", Expr: `up{job="a"}`, Names: []string{"dyn_a"}}}
	if err := ts.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	waitDynamic()
	ts.clock.waitForWaiter(t, t0.Add(30*time.Second))
	ts.clock.Advance(30 * time.Second)
	waitDynamic()
	ts.clock.waitForWaiter(t, t0.Add(time.Minute))
	ts.clock.Advance(30 * time.Second)
	waitDynamic()
	stop()
	noArrival(t, srv.arrived)
}
