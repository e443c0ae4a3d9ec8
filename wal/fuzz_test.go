package wal

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSegment writes arbitrary bytes as a segment (after an intact one) and opens, reads and
// repairs the WAL: nothing may panic, reads stop with a typed error, and after Open the WAL reads
// back without error.
func FuzzSegment(f *testing.F) {
	src := buildScrapes(&testing.T{}, f.TempDir(), testOptions(), 4, 3)
	intact, err := os.ReadFile(segmentName(src, 0))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(intact[:200])
	f.Add(intact)
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{1, 0, 3, 0, 0, 0, 0, 'a', 'b', 'c'})
	f.Add([]byte{2, 0xff, 0xff, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "c1")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(segmentName(dir, 0), intact, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(segmentName(dir, 1), data, 0o640); err != nil {
			t.Fatal(err)
		}
		// Read as is: either the end or a typed corruption.
		r, err := NewReader(dir, Position{}, ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for {
			b, err := r.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			var ce *CorruptionError
			if errors.As(err, &ce) {
				if ce.Segment != 1 {
					t.Fatalf("corruption reported in segment %d", ce.Segment)
				}
				break
			}
			if err != nil {
				t.Fatalf("untyped error: %v", err)
			}
			for _, s := range b.Samples {
				r.Labels(s.Ref)
			}
		}
		r.Close()
		opts := testOptions()
		opts.Fsync = FsyncSegment
		w, err := Open(nil, nil, base, "c1", opts)
		if err != nil {
			t.Fatal(err)
		}
		appendScrape(t, w, 3, 1<<40)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		batches, err := readAll(t, dir, Position{})
		if err != nil {
			t.Fatalf("read after repair: %v", err)
		}
		if len(batches) < 5 {
			t.Fatalf("intact segment lost: %d scrapes", len(batches))
		}
	})
}
