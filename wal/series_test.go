package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
)

// fillSegments appends scrapes of filler series (not s) until the WAL has moved n segments on.
func fillSegments(t testing.TB, w *WAL, n int, ts int64) int64 {
	t.Helper()
	start := w.cur
	pad := strings.Repeat("p", 200)
	for k := 0; w.cur < start+n; k++ {
		app := w.Appender()
		for j := range 20 {
			app.Append(app.Ref(labels.FromStrings("__name__", "filler", "k", fmt.Sprint(k), "j", fmt.Sprint(j), "pad", pad)), ts, 1)
		}
		if _, err := app.Commit(); err != nil {
			t.Fatal(err)
		}
		ts++
	}
	return ts
}

func smallSegments() Options {
	o := testOptions()
	o.SegmentSize = 32 << 10
	o.Fsync = FsyncSegment
	return o
}

// TestSeriesRedeclaredAfterTruncation: a series whose definition truncation deleted is declared
// again (same ref, a new Series record) by the next Commit with a sample of it, whether the ref
// comes from a holder (a cache), from an appender opened before the truncation, or from Ref.
// Every sample is appended and every reader resolves it.
func TestSeriesRedeclaredAfterTruncation(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before runs before the truncations, ref returns the ref to append after them.
		before func(w *WAL, ref SeriesRef) *Appender
		ref    func(w *WAL, app *Appender, ref SeriesRef) SeriesRef
		newRef bool // the series was freed: it comes back under a new ref
	}{
		{
			name:   "held by a cache",
			before: func(w *WAL, ref SeriesRef) *Appender { w.HoldSeries([]SeriesRef{ref}); return w.Appender() },
			ref:    func(_ *WAL, app *Appender, ref SeriesRef) SeriesRef { app.Begin(); return ref },
		},
		{
			name: "released by the cache while a scrape is open",
			before: func(w *WAL, ref SeriesRef) *Appender {
				w.HoldSeries([]SeriesRef{ref})
				app := w.Appender()
				app.Begin() // the scrape looks the ref up, then the cache evicts it
				w.ReleaseSeries([]SeriesRef{ref})
				return app
			},
			ref: func(_ *WAL, _ *Appender, ref SeriesRef) SeriesRef { return ref },
		},
		{
			name:   "looked up again",
			before: func(w *WAL, _ SeriesRef) *Appender { return w.Appender() },
			ref:    func(_ *WAL, app *Appender, _ SeriesRef) SeriesRef { return app.Ref(testSeries(1)) },
			newRef: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := openTest(t, t.TempDir(), smallSegments())
			defer w.Close()
			app := w.Appender()
			ref := app.Ref(testSeries(1))
			app.Append(ref, 1, 1)
			if _, err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			app = tc.before(w, ref)
			ts := fillSegments(t, w, 3, 2)
			for range 2 { // a second truncation would free what the first only orphaned
				if st, err := w.Truncate(); err != nil || st.Deleted == 0 {
					t.Fatalf("truncate: %+v %v", st, err)
				}
				ts = fillSegments(t, w, 1, ts)
			}
			got := tc.ref(w, app, ref)
			if (got != ref) != tc.newRef {
				t.Fatalf("ref %d, was %d (want a new one: %v)", got, ref, tc.newRef)
			}
			app.Append(got, ts, 2)
			st, err := app.Commit()
			if err != nil || st.Samples != 1 || st.UnknownSeries != 0 || st.NewSeries != 1 {
				t.Fatalf("commit after truncation: %+v %v (want 1 sample, 1 re-declared series)", st, err)
			}
			batches, err := readAll(t, w.Dir(), Position{})
			if err != nil {
				t.Fatal(err)
			}
			last := batches[len(batches)-1]
			if len(last.samples) != 1 || last.samples[0].lset != testSeries(1).String() {
				t.Fatalf("last scrape %+v", last)
			}
			// A reader starting at any scrape resolves every ref it meets (readAll fails otherwise).
			for i, from := range batches {
				if b, err := readAll(t, w.Dir(), from.start); err != nil || len(b) != len(batches)-i {
					t.Fatalf("from %v: %d scrapes, want %d, err %v", from.start, len(b), len(batches)-i, err)
				}
			}
		})
	}
}

// TestSeriesFreedWhenUnused: an orphan nobody holds is forgotten at the next truncation, and its
// ref is not issued again; held ones are kept until released.
func TestSeriesFreedWhenUnused(t *testing.T) {
	w := openTest(t, t.TempDir(), smallSegments())
	defer w.Close()
	app := w.Appender()
	a, b := app.Ref(testSeries(1)), app.Ref(testSeries(2))
	app.Append(a, 1, 1)
	app.Append(b, 1, 1)
	if _, err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	w.HoldSeries([]SeriesRef{b})
	ts := fillSegments(t, w, 2, 2)
	if _, err := w.Truncate(); err != nil {
		t.Fatal(err)
	}
	w.mtx.Lock()
	freedA, keptB := w.series.get(a) == nil, w.series.get(b) != nil
	w.mtx.Unlock()
	if !freedA || !keptB {
		t.Fatalf("after truncation: a freed %v, held b kept %v", freedA, keptB)
	}
	w.ReleaseSeries([]SeriesRef{b})
	fillSegments(t, w, 1, ts)
	if _, err := w.Truncate(); err != nil {
		t.Fatal(err)
	}
	w.mtx.Lock()
	freedB := w.series.get(b) == nil
	w.mtx.Unlock()
	if !freedB {
		t.Fatal("released orphan b not freed")
	}
	app = w.Appender()
	if got := app.Ref(testSeries(1)); got <= b || got == a {
		t.Fatalf("returning series got ref %d; freed refs %d, %d must not be issued again", got, a, b)
	}
	app.Rollback()
}

// TestReaderSharesWriterLabels: a reader given WAL.ShareLabels keeps the writer's label data,
// whether it learns a series from a Series record it reads, from the segments before its start
// position, or from a checkpoint; without it (another process, `collector replay`) it keeps its
// own copy. Labels that differ from the writer's under the same ref are never replaced.
func TestReaderSharesWriterLabels(t *testing.T) {
	const n = 300
	opts := testOptions()
	opts.SegmentSize = 32 << 10
	w := openTest(t, t.TempDir(), opts)
	defer w.Close()
	for ts := int64(1); ts <= 20; ts++ {
		appendScrape(t, w, n, ts*1000)
	}
	if w.cur == 0 {
		t.Fatal("setup: no segment was cut")
	}
	batches, err := readAll(t, w.Dir(), Position{})
	if err != nil {
		t.Fatal(err)
	}
	end := batches[len(batches)-1].end
	// sameData reports whether a and b are the same bytes: a shared copy.
	sameData := func(a, b string) bool { return a == b && unsafe.StringData(a) == unsafe.StringData(b) }
	check := func(t *testing.T, from Position, share, want bool) {
		t.Helper()
		ro := ReaderOptions{}
		if share {
			ro.ShareLabels = w.ShareLabels
		}
		r, err := NewReader(w.Dir(), from, ro)
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
		w.mtx.Lock()
		defer w.mtx.Unlock()
		for ref := SeriesRef(1); ref <= n; ref++ {
			re, ms := r.series.get(ref), w.series.get(ref)
			if re == nil || ms == nil {
				t.Fatalf("ref %d: reader knows it %v, writer %v", ref, re != nil, ms != nil)
			}
			enc := re.enc
			if enc != ms.enc {
				t.Fatalf("ref %d: reader's labels %x, writer's %x", ref, enc, ms.enc)
			}
			if got := sameData(enc, ms.enc); got != want {
				rl, _ := r.Labels(ref)
				t.Fatalf("ref %d %s: shares the writer's labels %v, want %v", ref, rl, got, want)
			}
		}
	}
	t.Run("series records", func(t *testing.T) { check(t, Position{}, true, true) })
	t.Run("segments before the start", func(t *testing.T) { check(t, end, true, true) })
	t.Run("own copy without ShareLabels", func(t *testing.T) { check(t, Position{}, false, false) })
	t.Run("checkpoint", func(t *testing.T) {
		if err := CommitPosition(w.Dir(), "q", ConsumerState{Position: end}); err != nil {
			t.Fatal(err)
		}
		st, err := w.Truncate()
		if err != nil {
			t.Fatal(err)
		}
		if _, idx, err := lastCheckpoint(w.Dir()); err != nil || idx < 0 {
			t.Fatalf("setup: no checkpoint after truncation %+v: %d, %v", st, idx, err)
		}
		check(t, end, true, true)
	})
	t.Run("other labels under the same ref", func(t *testing.T) {
		other := AppendLabels(nil, labels.FromStrings("__name__", "not_the_writers", "instance", "x"))
		for _, ref := range []SeriesRef{1, n + 1000} {
			if enc, ok := w.ShareLabels(ref, other); ok {
				t.Errorf("ref %d: labels %x shared for %x", ref, enc, other)
			}
		}
		w.mtx.Lock()
		mine := w.series.get(1).enc
		w.mtx.Unlock()
		if enc, ok := w.ShareLabels(1, []byte(mine)); !ok || !sameData(enc, mine) {
			t.Errorf("ref 1: equal labels not shared: %v", ok)
		}
	})
}
