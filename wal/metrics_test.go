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
