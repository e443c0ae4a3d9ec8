package wal

import "slices"

// refTable maps series refs to per-series state with memory proportional to the live refs, not
// to the highest ref ever issued: a writer process never reissues a ref, so under series churn
// the live refs are a few long-lived low ones and a dense run of recent ones. The recent run is a
// window indexed by ref-base (the common case costs a bounds check and one indirection); every
// other live ref is in a map. compact, called after a batch of deletions, picks the window again
// and rebuilds the map when it has shrunk, since Go maps never give memory back.
//
// The window is a list of fixed-size pages, not one slice: growing it allocates one page and
// copies nothing, so a first scrape of a million new series leaves no trail of outgrown copies
// behind (a slice grown by append allocates about five times its final size on the way, and
// keeps up to a quarter of it unused), and a page whose refs all died is given back at once.
//
// A ref is in the window or in the map, never in both, and the map never holds a ref the window
// covers (get and del look in one place only): a ref that went to the map because it was far
// above the window moves into the window when the window grows over it.
//
// Pointers returned by get and put are valid until the next put, del or compact. A refTable is
// not safe for concurrent use.
type refTable[T any] struct {
	base    SeriesRef
	pages   []refPage[T]     // window slot i is pages[i>>slotPageShift].v[i&slotPageMask]
	winLen  int              // window slots: the window holds refs [base, base+winLen)
	winLive int              // live slots in the window
	nPages  int              // non-nil pages
	other   map[SeriesRef]*T // refs outside the window
	peak    int              // largest len(other) since it was last rebuilt
}

const (
	slotPageShift = 10
	slotPageSize  = 1 << slotPageShift // slots in a page
	slotPageMask  = slotPageSize - 1
)

// refPage is a page of the window. Which slots are live is a bitmap beside the values rather than
// a flag in each: a flag would round every slot up to the values' alignment (a 40-byte value
// would take 48). The bitmap is not in the values' allocation either, which is then exactly
// 1024 values: 24 or 40 KiB, sizes the Go allocator has no rounding waste for.
type refPage[T any] struct {
	v    *[slotPageSize]T          // nil: no live slot
	ok   [slotPageSize / 64]uint64 // bit j: slot j is live
	live int                       // live slots
}

func (p *refPage[T]) has(j int) bool { return p.ok[j>>6]&(1<<(j&63)) != 0 }

// windowSlack is the size below which a refTable does not bother about density.
const windowSlack = 1024

func (t *refTable[T]) len() int { return t.winLive + len(t.other) }

// get returns the entry of ref, or nil.
func (t *refTable[T]) get(ref SeriesRef) *T {
	if i := uint64(ref - t.base); ref >= t.base && i < uint64(t.winLen) {
		p := &t.pages[i>>slotPageShift]
		if j := i & slotPageMask; p.ok[j>>6]&(1<<(j&63)) != 0 {
			return &p.v[j]
		}
		return nil
	}
	return t.other[ref]
}

// put returns the entry of ref, creating a zero one (created is then true).
func (t *refTable[T]) put(ref SeriesRef) (v *T, created bool) {
	if p := t.get(ref); p != nil {
		return p, false
	}
	if t.winLive == 0 && t.winLen == 0 {
		t.base = ref
	}
	if ref >= t.base {
		// Extend the window only while it stays at least a quarter live: sparse refs (a reader
		// loading an old checkpoint) go to the map instead of allocating the gaps.
		if i := int(ref - t.base); i < t.winLen || i < 4*(t.winLive+1)+windowSlack {
			if i >= t.winLen {
				n := t.winLen
				t.winLen = i + 1
				if np := (t.winLen + slotPageMask) >> slotPageShift; np > len(t.pages) {
					t.pages = slices.Grow(t.pages, np-len(t.pages))[:np]
				}
				t.adopt(n)
			}
			return t.fill(i), true
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

// fill makes window slot i (not live) live with a zero value, allocating its page if needed.
func (t *refTable[T]) fill(i int) *T {
	p := &t.pages[i>>slotPageShift]
	if p.v == nil {
		p.v = new([slotPageSize]T)
		t.nPages++
	}
	j := i & slotPageMask
	p.ok[j>>6] |= 1 << (j & 63)
	p.live++
	t.winLive++
	v := &p.v[j]
	var zero T
	*v = zero
	return v
}

// adopt moves into the window the map's refs at window index from or later, after the window
// grew over them.
func (t *refTable[T]) adopt(from int) {
	if len(t.other) == 0 {
		return
	}
	move := func(ref SeriesRef, p *T) {
		*t.fill(int(ref - t.base)) = *p
		delete(t.other, ref)
	}
	lo, hi := t.base+SeriesRef(from), t.base+SeriesRef(t.winLen)
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

// del forgets ref. A page left without a live slot is given back.
func (t *refTable[T]) del(ref SeriesRef) {
	if ref >= t.base {
		if i := ref - t.base; i < SeriesRef(t.winLen) {
			k := int(i) >> slotPageShift
			if p, j := &t.pages[k], int(i&slotPageMask); p.has(j) {
				p.ok[j>>6] &^= 1 << (j & 63)
				var zero T
				p.v[j] = zero // drop what it references
				t.winLive--
				if p.live--; p.live == 0 {
					p.v = nil
					t.nPages--
				}
			}
			return
		}
	}
	delete(t.other, ref)
}

// each calls fn for every live ref, the window's in ascending order first.
func (t *refTable[T]) each(fn func(ref SeriesRef, v *T)) {
	for k := range t.pages {
		p := &t.pages[k]
		if p.v == nil {
			continue
		}
		for j := range p.v {
			if p.has(j) {
				fn(t.base+SeriesRef(k<<slotPageShift+j), &p.v[j])
			}
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
	return t.nPages*slotPageSize > 4*t.winLive+windowSlack || len(t.pages) > 4*(t.nPages+1) ||
		t.peak > 2*len(t.other)+windowSlack
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
		nt.winLen = int(refs[n-1]-refs[start]) + 1
		nt.pages = make([]refPage[T], (nt.winLen+slotPageMask)>>slotPageShift)
	}
	if start > 0 {
		nt.other = make(map[SeriesRef]*T, start)
		nt.peak = start
	}
	for k, ref := range refs {
		v := *t.get(ref)
		if k >= start {
			*nt.fill(int(ref - nt.base)) = v
		} else {
			p := new(T)
			*p = v
			nt.other[ref] = p
		}
	}
	*t = nt
}

// footprint returns the number of entries the table has memory for: the window's allocated
// pages and the map's high-water mark. Tests bound it by the live count.
func (t *refTable[T]) footprint() int { return t.nPages*slotPageSize + t.peak }
