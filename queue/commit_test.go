package queue

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/collector-dev/collector/wal"
)

// TestUnusablePositionFile: a torn or garbled position file makes the queue start at the oldest
// retained segment with counters at zero, and the next commit replaces it.
func TestUnusablePositionFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
	}{
		{"garbage", "not json at all"},
		{"torn", `{"version":1,"state":{"segment":0,"off`},
		{"bad checksum", `{"version":1,"state":{"segment":0,"offset":0,"delivered_samples":7,"updated":"2026-01-01T00:00:00Z"},"crc32c":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := openWAL(t)
			total := fill(t, w, 4, 5, 1000)
			path := filepath.Join(w.Dir(), "positions", "ep.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
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
			ps, err := wal.ReadPosition(w.Dir(), "ep")
			if err != nil {
				t.Fatal(err)
			}
			if s.ackedSamples() != total || ps.Delivered != int64(total) || ps.Position != mustPosition(t, w).end {
				t.Fatalf("sent %d of %d, position file %+v", s.ackedSamples(), total, ps)
			}
		})
	}
}

// TestPeriodicCommit: the position file follows delivery while Run runs, not only at the end.
func TestPeriodicCommit(t *testing.T) {
	w := openWAL(t)
	total := fill(t, w, 10, 10, 1000)
	s := newFakeSender(nil)
	q, err := New(testLogger(), nil, w, s, fastOptions("ep"))
	if err != nil {
		t.Fatal(err)
	}
	q.skipFinalCommit = true
	stop := runQueue(t, q)
	end := mustPosition(t, w).end
	waitFor(t, "the position file to reach the end", func() bool {
		ps, err := wal.ReadPosition(w.Dir(), "ep")
		return err == nil && ps.Position == end && ps.Delivered == int64(total) && !ps.Updated.IsZero()
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestStartAt starts a replay at a given position, leaving the consumer's position alone.
func TestStartAt(t *testing.T) {
	w := openWAL(t)
	fill(t, w, 5, 4, 1000)
	mid := mustPosition(t, w).end
	fill(t, w, 5, 3, 10_000)
	s := newFakeSender(nil)
	o := fastOptions("ep")
	o.StopAtEnd, o.NoCommit = true, true
	o.StartAt = &mid
	q, err := New(testLogger(), nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Delivered != 15 || s.ackedSamples() != 15 {
		t.Fatalf("stats %+v", st)
	}
}

// TestKeepAliveRenewsThePosition: with KeepAlive the position file's Updated time is renewed
// while nothing moves (a replay's lease while its endpoint is down); without, it is not.
func TestKeepAliveRenewsThePosition(t *testing.T) {
	for _, keep := range []time.Duration{0, time.Minute} {
		t.Run(keep.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := openWAL(t)
				fill(t, w, 4, 5, 1000)
				s := newFakeSender(nil)
				o := fastOptions("ep")
				o.CommitInterval, o.PollInterval, o.BatchSendDeadline = time.Second, time.Second, time.Second
				o.KeepAlive = keep
				q, err := New(testLogger(), nil, w, s, o)
				if err != nil {
					t.Fatal(err)
				}
				stop := runQueue(t, q)
				time.Sleep(2 * time.Second) // fake time: delivered and committed
				synctest.Wait()
				first, err := wal.ReadPosition(w.Dir(), "ep")
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Minute)
				synctest.Wait()
				later, err := wal.ReadPosition(w.Dir(), "ep")
				if err != nil {
					t.Fatal(err)
				}
				if age := time.Since(later.Updated); (keep > 0) != (age <= keep) || later.Position != first.Position {
					t.Fatalf("keep-alive %v: position file updated %v ago (first %v, later %v)", keep, age, first, later)
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestCommitRetriesAfterFailure: a commit that fails is retried after CommitInterval even when
// nothing changes any more (the committer sleeps on changes otherwise).
func TestCommitRetriesAfterFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := openWAL(t)
		total := fill(t, w, 4, 5, 1000)
		// a directory where the position file goes: every commit fails until it is removed
		blocker := filepath.Join(w.Dir(), "positions", "ep.json")
		if err := os.MkdirAll(blocker, 0o750); err != nil {
			t.Fatal(err)
		}
		s := newFakeSender(nil)
		o := fastOptions("ep")
		o.CommitInterval, o.PollInterval, o.BatchSendDeadline = time.Second, time.Second, time.Second
		q, err := New(testLogger(), nil, w, s, o)
		if err != nil {
			t.Fatal(err)
		}
		stop := runQueue(t, q)
		time.Sleep(3 * time.Second) // fake time: delivered, and the commits failed
		synctest.Wait()
		if s.ackedSamples() != total {
			t.Fatalf("sent %d of %d", s.ackedSamples(), total)
		}
		failed := testutil.ToFloat64(q.metrics.commitErrors)
		if failed == 0 {
			t.Fatal("no commit failed")
		}
		if err := os.Remove(blocker); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		ps, err := wal.ReadPosition(w.Dir(), "ep")
		if err != nil {
			t.Fatalf("no commit after the failure: %v", err)
		}
		if ps.Position != mustPosition(t, w).end || ps.Delivered != int64(total) {
			t.Fatalf("position file %+v, want the end with %d delivered", ps, total)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}
