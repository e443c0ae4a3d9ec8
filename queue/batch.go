package queue

import (
	"slices"
	"sync"

	"github.com/collector-dev/collector/wal"
)

// item is one sample on its way from the tailer to a shard: 40 bytes. lbl is what the reader
// keeps for the series (tailer.derive): its encoded labels (Series.Labels), without write
// relabeling the WAL writer's own copy (wal.ReaderOptions.ShareLabels); it is shared by every
// sample of the series and never modified. The record the sample came from is its chunk's.
type item struct {
	lbl string
	ref wal.SeriesRef
	t   int64
	v   float64
}

// chunk is a run of samples of one record (seq, for the tracker) for one shard.
type chunk struct {
	seq   uint64
	items []item
}

// Size estimates used to cap requests (protobuf, before compression): a series costs its encoded
// labels and its framing, a sample bytesPerSample.
const (
	bytesPerSample = 20 // tag + double + varint timestamp + framing
	bytesPerSeries = 4  // TimeSeries tag and length
)

// chunkPool recycles the chunks the tailer hands to shards.
type chunkPool struct{ p sync.Pool }

func (c *chunkPool) get(capacity int) *chunk {
	if v, ok := c.p.Get().(*chunk); ok && cap(v.items) >= capacity {
		v.items = v.items[:0]
		return v
	}
	return &chunk{items: make([]item, 0, capacity)}
}

func (c *chunkPool) put(ch *chunk) {
	clear(ch.items) // drop the label references: a pooled chunk must not pin the labels of dead series
	ch.items = ch.items[:0]
	c.p.Put(ch)
}

// batch is one request: samples grouped by series in arrival order, and the record of each
// sample. seqs[i][j] belongs to series[i].Samples[j].
type batch struct {
	series []Series
	seqs   [][]uint64
}

func (b batch) samples() int {
	n := 0
	for _, ts := range b.series {
		n += len(ts.Samples)
	}
	return n
}

// split halves b: by series, or by samples when it holds one series (order kept).
func (b batch) split() (batch, batch) {
	if len(b.series) > 1 {
		m := len(b.series) / 2
		return batch{b.series[:m:m], b.seqs[:m:m]}, batch{b.series[m:], b.seqs[m:]}
	}
	ts, seqs := b.series[0], b.seqs[0]
	m := len(ts.Samples) / 2
	l := Series{Labels: ts.Labels, Samples: ts.Samples[:m:m]}
	r := Series{Labels: ts.Labels, Samples: ts.Samples[m:]}
	return batch{[]Series{l}, [][]uint64{seqs[:m:m]}}, batch{[]Series{r}, [][]uint64{seqs[m:]}}
}

// dropOlder removes the samples older than cutoff (ms) and appends their records to dropped. The
// samples and records of each series are compacted in place; the series list is new when
// anything is dropped, so that no two entries of the builder's list ever share storage.
func (b batch) dropOlder(cutoff int64, dropped []uint64) (batch, []uint64) {
	old := false
	for _, ts := range b.series {
		if len(ts.Samples) > 0 && ts.Samples[0].Timestamp < cutoff {
			old = true // samples of a series are in time order: the first is the oldest
			break
		}
	}
	if !old {
		return b, dropped
	}
	out := batch{series: make([]Series, 0, len(b.series)), seqs: make([][]uint64, 0, len(b.seqs))}
	for i, ts := range b.series {
		seqs := b.seqs[i]
		keep, keepSeqs := ts.Samples[:0], seqs[:0]
		for j, s := range ts.Samples {
			if s.Timestamp < cutoff {
				dropped = append(dropped, seqs[j])
				continue
			}
			keep = append(keep, s)
			keepSeqs = append(keepSeqs, seqs[j])
		}
		if len(keep) > 0 {
			out.series = append(out.series, Series{Labels: ts.Labels, Samples: keep})
			out.seqs = append(out.seqs, keepSeqs)
		}
	}
	return out, dropped
}

// builder accumulates a shard's items into a batch within the request limits. Its slices are
// reused from batch to batch. Not safe for concurrent use.
//
// The samples of one series in a batch share one Series entry (the labels are sent once). A
// record (one scrape) holds each series once, so while the batch holds the samples of a single
// record every item starts a new entry and no index is kept: the common case at a large scrape,
// whose records fill many requests. Only when a second record joins are the entries indexed by
// series ref. Should a record hold a series twice, it gets two entries: a valid request too (the
// samples stay in order), only a few bytes longer.
//
// The samples and their records are appended to flat arrays in arrival order, with the entry of
// each; batch() gives each entry its run of them. With one sample per entry (one record) the runs
// are the arrays themselves, one element each; otherwise the samples are grouped by entry first,
// in a second pair of arrays.
type builder struct {
	maxSamples, maxBytes int

	series []Series
	refs   []wal.SeriesRef // refs[k] is the series of series[k]
	seqs   [][]uint64

	samples    []Sample // in arrival order
	sampleSeqs []uint64 // the record of each sample
	entries    []int32  // the entry of each sample
	grouped    []Sample // samples grouped by entry (batch, several records)
	groupedSeq []uint64
	starts     []int32 // per entry, where its samples start in grouped

	n     int
	bytes int
	// seq is the record of the batch's first sample; idx maps refs to entries once indexed.
	seq     uint64
	indexed bool
	idx     map[wal.SeriesRef]int
}

func newBuilder(maxSamples, maxBytes int) *builder {
	return &builder{maxSamples: maxSamples, maxBytes: maxBytes, idx: map[wal.SeriesRef]int{}}
}

// entry returns the entry of the series of it, a sample of record seq, in the batch, or -1 when
// it would start one.
func (b *builder) entry(it *item, seq uint64) int {
	if b.n == 0 {
		return -1
	}
	if !b.indexed {
		if seq == b.seq {
			return -1
		}
		for k, ref := range b.refs {
			b.idx[ref] = k
		}
		b.indexed = true
	}
	if k, ok := b.idx[it.ref]; ok {
		return k
	}
	return -1
}

// fits reports whether it, whose entry is k (entry), can join the batch without exceeding a
// limit. An empty batch takes any item.
func (b *builder) fits(it *item, k int) bool {
	if b.n == 0 {
		return true
	}
	if b.n+1 > b.maxSamples {
		return false
	}
	cost := bytesPerSample
	if k < 0 {
		cost += bytesPerSeries + len(it.lbl)
	}
	return b.bytes+cost <= b.maxBytes
}

// full reports whether no further sample can join.
func (b *builder) full() bool { return b.n >= b.maxSamples || b.bytes >= b.maxBytes }

// add appends it, a sample of record seq, to entry k, or to a new entry when k < 0 (entry).
func (b *builder) add(it *item, k int, seq uint64) {
	if b.n == 0 {
		b.seq = seq
	}
	if k < 0 {
		k = len(b.series)
		if b.indexed {
			b.idx[it.ref] = k
		}
		b.series = append(b.series, Series{Labels: it.lbl})
		b.refs = append(b.refs, it.ref)
		b.bytes += bytesPerSeries + len(it.lbl)
	}
	b.samples = append(b.samples, Sample{Timestamp: it.t, Value: it.v})
	b.sampleSeqs = append(b.sampleSeqs, seq)
	b.entries = append(b.entries, int32(k))
	b.bytes += bytesPerSample
	b.n++
}

func (b *builder) len() int { return b.n }

// batch returns the batch built so far; valid until reset. Each entry's samples and records are
// capped at their length: nothing appended to one runs into the next.
func (b *builder) batch() batch {
	b.seqs = b.seqs[:0]
	if len(b.series) == b.n {
		// One sample per entry: sample k is entry k's.
		for k := range b.series {
			b.series[k].Samples = b.samples[k : k+1 : k+1]
			b.seqs = append(b.seqs, b.sampleSeqs[k:k+1:k+1])
		}
		return batch{series: b.series, seqs: b.seqs}
	}
	// Several samples for some series: group them by entry, in arrival order within each (a
	// counting sort). starts[k] is where entry k's next sample goes, and its end afterwards.
	if cap(b.starts) < len(b.series) {
		b.starts = make([]int32, len(b.series))
	} else {
		b.starts = b.starts[:len(b.series)]
		clear(b.starts)
	}
	for _, k := range b.entries {
		b.starts[k]++
	}
	at := int32(0)
	for k, c := range b.starts {
		b.starts[k] = at
		at += c
	}
	b.grouped = slices.Grow(b.grouped[:0], b.n)[:b.n]
	b.groupedSeq = slices.Grow(b.groupedSeq[:0], b.n)[:b.n]
	for i, k := range b.entries {
		b.grouped[b.starts[k]] = b.samples[i]
		b.groupedSeq[b.starts[k]] = b.sampleSeqs[i]
		b.starts[k]++
	}
	start := int32(0)
	for k := range b.series {
		end := b.starts[k]
		b.series[k].Samples = b.grouped[start:end:end]
		b.seqs = append(b.seqs, b.groupedSeq[start:end:end])
		start = end
	}
	return batch{series: b.series, seqs: b.seqs}
}

// reset empties the builder. The labels of the series of the last batch stay referenced by the
// reused slice until overwritten: at most one request's worth, which the reader holds anyway
// while the series live.
func (b *builder) reset() {
	if b.indexed {
		clear(b.idx)
		b.indexed = false
	}
	b.series, b.refs, b.seqs = b.series[:0], b.refs[:0], b.seqs[:0]
	b.samples, b.sampleSeqs, b.entries = b.samples[:0], b.sampleSeqs[:0], b.entries[:0]
	b.n, b.bytes = 0, 0
}
