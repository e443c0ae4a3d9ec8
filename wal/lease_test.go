package wal

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestTruncateHonoursLeases: an unexpired lease (a replay's position file) holds back the
// deletion like a consumer; an expired one, or a file without the prefix, holds nothing; a
// reader starting behind the deleted segments counts them as missing.
func TestTruncateHonoursLeases(t *testing.T) {
	now := time.Now()
	opts := testOptions()
	opts.SegmentSize = 32 * 1024
	opts.Consumers = []string{"a"}
	opts.LeasePrefix, opts.LeaseTTL = "replay-", 10*time.Minute
	opts.Now = func() time.Time { return now }
	w := openTest(t, t.TempDir(), opts)
	defer w.Close()
	for k := 0; k < 80; k++ {
		appendScrape(t, w, 150, int64(k+1))
	}
	all, _ := readAll(t, w.Dir(), Position{})
	if err := CommitPosition(w.Dir(), "a", ConsumerState{Position: all[len(all)-1].end}); err != nil {
		t.Fatal(err)
	}
	i := 0
	for i < len(all) && all[i].start.Segment < 2 {
		i++
	}
	if i == len(all) || all[i].start.Segment == all[len(all)-1].start.Segment {
		t.Fatalf("records in too few segments: last in %v", all[len(all)-1].start)
	}
	held := all[i].start
	commit := func(name string, p Position, age time.Duration) {
		t.Helper()
		if err := CommitPosition(w.Dir(), name, ConsumerState{Position: p, Updated: now.Add(-age)}); err != nil {
			t.Fatal(err)
		}
	}
	commit("other-x", Position{}, 0)                        // not a lease: ignored
	commit("replay-old", Position{}, 10*time.Minute)        // expired
	commit("replay-live", held, 10*time.Minute-time.Second) // live
	if st, err := w.Truncate(); err != nil || st.Deleted != held.Segment {
		t.Fatalf("truncate with a live lease at %v: %+v %v", held, st, err)
	}
	// The live lease reads everything after it.
	rest, err := readAll(t, w.Dir(), held)
	if err != nil || countRead(rest) != (len(all)-i)*150 {
		t.Fatalf("lease reads %d samples, want %d (%v)", countRead(rest), (len(all)-i)*150, err)
	}
	// The lease expires: the rest goes, and a reader starting at the lease's position counts
	// the segments it cannot read.
	now = now.Add(time.Second)
	st, err := w.Truncate()
	if err != nil || st.Deleted == 0 {
		t.Fatalf("truncate after the lease expired: %+v %v", st, err)
	}
	r, err := NewReader(w.Dir(), held, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		if _, err := r.Next(context.Background()); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if r.MissingSegments() != st.Deleted {
		t.Fatalf("reader missed %d segments, want %d", r.MissingSegments(), st.Deleted)
	}
	// From the zero position (the oldest retained data) nothing is missing.
	r0, err := NewReader(w.Dir(), Position{}, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r0.Close()
	if r0.MissingSegments() != 0 {
		t.Fatalf("zero position missed %d segments", r0.MissingSegments())
	}
}
