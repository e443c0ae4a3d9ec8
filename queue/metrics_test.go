package queue

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
)

// TestMetrics checks names and help, and that the counters agree with Stats after a run with
// drops.
func TestMetrics(t *testing.T) {
	w := openWAL(t)
	total := fill(t, w, 5, 10, 1000)
	s := newFakeSender(func(_ context.Context, _ int, series []prompb.TimeSeries) error {
		for _, ts := range series {
			if seriesKey(ts) == "host-4" {
				return httpErr(409)
			}
		}
		return nil
	})
	o := fastOptions("ep")
	o.MaxSamplesPerSend = 1
	o.StopAtEnd = true
	reg := prometheus.NewRegistry()
	q, err := New(testLogger(), reg, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "collector_queue_") || mf.GetHelp() == "" {
			t.Errorf("metric %s: bad name or no help", mf.GetName())
		}
	}
	st := q.Stats()
	for _, c := range []struct {
		name string
		got  float64
		want int64
	}{
		{"samples read", testutil.ToFloat64(q.metrics.samplesRead), int64(total)},
		{"records read", testutil.ToFloat64(q.metrics.recordsRead), 10},
		{"records delivered", testutil.ToFloat64(q.metrics.recordsDelivered), 10},
		{"samples sent", testutil.ToFloat64(q.metrics.samplesSent), st.Delivered},
		{"samples dropped 409", testutil.ToFloat64(q.metrics.samplesDropped.WithLabelValues("http_409")), st.Dropped["http_409"]},
		{"pending", testutil.ToFloat64(q.metrics.pending), 0},
		{"position offset", testutil.ToFloat64(q.metrics.positionOffset), st.Position.Offset},
		{"highest read ms", testutil.ToFloat64(q.metrics.highestRead) * 1000, 10000},
		{"highest sent ms", testutil.ToFloat64(q.metrics.highestSent) * 1000, 10000},
		{"shards", testutil.ToFloat64(q.metrics.shards), 1},
	} {
		if c.got != float64(c.want) {
			t.Errorf("%s: %v, want %d", c.name, c.got, c.want)
		}
	}
	if st.Dropped["http_409"] != 10 || st.Delivered != 40 {
		t.Fatalf("stats %+v", st)
	}
}
