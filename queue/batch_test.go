package queue

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// seqItem is an item with the record of its chunk.
type seqItem struct {
	item
	seq uint64
}

func testItem(ref int, t int64, seq uint64) seqItem {
	lbl := string(wal.AppendLabels(nil, seriesLabels(ref)))
	return seqItem{item{lbl: lbl, ref: wal.SeriesRef(ref), t: t, v: 1}, seq}
}

// prompbSeries decodes s for the tests.
func prompbSeries(t *testing.T, s Series) prompb.TimeSeries {
	t.Helper()
	ts, err := toPrompb([]Series{s})
	if err != nil {
		t.Fatal(err)
	}
	return ts[0]
}

// addItem adds it to b as a shard does, and reports false (adding nothing) when it does not fit.
func addItem(b *builder, it seqItem) bool {
	k := b.entry(&it.item, it.seq)
	if !b.fits(&it.item, k) {
		return false
	}
	b.add(&it.item, k, it.seq)
	return true
}

func TestBuilderLimits(t *testing.T) {
	first := testItem(0, 0, 0)
	one := bytesPerSeries + len(first.lbl) + bytesPerSample
	for _, tc := range []struct {
		name       string
		maxSamples int
		maxBytes   int
		items      []seqItem
		wantFits   int // items that fit
		wantSeries int
	}{
		{"samples cap", 3, 1 << 20, []seqItem{testItem(1, 1, 0), testItem(2, 1, 0), testItem(3, 1, 0), testItem(4, 1, 0)}, 3, 3},
		{"bytes cap counts labels once per series", 100, one + 2*bytesPerSample, []seqItem{testItem(1, 1, 0), testItem(1, 2, 1), testItem(1, 3, 2), testItem(2, 1, 2)}, 3, 1},
		{"an oversized first item still fits", 100, 1, []seqItem{testItem(1, 1, 0), testItem(2, 1, 0)}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(tc.maxSamples, tc.maxBytes)
			n := 0
			for i := range tc.items {
				if !addItem(b, tc.items[i]) {
					break
				}
				n++
			}
			if n != tc.wantFits || len(b.batch().series) != tc.wantSeries || b.len() != n {
				t.Fatalf("fit %d items in %d series, want %d in %d", n, len(b.batch().series), tc.wantFits, tc.wantSeries)
			}
			b.reset()
			if b.len() != 0 || len(b.batch().series) != 0 {
				t.Fatal("reset left data")
			}
		})
	}
}

func TestBuilderGroupsInOrder(t *testing.T) {
	b := newBuilder(100, 1<<20)
	for _, it := range []seqItem{testItem(2, 10, 0), testItem(1, 10, 0), testItem(2, 20, 1), testItem(1, 20, 1), testItem(3, 5, 1)} {
		addItem(b, it)
	}
	bt := b.batch()
	if len(bt.series) != 3 || bt.samples() != 5 {
		t.Fatalf("batch %+v", bt)
	}
	if got := []int64{bt.series[0].Samples[0].Timestamp, bt.series[0].Samples[1].Timestamp}; !slices.Equal(got, []int64{10, 20}) {
		t.Fatalf("series 2 timestamps %v", got)
	}
	if !slices.Equal(bt.seqs[0], []uint64{0, 1}) || !slices.Equal(bt.seqs[2], []uint64{1}) {
		t.Fatalf("seqs %v", bt.seqs)
	}
	// Reuse after reset keeps nothing of the previous batch.
	b.reset()
	it := testItem(7, 1, 9)
	addItem(b, it)
	if bt := b.batch(); len(bt.series) != 1 || len(bt.series[0].Samples) != 1 || !slices.Equal(bt.seqs[0], []uint64{9}) {
		t.Fatalf("reused batch %+v", bt)
	}
}

func mkBatch(samplesPerSeries ...int) batch {
	var b batch
	seq := uint64(0)
	for i, n := range samplesPerSeries {
		ts := Series{Labels: string(wal.AppendLabels(nil, labels.FromStrings("i", string(rune('a'+i)))))}
		var seqs []uint64
		for j := 0; j < n; j++ {
			ts.Samples = append(ts.Samples, Sample{Timestamp: int64(j)})
			seqs = append(seqs, seq)
			seq++
		}
		b.series = append(b.series, ts)
		b.seqs = append(b.seqs, seqs)
	}
	return b
}

// TestBuilderIndexesFromTheSecondRecord: the samples of one record each start an entry without
// an index (a record holds a series once; a repeat gets an entry of its own, still in order);
// from the first sample of a second record on, the entries are indexed and a series' samples
// share its entry.
func TestBuilderIndexesFromTheSecondRecord(t *testing.T) {
	b := newBuilder(100, 1<<20)
	for _, it := range []seqItem{testItem(1, 10, 0), testItem(2, 10, 0), testItem(1, 11, 0)} {
		addItem(b, it)
	}
	if b.indexed || len(b.idx) != 0 || len(b.series) != 3 {
		t.Fatalf("one record: indexed %v with %d refs, %d entries; want no index, 3 entries", b.indexed, len(b.idx), len(b.series))
	}
	for _, it := range []seqItem{testItem(2, 20, 1), testItem(3, 20, 1), testItem(3, 30, 2)} {
		addItem(b, it)
	}
	bt := b.batch()
	if !b.indexed || len(bt.series) != 4 || bt.samples() != 6 {
		t.Fatalf("indexed %v, %d entries, %d samples; want indexed, 4 entries, 6 samples", b.indexed, len(bt.series), bt.samples())
	}
	for k, want := range [][]int64{{10}, {10, 20}, {11}, {20, 30}} {
		var got []int64
		for _, smp := range bt.series[k].Samples {
			got = append(got, smp.Timestamp)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("entry %d timestamps %v, want %v", k, got, want)
		}
	}
	b.reset()
	if b.indexed || len(b.idx) != 0 {
		t.Fatal("reset kept the index")
	}
	addItem(b, testItem(2, 40, 3))
	addItem(b, testItem(2, 50, 3))
	if len(b.batch().series) != 2 {
		t.Fatalf("after reset: %d entries, want 2 (one record, no index)", len(b.batch().series))
	}
}

func TestBatchSplit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		b           batch
		left, right int // samples
	}{
		{"by series", mkBatch(1, 2, 3, 4), 3, 7},
		{"odd series", mkBatch(1, 1, 1), 1, 2},
		{"one series by samples", mkBatch(5), 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, r := tc.b.split()
			if l.samples() != tc.left || r.samples() != tc.right {
				t.Fatalf("split %d/%d, want %d/%d", l.samples(), r.samples(), tc.left, tc.right)
			}
			// Order kept: the left half's records come first.
			var all []uint64
			for _, h := range []batch{l, r} {
				for _, s := range h.seqs {
					all = append(all, s...)
				}
			}
			if !slices.IsSorted(all) || len(all) != tc.b.samples() {
				t.Fatalf("records %v", all)
			}
		})
	}
}

func TestBatchDropOlder(t *testing.T) {
	b := mkBatch(3, 1, 2) // timestamps 0..2, 0, 0..1
	kept, dropped := b.dropOlder(1, nil)
	if kept.samples() != 3 || len(dropped) != 3 || len(kept.series) != 2 {
		t.Fatalf("kept %+v dropped %v", kept, dropped)
	}
	if !slices.Equal(dropped, []uint64{0, 3, 4}) || !slices.Equal(kept.seqs[0], []uint64{1, 2}) || !slices.Equal(kept.seqs[1], []uint64{5}) {
		t.Fatalf("kept %v dropped %v", kept.seqs, dropped)
	}
}

// TestDropOlderKeepsBuilderIntact: dropping whole series from a batch must not make two of the
// builder's entries share label or record storage, which the next batch would overwrite.
func TestDropOlderKeepsBuilderIntact(t *testing.T) {
	b := newBuilder(100, 1<<20)
	for _, it := range []seqItem{testItem(1, 1, 0), testItem(2, 100, 0), testItem(3, 100, 0)} {
		addItem(b, it)
	}
	kept, dropped := b.batch().dropOlder(50, nil)
	if kept.samples() != 2 || len(dropped) != 1 {
		t.Fatalf("kept %d, dropped %d", kept.samples(), len(dropped))
	}
	b.reset()
	for _, it := range []seqItem{testItem(4, 1, 1), testItem(5, 1, 2), testItem(6, 1, 3)} {
		addItem(b, it)
	}
	bt := b.batch()
	for i, want := range []string{"host-4", "host-5", "host-6"} {
		if got := seriesKey(prompbSeries(t, bt.series[i])); got != want {
			t.Fatalf("series %d has labels of %s, want %s", i, got, want)
		}
		if !slices.Equal(bt.seqs[i], []uint64{uint64(i + 1)}) {
			t.Fatalf("series %d records %v", i, bt.seqs[i])
		}
	}
}

// TestItemSize: an item is 40 bytes (the tailer holds a record's samples as items).
func TestItemSize(t *testing.T) {
	if n := unsafe.Sizeof(item{}); n != 40 {
		t.Errorf("item is %d bytes, want 40", n)
	}
}

// TestBuilderMatchesModel adds random items of a few records and compares each batch with a
// model: an entry per series (per series and record while only one record is in the batch), its
// samples and records in arrival order, each entry's slices capped at their length.
func TestBuilderMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b := newBuilder(1<<20, 1<<30)
	for round := 0; round < 200; round++ {
		b.reset()
		type entry struct {
			ts   []int64
			seqs []uint64
		}
		var want []*entry
		byRef := map[int]*entry{}
		records := 1 + rng.IntN(3)
		ts := int64(0)
		for seq := uint64(0); seq < uint64(records); seq++ {
			inRecord := map[int]bool{}
			for n := rng.IntN(20); n > 0; n-- {
				ref := 1 + rng.IntN(8)
				if inRecord[ref] {
					continue // a record holds a series once
				}
				inRecord[ref] = true
				ts++
				if !addItem(b, testItem(ref, ts, seq)) {
					t.Fatal("an item did not fit")
				}
				e := byRef[ref] // a series repeats only in another record: the batch is indexed then
				if e == nil {
					e = &entry{}
					want = append(want, e)
					byRef[ref] = e
				}
				e.ts = append(e.ts, ts)
				e.seqs = append(e.seqs, seq)
			}
		}
		bt := b.batch()
		if len(bt.series) != len(want) || len(bt.seqs) != len(want) {
			t.Fatalf("round %d: %d entries, want %d", round, len(bt.series), len(want))
		}
		for k, e := range want {
			var got []int64
			for _, s := range bt.series[k].Samples {
				got = append(got, s.Timestamp)
			}
			if !slices.Equal(got, e.ts) || !slices.Equal(bt.seqs[k], e.seqs) {
				t.Fatalf("round %d entry %d: timestamps %v records %v, want %v %v", round, k, got, bt.seqs[k], e.ts, e.seqs)
			}
			if cap(bt.series[k].Samples) != len(e.ts) || cap(bt.seqs[k]) != len(e.seqs) {
				t.Fatalf("round %d entry %d: capacity %d/%d beyond its %d samples", round, k, cap(bt.series[k].Samples), cap(bt.seqs[k]), len(e.ts))
			}
		}
	}
}
