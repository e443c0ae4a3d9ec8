package wal

import "slices"

// refTable maps series refs to per-series state with memory proportional to the live refs, not
// to the highest ref ever issued: a writer process never reissues a ref, so under series churn
// the live refs are a few long-lived low ones and a dense run of recent ones. The recent run is a
// slice indexed by ref-base (the common case costs one bounds check); every other live ref is in
// a map. compact, called after a batch of deletions, picks the window again and rebuilds the map
// when it has shrunk, since Go maps never give memory back.
//
// A ref is in the window or in the map, never in both, and the map never holds a ref the window
// covers (get and del look in one place only): a ref that went to the map because it was far
// above the window moves into the window when the window grows over it.
//
// Pointers returned by get and put are valid until the next put, del or compact. A refTable is
// not safe for concurrent use.
type refTable[T any] struct {
	base    SeriesRef
	win     []refSlot[T]     // win[i] holds ref base+i
	winLive int              // live slots in win
	other   map[SeriesRef]*T // refs outside [base, base+len(win))
	peak    int              // largest len(other) since it was last rebuilt
}

type refSlot[T any] struct {
	v  T
	ok bool
}

// windowSlack is the size below which a refTable does not bother about density.
const windowSlack = 1024

func (t *refTable[T]) len() int { return t.winLive + len(t.other) }

// get returns the entry of ref, or nil.
func (t *refTable[T]) get(ref SeriesRef) *T {
	if ref >= t.base {
		if i := ref - t.base; i < SeriesRef(len(t.win)) {
			if s := &t.win[i]; s.ok {
				return &s.v
			}
			return nil
		}
	}
	return t.other[ref]
}

// put returns the entry of ref, creating a zero one (created is then true).
func (t *refTable[T]) put(ref SeriesRef) (v *T, created bool) {
	if p := t.get(ref); p != nil {
		return p, false
	}
	if t.winLive == 0 && len(t.win) == 0 {
		t.base = ref
	}
	if ref >= t.base {
		// Extend the window only while it stays at least a quarter live: sparse refs (a reader
		// loading an old checkpoint) go to the map instead of allocating the gaps.
		if i := int(ref - t.base); i < len(t.win) || i < 4*(t.winLive+1)+windowSlack {
			if i >= len(t.win) {
				n := len(t.win)
				t.win = slices.Grow(t.win, i+1-n)[:i+1]
				t.adopt(n)
			}
			t.win[i] = refSlot[T]{ok: true}
			t.winLive++
			return &t.win[i].v, true
		}
	}
	if t.other == nil {
		t.other = map[SeriesRef]*T{}
	}
	p := new(T)
	t.other[ref] = p
	t.peak = max(t.peak, len(t.other))
	return p, true
}

// adopt moves into the window the map's refs at window index from or later, after the window
// grew over them.
func (t *refTable[T]) adopt(from int) {
	if len(t.other) == 0 {
		return
	}
	move := func(ref SeriesRef, p *T) {
		t.win[ref-t.base] = refSlot[T]{v: *p, ok: true}
		t.winLive++
		delete(t.other, ref)
	}
	lo, hi := t.base+SeriesRef(from), t.base+SeriesRef(len(t.win))
	if int(hi-lo) > len(t.other) {
		for ref, p := range t.other {
			if ref >= lo && ref < hi {
				move(ref, p)
			}
		}
		return
	}
	for ref := lo; ref < hi; ref++ {
		if p, ok := t.other[ref]; ok {
			move(ref, p)
		}
	}
}

// del forgets ref.
func (t *refTable[T]) del(ref SeriesRef) {
	if ref >= t.base {
		if i := ref - t.base; i < SeriesRef(len(t.win)) {
			if s := &t.win[i]; s.ok {
				*s = refSlot[T]{}
				t.winLive--
			}
			return
		}
	}
	delete(t.other, ref)
}

// each calls fn for every live ref, the window's in ascending order first.
func (t *refTable[T]) each(fn func(ref SeriesRef, v *T)) {
	for i := range t.win {
		if s := &t.win[i]; s.ok {
			fn(t.base+SeriesRef(i), &s.v)
		}
	}
	for ref, v := range t.other {
		fn(ref, v)
	}
}

// wasteful says whether compact would give back a meaningful amount of memory. The thresholds
// are twice what compact leaves (a window at least half live, a map at its size), so that the
// cost of compacting is amortised over as many deletions as it has entries.
func (t *refTable[T]) wasteful() bool {
	return cap(t.win) > 4*t.winLive+windowSlack || t.peak > 2*len(t.other)+windowSlack
}

// compact rebuilds the table when it holds several times the memory its live refs need: the
// window becomes the longest run of the highest refs that is at least half live, every other live
// ref goes to a new map. After compact, footprint is at most 4*len + 2*windowSlack.
func (t *refTable[T]) compact() {
	if !t.wasteful() {
		return
	}
	refs := make([]SeriesRef, 0, t.len())
	t.each(func(ref SeriesRef, _ *T) { refs = append(refs, ref) })
	slices.Sort(refs)
	n := len(refs)
	start := n // first index of the window in refs
	for j := n - 1; j >= 0; j-- {
		if 2*(n-j) >= int(refs[n-1]-refs[j])+1 {
			start = j
		}
	}
	nt := refTable[T]{}
	if start < n {
		nt.base = refs[start]
		nt.win = make([]refSlot[T], int(refs[n-1]-refs[start])+1)
	}
	if start > 0 {
		nt.other = make(map[SeriesRef]*T, start)
		nt.peak = start
	}
	for k, ref := range refs {
		v := *t.get(ref)
		if k >= start {
			nt.win[ref-nt.base] = refSlot[T]{v: v, ok: true}
			nt.winLive++
		} else {
			p := new(T)
			*p = v
			nt.other[ref] = p
		}
	}
	*t = nt
}

// footprint returns the number of entries the table has memory for: the window's capacity and
// the map's high-water mark. Tests bound it by the live count.
func (t *refTable[T]) footprint() int { return cap(t.win) + t.peak }
