package wal

import (
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

// TestReaderDerived: the derived form of a series' labels is computed once, kept while Series
// records repeat the same labels, and computed again when the ref is redefined with others.
func TestReaderDerived(t *testing.T) {
	r, err := NewReader(t.TempDir(), Position{}, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	calls := 0
	derive := func(_ SeriesRef, enc string) string {
		calls++
		var b labels.ScratchBuilder
		l, err := DecodeLabels(enc, &b)
		if err != nil {
			t.Fatal(err)
		}
		return l.String()
	}
	define := func(seg int, lset labels.Labels) {
		t.Helper()
		var enc record.Encoder
		rec := enc.Series([]record.RefSeries{{Ref: chunks.HeadSeriesRef(1), Labels: lset}}, nil)
		if err := r.addSeries(rec, seg); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want string, wantCalls int) {
		t.Helper()
		got, ok := r.Derived(1, derive)
		if !ok || got != want || calls != wantCalls {
			t.Fatalf("Derived(1) = %q, %v after %d derivations; want %q, true after %d", got, ok, calls, want, wantCalls)
		}
	}
	if _, ok := r.Derived(1, derive); ok || calls != 0 {
		t.Fatalf("unknown ref: ok %v, %d derivations", ok, calls)
	}
	a, b := labels.FromStrings("__name__", "a"), labels.FromStrings("__name__", "b")
	define(0, a)
	check(`{__name__="a"}`, 1)
	check(`{__name__="a"}`, 1)
	define(1, labels.FromStrings("__name__", "a")) // repeated in the next segment: an equal copy
	check(`{__name__="a"}`, 1)
	define(2, b) // reissued with other labels
	check(`{__name__="b"}`, 2)
	check(`{__name__="b"}`, 2)
	if enc, ok := r.Encoded(1); !ok || enc != string(AppendLabels(nil, b)) {
		t.Fatalf("Encoded(1) = %q, %v; want the encoding of %v", enc, ok, b)
	}
	if _, ok := r.Encoded(2); ok {
		t.Fatal("Encoded(2) of an unknown ref: ok")
	}
}

// TestPerSeriesSlots: the writer and every reader hold one table slot per series; their size is
// in the memory budget of docs/operations.md.
func TestPerSeriesSlots(t *testing.T) {
	if n := unsafe.Sizeof([slotPageSize]readerSeries{}); n != 24*slotPageSize {
		t.Errorf("reader page: %d bytes, want 24 a slot", n)
	}
	if n := unsafe.Sizeof([slotPageSize]memSeries{}); n != 40*slotPageSize {
		t.Errorf("writer page: %d bytes, want 40 a slot", n)
	}
}

// TestReaderReleasesSeriesBuffer: the buffer of a first scrape's Series records (every series,
// megabytes) is not kept once the reader is past them; the per-scrape sample buffer is.
func TestReaderReleasesSeriesBuffer(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(nil, nil, dir, "c1", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	app := w.Appender()
	pad := strings.Repeat("v", 200)
	for i := range 5000 {
		app.Append(app.Ref(labels.FromStrings("__name__", "m", "i", strconv.Itoa(i), "pad", pad)), 1000, 1)
	}
	if _, err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(w.Dir(), Position{}, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := r.Next(t.Context())
	if err != nil || len(b.Samples) != 5000 {
		t.Fatalf("Next: %d samples, %v; want 5000", len(b.Samples), err)
	}
	if c := cap(r.serBuf.data); c > serBufKeep {
		t.Fatalf("reader keeps %d bytes of Series record data after the samples, want at most %d", c, serBufKeep)
	}
	if n, ok := r.Encoded(b.Samples[0].Ref); !ok || !strings.Contains(n, pad) {
		t.Fatalf("labels of the first sample's series: %q, %v", n, ok)
	}
}
