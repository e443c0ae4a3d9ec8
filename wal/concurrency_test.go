package wal

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestOneAppenderTwoTailingReaders appends across many segment rotations while two readers follow:
// one woken only by the writer's notifications (its poll is an hour: a missed wake-up fails the
// test), one polling as another process would. Both read every scrape whole, in order, with every
// ref resolved.
func TestOneAppenderTwoTailingReaders(t *testing.T) {
	opts := testOptions()
	opts.SegmentSize = 32 * 1024
	opts.Fsync = FsyncSegment
	w := openTest(t, t.TempDir(), opts)
	defer w.Close()
	const scrapes, width = 200, 120

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	readers := map[string]ReaderOptions{
		"notified": {Follow: true, Changed: w.Changed, FirstSegment: w.FirstSegment, PollInterval: time.Hour},
		"polling":  {Follow: true, PollInterval: time.Millisecond},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(readers))
	for name, ro := range readers {
		r, err := NewReader(w.Dir(), Position{}, ro)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(name string, r *Reader) {
			defer wg.Done()
			defer r.Close()
			for k := 0; k < scrapes; k++ {
				b, err := r.Next(ctx)
				if err != nil {
					errs <- err
					return
				}
				if len(b.Samples) != width+k%3 {
					t.Errorf("%s: scrape %d has %d samples", name, k, len(b.Samples))
					return
				}
				for _, s := range b.Samples {
					if s.T != int64(k+1) {
						t.Errorf("%s: scrape %d holds t=%d", name, k, s.T)
						return
					}
					if _, ok := r.Labels(s.Ref); !ok {
						t.Errorf("%s: ref %d unresolved", name, s.Ref)
						return
					}
				}
			}
		}(name, r)
	}
	for k := 0; k < scrapes; k++ {
		appendScrape(t, w, width+k%3, int64(k+1))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if segs := w.sortedSegments(); len(segs) < 5 {
		t.Fatalf("only %d segments: rotation not exercised", len(segs))
	}
}
