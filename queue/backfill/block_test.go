package backfill

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// TestWriteBlock: the block collector writes without the tsdb package is one that the tsdb
// package opens and reads back exactly: the samples of each series sorted and unique (the first
// value of a timestamp kept), chunks cut every 120 samples, and a meta that matches what tsdb
// finds (time range with an exclusive end, counts, level 1).
func TestWriteBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	long := &series{lset: labels.FromStrings("__name__", "m", "job", "a", "s", "long")}
	want := map[string][]int64{}
	for i := range 300 {
		ts := int64(1_000_000 + i*15_000)
		long.ts, long.vs = append(long.ts, ts), append(long.vs, float64(ts))
		want["long"] = append(want["long"], ts)
	}
	// Duplicates after the originals: the first value of a timestamp is the one kept.
	for _, i := range []int{0, 119, 120, 299} {
		long.ts, long.vs = append(long.ts, long.ts[i]), append(long.vs, -1)
	}
	// The originals are shuffled among themselves; the duplicates stay behind them.
	rng.Shuffle(len(long.ts), func(i, j int) {
		if long.vs[i] >= 0 && long.vs[j] >= 0 {
			long.ts[i], long.ts[j] = long.ts[j], long.ts[i]
			long.vs[i], long.vs[j] = long.vs[j], long.vs[i]
		}
	})
	short := &series{lset: labels.FromStrings("__name__", "m", "job", "b", "s", "short"), ts: []int64{999_000}, vs: []float64{999_000}}
	want["short"] = []int64{999_000}
	all := []*series{long, short}
	for _, sr := range all {
		sortSamples(sr)
	}
	slices.SortFunc(all, func(a, b *series) int { return labels.Compare(a.lset, b.lset) })

	out := t.TempDir()
	id := ulid.Make()
	// A staging directory left by a crash is replaced.
	if err := os.MkdirAll(filepath.Join(out, id.String()+".tmp-for-creation", "chunks"), 0o750); err != nil {
		t.Fatal(err)
	}
	m, err := writeBlock(context.Background(), out, id, all)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, id.String()+".tmp-for-creation")); !os.IsNotExist(err) {
		t.Errorf("staging directory left: %v", err)
	}
	if m.MinTime != 999_000 || m.MaxTime != 1_000_000+299*15_000+1 || m.Stats.NumSeries != 2 ||
		m.Stats.NumSamples != 301 || m.Stats.NumChunks != 4 || m.Compaction.Level != 1 || m.Version != 1 {
		t.Errorf("meta %+v", m)
	}

	b, err := tsdb.OpenBlock(slog.New(slog.DiscardHandler), filepath.Join(out, id.String()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bm := b.Meta()
	if bm.ULID != id || bm.MinTime != m.MinTime || bm.MaxTime != m.MaxTime || bm.Stats.NumSamples != m.Stats.NumSamples ||
		bm.Stats.NumSeries != m.Stats.NumSeries || bm.Stats.NumChunks != m.Stats.NumChunks || bm.Compaction.Level != 1 {
		t.Errorf("tsdb reads meta %+v, wrote %+v", bm, m)
	}

	cq, err := tsdb.NewBlockChunkQuerier(b, m.MinTime, m.MaxTime)
	if err != nil {
		t.Fatal(err)
	}
	defer cq.Close()
	chunksOf := map[string][]int{}
	css := cq.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	for css.Next() {
		it := css.At().Iterator(nil)
		for it.Next() {
			chunksOf[css.At().Labels().Get("s")] = append(chunksOf[css.At().Labels().Get("s")], it.At().Chunk.NumSamples())
		}
	}
	if err := css.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(chunksOf["long"], []int{120, 120, 60}) || !slices.Equal(chunksOf["short"], []int{1}) {
		t.Errorf("samples per chunk: %v", chunksOf)
	}

	q, err := tsdb.NewBlockQuerier(b, m.MinTime, m.MaxTime)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	got := map[string][]int64{}
	// Select by a label value of one series: the postings are in the index.
	for _, job := range []string{"a", "b"} {
		ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "job", job))
		for ss.Next() {
			k := ss.At().Labels().Get("s")
			it := ss.At().Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				if v != float64(ts) {
					t.Errorf("series %s at %d: value %v, want the first one written", k, ts, v)
				}
				got[k] = append(got[k], ts)
			}
		}
		if err := ss.Err(); err != nil {
			t.Fatal(err)
		}
	}
	for k := range want {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("series %s: %d samples read back, want %d", k, len(got[k]), len(want[k]))
		}
	}
}
