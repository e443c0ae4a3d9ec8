package wal

import (
	"math/rand/v2"
	"testing"
)

// TestRefTable checks a refTable against a map through random puts and deletes, with dense,
// sparse and churning refs, and bounds its footprint after every compact.
func TestRefTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		next func(rng *rand.Rand, i int) SeriesRef // the i-th ref put
		del  float64                               // chance to delete a random live ref per put
	}{
		{name: "dense", next: func(_ *rand.Rand, i int) SeriesRef { return SeriesRef(i + 1) }},
		{name: "sparse", next: func(_ *rand.Rand, i int) SeriesRef { return SeriesRef(1 + i*10_000) }},
		{name: "churn", next: func(_ *rand.Rand, i int) SeriesRef { return SeriesRef(i + 1) }, del: 0.9},
		// A reader loading a checkpoint (long-lived low refs, then recent ones far above, which
		// go to the map), then the Series records of a segment the checkpoint covers (filling
		// the gap into the window) and of later segments (growing the window past the map's).
		{name: "gap", next: func(_ *rand.Rand, i int) SeriesRef {
			switch {
			case i < 20:
				return SeriesRef(i + 1)
			case i < 60:
				return SeriesRef(1149 + i - 20)
			}
			return SeriesRef(1037 + i - 60)
		}},
		{name: "random", next: func(rng *rand.Rand, _ int) SeriesRef { return SeriesRef(rng.Uint64N(1 << 40)) }, del: 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var tab refTable[int]
			want := map[SeriesRef]int{}
			var live []SeriesRef
			for i := range 50_000 {
				ref := tc.next(rng, i)
				if _, ok := want[ref]; !ok {
					live = append(live, ref)
				}
				v, _ := tab.put(ref)
				*v = i
				want[ref] = i
				if rng.Float64() < tc.del && len(live) > 0 {
					k := rng.IntN(len(live))
					tab.del(live[k])
					delete(want, live[k])
					live[k] = live[len(live)-1]
					live = live[:len(live)-1]
				}
				if i%1000 == 999 {
					for ref, w := range want {
						if v := tab.get(ref); v == nil || *v != w {
							t.Fatalf("put %d: get %d = %v, want %d", i, ref, v, w)
						}
					}
					tab.compact()
					if f := tab.footprint(); f > 4*tab.len()+2*windowSlack {
						t.Fatalf("after compact: footprint %d for %d refs", f, tab.len())
					}
				}
				if f := tab.footprint(); f > 8*tab.len()+4*windowSlack && tc.del == 0 {
					t.Fatalf("footprint %d for %d refs without deletions", f, tab.len())
				}
			}
			if tab.len() != len(want) {
				t.Fatalf("len %d, want %d", tab.len(), len(want))
			}
			n := 0
			tab.each(func(ref SeriesRef, v *int) {
				n++
				if w, ok := want[ref]; !ok || w != *v {
					t.Fatalf("ref %d: %d, want %d (%v)", ref, *v, w, ok)
				}
			})
			if n != len(want) {
				t.Fatalf("each visited %d, want %d", n, len(want))
			}
			for ref, w := range want {
				if v := tab.get(ref); v == nil || *v != w {
					t.Fatalf("get %d = %v, want %d", ref, v, w)
				}
			}
		})
	}
}
