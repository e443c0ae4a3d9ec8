package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// churnSeries is series id of the race and churn tests: ids below longLived live for the whole
// test, the others for a few scrapes (pods coming and going). The value of every sample is its
// series id, so a reader can check that a ref resolves to the right labels.
func churnSeries(id int) labels.Labels {
	return labels.FromStrings("__name__", "churn", "id", strconv.Itoa(id), "pad", strings.Repeat("x", 150))
}

// churnScrape appends scrape k: the long-lived series and the pods alive at k (each pod series
// lives `life` scrapes, `perScrape` new ones per scrape).
func churnScrape(t testing.TB, w *WAL, k, longLived, perScrape, life int) {
	t.Helper()
	app := w.Appender()
	add := func(id int) { app.Append(app.Ref(churnSeries(id)), int64(k+1), float64(id)) }
	for id := range longLived {
		add(id)
	}
	for b := max(0, k-life+1); b <= k; b++ {
		for j := range perScrape {
			add(longLived + b*perScrape + j)
		}
	}
	if _, err := app.Commit(); err != nil {
		t.Fatalf("scrape %d: %v", k, err)
	}
}

// checkBatch fails if a sample's ref does not resolve to the series its value names.
func checkBatch(r *Reader, b Batch) error {
	for _, s := range b.Samples {
		lset, ok := r.Labels(s.Ref)
		if !ok {
			return fmt.Errorf("ref %d at %v does not resolve", s.Ref, b.Start)
		}
		if got := lset.Get("id"); got != strconv.Itoa(int(s.V)) {
			return fmt.Errorf("ref %d at %v resolves to id %s, want %v", s.Ref, b.Start, got, s.V)
		}
	}
	return nil
}

// TestReaderResolvesWhileTruncating: a following reader (the consumer, committing its position
// after every scrape) and readers opened again and again at its committed position resolve every
// ref, to the right series, while truncation and checkpointing run in a loop. Run it with -race.
func TestReaderResolvesWhileTruncating(t *testing.T) {
	opts := smallSegments()
	opts.Consumers = []string{"q"}
	w := openTest(t, t.TempDir(), opts)
	defer w.Close()
	const scrapes, longLived, perScrape, life = 400, 20, 8, 3

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	var truncations, checkpoints, reopened, consumed atomic.Int64
	// Every commit of the consumer wakes the truncator, the reopening readers and the writer,
	// which stays at most a few scrapes ahead so that all of them overlap.
	kick := func(c chan struct{}) {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	toTruncate, toReopen, toWrite := make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}, 1)

	// The truncator.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-toTruncate:
			}
			st, err := w.Truncate()
			if err != nil {
				fail(fmt.Errorf("truncate: %w", err))
				return
			}
			truncations.Add(1)
			if st.Checkpoint >= 0 {
				checkpoints.Add(1)
			}
		}
	}()

	// Readers opened at the committed position, read to the end.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-toReopen:
			}
			cs, err := ReadPosition(w.Dir(), "q")
			if err != nil && !errors.Is(err, ErrNoPosition) {
				fail(err)
				return
			}
			r, err := NewReader(w.Dir(), cs.Position, ReaderOptions{})
			if err != nil {
				fail(fmt.Errorf("new reader at %v: %w", cs.Position, err))
				return
			}
			for {
				b, err := r.Next(ctx)
				if errors.Is(err, io.EOF) {
					break
				}
				if err == nil {
					err = checkBatch(r, b)
				}
				if err != nil {
					r.Close()
					fail(fmt.Errorf("reader from %v: %w", cs.Position, err))
					return
				}
			}
			r.Close()
			reopened.Add(1)
		}
	}()

	// The consumer.
	done := make(chan struct{})
	go func() {
		defer close(done)
		r, err := NewReader(w.Dir(), Position{}, ReaderOptions{Follow: true, Changed: w.Changed, FirstSegment: w.FirstSegment, PollInterval: time.Millisecond})
		if err != nil {
			fail(err)
			return
		}
		defer r.Close()
		for k := 0; k < scrapes; k++ {
			b, err := r.Next(ctx)
			if err == nil {
				err = checkBatch(r, b)
			}
			if err == nil && b.Samples[0].T != int64(k+1) {
				err = fmt.Errorf("scrape %d read as t=%d", k, b.Samples[0].T)
			}
			if err == nil {
				err = CommitPosition(w.Dir(), "q", ConsumerState{Position: b.End})
			}
			if err != nil {
				fail(fmt.Errorf("consumer at scrape %d: %w", k, err))
				return
			}
			consumed.Store(int64(k + 1))
			kick(toTruncate)
			kick(toReopen)
			kick(toWrite)
		}
	}()

	for k := 0; k < scrapes; k++ {
		for int64(k) > consumed.Load()+3 {
			select {
			case <-toWrite:
			case <-done:
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
		churnScrape(t, w, k, longLived, perScrape, life)
	}
	select {
	case <-done:
	case err := <-errs:
		cancel()
		<-done
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if checkpoints.Load() < 10 || reopened.Load() < 5 {
		t.Fatalf("%d truncations, %d checkpoints, %d readers reopened: the race was not exercised", truncations.Load(), checkpoints.Load(), reopened.Load())
	}
	t.Logf("%d truncations, %d checkpoints, %d readers reopened, %d segments", truncations.Load(), checkpoints.Load(), reopened.Load(), w.cur)
}

// TestReaderKeepsSeriesOfCheckpointedSegment: truncation renames its checkpoint into place before
// it deletes the segments it covers. A reader that moves to such a segment in between (or holds
// it open) still reads it, so it must not forget the series the new checkpoint left out.
func TestReaderKeepsSeriesOfCheckpointedSegment(t *testing.T) {
	w := openTest(t, t.TempDir(), smallSegments())
	defer w.Close()
	k := 0
	for ; w.cur < 5; k++ {
		churnScrape(t, w, k, 5, 8, 3)
	}
	r, err := NewReader(w.Dir(), Position{}, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read := 0
	for {
		b, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			err = checkBatch(r, b)
		}
		if err != nil {
			t.Fatal(err)
		}
		read++
		if read == 1 {
			// The reader is in segment 0; truncation is between its rename and its deletions.
			w.mtx.Lock()
			err := w.checkpointLocked(3)
			w.mtx.Unlock()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if read != k {
		t.Fatalf("read %d scrapes, wrote %d", read, k)
	}
}

// TestReaderResolvesBetweenCheckpointAndDeletion pins the interleaving behind the failures of
// TestReaderResolvesWhileTruncating: a reader opens while truncation has renamed checkpoint.8
// into place but not yet deleted the segments it covers, and the writer has appended new series
// since. The checkpoint holds the long-lived refs and the recent ones, more than a thousand refs
// apart; the segments up to 8, still there, fill the gap between them; the new series come after.
// The reader's ref table put the recent refs in its map and then grew its window over them, and
// lost them (refTable.adopt). Every ref of every sample after the start must resolve.
func TestReaderResolvesBetweenCheckpointAndDeletion(t *testing.T) {
	w := openTest(t, t.TempDir(), smallSegments())
	defer w.Close()
	k := 0
	for ; w.cur < 9; k++ {
		churnScrape(t, w, k, 20, 8, 3)
	}
	for range 2 {
		churnScrape(t, w, k, 20, 8, 3)
		k++
	}
	size, err := statSegment(w.Dir(), w.cur)
	if err != nil {
		t.Fatal(err)
	}
	start := Position{Segment: w.cur, Offset: size}
	w.mtx.Lock()
	err = w.checkpointLocked(8) // truncation to segment 9, stopped before its deletions
	w.mtx.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		churnScrape(t, w, k, 20, 8, 3)
		k++
	}
	for _, from := range []Position{{}, {Segment: 8}, {Segment: 9}, start} {
		r, err := NewReader(w.Dir(), from, ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for {
			b, err := r.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err == nil {
				err = checkBatch(r, b)
			}
			if err != nil {
				t.Fatalf("reader from %v: %v", from, err)
			}
		}
		r.Close()
	}
}
