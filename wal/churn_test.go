package wal

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
)

// churn drives a WAL through pod churn: longLived series forever and perScrape new series per
// scrape that live `life` scrapes, held by a pretend cache while alive (as the ingester's is), a
// consumer reading along and committing its position, and a truncation after every scrape.
type churn struct {
	t                          testing.TB
	w                          *WAL
	r                          *Reader
	longLived, perScrape, life int
	k                          int // scrapes so far
	held                       map[int][]SeriesRef
}

func newChurn(t testing.TB, dir string, longLived, perScrape, life int) *churn {
	opts := smallSegments()
	opts.Consumers = []string{"q"}
	w := openTest(t, dir, opts)
	r, err := NewReader(w.Dir(), Position{}, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &churn{t: t, w: w, r: r, longLived: longLived, perScrape: perScrape, life: life, held: map[int][]SeriesRef{}}
}

func (c *churn) close() {
	c.r.Close()
	c.w.Close()
}

// created is the number of series created so far.
func (c *churn) created() int { return c.longLived + c.k*c.perScrape }

// scrape appends one scrape, reads it, commits the position and truncates.
func (c *churn) scrape() {
	t, w, k := c.t, c.w, c.k
	app := w.Appender()
	var born []SeriesRef
	add := func(id int) {
		ref := app.Ref(churnSeries(id))
		app.Append(ref, int64(k+1), float64(id))
		if id >= c.longLived+k*c.perScrape || (k == 0 && id < c.longLived) {
			born = append(born, ref)
		}
	}
	for id := range c.longLived {
		add(id)
	}
	for b := max(0, k-c.life+1); b <= k; b++ {
		for j := range c.perScrape {
			add(c.longLived + b*c.perScrape + j)
		}
	}
	if _, err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	w.HoldSeries(born)
	c.held[k] = born
	if dead := k - c.life - 2; dead >= 0 { // the cache evicts a while after the pod went
		w.ReleaseSeries(c.held[dead])
		delete(c.held, dead)
	}
	c.k++
	var end Position
	for {
		b, err := c.r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			err = checkBatch(c.r, b)
		}
		if err != nil {
			t.Fatal(err)
		}
		end = b.End
	}
	if err := CommitPosition(w.Dir(), "q", ConsumerState{Position: end}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Truncate(); err != nil {
		t.Fatal(err)
	}
}

// TestSeriesMemoryBoundedUnderChurn: the writer's and the reader's per-ref state stays
// proportional to the live series while ten times as many come and go.
func TestSeriesMemoryBoundedUnderChurn(t *testing.T) {
	const longLived, perScrape, life = 100, 300, 3
	c := newChurn(t, t.TempDir(), longLived, perScrape, life)
	defer c.close()
	maxLive := 0
	for c.k < 20 || c.created() < 10*maxLive {
		if c.k == 500 {
			t.Fatalf("live series up to %d after %d scrapes: they do not die", maxLive, c.k)
		}
		c.scrape()
		w := c.w
		w.mtx.Lock()
		wLen, wFoot, hashes, peak := w.series.len(), w.series.footprint(), len(w.byHash.one), w.byHash.peak
		w.mtx.Unlock()
		rLen, rFoot := c.r.series.len(), c.r.series.footprint()
		maxLive = max(maxLive, wLen, rLen)
		// Live: the series of the retained segment (a few scrapes' worth) and the held ones.
		if wLen > 2000 || rLen > 2000 {
			t.Fatalf("scrape %d: writer knows %d series, reader %d", c.k, wLen, rLen)
		}
		if wFoot > 4*wLen+2*windowSlack || rFoot > 4*rLen+2*windowSlack || hashes > wLen || peak > 2*hashes+windowSlack {
			t.Fatalf("scrape %d: writer table %d entries for %d series (byHash %d, peak %d), reader table %d for %d",
				c.k, wFoot, wLen, hashes, peak, rFoot, rLen)
		}
	}
	t.Logf("created %d series, live up to %d", c.created(), maxLive)
}

// BenchmarkSeriesChurn churns ten times the live series through truncations and reports the heap
// per live series after one and after ten generations: it stays flat.
func BenchmarkSeriesChurn(b *testing.B) {
	const longLived, perScrape, life = 2000, 1000, 8
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		b.StartTimer()
		c := newChurn(b, b.TempDir(), longLived, perScrape, life)
		live := longLived + perScrape*life
		heapPerLive := func() float64 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			return float64(int64(ms.HeapAlloc)-int64(base)) / float64(live)
		}
		for c.created() < 2*live {
			c.scrape()
		}
		b.ReportMetric(heapPerLive(), "heap-B/live-series@1x")
		for c.created() < 11*live {
			c.scrape()
		}
		b.ReportMetric(heapPerLive(), "heap-B/live-series@10x")
		b.ReportMetric(float64(c.created()), "series-created")
		c.close()
	}
}
