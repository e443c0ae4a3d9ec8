package wal

import (
	"testing"
	"time"
)

// TestCapsEvictOldestAndCountExactly fills a WAL, places two consumers at different positions,
// and checks that the size and age caps evict the oldest segments and count, per consumer, exactly
// the samples it had not yet passed.
func TestCapsEvictOldestAndCountExactly(t *testing.T) {
	const width = 150
	for _, tc := range []struct {
		name   string
		reason string
		set    func(o *Options, segBytes int64)
	}{
		{"max size", "max_size", func(o *Options, segBytes int64) { o.MaxSize = 3 * segBytes }},
		{"max age", "max_age", func(o *Options, _ int64) { o.MaxAge = time.Hour }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			now := time.UnixMilli(100 * 3600 * 1000)
			opts := testOptions()
			opts.SegmentSize = 32 * 1024
			opts.Consumers = []string{"fast", "slow"}
			opts.Now = func() time.Time { return now }
			w := openTest(t, base, opts)
			// 120 scrapes, one per minute, ending at now.
			for k := 0; k < 120; k++ {
				ts := now.Add(time.Duration(k-119) * time.Minute).UnixMilli()
				appendScrape(t, w, width, ts)
			}
			all, _ := readAll(t, w.Dir(), Position{})
			segs := w.sortedSegments()
			if len(segs) < 6 {
				t.Fatalf("want at least 6 segments, got %v", segs)
			}
			w.Close()

			// fast is past segment 1 already; slow is in the middle of segment 0.
			var fastPos, slowPos Position
			for _, b := range all {
				if b.start.Segment == 2 && fastPos == (Position{}) {
					fastPos = b.start
				}
			}
			slowPos = all[3].start
			for c, p := range map[string]Position{"fast": fastPos, "slow": slowPos} {
				if err := CommitPosition(w.Dir(), c, ConsumerState{Position: p}); err != nil {
					t.Fatal(err)
				}
			}

			w = openTest(t, base, opts)
			defer w.Close()
			w.mtx.Lock()
			segBytes := w.segs[segs[0]].bytes
			w.mtx.Unlock()
			opts2 := opts
			tc.set(&opts2, segBytes)
			w.opts = opts2
			st, err := w.Truncate()
			if err != nil {
				t.Fatal(err)
			}
			if st.Evicted == 0 {
				t.Fatalf("nothing evicted: %+v", st)
			}
			// Expected drops: samples in evicted segments at or after each position.
			cut := st.Checkpoint + 1
			want := map[string]int64{}
			for _, b := range all {
				if b.start.Segment >= cut {
					continue
				}
				for c, p := range map[string]Position{"fast": fastPos, "slow": slowPos} {
					if !b.start.Before(p) {
						want[c] += int64(len(b.samples))
					}
				}
			}
			for _, c := range []string{"fast", "slow"} {
				if st.EvictedSamples[c] != want[c] {
					t.Fatalf("%s: evicted %d samples, want %d (%+v)", c, st.EvictedSamples[c], want[c], st)
				}
				if got := w.stats.Evicted[c][tc.reason]; got != want[c] {
					t.Fatalf("%s: persisted eviction count %d, want %d", c, got, want[c])
				}
			}
			if tc.reason == "max_size" && w.sizeLocked() > opts2.MaxSize {
				t.Fatalf("size %d still over the cap %d", w.sizeLocked(), opts2.MaxSize)
			}
			if tc.reason == "max_age" {
				for _, k := range w.sortedSegments() {
					if m := w.segs[k]; m.samples > 0 && k != w.cur && time.UnixMilli(m.maxT).Before(now.Add(-time.Hour)) {
						t.Fatalf("segment %d with newest sample %v survived the age cap", k, time.UnixMilli(m.maxT))
					}
				}
			}
			// Positions behind the cut were moved forward; readers resolve everything.
			for _, c := range []string{"fast", "slow"} {
				cs, err := ReadPosition(w.Dir(), c)
				if err != nil {
					t.Fatal(err)
				}
				if cs.Segment < cut {
					t.Fatalf("%s left at %v, before the first retained segment %d", c, cs.Position, cut)
				}
				rest, err := readAll(t, w.Dir(), cs.Position)
				if err != nil {
					t.Fatal(err)
				}
				if got, total := int64(countRead(rest)), int64(len(all)*width); got+want[c]+delivered(all, c, fastPos, slowPos) != total {
					t.Fatalf("%s: %d left + %d evicted + delivered != %d appended", c, got, want[c], total)
				}
			}
		})
	}
}

func delivered(all []readBatch, c string, fast, slow Position) int64 {
	p := map[string]Position{"fast": fast, "slow": slow}[c]
	var n int64
	for _, b := range all {
		if b.start.Before(p) {
			n += int64(len(b.samples))
		}
	}
	return n
}
