package queue

import (
	"context"
	"errors"
	"testing"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/prometheus/prompb"
)

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
	// The sender counts a request before the queue settles it: wait for both.
	waitFor(t, "the free shard to deliver", func() bool { return s.ackedSamples() == 12 && q.Stats().Pending == 12 })
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
