package wal

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"cluster-1", true},
		{"0c3f3a9e-5a4b-4f7b-9c59-1f0e2e4d6a71", true},
		{"local_cluster.prod", true},
		{"", false},
		{".", false},
		{"..", false},
		{".hidden", false},
		{"a/b", false},
		{`a\b`, false},
		{"../etc", false},
		{"a\nb", false},
		{"prod\u202egro", false},  // right-to-left override
		{"a\u2066b\u2069", false}, // isolates
		{"a\u200bb", false},       // zero width space
		{"a\xffb", false},         // invalid UTF-8
		{"grappe-é-東京", true},
		{strings.Repeat("x", MaxIDLength), true},
		{strings.Repeat("x", MaxIDLength+1), false},
	} {
		t.Run(tc.id, func(t *testing.T) {
			err := ValidateID(tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error %v does not wrap ErrInvalidID", err)
			}
			if !tc.ok {
				if _, err := Open(nil, nil, t.TempDir(), tc.id, testOptions()); !errors.Is(err, ErrInvalidID) {
					t.Fatalf("Open(%q) = %v, want ErrInvalidID", tc.id, err)
				}
			}
		})
	}
}

func TestSecondWriterFails(t *testing.T) {
	base := t.TempDir()
	w := openTest(t, base, testOptions())
	defer w.Close()
	if _, err := Open(nil, nil, base, "c1", testOptions()); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	// Another cluster in the same base directory is independent.
	w2, err := Open(nil, nil, base, "c2", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	w2.Close()
}

func TestOptionsValidation(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"segment size":   func(o *Options) { o.SegmentSize = 1000 },
		"compression":    func(o *Options) { o.Compression = "lz4" },
		"fsync":          func(o *Options) { o.Fsync = "sometimes" },
		"fsync interval": func(o *Options) { o.Fsync = FsyncInterval; o.FsyncInterval = 0 },
		"max size":       func(o *Options) { o.MaxSize = -1 },
		"consumer":       func(o *Options) { o.Consumers = []string{"a/b"} },
	} {
		t.Run(name, func(t *testing.T) {
			o := testOptions()
			mod(&o)
			if _, err := Open(nil, nil, t.TempDir(), "c1", o); err == nil {
				t.Fatal("Open accepted invalid options")
			}
		})
	}
}

func TestAppendSkipsDuplicatesAndOutOfOrderAcrossRestart(t *testing.T) {
	base := t.TempDir()
	reg := prometheus.NewRegistry()
	w, err := Open(nil, reg, base, "c1", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if st := appendScrape(t, w, 10, 1000); st.Samples != 10 || st.NewSeries != 10 {
		t.Fatalf("first scrape: %+v", st)
	}
	// The same scrape again (federate returns the latest sample until a new one exists).
	if st := appendScrape(t, w, 10, 1000); st.Samples != 0 || st.Duplicate != 10 {
		t.Fatalf("repeated scrape: %+v", st)
	}
	if st := appendScrape(t, w, 10, 900); st.Samples != 0 || st.OutOfOrder != 10 {
		t.Fatalf("older scrape: %+v", st)
	}
	// Within one scrape: two samples of one series (elided labels make replicas collide).
	app := w.Appender()
	ref := app.Ref(testSeries(0))
	app.Append(ref, 2000, 1)
	app.Append(ref, 2000, 2)
	app.Append(ref, 1500, 3)
	app.Append(ref, 2500, 4)
	st, err := app.Commit()
	if err != nil || st.Samples != 2 || st.Duplicate != 1 || st.OutOfOrder != 1 {
		t.Fatalf("in-scrape duplicates: %+v %v", st, err)
	}
	if got := testutil.ToFloat64(w.metrics.samplesSkipped.WithLabelValues("duplicate")); got != 11 {
		t.Fatalf("duplicate counter = %v, want 11", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart the last timestamps are rebuilt from the segments.
	w = openTest(t, base, testOptions())
	defer w.Close()
	st = appendScrape(t, w, 12, 1000)
	if st.Samples != 2 || st.Duplicate != 9 || st.OutOfOrder != 1 || st.NewSeries != 2 {
		t.Fatalf("scrape after restart: %+v", st)
	}
	if w.stats.Skipped["duplicate"] != 20 {
		t.Fatalf("persisted duplicate count = %d, want 20", w.stats.Skipped["duplicate"])
	}
}

func TestRefsStableAcrossRestart(t *testing.T) {
	base := t.TempDir()
	w := openTest(t, base, testOptions())
	refs := map[string]SeriesRef{}
	app := w.Appender()
	for i := 0; i < 50; i++ {
		refs[testSeries(i).String()] = app.Ref(testSeries(i))
	}
	appendScrape(t, w, 50, 1)
	w.Close()

	w = openTest(t, base, testOptions())
	defer w.Close()
	app = w.Appender()
	for i := 0; i < 50; i++ {
		if got := app.Ref(testSeries(i)); got != refs[testSeries(i).String()] {
			t.Fatalf("series %d: ref %d after restart, was %d", i, got, refs[testSeries(i).String()])
		}
	}
	if got := app.Ref(labels.FromStrings("__name__", "new")); got != 51 {
		t.Fatalf("new series got ref %d, want 51 (one past the highest ref on disk)", got)
	}
}

func TestUnknownRefIsSkipped(t *testing.T) {
	w := openTest(t, t.TempDir(), testOptions())
	defer w.Close()
	app := w.Appender()
	app.Append(0, 1, 1)
	app.Append(42, 1, 1)
	st, err := app.Commit()
	if err != nil || st.UnknownSeries != 2 || st.Samples != 0 {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestSeriesOfRolledBackScrapeIsWrittenLater(t *testing.T) {
	base := t.TempDir()
	w := openTest(t, base, testOptions())
	a1, a2 := w.Appender(), w.Appender()
	ref := a1.Ref(testSeries(1))
	a1.Append(ref, 10, 1)
	a1.Rollback()
	// Another appender uses the series created by the rolled-back one.
	if got := a2.Ref(testSeries(1)); got != ref {
		t.Fatalf("ref %d, want %d", got, ref)
	}
	a2.Append(ref, 20, 2)
	if _, err := a2.Commit(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	batches, err := readAll(t, w.Dir(), Position{})
	if err != nil || countRead(batches) != 1 {
		t.Fatalf("read %v, err %v", batches, err)
	}
}

func TestCloseTwice(t *testing.T) {
	w := openTest(t, t.TempDir(), testOptions())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := w.Appender().Commit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close = %v", err)
	}
}

func TestSpecialValuesRoundTrip(t *testing.T) {
	w := openTest(t, t.TempDir(), testOptions())
	app := w.Appender()
	vals := []float64{math.Inf(1), math.Inf(-1), math.NaN(), 0, -1.5e300}
	for i, v := range vals {
		app.Append(app.Ref(testSeries(i)), 100, v)
	}
	if _, err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	batches, err := readAll(t, w.Dir(), Position{})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range batches[0].samples {
		if math.Float64bits(s.v) != math.Float64bits(vals[i]) {
			t.Fatalf("sample %d: %v, want %v", i, s.v, vals[i])
		}
	}
}
