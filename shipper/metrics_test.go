package shipper

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)

	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	opts := DefaultOptions()
	opts.Now = clock.Now
	log, _ := testLogger()
	// The agent wraps the registerer per endpoint; the labels must pass through.
	wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"endpoint": "hub"}, reg)
	c, err := New(log, wrapped, srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	refused, err := New(log, prometheus.WrapRegistererWith(prometheus.Labels{"endpoint": "down"}, reg), refusedURL(t), opts)
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	series := testSeries() // 3 samples
	for _, s := range []int{http.StatusNoContent, http.StatusNoContent, http.StatusServiceUnavailable, http.StatusConflict} {
		status.Store(int32(s))
		_ = c.Send(ctx, toSeries(series))
	}
	_ = refused.Send(ctx, toSeries(series))
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_ = c.Send(canceled, toSeries(series)) // not an attempt: not counted

	want := fmt.Sprintf(`
# HELP collector_shipper_requests_total Remote-write requests by HTTP status code; status_code is "error" when no response was received.
# TYPE collector_shipper_requests_total counter
collector_shipper_requests_total{endpoint="down",status_code="error"} 1
collector_shipper_requests_total{endpoint="hub",status_code="204"} 2
collector_shipper_requests_total{endpoint="hub",status_code="409"} 1
collector_shipper_requests_total{endpoint="hub",status_code="503"} 1
# HELP forward_write_requests_total Remote-write requests by HTTP status code (the metrics-collector name, same values as collector_shipper_requests_total).
# TYPE forward_write_requests_total counter
forward_write_requests_total{endpoint="down",status_code="error"} 1
forward_write_requests_total{endpoint="hub",status_code="204"} 2
forward_write_requests_total{endpoint="hub",status_code="409"} 1
forward_write_requests_total{endpoint="hub",status_code="503"} 1
# HELP collector_shipper_sent_samples_total Samples in remote-write requests answered with 2xx.
# TYPE collector_shipper_sent_samples_total counter
collector_shipper_sent_samples_total{endpoint="down"} 0
collector_shipper_sent_samples_total{endpoint="hub"} 6
# HELP collector_shipper_last_success_timestamp_seconds Unix time of the last remote-write request answered with 2xx.
# TYPE collector_shipper_last_success_timestamp_seconds gauge
collector_shipper_last_success_timestamp_seconds{endpoint="down"} 0
collector_shipper_last_success_timestamp_seconds{endpoint="hub"} %d
`, clock.Now().Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"collector_shipper_requests_total", "forward_write_requests_total",
		"collector_shipper_sent_samples_total", "collector_shipper_last_success_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() != "hub" {
				continue
			}
			switch mf.GetName() {
			case "collector_shipper_request_duration_seconds":
				if n := m.GetHistogram().GetSampleCount(); n != 4 {
					t.Errorf("duration observations = %d, want 4", n)
				}
			case "collector_shipper_sent_bytes_total":
				if v := m.GetCounter().GetValue(); v <= 0 {
					t.Errorf("sent bytes = %v, want > 0", v)
				}
			}
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("metric lint: %v %v", problems, err)
	}
}
