package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/prometheus/util/compression"
)

// buildScrapes writes n scrapes of width samples each (scrape k has timestamp k+1; series k%3 are
// new in some scrapes, so Series records are interleaved) and returns the WAL directory.
func buildScrapes(t *testing.T, base string, opts Options, n, width int) string {
	t.Helper()
	w := openTest(t, base, opts)
	for k := 0; k < n; k++ {
		app := w.Appender()
		for i := 0; i < width+k; i++ { // one new series per scrape
			app.Append(app.Ref(testSeries(i)), int64(k+1), float64(i))
		}
		if _, err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	dir := w.Dir()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkWholeScrapes asserts that what reads back is a prefix of the scrapes, each one whole.
func checkWholeScrapes(t *testing.T, batches []readBatch, width int) int {
	t.Helper()
	for k, b := range batches {
		if want := width + k; len(b.samples) != want {
			t.Fatalf("scrape %d read back with %d samples, want %d (half a scrape)", k, len(b.samples), want)
		}
		for _, s := range b.samples {
			if s.t != int64(k+1) {
				t.Fatalf("scrape %d holds a sample at %d", k, s.t)
			}
		}
	}
	return len(batches)
}

// TestCrashConsistencyEveryOffset cuts the last segment at every byte offset, as a crash in the
// middle of a write would, and checks that each reopened WAL reads back whole scrapes only, and
// every scrape that was complete before the cut.
func TestCrashConsistencyEveryOffset(t *testing.T) {
	for _, compr := range []compression.Type{compression.None, compression.Snappy} {
		t.Run(string(compr), func(t *testing.T) {
			opts := testOptions()
			opts.Compression = compr
			opts.Fsync = FsyncSegment
			const n, width = 8, 4
			src := buildScrapes(t, t.TempDir(), opts, n, width)
			segs, _ := listSegments(src)
			// Segment 0 holds the data; Close left it as the last non-empty one.
			data, err := os.ReadFile(segmentName(src, segs[0]))
			if err != nil {
				t.Fatal(err)
			}
			// Record ends, to know how many scrapes a cut must keep.
			whole, err := readAll(t, src, Position{})
			if err != nil || len(whole) != n {
				t.Fatalf("intact wal: %d scrapes, err %v", len(whole), err)
			}
			// Every offset is read back directly; every 37th offset and every record boundary
			// (±1) is also reopened, repaired and appended to.
			reopen := map[int]bool{}
			for _, b := range whole {
				for d := -1; d <= 1; d++ {
					reopen[int(b.end.Offset)+d] = true
				}
			}
			base := t.TempDir()
			dir := filepath.Join(base, "c1")
			// Past the last record the page is zero padding: cut in its first bytes and at its end.
			last := int(whole[len(whole)-1].end.Offset)
			for cut := 0; cut <= len(data); cut++ {
				if cut > last+64 && cut != len(data) {
					continue
				}
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(dir, 0o750); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(segmentName(dir, 0), data[:cut], 0o640); err != nil {
					t.Fatal(err)
				}
				want := 0
				for _, b := range whole {
					if b.end.Offset <= int64(cut) {
						want++
					}
				}
				got, err := readAll(t, dir, Position{})
				if err != nil {
					t.Fatalf("cut %d: read: %v", cut, err)
				}
				if len(got) != want {
					t.Fatalf("cut %d: %d scrapes read back, want %d", cut, len(got), want)
				}
				checkWholeScrapes(t, got, width)
				if !reopen[cut] && cut%37 != 0 {
					continue
				}
				w, err := Open(nil, nil, base, "c1", opts)
				if err != nil {
					t.Fatalf("cut %d: reopen: %v", cut, err)
				}
				// The reopened WAL accepts the next scrape after the repaired tail.
				app := w.Appender()
				app.Append(app.Ref(testSeries(0)), 1000, 1)
				if _, err := app.Commit(); err != nil {
					t.Fatalf("cut %d: append after repair: %v", cut, err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				batches, err := readAll(t, dir, Position{})
				if err != nil {
					t.Fatalf("cut %d: read after repair: %v", cut, err)
				}
				if len(batches) != want+1 {
					t.Fatalf("cut %d: %d scrapes read back after repair, want %d and the new one", cut, len(batches), want)
				}
				checkWholeScrapes(t, batches[:want], width)
			}
		})
	}
}

func TestCorruptionMidSegment(t *testing.T) {
	opts := testOptions()
	opts.SegmentSize = 64 * 1024
	base := t.TempDir()
	w := openTest(t, base, opts)
	for k := 0; k < 60; k++ {
		appendScrape(t, w, 200, int64(k+1))
	}
	dir := w.Dir()
	w.Close()
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, got %v", segs)
	}
	intact, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte in the middle of the second segment, inside a record.
	victim := segs[1]
	name := segmentName(dir, victim)
	data, _ := os.ReadFile(name)
	off := len(data) / 2
	data[off] ^= 0xff
	if err := os.WriteFile(name, data, 0o640); err != nil {
		t.Fatal(err)
	}

	// A reader stops with a typed error naming the segment and an offset before the flip.
	batches, err := readAll(t, dir, Position{})
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("read corrupted wal: %v, want *CorruptionError", err)
	}
	if ce.Segment != victim || ce.Offset > int64(off) || ce.Offset < int64(off)-pageSize*2 {
		t.Fatalf("corruption reported at %d:%d, flipped byte at %d:%d", ce.Segment, ce.Offset, victim, off)
	}
	before := len(batches)

	// Reopening repairs: everything before the corruption is kept, the cut bytes are saved,
	// and every later segment is kept whole.
	reg := newTestRegistry()
	w, err = Open(nil, reg, base, "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got := counterValue(t, reg, "collector_wal_repairs_total", "kind", "corruption"); got != 1 {
		t.Fatalf("repairs counter = %v", got)
	}
	saved, _ := filepath.Glob(filepath.Join(dir, corruptDir, fmt.Sprintf("%08d-*", victim)))
	if len(saved) != 1 {
		t.Fatalf("cut bytes not saved: %v", saved)
	}
	after, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	// What precedes the corruption, then the later segments' scrapes.
	var later int
	for _, b := range intact {
		if b.start.Segment > victim {
			later++
		}
	}
	if len(after) != before+later {
		t.Fatalf("after repair %d scrapes, want %d before the corruption + %d in later segments", len(after), before, later)
	}
	for i := 0; i < before; i++ {
		if len(after[i].samples) != 200 || after[i].samples[0].t != int64(i+1) {
			t.Fatalf("scrape %d changed by the repair", i)
		}
	}
	if last := after[len(after)-1]; last.samples[0].t != 60 {
		t.Fatalf("last scrape after repair has t=%d, want 60", last.samples[0].t)
	}
}
