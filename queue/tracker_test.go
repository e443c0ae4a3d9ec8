package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func pos(seg int, off int64) wal.Position { return wal.Position{Segment: seg, Offset: off} }

func TestTracker(t *testing.T) {
	type step struct {
		add    int      // add a record of add samples ending at (0, 100×its index), when settle is nil
		settle []uint64 // else settle these samples
		reason string
		want   wal.Position
	}
	for _, tc := range []struct {
		name      string
		steps     []step
		delivered int64
		dropped   map[string]int64
		pending   int64
	}{
		{
			name: "in order",
			steps: []step{
				{add: 2, want: pos(0, 0)},
				{add: 1, want: pos(0, 0)},
				{settle: []uint64{0, 0}, want: pos(0, 100)},
				{settle: []uint64{1}, want: pos(0, 200)},
			},
			delivered: 3,
		},
		{
			name: "later record first",
			steps: []step{
				{add: 2, want: pos(0, 0)},
				{add: 2, want: pos(0, 0)},
				{settle: []uint64{1, 1}, want: pos(0, 0)},
				{settle: []uint64{0}, want: pos(0, 0)},
				{settle: []uint64{0}, reason: "http_409", want: pos(0, 200)},
			},
			delivered: 3,
			dropped:   map[string]int64{"http_409": 1},
		},
		{
			name: "empty records pass when nothing is pending",
			steps: []step{
				{add: 0, want: pos(0, 100)},
				{add: 0, want: pos(0, 200)},
			},
		},
		{
			name: "empty records wait behind a pending one and coalesce",
			steps: []step{
				{add: 1, want: pos(0, 0)},
				{add: 0, want: pos(0, 0)},
				{add: 0, want: pos(0, 0)},
				{add: 0, want: pos(0, 0)},
				{settle: []uint64{0}, want: pos(0, 400)},
			},
			delivered: 1,
		},
		{
			name: "mixed runs in one settle",
			steps: []step{
				{add: 2, want: pos(0, 0)},
				{add: 2, want: pos(0, 0)},
				{add: 1, want: pos(0, 0)},
				{settle: []uint64{0, 1, 1, 2}, want: pos(0, 0)},
				{settle: []uint64{0}, reason: "too_old", want: pos(0, 300)},
			},
			delivered: 4,
			dropped:   map[string]int64{"too_old": 1},
		},
		{
			name: "stuck first record",
			steps: []step{
				{add: 1, want: pos(0, 0)},
				{add: 1, want: pos(0, 0)},
				{add: 1, want: pos(0, 0)},
				{settle: []uint64{1}, want: pos(0, 0)},
				{settle: []uint64{2}, want: pos(0, 0)},
			},
			// Acknowledged samples of records behind the stuck one are not counted yet: the
			// counters describe the records before the position, which a crash would re-send.
			delivered: 0,
			pending:   1,
		},
		{
			name: "read-time drops count with their record",
			steps: []step{
				{add: 1, want: pos(0, 0)},
				{add: -2, want: pos(0, 0)}, // 2 samples dropped at read time, then a record of 1
				{settle: []uint64{1}, want: pos(0, 0)},
				{settle: []uint64{0}, want: pos(0, 200)},
			},
			delivered: 2,
			dropped:   map[string]int64{"unknown_series": 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(pos(0, 0), wal.ConsumerState{})
			added := 0
			for i, s := range tc.steps {
				if s.settle == nil {
					added++
					n := s.add
					if n < 0 {
						tr.drop(ReasonUnknownSeries, -n)
						if st := tr.stats(); st.Dropped[ReasonUnknownSeries] != 0 {
							t.Fatalf("step %d: read-time drops counted before their record: %v", i, st.Dropped)
						}
						n = 1
					}
					tr.add(pos(0, int64(100*added)), n)
				} else {
					tr.settle(s.settle, s.reason)
				}
				if got := tr.stats().Position; got != s.want {
					t.Fatalf("step %d: position %v, want %v", i, got, s.want)
				}
			}
			st := tr.stats()
			if st.Delivered != tc.delivered || st.Pending != tc.pending || tr.violations != 0 {
				t.Fatalf("stats %+v, violations %d", st, tr.violations)
			}
			for r, n := range tc.dropped {
				if st.Dropped[r] != n {
					t.Fatalf("dropped %v, want %v", st.Dropped, tc.dropped)
				}
			}
		})
	}
}

func TestTrackerUnknownSettle(t *testing.T) {
	tr := newTracker(pos(0, 0), wal.ConsumerState{})
	tr.add(pos(0, 10), 1)
	tr.settle([]uint64{5}, "")
	tr.settle([]uint64{0, 0}, "")
	if tr.violations != 2 || tr.stats().Position != pos(0, 0) {
		t.Fatalf("violations %d, position %v", tr.violations, tr.stats().Position)
	}
}

func TestTrackerCountersCarryOver(t *testing.T) {
	tr := newTracker(pos(3, 40), wal.ConsumerState{Delivered: 10, Dropped: map[string]int64{"http_400": 2}})
	tr.add(pos(3, 80), 2)
	tr.settle([]uint64{0, 0}, "http_400")
	st, _ := tr.state()
	if st.Delivered != 10 || st.Dropped["http_400"] != 4 || st.Position != pos(3, 80) {
		t.Fatalf("state %+v", st)
	}
}

func BenchmarkTrackerSettle(b *testing.B) {
	tr := newTracker(pos(0, 0), wal.ConsumerState{})
	seqs := make([]uint64, 100)
	for i := 0; b.Loop(); i++ {
		seq := tr.add(pos(0, int64(i)), 100)
		for j := range seqs {
			seqs[j] = seq
		}
		tr.settle(seqs, "")
	}
}

// TestSettleViolationStopsRun: samples settled for a record the tracker does not hold (a bug)
// are counted in collector_queue_settle_errors_total and end Run with an error, after the
// position (which stays behind) is committed.
func TestSettleViolationStopsRun(t *testing.T) {
	w := openWAL(t)
	total := fill(t, w, 10, 3, 1000)
	s := newFakeSender(nil)
	q, err := New(testLogger(), nil, w, s, fastOptions("ep"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Run(context.Background()) }()
	waitFor(t, "delivery", func() bool { return q.Stats().Delivered == int64(total) })
	q.settle([]uint64{1 << 40}, "")
	var err2 error
	select {
	case err2 = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not stop after a settle violation")
	}
	if !errors.Is(err2, errSettle) {
		t.Fatalf("Run returned %v, want errSettle", err2)
	}
	if n := testutil.ToFloat64(q.metrics.settleErrors); n != 1 {
		t.Fatalf("settle errors %v, want 1", n)
	}
	ps, err := wal.ReadPosition(w.Dir(), "ep")
	if err != nil || ps.Delivered != int64(total) {
		t.Fatalf("position %+v (%v)", ps, err)
	}
}
