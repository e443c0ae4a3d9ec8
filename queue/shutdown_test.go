package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/prometheus/prompb"
)

// TestShutdown covers the two phases: after the context is cancelled the shards keep sending what
// they hold until FlushDeadline (or Abort), then requests are cancelled, the position committed,
// and what was not acknowledged is sent by the next run.
func TestShutdown(t *testing.T) {
	for _, tc := range []struct {
		name         string
		blockedUntil time.Duration // the receiver answers after this long (fake time)
		abort        bool
		wantElapsed  time.Duration
		wantFlushed  bool
	}{
		{name: "flush within the deadline", blockedUntil: 20 * time.Second, wantElapsed: 20 * time.Second, wantFlushed: true},
		{name: "deadline cancels the requests", blockedUntil: time.Hour, wantElapsed: time.Minute},
		{name: "abort cancels at once", blockedUntil: time.Hour, abort: true, wantElapsed: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := openWAL(t)
				total := fill(t, w, 10, 10, 1000)
				var slowFrom atomic.Pointer[time.Time]
				s := newFakeSender(func(ctx context.Context, _ int, _ []prompb.TimeSeries) error {
					from := slowFrom.Load()
					if from == nil {
						return nil
					}
					select {
					case <-time.After(time.Until(from.Add(tc.blockedUntil))):
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				})
				o := fastOptions("ep")
				o.FlushDeadline = time.Minute
				o.MaxSamplesPerSend, o.Capacity = 10, 20
				o.BatchSendDeadline = time.Hour
				q, err := New(testLogger(), nil, w, s, o)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- q.Run(ctx) }()
				synctest.Wait()
				before := q.Stats()
				// From now on the receiver is slow; append more, let the shards take it, stop.
				now := time.Now()
				slowFrom.Store(&now)
				fill(t, w, 10, 5, 100_000)
				synctest.Wait()
				cancel()
				if tc.abort {
					q.Abort()
				}
				start := time.Now()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if elapsed := time.Since(start); elapsed != tc.wantElapsed {
					t.Fatalf("Run returned after %v, want %v", elapsed, tc.wantElapsed)
				}
				st := q.Stats()
				ps, err := wal.ReadPosition(w.Dir(), "ep")
				if err != nil || ps.Position != st.Position || ps.Delivered != st.Delivered {
					t.Fatalf("position file %+v (%v), stats %+v", ps, err, st)
				}
				// A graceful stop finishes the record in hand: nothing is left pending.
				if tc.wantFlushed != (st.Delivered > before.Delivered) || tc.wantFlushed != (st.Pending == 0) || int(before.Delivered) != total {
					t.Fatalf("before %+v, after %+v", before, st)
				}
				// The next run sends the rest.
				o.StopAtEnd = true
				q2, err := New(testLogger(), nil, w, newFakeSender(nil), o)
				if err != nil {
					t.Fatal(err)
				}
				if err := q2.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				if st := q2.Stats(); st.Delivered < int64(total+50) || st.Pending != 0 {
					t.Fatalf("after restart %+v", st)
				}
			})
		})
	}
}

// TestShutdownFailingEndpoint: the flush goes on only while requests succeed. When the endpoint
// is failing at the stop, or fails during the flush, Run stops at once instead of retrying until
// FlushDeadline (everything is in the WAL), commits the position, and the next run delivers the
// rest. Times are fake (synctest): the backoff and the receiver's delay are real timers.
func TestShutdownFailingEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name        string
		failAfter   time.Duration // from the switch, the receiver answers 503 after this long
		wantElapsed time.Duration // from the cancel to Run's return
	}{
		{name: "failing before the stop", failAfter: 0, wantElapsed: 0},
		{name: "fails during the flush", failAfter: 20 * time.Second, wantElapsed: 20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := openWAL(t)
				total := fill(t, w, 10, 10, 1000)
				var failFrom atomic.Pointer[time.Time]
				s := newFakeSender(func(ctx context.Context, _ int, _ []prompb.TimeSeries) error {
					from := failFrom.Load()
					if from == nil {
						return nil
					}
					select {
					case <-time.After(time.Until(from.Add(tc.failAfter))):
						return httpErr(503)
					case <-ctx.Done():
						return ctx.Err()
					}
				})
				o := fastOptions("ep")
				o.FlushDeadline = time.Minute
				o.MaxSamplesPerSend, o.Capacity = 10, 20
				o.BatchSendDeadline = time.Hour
				o.MinBackoff, o.MaxBackoff, o.Sleep = time.Second, 30*time.Second, sleep
				q, err := New(testLogger(), nil, w, s, o)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- q.Run(ctx) }()
				synctest.Wait()
				before := q.Stats()
				if int(before.Delivered) != total {
					t.Fatalf("before the outage %+v, want %d delivered", before, total)
				}
				now := time.Now()
				failFrom.Store(&now)
				fill(t, w, 10, 5, 100_000)
				synctest.Wait()
				cancel()
				start := time.Now()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if elapsed := time.Since(start); elapsed != tc.wantElapsed {
					t.Fatalf("Run returned %v after the cancel, want %v", elapsed, tc.wantElapsed)
				}
				st := q.Stats()
				ps, err := wal.ReadPosition(w.Dir(), "ep")
				if err != nil || ps.Position != st.Position || ps.Delivered != st.Delivered || st.Delivered != before.Delivered {
					t.Fatalf("position file %+v (%v), stats %+v, before %+v", ps, err, st, before)
				}
				// Nothing lost: the next run sends the rest.
				o.StopAtEnd = true
				q2, err := New(testLogger(), nil, w, newFakeSender(nil), o)
				if err != nil {
					t.Fatal(err)
				}
				if err := q2.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				if st := q2.Stats(); st.Delivered != int64(total+50) || st.Pending != 0 || len(st.Dropped) != 0 {
					t.Fatalf("after restart %+v, want %d delivered", st, total+50)
				}
			})
		})
	}
}
