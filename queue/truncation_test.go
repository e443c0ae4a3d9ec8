package queue

import (
	"strconv"
	"testing"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/util/compression"
)

// TestDeliveryUnderTruncation runs the queue while the WAL rotates small segments, churns series
// and truncates behind the queue's committed position, with a queue restart half-way (the new
// reader starts from a checkpoint): every sample arrives, every ref resolves, and segments are
// deleted only behind the position.
func TestDeliveryUnderTruncation(t *testing.T) {
	opts := wal.DefaultOptions()
	opts.SegmentSize = 32 << 10
	opts.Compression = compression.None
	opts.Fsync = wal.FsyncSegment
	opts.Consumers = []string{"ep"}
	w, err := wal.Open(testLogger(), nil, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// One sender per run: order holds within a run; a restart re-sends partly delivered records.
	var senders []*fakeSender
	start := func() (*Queue, func() error) {
		s := newFakeSender(nil)
		senders = append(senders, s)
		q, err := New(testLogger(), nil, w, s, fastOptions("ep"))
		if err != nil {
			t.Fatal(err)
		}
		return q, runQueue(t, q)
	}
	q, stop := start()
	app := w.Appender()
	appended, deleted := 0, 0
	want := map[string]bool{}
	checkpoints := 0
	for round := 0; round < 48; round++ {
		// 60 series per round, a third of them new: old series stop, new ones start.
		for scrape := 0; scrape < 5; scrape++ {
			ts := int64(round*5+scrape+1) * 1000
			for i := 0; i < 60; i++ {
				id := round*20 + i
				ref := app.Ref(labels.FromStrings("__name__", "m", "instance", "s-"+strconv.Itoa(id)))
				app.Append(ref, ts, 1)
				want["s-"+strconv.Itoa(id)+"@"+strconv.FormatInt(ts, 10)] = true
			}
			st, err := app.Commit()
			if err != nil {
				t.Fatal(err)
			}
			appended += st.Samples
		}
		if round%4 == 3 {
			// Let the position catch up, then truncate behind it.
			waitFor(t, "the position to be committed", func() bool {
				ps, err := wal.ReadPosition(w.Dir(), "ep")
				return err == nil && ps.Delivered >= int64(appended)
			})
			ts, err := w.Truncate()
			if err != nil {
				t.Fatal(err)
			}
			deleted += ts.Deleted
			if ts.Checkpoint >= 0 {
				checkpoints++
			}
			if ts.Evicted != 0 {
				t.Fatalf("truncation evicted %d segments", ts.Evicted)
			}
		}
		if round == 24 || round == 40 {
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if got := q.Stats().Dropped[ReasonUnknownSeries]; got != 0 {
				t.Fatalf("%d samples with unknown series", got)
			}
			q, stop = start()
		}
	}
	waitFor(t, "everything delivered", func() bool {
		ps, err := wal.ReadPosition(w.Dir(), "ep")
		return err == nil && ps.Delivered >= int64(appended)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if deleted == 0 || checkpoints == 0 {
		t.Fatal("no segment was truncated; the test does not test truncation")
	}
	if got := q.Stats().Dropped[ReasonUnknownSeries]; got != 0 || testutil.ToFloat64(q.metrics.segmentsSkipped) != 0 {
		t.Fatalf("%d samples with unknown series", got)
	}
	acked := 0
	for _, s := range senders {
		s.checkOrder(t)
		acked += collectKeys(s, want)
	}
	if len(want) != 0 {
		t.Fatalf("%d of %d samples never arrived", len(want), appended)
	}
	if acked != appended {
		t.Fatalf("acknowledged %d samples of %d: a graceful restart re-sent some", acked, appended)
	}
	t.Logf("appended %d, acknowledged %d over 3 runs, %d segments truncated, %d checkpoints", appended, acked, deleted, checkpoints)
}

// collectKeys deletes what s received from want ("instance@timestamp") and returns how many
// samples it received.
func collectKeys(s *fakeSender, want map[string]bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, tss := range s.acked {
		for _, ts := range tss {
			delete(want, k+"@"+strconv.FormatInt(ts, 10))
		}
	}
	return s.ackedN
}
