package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync/atomic"
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
//
// The appends come in one chunk per reshard, each appended while the queue sends the previous
// ones: the progress a reshard waits for is then always still to come (the chunk adds more than
// it waits for), however fast the queue delivers. (Appending everything at once let the queue
// acknowledge all of it before the last reshards, which then waited for progress that could not
// come.)
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

	const (
		nSeries, scrapes = 50, 5 // one fill: 250 samples
		fills            = 40
		progress         = 100 // samples acknowledged between two reshards; < one chunk
	)
	reshards := []int{5, 2, 16, 1, 7, 3}
	// The appender appends the fills [from, to) of each chunk it is given; it reports an error
	// through appendErr (closed when it returns) and never calls t.Fatal.
	type chunk struct{ from, to int }
	chunks := make(chan chunk)
	appendErr := make(chan error, 1)
	var appended atomic.Int64
	go func() {
		defer close(appendErr)
		for c := range chunks {
			for i := c.from; i < c.to; i++ {
				n, err := appendScrapes(w, nSeries, scrapes, int64(1000+i*5000))
				if err != nil {
					appendErr <- fmt.Errorf("fill %d: %w", i, err)
					return
				}
				appended.Add(int64(n))
			}
		}
	}()
	// failed fails the test if the appender stopped with an error; it returns false otherwise
	// (appendErr is closed only after chunks is).
	failed := func() bool {
		select {
		case err := <-appendErr:
			t.Fatal(err)
		default:
		}
		return false
	}
	for k, n := range reshards {
		before := s.ackedSamples()
		c := chunk{k * fills / len(reshards), (k + 1) * fills / len(reshards)}
		select {
		case chunks <- c:
		case err := <-appendErr:
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("%d samples acknowledged after %d", progress, before), func() bool {
			return failed() || s.ackedSamples() > before+progress
		})
		q.reshardc <- n
		waitFor(t, "reshard to "+strconv.Itoa(n), func() bool { return failed() || q.Stats().Shards == n })
	}
	close(chunks)
	if err := <-appendErr; err != nil {
		t.Fatal(err)
	}
	if got, want := appended.Load(), int64(fills*nSeries*scrapes); got != want {
		t.Fatalf("appended %d samples, want %d", got, want)
	}
	waitFor(t, "everything delivered", func() bool { return q.Stats().Delivered == appended.Load() })
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	s.checkOrder(t)
	if st := q.Stats(); len(st.Dropped) != 0 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}
