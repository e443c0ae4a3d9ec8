package wal

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// TestReaderLoadsCheckpointInRecords: a reader that passes a truncation merges the new
// checkpoint one Series record at a time. It used to read the whole checkpoint into one buffer
// first, about every live series' labels held at once on top of the writer's (at 1M series the
// peak RSS of a drain after an outage went from 726 to 1398 MiB). Here 40k series of ~2 KB labels
// make an 80 MB checkpoint. The reader's ShareLabels hook, called once per merged series, probes
// the live heap (after a forced collection) a few times during the merge: it must stay below a
// third of the checkpoint (one record, at most seriesRecordBytes, and its read buffers), and every
// series is known afterwards.
func TestReaderLoadsCheckpointInRecords(t *testing.T) {
	const n = 40_000
	w := openBigSeriesWAL(t)
	defer w.Close()
	scrape := func(ts int64) { appendBigSeries(t, w, n, ts) }
	scrape(1000)
	var (
		calls    int
		baseline uint64
		peak     uint64
	)
	share := func(ref SeriesRef, enc []byte) (string, bool) {
		if calls++; baseline != 0 && calls%10_000 == 1 {
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc-min(ms.HeapAlloc, baseline))
		}
		return w.ShareLabels(ref, enc)
	}
	r, err := NewReader(w.Dir(), Position{}, ReaderOptions{ShareLabels: share})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	last := w.cur - 1 // every series has a sample after it: the second scrape's
	if last < 0 {
		t.Fatal("setup: one segment only")
	}
	scrape(2000)
	w.mtx.Lock()
	err = w.checkpointLocked(last)
	w.mtx.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var labelBytes uint64
	w.series.each(func(_ SeriesRef, ms *memSeries) { labelBytes += uint64(len(ms.enc)) })

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	baseline, calls = ms.HeapAlloc, 0
	err = r.loadCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	if r.ckpt != last || calls != n {
		t.Fatalf("reader at checkpoint %d, want %d; %d series merged, want %d", r.ckpt, last, calls, n)
	}
	for ref := SeriesRef(1); ref <= n; ref++ {
		if e := r.series.get(ref); e == nil || int(e.ckpt) != last || e.enc == "" {
			t.Fatalf("ref %d not merged from the checkpoint: %+v", ref, e)
		}
	}
	t.Logf("checkpoint of %d MB of labels: live heap during the merge at most %.1f MB above the start", labelBytes>>20, float64(peak)/(1<<20))
	if peak > labelBytes/3 {
		t.Errorf("merging a checkpoint of %d bytes of labels held %d bytes", labelBytes, peak)
	}
}

// TestReadRecordsBuffersOnce: records of several MiB, in segments of 16 MiB, are read with
// buffers allocated once for the whole directory. Growing the fragment buffer by append (1.25x)
// and anew in each segment allocated 111 MB to read these 77 MB of records.
func TestReadRecordsBuffersOnce(t *testing.T) {
	w := openBigSeriesWAL(t)
	defer w.Close()
	appendBigSeries(t, w, 40_000, 1000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var recs, largest, total int
	segs := map[int]bool{}
	err := readRecords(w.Dir(), func(rec []byte, seg int) error {
		recs, largest, total = recs+1, max(largest, len(rec)), total+len(rec)
		segs[seg] = true
		return nil
	})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 4 || largest < 1<<20 {
		t.Fatalf("setup: %d records in %d segments, the largest %d bytes: want records of MiB over several segments", recs, len(segs), largest)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d records (%d MB, the largest %d KB) in %d segments: %d MB allocated", recs, total>>20, largest>>10, len(segs), alloc>>20)
	// The read buffer (1 MiB) and a fragment buffer at most twice the largest record.
	if limit := uint64(2<<20 + 3*largest); alloc > limit {
		t.Fatalf("reading allocated %d bytes, want at most %d", alloc, limit)
	}
}

// openBigSeriesWAL opens a WAL of 16 MiB segments, which the Series records of appendBigSeries'
// first scrape span several of.
func openBigSeriesWAL(t *testing.T) *WAL {
	opts := testOptions()
	opts.SegmentSize = 16 << 20
	return openTest(t, t.TempDir(), opts)
}

// appendBigSeries commits one scrape of n series of about 2 KB of labels each, at ts.
func appendBigSeries(t *testing.T, w *WAL, n int, ts int64) {
	t.Helper()
	pad := strings.Repeat("x", 2000)
	app := w.Appender()
	for i := range n {
		app.Append(app.Ref(labels.FromStrings("__name__", "m", "pad", pad+strconv.Itoa(i))), ts, 1)
	}
	if _, err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}
