package wal

import (
	"os"
	"testing"
)

// TestPositionStatusMatchesReader commits positions that the files cannot honour as they are and
// checks that `wal status` counts as undelivered exactly what a reader starting there reads, and
// that opening the WAL counts the position as an error by reason.
func TestPositionStatusMatchesReader(t *testing.T) {
	base, dir, segs, opts := buildSegments(t)
	batches, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	last := segs[len(segs)-1]
	mid := batches[len(batches)/2]
	size1, _ := statSegment(dir, segs[1])
	for _, tc := range []struct {
		name   string
		pos    Position
		reason string
	}{
		{"boundary", mid.start, ""},
		{"mid_record", Position{Segment: mid.start.Segment, Offset: mid.start.Offset + 10}, positionMidRecord},
		{"past_last_segment", Position{Segment: last + 5}, positionPastEnd},
		{"past_segment_end", Position{Segment: segs[1], Offset: size1 + 1000}, positionPastEnd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CommitPosition(dir, "hub", ConsumerState{Position: tc.pos}); err != nil {
				t.Fatal(err)
			}
			st, err := ReadStatus(dir)
			if err != nil {
				t.Fatal(err)
			}
			cs := st.Consumers[0]
			got, err := readAll(t, dir, tc.pos)
			if err != nil {
				t.Fatal(err)
			}
			if cs.UndeliveredSamples != int64(countRead(got)) {
				t.Fatalf("status counts %d undelivered, a reader at %v reads %d", cs.UndeliveredSamples, tc.pos, countRead(got))
			}
			if cs.PositionAdjusted != tc.reason {
				t.Fatalf("status says the position is adjusted for %q, want %q", cs.PositionAdjusted, tc.reason)
			}
			r, err := NewReader(dir, tc.pos, ReaderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			start := r.Position()
			r.Close()
			if tc.reason != "" && (cs.Start == nil || *cs.Start != start) {
				t.Fatalf("status start %v, the reader starts at %v", cs.Start, start)
			}
			reg := newTestRegistry()
			w, err := Open(nil, reg, base, "c1", opts)
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			if tc.reason != "" {
				if n := counterValue(t, reg, "collector_wal_position_errors_total", "reason", tc.reason); n != 1 {
					t.Fatalf("position errors{reason=%q} = %v, want 1", tc.reason, n)
				}
			}
		})
	}
	t.Run("unreadable", func(t *testing.T) {
		if err := os.WriteFile(positionPath(dir, "hub"), []byte(`{"version":1,"state":{"segment":1`), 0o640); err != nil {
			t.Fatal(err)
		}
		st, err := ReadStatus(dir)
		if err != nil {
			t.Fatal(err)
		}
		all, err := readAll(t, dir, Position{})
		if err != nil {
			t.Fatal(err)
		}
		if cs := st.Consumers[0]; cs.PositionError == "" || cs.UndeliveredSamples != int64(countRead(all)) {
			t.Fatalf("status of an unreadable position: %+v, want everything undelivered (%d)", cs, countRead(all))
		}
		reg := newTestRegistry()
		w, err := Open(nil, reg, base, "c1", opts)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		if n := counterValue(t, reg, "collector_wal_position_errors_total", "reason", "unreadable"); n != 1 {
			t.Fatalf("position errors{reason=unreadable} = %v, want 1", n)
		}
	})
}
