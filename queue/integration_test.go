package queue_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/sirupsen/logrus"
)

func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func openWAL(t testing.TB) *wal.WAL {
	t.Helper()
	opts := wal.DefaultOptions()
	opts.Fsync = wal.FsyncSegment
	w, err := wal.Open(discardLogger(), nil, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// fill appends scrapes of nSeries series one second apart from t0 (ms) and returns what it
// appended, by instance.
func fill(t testing.TB, w *wal.WAL, nSeries, scrapes int, t0 int64, want map[string][]int64) int {
	t.Helper()
	app := w.Appender()
	refs := make([]wal.SeriesRef, nSeries)
	for i := range refs {
		refs[i] = app.Ref(labels.FromStrings("__name__", "test_metric", "instance", "host-"+strconv.Itoa(i), "job", "test"))
	}
	n := 0
	for s := 0; s < scrapes; s++ {
		ts := t0 + int64(s)*1000
		for i, ref := range refs {
			app.Append(ref, ts, float64(i))
			if want != nil {
				k := "host-" + strconv.Itoa(i)
				want[k] = append(want[k], ts)
			}
		}
		st, err := app.Commit()
		if err != nil {
			t.Fatal(err)
		}
		n += st.Samples
	}
	return n
}

func baseTime() int64 { return time.Now().Add(-30 * time.Minute).UnixMilli() }

func options(consumer string) queue.Options {
	o := queue.DefaultOptions()
	o.Consumer = consumer
	o.MaxSamplesPerSend = 200
	o.Capacity = 400
	o.MinShards, o.MaxShards = 4, 4
	o.BatchSendDeadline = 5 * time.Millisecond
	o.CommitInterval = 5 * time.Millisecond
	o.PollInterval = 5 * time.Millisecond
	o.MinBackoff, o.MaxBackoff = time.Millisecond, 5*time.Millisecond
	return o
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// decode reads a remote-write request and puts its body back for the next handler.
func decode(t testing.TB, r *http.Request) prompb.WriteRequest {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return prompb.WriteRequest{}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Errorf("snappy: %v", err)
		return prompb.WriteRequest{}
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Errorf("unmarshal: %v", err)
	}
	return req
}

func countSamples(req prompb.WriteRequest) int {
	n := 0
	for _, ts := range req.Timeseries {
		n += len(ts.Samples)
	}
	return n
}

func instance(ts prompb.TimeSeries) string {
	for _, l := range ts.Labels {
		if l.Name == "instance" {
			return l.Value
		}
	}
	return ""
}

// orderChecker records, for requests the write handler accepted, the newest timestamp per series
// and every regression.
type orderChecker struct {
	mu     sync.Mutex
	last   map[string]int64
	errors []string
}

func (o *orderChecker) check(req prompb.WriteRequest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last == nil {
		o.last = map[string]int64{}
	}
	for _, ts := range req.Timeseries {
		k := instance(ts)
		for _, s := range ts.Samples {
			if last, ok := o.last[k]; ok && s.Timestamp <= last {
				o.errors = append(o.errors, fmt.Sprintf("%s: %d after %d", k, s.Timestamp, last))
			}
			o.last[k] = s.Timestamp
		}
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// store passes the request to the write handler and checks the order of what it accepted.
func (o *orderChecker) store(t testing.TB, w http.ResponseWriter, r *http.Request, next http.Handler) {
	req := decode(t, r)
	rec := &statusRecorder{ResponseWriter: w, code: 200}
	next.ServeHTTP(rec, r)
	if rec.code/100 == 2 {
		o.check(req)
	}
}

func dropped(st queue.Stats) int64 {
	var n int64
	for _, v := range st.Dropped {
		n += v
	}
	return n
}

func metric(t testing.TB, reg *prometheus.Registry, name string, lbls ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(lbls); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == lbls[i] && lp.GetValue() == lbls[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
