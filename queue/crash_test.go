package queue

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"
	"sync"
	"testing"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/prometheus/prompb"
)

// TestCrashAndResume abandons the queue many times in the middle of delivery, without flushing
// and without the final commit (as a crash would), while the WAL keeps growing; each new queue
// resumes from the last periodic commit. In the end every appended sample was received at least
// once, and within each run the order per series holds.
func TestCrashAndResume(t *testing.T) {
	w := openWAL(t)
	const nSeries = 30
	appended := 0
	seen := map[string]map[int64]bool{}
	received := 0
	var t0 int64 = 1000
	for round := 0; round < 15; round++ {
		appended += fill(t, w, nSeries, 20, t0)
		t0 += 20 * 1000
		s := newFakeSender(func(ctx context.Context, call int, _ []prompb.TimeSeries) error {
			if call%3 == 0 {
				return httpErr(503)
			}
			return ctx.Err()
		})
		o := fastOptions("ep")
		o.MinShards, o.MaxShards = 4, 4
		o.MaxSamplesPerSend = 25
		o.FlushDeadline = 0
		q, err := New(testLogger(), nil, w, s, o)
		if err != nil {
			t.Fatal(err)
		}
		q.skipFinalCommit = true
		stop := runQueue(t, q)
		goal := 200 + round*37%150
		waitFor(t, "some progress", func() bool { return s.ackedSamples() >= goal })
		q.Abort()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		s.checkOrder(t)
		received += collect(s, seen)
	}
	// A last, orderly run to the end.
	s := newFakeSender(nil)
	o := fastOptions("ep")
	o.StopAtEnd = true
	q, err := New(testLogger(), nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.checkOrder(t)
	received += collect(s, seen)
	unique := 0
	for _, ts := range seen {
		unique += len(ts)
	}
	if unique != appended {
		t.Fatalf("received %d distinct samples of %d appended", unique, appended)
	}
	t.Logf("appended %d, received %d (%d duplicates after 15 crashes)", appended, received, received-unique)
	ps, err := wal.ReadPosition(w.Dir(), "ep")
	if err != nil {
		t.Fatal(err)
	}
	if ps.Position != mustPosition(t, w).end {
		t.Fatalf("final position %v", ps.Position)
	}
}

func collect(s *fakeSender, seen map[string]map[int64]bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ts := range s.acked {
		if seen[k] == nil {
			seen[k] = map[int64]bool{}
		}
		for _, t := range ts {
			seen[k][t] = true
		}
	}
	return s.ackedN
}

// TestOrderAcrossRetriesAndReshards appends while sending, fails a third of the requests
// recoverably, refuses some for size, and reshards repeatedly: per series the receiver sees
// strictly increasing timestamps, and everything arrives.
func TestOrderAcrossRetriesAndReshards(t *testing.T) {
	w := openWAL(t)
	s := newFakeSender(func(ctx context.Context, call int, series []prompb.TimeSeries) error {
		h := fnv.New32a()
		h.Write([]byte(strconv.Itoa(call)))
		switch h.Sum32() % 6 {
		case 0, 1:
			return httpErr(503)
		case 2:
			if len(series) > 1 {
				return httpErr(413)
			}
		}
		return ctx.Err()
	})
	o := fastOptions("ep")
	o.MinShards, o.MaxShards = 1, 16
	o.MaxSamplesPerSend = 30
	q, err := New(testLogger(), nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	stop := runQueue(t, q)
	var wg sync.WaitGroup
	wg.Add(1)
	appended := 0
	go func() {
		defer wg.Done()
		for i := 0; i < 40; i++ {
			appended += fill(t, w, 50, 5, int64(1000+i*5000))
		}
	}()
	for _, n := range []int{5, 2, 16, 1, 7, 3} {
		before := s.ackedSamples()
		waitFor(t, "progress", func() bool { return s.ackedSamples() > before+100 })
		q.reshardc <- n
		waitFor(t, "reshard to "+strconv.Itoa(n), func() bool { return q.Stats().Shards == n })
	}
	wg.Wait()
	waitFor(t, "everything delivered", func() bool { return q.Stats().Delivered == int64(appended) })
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	s.checkOrder(t)
	if st := q.Stats(); len(st.Dropped) != 0 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}
