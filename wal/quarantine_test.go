package wal

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// buildSegments writes 100 scrapes of 200 samples into 64 KiB segments (several of them) for
// consumer hub and returns the base and WAL directories and the segments.
func buildSegments(t *testing.T) (string, string, []int, Options) {
	t.Helper()
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.Consumers = []string{"hub"}
	base := t.TempDir()
	w := openTest(t, base, opts)
	for k := 0; k < 100; k++ {
		appendScrape(t, w, 200, int64(k+1))
	}
	dir := w.Dir()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	if len(segs) < 4 {
		t.Fatalf("want at least 4 segments, got %v", segs)
	}
	return base, dir, segs, opts
}

func samplesIn(t *testing.T, dir string, k int) int64 {
	t.Helper()
	var n int64
	for _, r := range decodeLost(dir, k, 0) {
		n += r.n
	}
	return n
}

func hasWarning(st Status, sub string) bool {
	return slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, sub) })
}

// TestSegmentGapBridged removes a segment: the WAL opens (it refused to: "segments are not
// sequential"), the gap is bridged, counted, said by status, and every other segment is kept.
func TestSegmentGapBridged(t *testing.T) {
	base, dir, segs, opts := buildSegments(t)
	victim := segs[1]
	lostSamples := samplesIn(t, dir, victim)
	intact, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(segmentName(dir, victim)); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(st, "missing") {
		t.Fatalf("status of a wal with a gap warns nothing: %q", st.Warnings)
	}
	reg := newTestRegistry()
	w, err := Open(nil, reg, base, "c1", opts)
	if err != nil {
		t.Fatalf("open with a gap: %v", err)
	}
	if got := counterValue(t, reg, "collector_wal_segments_missing_total", "", ""); got != 1 {
		t.Fatalf("missing segments counted %v, want 1", got)
	}
	appendScrape(t, w, 200, 101)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := countRead(after), countRead(intact)-int(lostSamples)+200; got != want {
		t.Fatalf("%d samples read back, want %d (all but the missing segment's, and the new scrape)", got, want)
	}
	st, err = ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Stats.MissingSegments, []int{victim}) || !hasWarning(st, "missing") {
		t.Fatalf("status after the bridge: missing %v, warnings %q", st.Stats.MissingSegments, st.Warnings)
	}
}

// TestSegmentFarCopyQuarantined copies a segment to a far number: the copy is moved to corrupt/
// and its samples counted as lost for the consumer that had not delivered them; the rest opens.
func TestSegmentFarCopyQuarantined(t *testing.T) {
	base, dir, segs, opts := buildSegments(t)
	intact, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(segmentName(dir, segs[1]))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(segmentName(dir, 5000), data, 0o640); err != nil {
		t.Fatal(err)
	}
	copied := samplesIn(t, dir, 5000)
	st, err := ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(st, "gap") {
		t.Fatalf("status of a wal with a far segment warns nothing: %q", st.Warnings)
	}
	reg := newTestRegistry()
	w, err := Open(nil, reg, base, "c1", opts)
	if err != nil {
		t.Fatalf("open with a far segment: %v", err)
	}
	appendScrape(t, w, 200, 101)
	w.Close()
	if _, err := os.Stat(filepath.Join(dir, corruptDir, "00005000-segment_gap")); err != nil {
		t.Fatalf("far segment not kept under corrupt/: %v", err)
	}
	if got := counterValue(t, reg, "collector_wal_samples_lost_total", "reason", "segment_gap"); got != float64(copied) || copied == 0 {
		t.Fatalf("lost samples counted %v, want %d", got, copied)
	}
	if got := counterValue(t, reg, "collector_wal_quarantined_total", "reason", "segment_gap"); got != 1 {
		t.Fatalf("quarantined %v, want 1", got)
	}
	after, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	if countRead(after) != countRead(intact)+200 {
		t.Fatalf("%d samples read back, want the %d intact and the new scrape", countRead(after), countRead(intact))
	}
	st, err = ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stats.Lost["hub"]["segment_gap"] != copied || st.Consumers[0].Lost["segment_gap"] != copied {
		t.Fatalf("status lost %v / %v, want segment_gap=%d", st.Stats.Lost, st.Consumers[0].Lost, copied)
	}
}

// TestSegmentDirectoryQuarantined replaces a segment with a directory: it is moved to corrupt/,
// counted, said by status, and the WAL opens.
func TestSegmentDirectoryQuarantined(t *testing.T) {
	base, dir, segs, opts := buildSegments(t)
	victim := segs[2]
	if err := os.Remove(segmentName(dir, victim)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(segmentName(dir, victim), 0o750); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(st, "not a regular file") {
		t.Fatalf("status of a directory in a segment's place warns nothing: %q", st.Warnings)
	}
	reg := newTestRegistry()
	w, err := Open(nil, reg, base, "c1", opts)
	if err != nil {
		t.Fatalf("open with a directory as a segment: %v", err)
	}
	appendScrape(t, w, 200, 101)
	w.Close()
	if got := counterValue(t, reg, "collector_wal_quarantined_total", "reason", "not_a_file"); got != 1 {
		t.Fatalf("quarantined %v, want 1", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, corruptDir, filepath.Base(segmentName(dir, victim))+"-not_a_file")); err != nil || !fi.IsDir() {
		t.Fatalf("directory not moved under corrupt/: %v", err)
	}
}

// TestRepairCountsLostSamples: a repair counts the samples it cut (a lower bound: those that
// still decode after the bad bytes), and a torn record in the middle of the WAL is corruption.
func TestRepairCountsLostSamples(t *testing.T) {
	t.Run("corruption", func(t *testing.T) {
		base, dir, segs, opts := buildSegments(t)
		victim := segs[1]
		name := segmentName(dir, victim)
		data, _ := os.ReadFile(name)
		total := samplesIn(t, dir, victim)
		data[100] ^= 0xff // inside the first record: the whole segment is cut
		if err := os.WriteFile(name, data, 0o640); err != nil {
			t.Fatal(err)
		}
		reg := newTestRegistry()
		w, err := Open(nil, reg, base, "c1", opts)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		got := counterValue(t, reg, "collector_wal_samples_lost_total", "reason", "corruption")
		// The records of the first page are lost with the flipped one; the others decode.
		if got < float64(total)/3 || got >= float64(total) {
			t.Fatalf("lost samples counted %v, segment held %d", got, total)
		}
	})
	t.Run("torn_record_mid_wal", func(t *testing.T) {
		base, dir, segs, opts := buildSegments(t)
		victim := segs[1]
		name := segmentName(dir, victim)
		batches, err := readAll(t, dir, Position{})
		if err != nil {
			t.Fatal(err)
		}
		var end int64
		for _, b := range batches {
			if b.start.Segment == victim {
				end = b.end.Offset
			}
		}
		if err := os.Truncate(name, end-50); err != nil {
			t.Fatal(err)
		}
		reg := newTestRegistry()
		w, err := Open(nil, reg, base, "c1", opts)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		if got := counterValue(t, reg, "collector_wal_repairs_total", "kind", "corruption"); got != 1 {
			t.Fatalf("corruption repairs %v, want 1 (a torn record before later segments is not a torn tail)", got)
		}
		if got := counterValue(t, reg, "collector_wal_repairs_total", "kind", "torn_tail"); got != 0 {
			t.Fatalf("torn_tail repairs %v, want 0", got)
		}
	})
}
