package wal

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/util/compression"
)

func testOptions() Options {
	o := DefaultOptions()
	o.Compression = compression.None
	return o
}

func openTest(t testing.TB, base string, opts Options) *WAL {
	t.Helper()
	w, err := Open(nil, nil, base, "c1", opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return w
}

func testSeries(i int) labels.Labels {
	return labels.FromStrings(
		"__name__", "metric_"+strconv.Itoa(i%7),
		"instance", "host-"+strconv.Itoa(i),
		"job", "node",
	)
}

// appendScrape appends one sample per series i in [0,n) at ts with value v(i) and commits.
func appendScrape(t testing.TB, w *WAL, n int, ts int64) AppendStats {
	t.Helper()
	app := w.Appender()
	for i := 0; i < n; i++ {
		app.Append(app.Ref(testSeries(i)), ts, float64(ts)+float64(i))
	}
	st, err := app.Commit()
	if err != nil {
		t.Fatalf("commit scrape at %d: %v", ts, err)
	}
	return st
}

// readSample is a sample resolved to its labels.
type readSample struct {
	lset string
	t    int64
	v    float64
}

type readBatch struct {
	start, end Position
	samples    []readSample
}

// readAll reads the WAL in dir from pos to its end, resolving every ref (a ref that does not
// resolve fails the test).
func readAll(t testing.TB, dir string, pos Position) ([]readBatch, error) {
	t.Helper()
	r, err := NewReader(dir, pos, ReaderOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []readBatch
	for {
		b, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		rb := readBatch{start: b.Start, end: b.End}
		for _, s := range b.Samples {
			lset, ok := r.Labels(s.Ref)
			if !ok {
				t.Fatalf("ref %d at %v does not resolve", s.Ref, b.Start)
			}
			rb.samples = append(rb.samples, readSample{lset: lset.String(), t: s.T, v: s.V})
		}
		out = append(out, rb)
	}
}

func countRead(batches []readBatch) int {
	n := 0
	for _, b := range batches {
		n += len(b.samples)
	}
	return n
}

// copyDir copies a WAL directory (files and one level of subdirectories), skipping the lock.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o640)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
