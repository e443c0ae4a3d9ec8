package wal

// hashIndex maps the hash of a series' labels to the refs of the series with that hash. Nearly
// every hash belongs to one series, whose ref sits in one map slot (16 bytes); the rare further
// series of a hash are in a second map. A map of slices, its predecessor, cost a slice header
// in the slot and a heap allocation per series: about 40 bytes more per series.
//
// A hashIndex is not safe for concurrent use (the WAL's mtx guards it).
type hashIndex struct {
	one  map[uint64]SeriesRef   // the first ref of each hash
	more map[uint64][]SeriesRef // the refs after the first, for hashes of several series
	peak int                    // largest len(one) since the maps were last rebuilt
}

func newHashIndex() hashIndex {
	return hashIndex{one: map[uint64]SeriesRef{}, more: map[uint64][]SeriesRef{}}
}

// find returns the first ref of hash h for which match is true, or 0.
func (x *hashIndex) find(h uint64, match func(SeriesRef) bool) SeriesRef {
	ref, ok := x.one[h]
	if !ok {
		return 0
	}
	if match(ref) {
		return ref
	}
	for _, ref := range x.more[h] {
		if match(ref) {
			return ref
		}
	}
	return 0
}

// add records ref under hash h.
func (x *hashIndex) add(h uint64, ref SeriesRef) {
	if _, ok := x.one[h]; !ok {
		x.one[h] = ref
		x.peak = max(x.peak, len(x.one))
		return
	}
	x.more[h] = append(x.more[h], ref)
}

// remove forgets ref under hash h.
func (x *hashIndex) remove(h uint64, ref SeriesRef) {
	more := x.more[h]
	if first, ok := x.one[h]; ok && first == ref {
		if len(more) == 0 {
			delete(x.one, h)
			return
		}
		x.one[h], more = more[0], more[1:]
	} else {
		for i, r := range more {
			if r == ref {
				more = append(more[:i], more[i+1:]...)
				break
			}
		}
	}
	if len(more) == 0 {
		delete(x.more, h)
	} else {
		x.more[h] = more
	}
}

// compact rebuilds the maps once they hold less than half of their peak: Go maps never shrink.
func (x *hashIndex) compact() {
	if x.peak <= 2*len(x.one)+windowSlack {
		return
	}
	one := make(map[uint64]SeriesRef, len(x.one))
	for h, ref := range x.one {
		one[h] = ref
	}
	more := make(map[uint64][]SeriesRef, len(x.more))
	for h, refs := range x.more {
		more[h] = refs
	}
	x.one, x.more, x.peak = one, more, len(one)
}
