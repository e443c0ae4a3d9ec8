package queue

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func TestDropsByReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		// err returns the failure for a request holding series key, or nil.
		err      func(key string, samples int) error
		perBatch int
		want     map[string]int64
		retried  bool // each failing series recovers after 3 attempts
		sentOnce bool // no sample is in two requests
	}{
		{
			name: "409 for one series",
			err: func(key string, _ int) error {
				if key == "host-1" {
					return httpErr(409)
				}
				return nil
			},
			perBatch: 1,
			want:     map[string]int64{"http_409": 10},
		},
		{
			// The remote-write specification forbids sending a request refused with 4xx again.
			name: "plain 400 and 409 drop without a resend",
			err: func(key string, _ int) error {
				switch key {
				case "host-1":
					return httpErr(400)
				case "host-2":
					return httpErr(409)
				}
				return nil
			},
			perBatch: 1,
			want:     map[string]int64{"http_400": 10, "http_409": 10},
			sentOnce: true,
		},
		{
			// Prometheus' receiver refuses a whole request (400) for one out-of-order sample:
			// the request is bisected and only the refused series' samples are dropped.
			name: "timing 400 bisects down to the refused series",
			err: func(key string, _ int) error {
				if key == "host-3" {
					return timingErr()
				}
				return nil
			},
			perBatch: 50,
			want:     map[string]int64{"http_400": 10},
		},
		{
			name: "plain 400 drops the whole batch, sent once",
			err: func(key string, _ int) error {
				if key == "host-3" {
					return httpErr(400)
				}
				return nil
			},
			perBatch: 50,
			want:     map[string]int64{"http_400": 50}, // the one batch holds every sample
			sentOnce: true,
		},
		{
			// A wrong path, a revoked credential, a wrong tenant: time, never data.
			name: "404 is retried until it succeeds, nothing dropped",
			err: func(key string, _ int) error {
				if key == "host-3" {
					return httpErr(404)
				}
				return nil
			},
			perBatch: 50,
			want:     map[string]int64{},
			retried:  true,
		},
		{
			name: "401 and 403 are retried until they succeed, nothing dropped",
			err: func(key string, _ int) error {
				switch key {
				case "host-0":
					return httpErr(401)
				case "host-4":
					return httpErr(403)
				}
				return nil
			},
			perBatch: 1,
			want:     map[string]int64{},
			retried:  true,
		},
		{
			name: "permanent without reason",
			err: func(key string, _ int) error {
				if key == "host-0" {
					return &testErr{code: 422}
				}
				return nil
			},
			perBatch: 1,
			want:     map[string]int64{"http_422": 10},
		},
		{
			name: "413 splits down to the refused series",
			err: func(key string, samples int) error {
				if samples > 3 || key == "host-3" {
					return httpErr(413)
				}
				return nil
			},
			perBatch: 50,
			want:     map[string]int64{"too_large": 10},
		},
		{
			name: "unknown error is retried, never dropped",
			err: func(key string, _ int) error {
				if key == "host-2" {
					return errors.New("boom")
				}
				return nil
			},
			perBatch: 1,
			want:     map[string]int64{},
			retried:  true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := openWAL(t)
			total := fill(t, w, 5, 10, 1000)
			var failures sync.Map // series key -> failures, for the retried case
			var sent atomic.Int64 // samples in requests, refused ones included
			s := newFakeSender(func(ctx context.Context, call int, series []prompb.TimeSeries) error {
				n := 0
				for _, ts := range series {
					n += len(ts.Samples)
				}
				sent.Add(int64(n))
				for _, ts := range series {
					k := seriesKey(ts)
					if err := tc.err(k, n); err != nil {
						if tc.retried {
							v, _ := failures.LoadOrStore(k, new(atomic.Int64))
							if v.(*atomic.Int64).Add(1) > 3 {
								return nil // recovers after 3 attempts
							}
						}
						return err
					}
				}
				return nil
			})
			o := fastOptions("ep")
			o.MaxSamplesPerSend = tc.perBatch
			o.Capacity = max(o.Capacity, tc.perBatch)
			o.StopAtEnd = true
			q, err := New(testLogger(), nil, w, s, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := q.Stats()
			var dropped int64
			for _, n := range st.Dropped {
				dropped += n
			}
			if !maps.Equal(st.Dropped, tc.want) && !(len(st.Dropped) == 0 && len(tc.want) == 0) {
				t.Fatalf("dropped %v, want %v", st.Dropped, tc.want)
			}
			if st.Delivered+dropped != int64(total) || int64(s.ackedSamples()) != st.Delivered {
				t.Fatalf("delivered %d + dropped %d != appended %d (sender acked %d)", st.Delivered, dropped, total, s.ackedSamples())
			}
			ps, err := wal.ReadPosition(w.Dir(), "ep")
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(ps.Dropped, st.Dropped) || ps.Delivered != st.Delivered {
				t.Fatalf("position file %+v, stats %+v", ps, st)
			}
			s.checkOrder(t)
			if tc.sentOnce && sent.Load() != int64(total) {
				t.Fatalf("%d samples sent for %d appended: a refused request was sent again", sent.Load(), total)
			}
			if r := testutil.ToFloat64(q.metrics.samplesRetried); tc.retried != (r > 0) {
				t.Fatalf("%v samples retried", r)
			}
		})
	}
}

func TestSampleAgeLimit(t *testing.T) {
	for _, perSend := range []int{2, 3, 50} {
		t.Run("batches of "+strconv.Itoa(perSend), func(t *testing.T) {
			w := openWAL(t)
			// 10 scrapes one second apart, from t=0s to t=9s; now is 15s, the limit 10s: the
			// scrapes at 0..4 s are too old.
			total := fill(t, w, 3, 10, 0)
			s := newFakeSender(nil)
			o := fastOptions("ep")
			o.StopAtEnd = true
			o.MaxSamplesPerSend = perSend
			o.SampleAgeLimit = 10 * time.Second
			o.Now = func() time.Time { return time.UnixMilli(15000) }
			q, err := New(testLogger(), nil, w, s, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := q.Stats()
			if st.Dropped[ReasonTooOld] != 15 || st.Delivered != int64(total-15) {
				t.Fatalf("stats %+v", st)
			}
			// Each series got exactly its recent samples, under its own labels.
			want := []int64{5000, 6000, 7000, 8000, 9000}
			for _, k := range []string{"host-0", "host-1", "host-2"} {
				if got := s.acked[k]; !slices.Equal(got, want) {
					t.Fatalf("%s received %v, want %v", k, got, want)
				}
			}
		})
	}
}

// TestRetryDelays checks what the shard waits between attempts: the backoff, or Retry-After
// capped at MaxRetryAfter.
func TestRetryDelays(t *testing.T) {
	for _, tc := range []struct {
		name     string
		errs     []error
		maxRA    time.Duration
		min, max []time.Duration // bounds of each wait
	}{
		{
			name: "backoff doubles with jitter",
			errs: []error{httpErr(503), httpErr(503), httpErr(503), httpErr(503)},
			min:  []time.Duration{24 * time.Millisecond, 48 * time.Millisecond, 96 * time.Millisecond, 192 * time.Millisecond},
			max:  []time.Duration{36 * time.Millisecond, 72 * time.Millisecond, 144 * time.Millisecond, 288 * time.Millisecond},
		},
		{
			name:  "retry-after takes precedence",
			errs:  []error{&testErr{code: 429, recoverable: true, retryAfter: 7 * time.Second}, httpErr(503)},
			maxRA: time.Minute,
			min:   []time.Duration{7 * time.Second, 24 * time.Millisecond},
			max:   []time.Duration{7 * time.Second, 36 * time.Millisecond},
		},
		{
			name:  "retry-after is capped",
			errs:  []error{&testErr{code: 503, recoverable: true, retryAfter: time.Hour}},
			maxRA: 5 * time.Minute,
			min:   []time.Duration{5 * time.Minute},
			max:   []time.Duration{5 * time.Minute},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := openWAL(t)
			fill(t, w, 1, 1, 1000)
			s := newFakeSender(func(_ context.Context, call int, _ []prompb.TimeSeries) error {
				if call <= len(tc.errs) {
					return tc.errs[call-1]
				}
				return nil
			})
			var mu sync.Mutex
			var waits []time.Duration
			o := fastOptions("ep")
			o.StopAtEnd = true
			o.MinBackoff, o.MaxBackoff = 30*time.Millisecond, 30*time.Second
			if tc.maxRA > 0 {
				o.MaxRetryAfter = tc.maxRA
			}
			o.Sleep = func(ctx context.Context, d time.Duration) error {
				mu.Lock()
				waits = append(waits, d)
				mu.Unlock()
				return ctx.Err()
			}
			q, err := New(testLogger(), nil, w, s, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(waits) != len(tc.errs) {
				t.Fatalf("waited %v", waits)
			}
			for i, d := range waits {
				if d < tc.min[i] || d > tc.max[i] {
					t.Fatalf("wait %d is %v, want [%v, %v] (all: %v)", i, d, tc.min[i], tc.max[i], waits)
				}
			}
			if q.Stats().Delivered != 1 {
				t.Fatalf("stats %+v", q.Stats())
			}
		})
	}
}

// TestFailingStateLoggedOnce: an endpoint that fails (503, then 401 for a revoked credential)
// and recovers is logged once per change of state, not per retry, and shows in
// collector_queue_failing_shards by reason while it fails; nothing is dropped.
func TestFailingStateLoggedOnce(t *testing.T) {
	w := openWAL(t)
	total := fill(t, w, 3, 4, 1000)
	s := newFakeSender(func(_ context.Context, call int, _ []prompb.TimeSeries) error {
		switch {
		case call <= 3:
			return httpErr(503)
		case call <= 8:
			return httpErr(401)
		}
		return nil
	})
	logger, hook := logtest.NewNullLogger()
	var q *Queue
	var gauges []string // the failing reasons at each wait
	o := fastOptions("ep")
	o.StopAtEnd = true
	o.MinShards, o.MaxShards = 1, 1
	o.Sleep = func(ctx context.Context, _ time.Duration) error {
		var g []string
		for _, r := range []string{"http_503", "http_401"} {
			if v := testutil.ToFloat64(q.metrics.failingShards.WithLabelValues(r)); v != 0 {
				g = append(g, r+"="+strconv.FormatFloat(v, 'f', -1, 64))
			}
		}
		gauges = append(gauges, strings.Join(g, ","))
		return ctx.Err()
	}
	q, err := New(logger, nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"http_503=1", "http_503=1", "http_503=1", "http_401=1", "http_401=1", "http_401=1", "http_401=1", "http_401=1"}
	if !slices.Equal(gauges, want) {
		t.Fatalf("failing shards at each wait %q, want %q", gauges, want)
	}
	for _, r := range []string{"http_503", "http_401"} {
		if v := testutil.ToFloat64(q.metrics.failingShards.WithLabelValues(r)); v != 0 {
			t.Fatalf("failing shards %s = %v after recovery", r, v)
		}
	}
	var logs []string
	for _, e := range hook.AllEntries() {
		if strings.HasPrefix(e.Message, "remote write") {
			logs = append(logs, fmt.Sprintf("%s %s %v", e.Level, e.Message, e.Data["reason"]))
		}
	}
	wantLogs := []string{
		"warning remote write failing; retrying until it succeeds, the samples wait in the wal http_503",
		"warning remote write failing; retrying until it succeeds, the samples wait in the wal http_401",
		"info remote write recovered <nil>",
	}
	if !slices.Equal(logs, wantLogs) {
		t.Fatalf("logs:\n%s\nwant:\n%s", strings.Join(logs, "\n"), strings.Join(wantLogs, "\n"))
	}
	if st := q.Stats(); st.Delivered != int64(total) || len(st.Dropped) != 0 {
		t.Fatalf("stats %+v, appended %d", st, total)
	}
}
