package wal

import (
	"fmt"
	"strings"
	"testing"

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
