package wal

import (
	"os"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/prompb"
)

func deferredReq(name string, ts ...int64) []prompb.TimeSeries {
	s := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}, {Name: "a", Value: "b"}}}
	for _, t := range ts {
		s.Samples = append(s.Samples, prompb.Sample{Timestamp: t, Value: float64(t)})
	}
	return []prompb.TimeSeries{s}
}

func readAllDeferred(t *testing.T, dir string, segs []int) (map[string][]int64, int) {
	t.Helper()
	out := map[string][]int64{}
	torn, err := ReadDeferred(dir, segs, func(s DeferredSample) error {
		if s.V != float64(s.T) || s.Labels.Get("a") != "b" {
			t.Fatalf("sample %v", s)
		}
		out[s.Labels.Get("__name__")] = append(out[s.Labels.Get("__name__")], s.T)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, len(torn)
}

// TestDeferredLogSealing: the segment a writer has open is not offered for backfill; once sealed
// it is, the next store starts a new segment, and every sample reads back with its labels (refs
// are local to each store).
func TestDeferredLogSealing(t *testing.T) {
	walDir := t.TempDir()
	l, err := OpenDeferred(walDir, "ep")
	if err != nil {
		t.Fatal(err)
	}
	dir := l.Dir()
	segs := func() []int {
		s, err := DeferredSegments(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := l.Append(deferredReq("x", 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(deferredReq("y", 3)); err != nil {
		t.Fatal(err)
	}
	if s := segs(); len(s) != 0 {
		t.Fatalf("sealed segments %v while the only one is being written", s)
	}
	if err := l.Seal(); err != nil {
		t.Fatal(err)
	}
	if s := segs(); !slices.Equal(s, []int{0}) {
		t.Fatalf("sealed segments %v, want [0]", s)
	}
	if err := l.Append(deferredReq("y", 4)); err != nil {
		t.Fatal(err)
	}
	if s := segs(); !slices.Equal(s, []int{0}) {
		t.Fatalf("sealed segments %v while segment 1 is written, want [0]", s)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(deferredReq("z", 5)); err == nil {
		t.Fatal("append after close succeeded")
	}
	all := segs()
	if !slices.Equal(all, []int{0, 1}) {
		t.Fatalf("segments %v, want [0 1]", all)
	}
	got, torn := readAllDeferred(t, dir, all)
	if torn != 0 || !slices.Equal(got["x"], []int64{1, 2}) || !slices.Equal(got["y"], []int64{3, 4}) {
		t.Fatalf("read back %v (torn %d)", got, torn)
	}

	// A crash inside the last store: the tail is torn; what precedes it reads back.
	// Segment 1 holds one store of two records from offset 0: cut inside the first.
	if err := os.Truncate(segmentName(dir, 1), 12); err != nil {
		t.Fatal(err)
	}
	got, torn = readAllDeferred(t, dir, all)
	if !slices.Equal(got["x"], []int64{1, 2}) || !slices.Equal(got["y"], []int64{3}) || torn != 1 {
		t.Fatalf("after a torn tail read back %v (torn %d)", got, torn)
	}

	if err := RemoveDeferred(dir, all); err != nil {
		t.Fatal(err)
	}
	if s := segs(); len(s) != 0 {
		t.Fatalf("segments %v after removal", s)
	}
}
