package wal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestResumeFromCommittedPosition appends, commits a consumer position mid-way, reopens, and checks
// that a reader resumes exactly there with every ref resolvable, also after truncation removed the
// segments that defined the series.
func TestResumeFromCommittedPosition(t *testing.T) {
	opts := testOptions()
	opts.SegmentSize = 32 * 1024
	opts.Consumers = []string{"hub"}
	base := t.TempDir()
	w := openTest(t, base, opts)
	for k := 0; k < 40; k++ {
		appendScrape(t, w, 150, int64(k+1))
	}
	all, err := readAll(t, w.Dir(), Position{})
	if err != nil {
		t.Fatal(err)
	}
	mid := all[25]
	if mid.start.Segment == 0 {
		t.Fatalf("want the position past the first segment, got %v", mid.start)
	}
	if err := CommitPosition(w.Dir(), "hub", ConsumerState{Position: mid.start, Delivered: 25 * 150}); err != nil {
		t.Fatal(err)
	}
	w.Close()

	w = openTest(t, base, opts)
	defer w.Close()
	st, err := w.Truncate()
	if err != nil {
		t.Fatal(err)
	}
	if st.Deleted == 0 || st.Evicted != 0 || st.Checkpoint < 0 {
		t.Fatalf("truncate: %+v", st)
	}
	if _, err := os.Stat(segmentName(w.Dir(), 0)); !os.IsNotExist(err) {
		t.Fatalf("segment 0, which defined every series, still exists: %v", err)
	}
	cs, err := ReadPosition(w.Dir(), "hub")
	if err != nil || cs.Position != mid.start || cs.Delivered != 25*150 {
		t.Fatalf("position after reopen: %+v %v", cs, err)
	}
	rest, err := readAll(t, w.Dir(), cs.Position)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 15 || rest[0].start != mid.start {
		t.Fatalf("resumed with %d scrapes from %v, want 15 from %v", len(rest), rest[0].start, mid.start)
	}
	for i, b := range rest {
		if b.samples[0].t != int64(26+i) || len(b.samples) != 150 {
			t.Fatalf("resumed scrape %d: t=%d n=%d", i, b.samples[0].t, len(b.samples))
		}
	}
	// A new scrape after the truncation appends to known series (no new Series records).
	if st := appendScrape(t, w, 150, 41); st.NewSeries != 0 || st.Samples != 150 {
		t.Fatalf("append after truncation: %+v", st)
	}
	// And the WAL reopens cleanly from checkpoint + segments.
	w.Close()
	w = openTest(t, base, opts)
	if st := appendScrape(t, w, 151, 42); st.NewSeries != 1 || st.Samples != 151 {
		t.Fatalf("append after reopen: %+v", st)
	}
}

// TestTruncateWaitsForEveryConsumer keeps segments that one consumer has not passed.
func TestTruncateWaitsForEveryConsumer(t *testing.T) {
	opts := testOptions()
	opts.SegmentSize = 32 * 1024
	opts.Consumers = []string{"a", "b"}
	w := openTest(t, t.TempDir(), opts)
	defer w.Close()
	for k := 0; k < 30; k++ {
		appendScrape(t, w, 150, int64(k+1))
	}
	all, _ := readAll(t, w.Dir(), Position{})
	end := all[len(all)-1].end
	if err := CommitPosition(w.Dir(), "a", ConsumerState{Position: end}); err != nil {
		t.Fatal(err)
	}
	// b has no position file: everything is held back.
	if st, err := w.Truncate(); err != nil || st.Deleted != 0 {
		t.Fatalf("truncate with b unknown: %+v %v", st, err)
	}
	// b garbled: held back too.
	if err := os.WriteFile(positionPath(w.Dir(), "b"), []byte("{garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Truncate(); err != nil || st.Deleted != 0 {
		t.Fatalf("truncate with b garbled: %+v %v", st, err)
	}
	if err := CommitPosition(w.Dir(), "b", ConsumerState{Position: all[10].start}); err != nil {
		t.Fatal(err)
	}
	st, err := w.Truncate()
	if err != nil || st.Deleted != all[10].start.Segment {
		t.Fatalf("truncate with b at %v: %+v %v", all[10].start, st, err)
	}
	rest, err := readAll(t, w.Dir(), all[10].start)
	if err != nil || countRead(rest) != 20*150 {
		t.Fatalf("b reads %d samples after truncation, want %d (%v)", countRead(rest), 20*150, err)
	}
}

func TestRetentionKeepsDeliveredSegments(t *testing.T) {
	now := time.Now()
	opts := testOptions()
	opts.SegmentSize = 32 * 1024
	opts.Consumers = []string{"a"}
	opts.Retention = time.Hour
	opts.Now = func() time.Time { return now }
	w := openTest(t, t.TempDir(), opts)
	defer w.Close()
	for k := 0; k < 30; k++ {
		appendScrape(t, w, 150, int64(k+1))
	}
	all, _ := readAll(t, w.Dir(), Position{})
	if err := CommitPosition(w.Dir(), "a", ConsumerState{Position: all[len(all)-1].end}); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.Truncate(); st.Deleted != 0 {
		t.Fatalf("deleted %d segments inside the retention", st.Deleted)
	}
	now = now.Add(2 * time.Hour)
	if st, _ := w.Truncate(); st.Deleted == 0 {
		t.Fatal("nothing deleted after the retention")
	}
}

func TestPositionFiles(t *testing.T) {
	dir := t.TempDir()
	want := ConsumerState{Position: Position{Segment: 3, Offset: 12345}, Delivered: 99, Dropped: map[string]int64{"http_409": 2}, Updated: time.Unix(1700000000, 0).UTC()}
	if err := CommitPosition(dir, "hub", want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPosition(dir, "hub")
	if err != nil || got.Position != want.Position || got.Delivered != 99 || got.Dropped["http_409"] != 2 {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, positionDir, "*.tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	path := positionPath(dir, "hub")
	good, _ := os.ReadFile(path)

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"torn", good[:len(good)/2]},
		{"empty", nil},
		{"garbled digit", []byte(string(good[:len(good)-30]) + "9" + string(good[len(good)-29:]))},
		{"not json", []byte("segment=3 offset=5\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, tc.data, 0o640); err != nil {
				t.Fatal(err)
			}
			_, err := ReadPosition(dir, "hub")
			var pe *PositionError
			if !errors.As(err, &pe) {
				t.Fatalf("ReadPosition = %v, want *PositionError", err)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := ReadPosition(dir, "nobody"); !errors.Is(err, ErrNoPosition) {
			t.Fatalf("ReadPosition = %v, want ErrNoPosition", err)
		}
	})
}

// TestReaderFromUnusablePositions: a position that the files cannot honour restarts from the oldest
// retained data or the record boundary before it; data is read twice, never skipped.
func TestReaderFromUnusablePositions(t *testing.T) {
	w := openTest(t, t.TempDir(), testOptions())
	for k := 0; k < 5; k++ {
		appendScrape(t, w, 20, int64(k+1))
	}
	w.Close()
	all, _ := readAll(t, w.Dir(), Position{})
	for _, tc := range []struct {
		name  string
		pos   Position
		first int64 // timestamp of the first scrape read back
	}{
		{"zero", Position{}, 1},
		{"past the last segment", Position{Segment: 99}, 1},
		{"inside a record", Position{Segment: 0, Offset: all[2].start.Offset + 5}, 3},
		{"past the data", Position{Segment: 0, Offset: 1 << 30}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(t, w.Dir(), tc.pos)
			if err != nil {
				t.Fatal(err)
			}
			if tc.first == 0 {
				if len(got) != 0 {
					t.Fatalf("read %d scrapes", len(got))
				}
				return
			}
			if len(got) == 0 || got[0].samples[0].t != tc.first {
				t.Fatalf("first scrape read: %+v", got)
			}
		})
	}
}

func TestReaderStopsAtContext(t *testing.T) {
	w := openTest(t, t.TempDir(), testOptions())
	defer w.Close()
	r, err := NewReader(w.Dir(), Position{}, ReaderOptions{Follow: true, Changed: w.Changed})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next = %v", err)
	}
}
