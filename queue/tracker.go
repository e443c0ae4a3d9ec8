package queue

import (
	"maps"
	"sync"

	"github.com/collector-dev/collector/wal"
)

// recState is one WAL record still in the tracker: samples not yet settled, and where the record
// ends.
type recState struct {
	seq         uint64
	end         wal.Position
	outstanding int
	// delivered and dropped count the record's settled samples; they join the cumulative
	// counters only when the record joins the delivered prefix, so that the counters committed
	// with a position describe exactly the records before it (a record re-sent after a crash is
	// not counted twice).
	delivered int64
	deferred  int64
	dropped   map[string]int64
}

// tracker follows every record read from the WAL until each of its samples is acknowledged or
// dropped, and computes the delivered position: the end of the longest prefix of wholly settled
// records. Samples of one record are settled by many shards in any order. It is safe for
// concurrent use.
type tracker struct {
	// mu guards every field below.
	mu sync.Mutex
	// recs are the unsettled records in read order (with at most one settled record at the
	// tail, where empty records are coalesced). recs[head:] is live.
	recs []recState
	head int
	// nextSeq is the sequence number of the next record added.
	nextSeq uint64
	// pos is the delivered position.
	pos wal.Position
	// delivered and dropped are cumulative (loaded from the position file) and cover exactly the
	// records before pos; filtered, pending and records count this run.
	delivered int64
	deferred  int64
	dropped   map[string]int64
	// readDrops are samples dropped at read time, counted with the next record added.
	readDrops map[string]int64
	filtered  int64
	pending   int64
	records   int64
	// violations counts settles of unknown records (a bug; tests assert zero).
	violations int
	// version changes whenever pos or a counter changes; the committer writes only new versions.
	version uint64
	// changed receives a value (without blocking, capacity 1) whenever anything above changes:
	// the committer sleeps on it.
	changed chan struct{}
}

func newTracker(pos wal.Position, st wal.ConsumerState) *tracker {
	return &tracker{pos: pos, delivered: st.Delivered, deferred: st.Deferred, dropped: maps.Clone(st.Dropped), changed: make(chan struct{}, 1)}
}

// notifyLocked tells the committer that something changed.
func (t *tracker) notifyLocked() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// add registers a record of n samples (already excluding those dropped or filtered at read time)
// that ends at end, and returns its sequence number.
func (t *tracker) add(end wal.Position, n int) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq := t.nextSeq
	t.nextSeq++
	t.pending += int64(n)
	t.notifyLocked()
	drops := t.readDrops
	t.readDrops = nil
	if n == 0 && len(t.recs) > t.head {
		// Coalesce with a settled tail; otherwise keep the order.
		if last := &t.recs[len(t.recs)-1]; last.outstanding == 0 {
			last.end, last.seq = end, seq
			last.dropped = addCounts(last.dropped, drops)
			return seq
		}
	}
	t.recs = append(t.recs, recState{seq: seq, end: end, outstanding: n, dropped: drops})
	t.advanceLocked()
	return seq
}

// drop counts n samples dropped at read time, before their record is added (with the next add).
func (t *tracker) drop(reason string, n int) {
	if n == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.readDrops == nil {
		t.readDrops = map[string]int64{}
	}
	t.readDrops[reason] += int64(n)
}

func addCounts(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// filter counts n samples skipped by the time filter.
func (t *tracker) filter(n int) {
	if n == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.filtered += int64(n)
	t.notifyLocked()
}

// settle marks samples as acknowledged (reason ""), deferred (ReasonDeferred: stored in the
// dead-letter log) or dropped with reason. seqs holds the record of
// each sample; runs of equal values are counted together. It returns the number of records that
// became wholly delivered, and the number of runs it could not settle (a record it does not hold,
// or more samples than the record has outstanding: a bug; the position cannot pass that record
// in this run).
func (t *tracker) settle(seqs []uint64, reason string) (records, violations int) {
	if len(seqs) == 0 {
		return 0, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	before := t.violations
	for i := 0; i < len(seqs); {
		j := i + 1
		for j < len(seqs) && seqs[j] == seqs[i] {
			j++
		}
		t.settleLocked(seqs[i], j-i, reason)
		i = j
	}
	t.pending -= int64(len(seqs))
	t.version++
	t.notifyLocked()
	return t.advanceLocked(), t.violations - before
}

func (t *tracker) settleLocked(seq uint64, n int, reason string) {
	live := t.recs[t.head:]
	// Records are sorted by seq but coalescing leaves gaps: binary search.
	lo, hi := 0, len(live)
	for lo < hi {
		m := (lo + hi) / 2
		if live[m].seq < seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(live) || live[lo].seq != seq || live[lo].outstanding < n {
		// A bug: never expected. Counted (the queue reports it and ends its run); the position
		// stays behind, so nothing is skipped.
		t.violations++
		return
	}
	r := &live[lo]
	r.outstanding -= n
	switch reason {
	case "":
		r.delivered += int64(n)
	case ReasonDeferred:
		r.deferred += int64(n)
	default:
		if r.dropped == nil {
			r.dropped = map[string]int64{}
		}
		r.dropped[reason] += int64(n)
	}
}

// advanceLocked pops the settled prefix and moves the position to its end.
func (t *tracker) advanceLocked() int {
	popped := 0
	for t.head < len(t.recs) && t.recs[t.head].outstanding == 0 {
		r := &t.recs[t.head]
		t.pos = r.end
		t.delivered += r.delivered
		t.deferred += r.deferred
		t.dropped = addCounts(t.dropped, r.dropped)
		*r = recState{}
		t.head++
		popped++
	}
	if popped > 0 {
		t.records += int64(popped)
		t.version++
	}
	if t.head == len(t.recs) {
		t.recs, t.head = t.recs[:0], 0
	} else if t.head > 1024 && t.head > len(t.recs)/2 {
		n := copy(t.recs, t.recs[t.head:])
		t.recs, t.head = t.recs[:n], 0
	}
	return popped
}

// state returns the durable state to commit and its version.
func (t *tracker) state() (wal.ConsumerState, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return wal.ConsumerState{Position: t.pos, Delivered: t.delivered, Deferred: t.deferred, Dropped: maps.Clone(t.dropped)}, t.version
}

// stats returns a snapshot for Stats.
func (t *tracker) stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Stats{
		Position:         t.pos,
		Delivered:        t.delivered,
		Deferred:         t.deferred,
		Dropped:          maps.Clone(t.dropped),
		Filtered:         t.filtered,
		Pending:          t.pending,
		RecordsDelivered: t.records,
	}
}
