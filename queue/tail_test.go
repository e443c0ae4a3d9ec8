package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"
)

func TestTimeFilter(t *testing.T) {
	w := openWAL(t)
	fill(t, w, 3, 10, 0) // t = 0, 1000, ... 9000
	s := newFakeSender(nil)
	o := fastOptions("replay")
	o.StopAtEnd = true
	o.NoCommit = true
	o.MinTime, o.MaxTime = 2000, 4000
	q, err := New(testLogger(), nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.Delivered != 9 || st.Filtered != 21 || len(st.Dropped) != 0 || st.Position != mustPosition(t, w).end {
		t.Fatalf("stats %+v", st)
	}
	if _, err := wal.ReadPosition(w.Dir(), "replay"); !errors.Is(err, wal.ErrNoPosition) {
		t.Fatalf("NoCommit wrote a position: %v", err)
	}
}

// TestUnknownSeries reads a WAL written by hand whose Samples records name a ref that no Series
// record defines: those samples are dropped and counted, the others delivered, nothing panics.
func TestUnknownSeries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c1")
	wl, err := wlog.NewSize(nil, nil, dir, wlog.DefaultSegmentSize, compression.None)
	if err != nil {
		t.Fatal(err)
	}
	var enc record.Encoder
	if err := wl.Log(enc.Series([]record.RefSeries{{Ref: 1, Labels: seriesLabels(1)}, {Ref: 2, Labels: seriesLabels(2)}}, nil)); err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 3; i++ {
		samples := []record.RefSample{{Ref: 1, T: 1000 * i, V: 1}, {Ref: 99, T: 1000 * i, V: 1}, {Ref: 2, T: 1000 * i, V: 1}}
		if err := wl.Log(enc.Samples(samples, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wl.Close(); err != nil {
		t.Fatal(err)
	}
	s := newFakeSender(nil)
	o := fastOptions("ep")
	o.StopAtEnd = true
	q, err := New(testLogger(), nil, DirSource(dir), s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.Delivered != 6 || st.Dropped[ReasonUnknownSeries] != 3 || st.Pending != 0 || s.ackedSamples() != 6 {
		t.Fatalf("stats %+v", st)
	}
	if got := testutil.ToFloat64(q.metrics.samplesDropped.WithLabelValues(ReasonUnknownSeries)); got != 3 {
		t.Fatalf("metric %v", got)
	}
}

// TestCorruptedSegmentSkipped flips bytes inside a record of a middle segment: the queue skips
// the rest of that segment, counts it, and delivers everything else.
func TestCorruptedSegmentSkipped(t *testing.T) {
	opts := wal.DefaultOptions()
	opts.SegmentSize = 32 << 10
	opts.Compression = compression.None
	opts.Fsync = wal.FsyncSegment
	w, err := wal.Open(testLogger(), nil, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	total := fill(t, w, 50, 120, 1000)
	dir := w.Dir()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The records as written, to know what survives.
	type rec struct {
		seg      int
		end      int64
		nSamples int
	}
	var recs []rec
	r, err := wal.NewReader(dir, wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := r.Next(context.Background())
		if err != nil {
			break
		}
		recs = append(recs, rec{b.Start.Segment, b.End.Offset, len(b.Samples)})
	}
	r.Close()
	if recs[len(recs)-1].seg < 2 {
		t.Fatalf("want at least 3 segments, have %d", recs[len(recs)-1].seg+1)
	}
	const off = 10_000
	f, err := os.OpenFile(filepath.Join(dir, "00000001"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := 0
	for _, r := range recs {
		if r.seg != 1 || r.end <= off {
			want += r.nSamples
		}
	}

	s := newFakeSender(nil)
	o := fastOptions("ep")
	o.StopAtEnd = true
	q, err := New(testLogger(), nil, DirSource(dir), s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.Delivered != int64(want) || want >= total || st.Pending != 0 {
		t.Fatalf("delivered %d, want %d of %d appended", st.Delivered, want, total)
	}
	if got := testutil.ToFloat64(q.metrics.segmentsSkipped); got != 1 {
		t.Fatalf("segments skipped %v", got)
	}
}
