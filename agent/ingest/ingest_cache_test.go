package ingest

import (
	"testing"

	"github.com/collector-dev/collector/wal"
)

func cacheGet(c *seriesCache, cursor *uint32, h1, h2 uint64, now uint32) (cacheHit, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.get(cursor, h1, h2, now)
}

func TestSeriesCache(t *testing.T) {
	puts := []cachePut{{h1: 1, h2: 11, ref: 101}, {h1: 2, h2: 12, ref: 102}, {h1: 3, h2: 13, drop: dropInvalidName}}
	t.Run("hits in body order and out of order", func(t *testing.T) {
		c := newSeriesCache(nil)
		c.put(c.gen.Load(), puts, 1)
		for _, order := range [][]int{{0, 1, 2}, {2, 0, 1}, {1, 1, 0}} {
			cursor := uint32(0)
			for _, k := range order {
				p := puts[k]
				h, ok := cacheGet(c, &cursor, p.h1, p.h2, 2)
				if !ok || h.ref != p.ref || h.drop != p.drop {
					t.Fatalf("order %v, series %d: %+v %v", order, k, h, ok)
				}
			}
		}
	})
	t.Run("second hash verifies", func(t *testing.T) {
		c := newSeriesCache(nil)
		c.put(c.gen.Load(), puts, 1)
		cursor := uint32(0)
		if _, ok := cacheGet(c, &cursor, 1, 99, 2); ok {
			t.Fatal("hit with a different second hash")
		}
		// A colliding insert does not replace the entry.
		c.put(c.gen.Load(), []cachePut{{h1: 1, h2: 99, ref: 999}}, 2)
		if h, ok := cacheGet(c, &cursor, 1, 11, 2); !ok || h.ref != 101 {
			t.Fatalf("%+v %v", h, ok)
		}
	})
	t.Run("purge voids older inserts", func(t *testing.T) {
		c := newSeriesCache(nil)
		gen := c.gen.Load()
		c.purge()
		c.put(gen, puts, 1)
		if c.len() != 0 {
			t.Fatalf("len %d after an insert of a purged generation", c.len())
		}
	})
	t.Run("stale cursor after purge", func(t *testing.T) {
		c := newSeriesCache(nil)
		c.put(c.gen.Load(), puts, 1)
		cursor := uint32(0)
		cacheGet(c, &cursor, 3, 13, 1)
		c.purge()
		c.put(c.gen.Load(), puts[:1], 1)
		if h, ok := cacheGet(c, &cursor, 1, 11, 1); !ok || h.ref != 101 {
			t.Fatalf("%+v %v", h, ok)
		}
	})
	t.Run("evict and compact", func(t *testing.T) {
		c := newSeriesCache(nil)
		var many []cachePut
		for k := range uint64(100) {
			many = append(many, cachePut{h1: k + 1, h2: k + 1001, ref: wal.SeriesRef(k + 1)})
		}
		c.put(c.gen.Load(), many, 1)
		cursor := uint32(0)
		for _, p := range many[:30] {
			cacheGet(c, &cursor, p.h1, p.h2, 5)
		}
		if n := c.evict(5); n != 70 || c.len() != 30 {
			t.Fatalf("evicted %d, %d left", n, c.len())
		}
		cursor = 0
		for _, p := range many[:30] {
			if h, ok := cacheGet(c, &cursor, p.h1, p.h2, 6); !ok || h.ref != p.ref {
				t.Fatalf("after compaction: %+v %v", h, ok)
			}
		}
	})
}

// countingHolder counts the holds of each ref, as the WAL does.
type countingHolder map[wal.SeriesRef]int

func (h countingHolder) HoldSeries(refs []wal.SeriesRef) {
	for _, r := range refs {
		h[r]++
	}
}

func (h countingHolder) ReleaseSeries(refs []wal.SeriesRef) {
	for _, r := range refs {
		if h[r]--; h[r] == 0 {
			delete(h, r)
		}
	}
}

// TestSeriesCacheHoldsItsRefs: every ref the cache stores is held exactly once while it is stored
// (not the refs of dropped series, not twice for a series inserted twice), and released when
// eviction or a purge removes it.
func TestSeriesCacheHoldsItsRefs(t *testing.T) {
	h := countingHolder{}
	c := newSeriesCache(h)
	want := func(refs ...wal.SeriesRef) {
		t.Helper()
		if len(h) != len(refs) {
			t.Fatalf("held %v, want %v", h, refs)
		}
		for _, r := range refs {
			if h[r] != 1 {
				t.Fatalf("held %v, want %v once each", h, refs)
			}
		}
	}
	c.put(c.gen.Load(), []cachePut{{h1: 1, h2: 11, ref: 101}, {h1: 2, h2: 12, ref: 102}, {h1: 3, h2: 13, drop: dropInvalidName}}, 1)
	want(101, 102)
	c.put(c.gen.Load(), []cachePut{{h1: 1, h2: 11, ref: 101}, {h1: 4, h2: 14, ref: 104}}, 5)
	want(101, 102, 104)
	cursor := uint32(0)
	cacheGet(c, &cursor, 1, 11, 5)
	if n := c.evict(3); n != 2 {
		t.Fatalf("evicted %d, want 2 (102 and the dropped series)", n)
	}
	want(101, 104)
	gen := c.gen.Load()
	c.purge()
	want()
	c.put(gen, []cachePut{{h1: 5, h2: 15, ref: 105}}, 6) // prepared before the purge: void
	want()
}
