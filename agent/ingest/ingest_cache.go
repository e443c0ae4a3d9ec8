package ingest

import (
	"io"
	"math"
	"sync"
	"sync/atomic"

	"github.com/collector-dev/collector/wal"
)

// seriesCache maps the raw bytes of a series as the source wrote it (`name{l="v",...}`) to what
// the transforms made of it: its WAL ref, or the reason it is dropped. A known series costs one
// or two hashes of its bytes and, usually, no map lookup: no label parsing, no transforms, no
// label hashing in the WAL.
//
// The key is a 128-bit hash of the raw bytes: the first 64 bits index the map, the second 64
// bits verify it. Both are hash/maphash with random seeds per Ingester, so a line is taken for
// another cached series by the map with a probability of about N*2^-128 (N cached series: 10^-33
// for a million), and never twice in a row across restarts. Storing the raw bytes instead would
// cost about 300 bytes per series and one more cache miss per line.
//
// Sequence prediction: /federate writes series in the same order every time, so each entry
// remembers the entry that followed it in the last body (next), and the length of its raw
// series (slen). A line first tries the successor of the previous line's entry: if the line has
// a '}' at that length, the first hash of the bytes up to it equals the entry's, and the rest
// parses as a value (and timestamp), the line is that series. This skips the split of the line,
// the second hash and the map probe, and reads entries sequentially when the series were added
// in body order. Otherwise the line takes the general way (split, both hashes, map lookup),
// which relinks next on a hit; a line with an invalid rest fails there exactly as it would
// without the prediction (TestIngestPredictedSeries).
//
// The prediction is verified by 64 bits, not 128: a line is compared with one entry only, so it
// is taken for it, when it is another series of the same length, with a probability of 2^-64,
// not N*2^-64. Even if every line of 1M series scraped every 15 s were another series than the
// one predicted (at steady state almost none is), that is 2*10^12 lines a year and one line
// taken for another series every 9 million years per source. The second hash would cost about
// 30 ns of the 200 to 240 a known sample takes in BenchmarkIngest/steady (350-byte series).
//
// Memory: a 40-byte entry plus a map slot (about 20-40 bytes) per series. The transformed labels
// are held only by the WAL.
//
// WAL refs: the cache holds every ref it stores (wal.WAL.HoldSeries) and releases it when the
// entry goes (eviction, purge), so the WAL never frees a series the cache may still hand out: a
// cached ref always resolves, re-declared by the WAL if truncation deleted its definition. A parse
// that looks refs up runs inside an open scrape (wal.Appender.Begin), which keeps the refs it got
// valid even if the cache releases them before it commits.
//
// Locking: a parse holds mu for reading while it parses (lookups only write the atomic seen and
// next fields) and releases it while it waits for the body (unlockedReader), so a slow response
// never holds back another worker's insert; inserts, eviction and purge hold it for writing.
// Safe for concurrent use.
type seriesCache struct {
	holder  refHolder // nil: refs are not held (tests)
	mu      sync.RWMutex
	idx     map[uint64]uint32 // first hash → index in entries; under mu
	entries []cacheEntry      // under mu; dead entries have h1 == h2 == 0 and are in free
	free    []uint32          // under mu
	gen     atomic.Uint64     // bumped by purge: inserts prepared before it are void
}

type cacheEntry struct {
	h1, h2   uint64        // the hashes of the raw series
	ref      wal.SeriesRef // 0 when the series is dropped
	seen     atomic.Uint32 // last lookup or insert, seconds on the ingester's clock
	next     atomic.Uint32 // 1 + index of the entry that followed this one in the last body; 0: none
	slen     uint32        // length of the raw series; 0: unknown (dead entry, or 4 GiB or more)
	drop     uint8         // dropCode of a dropped series
	stripped uint8         // labels the transforms stripped
}

func (e *cacheEntry) hit() cacheHit { return cacheHit{ref: e.ref, drop: e.drop, stripped: e.stripped} }

// cacheHit is what a lookup returns.
type cacheHit struct {
	ref      wal.SeriesRef
	drop     uint8
	stripped uint8
}

// cacheKey is what a series is cached under: the hashes of its raw bytes and their length.
type cacheKey struct {
	h1, h2 uint64
	slen   uint32
}

// seriesLen is the length of a raw series as a cacheEntry holds it: 0 (unknown) from 4 GiB.
func seriesLen(series []byte) uint32 {
	if uint64(len(series)) > math.MaxUint32 {
		return 0
	}
	return uint32(len(series))
}

// cachePut is an insert, prepared during a parse and applied at its end.
type cachePut struct {
	h1, h2   uint64
	slen     uint32
	ref      wal.SeriesRef
	drop     uint8
	stripped uint8
}

// Series-level drop reasons, as stored in a cacheEntry.
const (
	dropNone uint8 = iota
	dropInvalidName
	dropRelabel
	dropMetricRelabel
)

func dropReason(code uint8) string {
	switch code {
	case dropInvalidName:
		return DropInvalidName
	case dropRelabel:
		return DropRelabel
	case dropMetricRelabel:
		return DropMetricRelabel
	}
	return ""
}

func dropCode(reason string) uint8 {
	switch reason {
	case DropInvalidName:
		return dropInvalidName
	case DropRelabel:
		return dropRelabel
	case DropMetricRelabel:
		return dropMetricRelabel
	}
	return dropNone
}

// refHolder is the part of the WAL the cache needs: *wal.WAL.
type refHolder interface {
	HoldSeries(refs []wal.SeriesRef)
	ReleaseSeries(refs []wal.SeriesRef)
}

var _ refHolder = (*wal.WAL)(nil)

func newSeriesCache(h refHolder) *seriesCache {
	return &seriesCache{holder: h, idx: map[uint64]uint32{}}
}

// hold and release pass refs to the holder; the caller holds mu for writing.
func (c *seriesCache) hold(refs []wal.SeriesRef) {
	if c.holder != nil && len(refs) > 0 {
		c.holder.HoldSeries(refs)
	}
}

func (c *seriesCache) release(refs []wal.SeriesRef) {
	if c.holder != nil && len(refs) > 0 {
		c.holder.ReleaseSeries(refs)
	}
}

// get returns the entry of the series with hashes h1, h2 and marks it seen at now. cursor is
// the caller's position in the body (1 + index of the previous line's entry, 0 at the start or
// after an unknown series). The caller holds mu for reading.
func (c *seriesCache) get(cursor *uint32, h1, h2 uint64, now uint32) (cacheHit, bool) {
	e, k := c.predict(*cursor)
	if e != nil && (e.h1 != h1 || e.h2 != h2) {
		e = nil
	}
	if e == nil {
		i, ok := c.idx[h1]
		if !ok || c.entries[i].h2 != h2 {
			*cursor = 0
			return cacheHit{}, false // unknown, or a collision of h1: the slow path handles it
		}
		e, k = &c.entries[i], i
		if prev := *cursor; prev != 0 && int(prev) <= len(c.entries) {
			c.entries[prev-1].next.Store(k + 1)
		}
	}
	c.touch(cursor, e, k, now)
	return e.hit(), true
}

// predict returns the entry that followed the cursor's entry in the last body, and its index,
// or nil. The cursor and next links may be stale after a purge or compaction (the caller
// releases mu while it waits for the body): they are bounds-checked here and the caller verifies
// the entry, never trusts it. The caller holds mu for reading; the entry is valid until it
// releases it.
func (c *seriesCache) predict(cursor uint32) (*cacheEntry, uint32) {
	if cursor == 0 || int(cursor) > len(c.entries) {
		return nil, 0
	}
	n := c.entries[cursor-1].next.Load()
	if n == 0 || int(n) > len(c.entries) {
		return nil, 0
	}
	return &c.entries[n-1], n - 1
}

// touch marks entry e (index k) seen at now and moves the cursor to it.
func (c *seriesCache) touch(cursor *uint32, e *cacheEntry, k, now uint32) {
	*cursor = k + 1
	if e.seen.Load() != now {
		e.seen.Store(now)
	}
}

// put inserts the entries of one body, in body order (which the next body will likely repeat),
// unless the cache was purged since generation gen was read. A series whose first hash another
// series holds is not inserted: that one stays, this one keeps taking the slow path.
func (c *seriesCache) put(gen uint64, puts []cachePut, now uint32) {
	if len(puts) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	var held []wal.SeriesRef
	defer func() { c.hold(held) }()
	prev := uint32(0)
	for _, p := range puts {
		if k, ok := c.idx[p.h1]; ok {
			if c.entries[k].h2 == p.h2 {
				prev = k + 1
			}
			continue
		}
		var k uint32
		if n := len(c.free); n > 0 {
			k = c.free[n-1]
			c.free = c.free[:n-1]
		} else {
			k = uint32(len(c.entries))
			c.entries = append(c.entries, cacheEntry{})
		}
		e := &c.entries[k]
		e.h1, e.h2, e.slen, e.ref, e.drop, e.stripped = p.h1, p.h2, p.slen, p.ref, p.drop, p.stripped
		if p.ref != 0 {
			held = append(held, p.ref)
		}
		e.seen.Store(now)
		e.next.Store(0)
		if prev != 0 {
			c.entries[prev-1].next.Store(k + 1)
		}
		c.idx[p.h1] = k
		prev = k + 1
	}
}

// purge empties the cache and makes inserts prepared before it void.
func (c *seriesCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	var refs []wal.SeriesRef
	for k := range c.entries {
		if e := &c.entries[k]; (e.h1 != 0 || e.h2 != 0) && e.ref != 0 {
			refs = append(refs, e.ref)
		}
	}
	c.idx, c.entries, c.free = map[uint64]uint32{}, nil, nil
	c.release(refs)
}

// evict removes the entries not seen since before, and compacts the entries when more than
// half are dead.
func (c *seriesCache) evict(before uint32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	var refs []wal.SeriesRef
	defer func() { c.release(refs) }()
	for k := range c.entries {
		e := &c.entries[k]
		if (e.h1 != 0 || e.h2 != 0) && e.seen.Load() < before {
			delete(c.idx, e.h1)
			if e.ref != 0 {
				refs = append(refs, e.ref)
			}
			e.h1, e.h2, e.slen, e.ref = 0, 0, 0, 0
			c.free = append(c.free, uint32(k))
			n++
		}
	}
	if len(c.free) > len(c.entries)/2 {
		old := c.entries
		c.idx, c.entries, c.free = make(map[uint64]uint32, len(old)-len(c.free)), make([]cacheEntry, 0, len(old)-len(c.free)), nil
		for k := range old {
			o := &old[k]
			if o.h1 == 0 && o.h2 == 0 {
				continue
			}
			c.entries = append(c.entries, cacheEntry{h1: o.h1, h2: o.h2, slen: o.slen, ref: o.ref, drop: o.drop, stripped: o.stripped})
			c.entries[len(c.entries)-1].seen.Store(o.seen.Load())
			c.idx[o.h1] = uint32(len(c.entries) - 1)
		}
	}
	return n
}

func (c *seriesCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.idx)
}

// unlockedReader reads the body with the cache's read lock released: waiting for the network
// must not hold back the inserts of other workers (a writer waiting on an RWMutex also blocks
// new readers).
type unlockedReader struct {
	r  io.Reader
	mu *sync.RWMutex
}

func (u *unlockedReader) Read(p []byte) (int, error) {
	u.mu.RUnlock()
	defer u.mu.RLock()
	return u.r.Read(p)
}
