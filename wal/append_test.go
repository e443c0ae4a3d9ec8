package wal

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// firstScrape refs n new series with label sets of about 300 bytes and appends a sample of
// each, as the first scrape after a start does; it returns the label bytes.
func firstScrape(app *Appender, n int) int {
	pad := strings.Repeat("p", 220)
	total := 0
	for i := range n {
		lset := labels.FromStrings("__name__", "container_cpu_usage_seconds_total", "pod", "pod-"+strconv.Itoa(i), "pad", pad)
		total += int(lset.ByteSize())
		app.Append(app.Ref(lset), 1000, float64(i))
	}
	return total
}

// TestFirstCommitMemory: the commit that declares every series (the first scrape after a
// start) encodes one Series record (seriesRecordBytes) at a time, not all the series' labels at
// once into one growing buffer, and a commit that skips no sample copies none.
func TestFirstCommitMemory(t *testing.T) {
	const n = 100_000
	w := openTest(t, t.TempDir(), testOptions())
	defer w.Close()
	app := w.Appender()
	labelBytes := firstScrape(app, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	st, err := app.Commit()
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if st.NewSeries != n {
		t.Fatalf("declared %d series, want %d", st.NewSeries, n)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("commit of %d new series (%d label bytes) allocated %d bytes", n, labelBytes, alloc)
	if labelBytes < 4*seriesRecordBytes {
		t.Fatalf("setup: %d label bytes, want several Series records' worth", labelBytes)
	}
	// What it needs: about one Series record, the Samples record and the scrape's slices (of
	// which the new series' grows by doubling): about the label bytes, a third more under -race.
	// Encoding every series at once into one growing buffer allocated seven times the label bytes.
	if limit := uint64(labelBytes) * 2; alloc > limit {
		t.Errorf("commit allocated %d bytes, want at most %d (twice the label bytes of its series)", alloc, limit)
	}
	// No sample was skipped, so the samples were encoded from the Appender's buffer: the WAL
	// keeps no copy of a scrape (32 MB at 1M series).
	if c := cap(w.keep); c != 0 {
		t.Errorf("the WAL holds a copy of the scrape's samples: capacity %d", c)
	}
	// Everything was written: a reader resolves every series.
	batches, err := readAll(t, w.Dir(), Position{})
	if err != nil {
		t.Fatal(err)
	}
	if got := countRead(batches); got != n {
		t.Fatalf("read %d samples, want %d", got, n)
	}
}

// BenchmarkFirstCommit reports what the commit of a first scrape allocates per new series, the
// figure behind the process' peak RSS at start (make bench-e2e: peak RSS).
func BenchmarkFirstCommit(b *testing.B) {
	const n = 100_000
	var alloc, labelBytes uint64
	for b.Loop() {
		b.StopTimer()
		w := openTest(b, b.TempDir(), DefaultOptions())
		app := w.Appender()
		labelBytes = uint64(firstScrape(app, n))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		if _, err := app.Commit(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.ReadMemStats(&after)
		alloc += after.TotalAlloc - before.TotalAlloc
		w.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(alloc)/float64(b.N)/n, "alloc-B/series")
	b.ReportMetric(float64(labelBytes)/n, "label-B/series")
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "series/s")
}
