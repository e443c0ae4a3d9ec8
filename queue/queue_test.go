package queue

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/prometheus/prompb"
)

func TestNewValidates(t *testing.T) {
	w := openWAL(t)
	s := newFakeSender(nil)
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"no consumer", func(o *Options) { o.Consumer = "" }},
		{"path in consumer", func(o *Options) { o.Consumer = "a/b" }},
		{"no samples per send", func(o *Options) { o.MaxSamplesPerSend = 0 }},
		{"capacity below a batch", func(o *Options) { o.Capacity = o.MaxSamplesPerSend - 1 }},
		{"max shards below min", func(o *Options) { o.MinShards, o.MaxShards = 3, 2 }},
		{"jitter of one", func(o *Options) { o.BackoffJitter = 1 }},
		{"empty time range", func(o *Options) { o.MinTime, o.MaxTime = 10, 5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fastOptions("ep")
			tc.mod(&o)
			if _, err := New(testLogger(), nil, w, s, o); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	if _, err := New(testLogger(), nil, w, s, fastOptions("ep")); err != nil {
		t.Fatal(err)
	}
}

// TestDeliverAllAndCommit ships a WAL to the end, then checks the position file and that a
// second run from it sends nothing and keeps the counters.
func TestDeliverAllAndCommit(t *testing.T) {
	w := openWAL(t)
	total := fill(t, w, 37, 20, 1000)
	s := newFakeSender(nil)
	o := fastOptions("ep")
	o.StopAtEnd = true
	o.MinShards, o.MaxShards = 3, 3
	q, err := New(testLogger(), nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.ackedSamples(); got != total {
		t.Fatalf("acked %d samples, appended %d", got, total)
	}
	s.checkOrder(t)
	st := q.Stats()
	if st.Delivered != int64(total) || st.Pending != 0 || len(st.Dropped) != 0 || st.RecordsDelivered != 20 {
		t.Fatalf("stats %+v", st)
	}
	ps, err := wal.ReadPosition(w.Dir(), "ep")
	if err != nil {
		t.Fatal(err)
	}
	if ps.Position != st.Position || ps.Delivered != int64(total) {
		t.Fatalf("position file %+v, stats %+v", ps, st)
	}

	// Again from the committed position: nothing to send, counters carried over.
	s2 := newFakeSender(nil)
	q2, err := New(testLogger(), nil, w, s2, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q2.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s2.ackedSamples() != 0 || q2.Stats().Delivered != int64(total) {
		t.Fatalf("second run sent %d, stats %+v", s2.ackedSamples(), q2.Stats())
	}
	if err := q2.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
}

// TestAcknowledgementOrder blocks one series' shard: the position must not pass the first
// record holding one of its samples, though every other sample is acknowledged.
func TestAcknowledgementOrder(t *testing.T) {
	w := openWAL(t)
	fill(t, w, 4, 1, 1000) // record 1: series refs 1..4
	first := mustPosition(t, w)
	fill(t, w, 4, 5, 2000) // records 2..6
	release := make(chan struct{})
	s := newFakeSender(func(ctx context.Context, call int, series []prompb.TimeSeries) error {
		for _, ts := range series {
			if seriesKey(ts) == "host-0" {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	})
	o := fastOptions("ep")
	o.MinShards, o.MaxShards = 2, 2
	o.StopAtEnd = true
	q, err := New(testLogger(), nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- q.Run(context.Background()) }()
	// host-0 and host-2 share a shard (refs 1 and 3); host-1 and host-3 the other one: 12 of the
	// 24 samples can be acknowledged.
	waitFor(t, "the free shard to deliver", func() bool { return s.ackedSamples() == 12 })
	if st := q.Stats(); first.start.Before(st.Position) || st.Pending != 12 {
		t.Fatalf("position moved past an unacknowledged record: %+v, first record at %v", st, first.start)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Delivered != 24 || st.Position != mustPosition(t, w).end {
		t.Fatalf("stats %+v", st)
	}
}

type span struct{ start, end wal.Position }

// mustPosition returns the start of the last record and the end of the WAL.
func mustPosition(t *testing.T, w *wal.WAL) span {
	t.Helper()
	r, err := wal.NewReader(w.Dir(), wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var sp span
	for {
		b, err := r.Next(context.Background())
		if err != nil {
			return sp
		}
		sp = span{b.Start, b.End}
	}
}

func TestDropsByReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		// err returns the failure for a request holding series key, or nil.
		err      func(key string, samples int) error
		perBatch int
		want     map[string]int64
		retried  bool
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
			name: "400 and 404",
			err: func(key string, _ int) error {
				switch key {
				case "host-1":
					return httpErr(400)
				case "host-2":
					return httpErr(404)
				}
				return nil
			},
			perBatch: 1,
			want:     map[string]int64{"http_400": 10, "http_404": 10},
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
			s := newFakeSender(func(ctx context.Context, call int, series []prompb.TimeSeries) error {
				n := 0
				for _, ts := range series {
					n += len(ts.Samples)
				}
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
		})
	}
}

func TestSampleAgeLimit(t *testing.T) {
	w := openWAL(t)
	// 10 scrapes one second apart, from t=0s to t=9s; now is 15s, the limit 10s: the scrapes at
	// 0..4 s are too old.
	total := fill(t, w, 3, 10, 0)
	s := newFakeSender(nil)
	o := fastOptions("ep")
	o.StopAtEnd = true
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
}

func TestTimeFilter(t *testing.T) {
	w := openWAL(t)
	fill(t, w, 3, 10, 0) // t = 0, 1000, ... 9000
	s := newFakeSender(nil)
	o := fastOptions("replay")
	o.StopAtEnd = true
	o.NoCommit = true
	o.MinTime, o.MaxTime = 2000, 4000
	q, err := New(testLogger(), nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.Delivered != 9 || st.Filtered != 21 || len(st.Dropped) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := wal.ReadPosition(w.Dir(), "replay"); !errors.Is(err, wal.ErrNoPosition) {
		t.Fatalf("NoCommit wrote a position: %v", err)
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
