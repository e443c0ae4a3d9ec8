package wal

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func newTestRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// counterValue returns the value of the metric name with label k=v (or without labels when k is
// empty), 0 if absent.
func counterValue(t testing.TB, reg *prometheus.Registry, name, k, v string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := k == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func TestGaugesFollowCommits(t *testing.T) {
	reg := newTestRegistry()
	opts := testOptions()
	opts.Consumers = []string{"hub"}
	opts.MaxSize = 1 << 30
	w, err := Open(nil, reg, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	appendScrape(t, w, 50, 1000)
	if got := counterValue(t, reg, "collector_wal_series", "", ""); got != 50 {
		t.Fatalf("collector_wal_series = %v, want 50", got)
	}
	size := counterValue(t, reg, "collector_wal_size_bytes", "", "")
	if size == 0 {
		t.Fatal("collector_wal_size_bytes does not follow the open segment")
	}
	if got := counterValue(t, reg, "collector_wal_max_size_bytes", "", ""); got != 1<<30 {
		t.Fatalf("collector_wal_max_size_bytes = %v", got)
	}
	if _, err := w.Truncate(); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, reg, "collector_wal_undelivered_bytes", "consumer", "hub"); got != size {
		t.Fatalf("undelivered bytes of a consumer without a position = %v, want the whole WAL %v", got, size)
	}
}
