package wal

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadStatus(t *testing.T) {
	base := t.TempDir()
	opts := testOptions()
	opts.SegmentSize = 32 * 1024
	w := openTest(t, base, opts)
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	for k := 0; k < 40; k++ {
		appendScrape(t, w, 100, t0.Add(time.Duration(k)*time.Minute).UnixMilli())
	}
	appendScrape(t, w, 100, t0.UnixMilli()) // all duplicates... of nothing: out of order
	all, _ := readAll(t, w.Dir(), Position{})
	if err := CommitPosition(w.Dir(), "hub", ConsumerState{Position: all[30].start, Delivered: 3000, Dropped: map[string]int64{"http_409": 7}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(positionPath(w.Dir(), "broken"), []byte("{"), 0o640); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, dir string, running bool) {
		st, err := ReadStatus(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Samples != 4000 || !st.OldestSample.Equal(t0) || !st.NewestSample.Equal(t0.Add(39*time.Minute)) {
			t.Fatalf("samples %d oldest %v newest %v", st.Samples, st.OldestSample, st.NewestSample)
		}
		if st.Segments < 2 || st.Bytes == 0 || st.FirstSegment != 0 {
			t.Fatalf("segments %+v", st)
		}
		if len(st.Consumers) != 2 {
			t.Fatalf("consumers %+v", st.Consumers)
		}
		broken, hub := st.Consumers[0], st.Consumers[1]
		if hub.Name != "hub" || hub.UndeliveredSamples != 1000 || !hub.Exact || hub.Delivered != 3000 || hub.Dropped["http_409"] != 7 {
			t.Fatalf("hub %+v", hub)
		}
		if !hub.OldestUndelivered.Equal(t0.Add(30 * time.Minute)) {
			t.Fatalf("oldest undelivered %v", hub.OldestUndelivered)
		}
		if broken.PositionError == "" || broken.UndeliveredSamples != 4000 {
			t.Fatalf("broken consumer %+v", broken)
		}
		if !running && st.Stats.Skipped["out_of_order"] != 100 {
			t.Fatalf("stats %+v", st.Stats)
		}
		if _, err := json.Marshal(st); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("while the writer runs", func(t *testing.T) { check(t, w.Dir(), true) })
	w.Close()
	t.Run("on a copy", func(t *testing.T) {
		cp := filepath.Join(t.TempDir(), "c1")
		copyDir(t, w.Dir(), cp)
		check(t, cp, false)
	})
	t.Run("list clusters", func(t *testing.T) {
		ids, err := ListClusters(base)
		if err != nil || len(ids) != 1 || ids[0] != "c1" {
			t.Fatalf("%v %v", ids, err)
		}
	})
	t.Run("not a wal", func(t *testing.T) {
		if _, err := ReadStatus(t.TempDir()); !errors.Is(err, ErrNotWAL) {
			t.Fatalf("ReadStatus(empty dir) = %v", err)
		}
		if _, err := ReadStatus(filepath.Join(base, "missing")); err == nil {
			t.Fatal("ReadStatus(missing) succeeded")
		}
	})
}

func TestStatusListsRegisteredConsumersWithoutPosition(t *testing.T) {
	opts := testOptions()
	opts.Consumers = []string{"hub"}
	w := openTest(t, t.TempDir(), opts)
	appendScrape(t, w, 10, 1000)
	st, err := ReadStatus(w.Dir())
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Consumers) != 1 || st.Consumers[0].Name != "hub" || !st.Consumers[0].NoPosition || st.Consumers[0].UndeliveredSamples != 10 {
		t.Fatalf("consumers %+v", st.Consumers)
	}
	if _, err := ReadPosition(w.Dir(), "../etc"); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("ReadPosition with a path in the name = %v", err)
	}
}
