package queue

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/sirupsen/logrus"
)

func testLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// openWAL opens a WAL of cluster "c1" in a temporary directory.
func openWAL(t testing.TB) *wal.WAL {
	t.Helper()
	opts := wal.DefaultOptions()
	opts.Fsync = wal.FsyncSegment // tests do not need machine-crash durability
	w, err := wal.Open(testLogger(), nil, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func seriesLabels(i int) labels.Labels {
	return labels.FromStrings("__name__", "test_metric", "instance", "host-"+strconv.Itoa(i), "job", "test")
}

// fill appends scrapes of nSeries series, one sample each, timestamps t0, t0+1000, ... and returns
// the number of samples appended. It calls t.Fatal: only from the test's goroutine (elsewhere use
// appendScrapes).
func fill(t testing.TB, w *wal.WAL, nSeries, scrapes int, t0 int64) int {
	t.Helper()
	n, err := appendScrapes(w, nSeries, scrapes, t0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// appendScrapes is fill for any goroutine: it returns the error instead of failing the test.
func appendScrapes(w *wal.WAL, nSeries, scrapes int, t0 int64) (int, error) {
	app := w.Appender()
	refs := make([]wal.SeriesRef, nSeries)
	for i := range refs {
		refs[i] = app.Ref(seriesLabels(i))
	}
	total := 0
	for s := 0; s < scrapes; s++ {
		for i, ref := range refs {
			app.Append(ref, t0+int64(s)*1000, float64(s*nSeries+i))
		}
		st, err := app.Commit()
		if err != nil {
			return total, fmt.Errorf("commit scrape %d at %d: %w", s, t0+int64(s)*1000, err)
		}
		total += st.Samples
	}
	return total, nil
}

// fastOptions are options for tests: small batches, short intervals, no real backoff waits.
func fastOptions(consumer string) Options {
	o := DefaultOptions()
	o.Consumer = consumer
	o.MaxSamplesPerSend = 50
	o.Capacity = 100
	o.BatchSendDeadline = 5 * time.Millisecond
	o.CommitInterval = 5 * time.Millisecond
	o.PollInterval = 5 * time.Millisecond
	o.ShardUpdateInterval = time.Hour
	o.MinBackoff = time.Millisecond
	o.MaxBackoff = 2 * time.Millisecond
	o.Sleep = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	return o
}

// testErr is a Sender error with every behaviour method, like the shipper's.
type testErr struct {
	code        int
	recoverable bool
	tooLarge    bool
	timing      bool
	retryAfter  time.Duration
	reason      string
}

func (e *testErr) Error() string                     { return fmt.Sprintf("test error %d", e.code) }
func (e *testErr) Recoverable() bool                 { return e.recoverable }
func (e *testErr) TooLarge() bool                    { return e.tooLarge }
func (e *testErr) Timing() bool                      { return e.timing }
func (e *testErr) RetryAfter() (time.Duration, bool) { return e.retryAfter, e.retryAfter > 0 }
func (e *testErr) Reason() string                    { return e.reason }
func (e *testErr) StatusCode() int                   { return e.code }

// httpErr is the shipper's classification of a status with the default retry set; a 400 is
// plain (see timingErr).
func httpErr(code int) *testErr {
	e := &testErr{code: code, reason: "http_" + strconv.Itoa(code)}
	switch code {
	case 413:
		e.tooLarge = true
	case 401, 403, 404, 405, 407, 408, 411, 415, 421, 425, 429, 431:
		e.recoverable = true
	default:
		e.recoverable = code >= 500
	}
	return e
}

// timingErr is a 400 about timestamps (out of order ...).
func timingErr() *testErr {
	e := httpErr(400)
	e.timing = true
	return e
}

// fakeSender records acknowledged samples per series and checks their order. fn, when set,
// decides the outcome of each call (it may block on ctx).
type fakeSender struct {
	fn func(ctx context.Context, call int, series []prompb.TimeSeries) error

	mu          sync.Mutex
	calls       int
	inflight    int
	maxInflight int
	acked       map[string][]int64
	ackedN      int
	orderErrs   []string
}

func newFakeSender(fn func(ctx context.Context, call int, series []prompb.TimeSeries) error) *fakeSender {
	return &fakeSender{fn: fn, acked: map[string][]int64{}}
}

func seriesKey(ts prompb.TimeSeries) string {
	for _, l := range ts.Labels {
		if l.Name == "instance" {
			return l.Value
		}
	}
	return fmt.Sprint(ts.Labels)
}

// Send decodes the series' labels (as a receiver does) and hands them to fn as prompb series.
func (f *fakeSender) Send(ctx context.Context, in []Series) error {
	series, err := toPrompb(in)
	if err != nil {
		return fmt.Errorf("fake sender: %w", err)
	}
	f.mu.Lock()
	f.calls++
	call := f.calls
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	f.mu.Unlock()
	if f.fn != nil {
		err = f.fn(ctx, call, series)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight--
	if err != nil {
		return err
	}
	for _, ts := range series {
		k := seriesKey(ts)
		for _, s := range ts.Samples {
			if prev := f.acked[k]; len(prev) > 0 && prev[len(prev)-1] >= s.Timestamp {
				f.orderErrs = append(f.orderErrs, fmt.Sprintf("%s: %d after %d", k, s.Timestamp, prev[len(prev)-1]))
			}
			f.acked[k] = append(f.acked[k], s.Timestamp)
			f.ackedN++
		}
	}
	return nil
}

func (f *fakeSender) ackedSamples() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ackedN
}

func (f *fakeSender) checkOrder(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.orderErrs) > 0 {
		t.Fatalf("order violated %d times, first: %s", len(f.orderErrs), f.orderErrs[0])
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// runQueue starts q.Run and returns a function that stops it and returns Run's error.
func runQueue(t testing.TB, q *Queue) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- q.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func metricValue(t testing.TB, q *Queue, name string) float64 {
	t.Helper()
	switch name {
	case "records_read":
		return testutil.ToFloat64(q.metrics.recordsRead)
	case "samples_read":
		return testutil.ToFloat64(q.metrics.samplesRead)
	}
	t.Fatalf("unknown metric %s", name)
	return 0
}

func sortedKeys(m map[string]int64) []string { return slices.Sorted(maps.Keys(m)) }
