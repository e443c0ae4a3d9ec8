package wal

import (
	"slices"
	"testing"
)

// TestHashIndex: refs sharing a hash are all found, and removing any of them, the first
// included, keeps the others.
func TestHashIndex(t *testing.T) {
	refsOf := func(x *hashIndex, h uint64) []SeriesRef {
		var got []SeriesRef
		x.find(h, func(r SeriesRef) bool { got = append(got, r); return false })
		slices.Sort(got)
		return got
	}
	for _, tc := range []struct {
		name   string
		add    []SeriesRef // all under hash 7
		remove []SeriesRef
		want   []SeriesRef
	}{
		{"one", []SeriesRef{1}, nil, []SeriesRef{1}},
		{"one removed", []SeriesRef{1}, []SeriesRef{1}, nil},
		{"collision", []SeriesRef{1, 2, 3}, nil, []SeriesRef{1, 2, 3}},
		{"first of a collision removed", []SeriesRef{1, 2, 3}, []SeriesRef{1}, []SeriesRef{2, 3}},
		{"middle of a collision removed", []SeriesRef{1, 2, 3}, []SeriesRef{2}, []SeriesRef{1, 3}},
		{"all removed", []SeriesRef{1, 2, 3}, []SeriesRef{3, 1, 2}, nil},
		{"unknown ref removed", []SeriesRef{1, 2}, []SeriesRef{9}, []SeriesRef{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newHashIndex()
			x.add(8, 100) // another hash, untouched
			for _, r := range tc.add {
				x.add(7, r)
			}
			for _, r := range tc.remove {
				x.remove(7, r)
			}
			if got := refsOf(&x, 7); !slices.Equal(got, tc.want) {
				t.Errorf("refs %v, want %v", got, tc.want)
			}
			if got := refsOf(&x, 8); !slices.Equal(got, []SeriesRef{100}) {
				t.Errorf("other hash: refs %v, want [100]", got)
			}
			if tc.want == nil {
				if _, ok := x.one[7]; ok || len(x.more[7]) > 0 {
					t.Errorf("emptied hash still held: %v %v", x.one, x.more)
				}
			}
			if got := x.find(7, func(r SeriesRef) bool { return r == 3 }); (got == 3) != slices.Contains(tc.want, 3) {
				t.Errorf("find 3: %d", got)
			}
		})
	}
}
