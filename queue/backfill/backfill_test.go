package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/collector-dev/collector/queue/backfill"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/sirupsen/logrus"
	"github.com/thanos-io/objstore"
)

// hour0 is an aligned start: the samples below span three 2h windows.
var hour0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC).UnixMilli()

// deferSamples writes a dead-letter log like the queue does: per series, samples one minute
// apart from 10:00 to 15:59, in several appends, with a re-sent duplicate and the series in
// changing order. It returns the unique timestamps by series.
func deferSamples(t *testing.T, walDir string) map[string][]int64 {
	t.Helper()
	l, err := wal.OpenDeferred(walDir, "ep")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int64{}
	names := []string{"a", "b", "c"}
	for chunk := 0; chunk < 6; chunk++ {
		var req []prompb.TimeSeries
		for i := range names {
			name := names[(i+chunk)%len(names)]
			ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "cluster_id", Value: "c1"}, {Name: "s", Value: name}}}
			for m := 0; m < 60; m++ {
				x := hour0 + int64(chunk*60+m)*60_000
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: x, Value: float64(x)})
				want[name] = append(want[name], x)
			}
			req = append(req, ts)
		}
		if err := l.Append(req); err != nil {
			t.Fatal(err)
		}
		if chunk == 2 {
			// A re-send after a crash: the same samples again.
			if err := l.Append(req[:1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

func fsBucket(t *testing.T) (objstore.Bucket, string) {
	t.Helper()
	root := t.TempDir()
	bkt, err := backfill.NewBucket([]byte("type: FILESYSTEM\nconfig:\n  directory: " + root + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return bkt, root
}

func options() backfill.Options {
	o := backfill.DefaultOptions()
	o.ExternalLabels = labels.FromStrings("tenant_id", "default-tenant")
	return o
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// readBucket opens every block in the bucket directory root with the tsdb package and returns
// its samples by series, and the metas.
func readBucket(t *testing.T, root string) (map[string][]int64, []backfill.Meta) {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int64{}
	var metas []backfill.Meta
	for _, e := range entries {
		bdir := filepath.Join(root, e.Name())
		data, err := os.ReadFile(filepath.Join(bdir, "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m backfill.Meta
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		metas = append(metas, m)
		b, err := tsdb.OpenBlock(slog.New(slog.DiscardHandler), bdir, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		q, err := tsdb.NewBlockQuerier(b, m.MinTime, m.MaxTime)
		if err != nil {
			t.Fatal(err)
		}
		ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
		for ss.Next() {
			s := ss.At()
			k := s.Labels().Get("s")
			it := s.Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				if v != float64(ts) {
					t.Fatalf("series %s at %d: value %v", k, ts, v)
				}
				got[k] = append(got[k], ts)
			}
		}
		if err := ss.Err(); err != nil {
			t.Fatal(err)
		}
		q.Close()
		b.Close()
	}
	for k := range got {
		slices.Sort(got[k])
	}
	return got, metas
}

// TestBackfillBlocks: the deferred samples become 2h blocks that the tsdb package reads back
// exactly (duplicates once), with a Thanos meta.json; the segments are removed afterwards.
func TestBackfillBlocks(t *testing.T) {
	walDir := t.TempDir()
	want := deferSamples(t, walDir)
	bkt, root := fsBucket(t)
	reg := prometheus.NewRegistry()
	b, err := backfill.New(quiet(), reg, bkt, options())
	if err != nil {
		t.Fatal(err)
	}
	dir := wal.DeferredDir(walDir, "ep")
	var last int64
	res, err := b.Run(context.Background(), dir, func(done, total int64) { last = done })
	if err != nil {
		t.Fatal(err)
	}
	if res.Blocks != 3 || res.Samples != 3*360 || last != res.Samples {
		t.Fatalf("result %+v, progress %d", res, last)
	}
	got, metas := readBucket(t, root)
	if !maps.EqualFunc(got, want, slices.Equal[[]int64]) {
		t.Fatalf("bucket holds %v series, want %v", len(got), len(want))
	}
	replicas := map[string]bool{}
	for _, m := range metas {
		if m.Version != 1 || m.Compaction.Level != 1 || m.Thanos.Version != 1 || m.Thanos.Downsample.Resolution != 0 || m.Thanos.Source != backfill.Source {
			t.Fatalf("meta %+v", m)
		}
		if m.MinTime%(2*time.Hour).Milliseconds() != 0 || m.MaxTime > m.MinTime+(2*time.Hour).Milliseconds() {
			t.Fatalf("block [%d, %d) not inside an aligned 2h window", m.MinTime, m.MaxTime)
		}
		if m.Thanos.Labels["tenant_id"] != "default-tenant" || !strings.HasPrefix(m.Thanos.Labels["replica"], "collector-backfill-") {
			t.Fatalf("external labels %v", m.Thanos.Labels)
		}
		replicas[m.Thanos.Labels["replica"]] = true
		if len(m.Thanos.Files) < 3 {
			t.Fatalf("files %v", m.Thanos.Files)
		}
	}
	if len(replicas) != 3 {
		t.Fatalf("replica values %v: each block must be its own compaction group", replicas)
	}
	if segs, _ := wal.DeferredSegments(dir); len(segs) != 0 {
		t.Fatalf("segments %v left after backfill", segs)
	}
	st, err := wal.ReadBackfillState(dir)
	if err != nil || st.Backfilled != 3*360 || st.BlocksUploaded != 3 || len(st.Segments) != 0 {
		t.Fatalf("state %+v %v", st, err)
	}
	// Nothing left: a second pass does nothing.
	if res, err := b.Run(context.Background(), dir, nil); err != nil || res != (backfill.Result{}) {
		t.Fatalf("second pass %+v %v", res, err)
	}
}

// failingBucket fails the upload of the n-th meta.json once.
type failingBucket struct {
	objstore.Bucket
	mu      sync.Mutex
	metas   int
	failAt  int
	failed  bool
	uploads map[string]int
}

func (f *failingBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	f.mu.Lock()
	if strings.HasSuffix(name, "/meta.json") {
		f.metas++
		if f.metas == f.failAt && !f.failed {
			f.failed = true
			f.mu.Unlock()
			return errors.New("bucket unavailable")
		}
	}
	f.uploads[name]++
	f.mu.Unlock()
	return f.Bucket.Upload(ctx, name, r, opts...)
}

// TestBackfillResumes: a pass stopped by a failed upload keeps the segments; the next pass skips
// the blocks already uploaded, uploads the rest, and only then removes the segments.
func TestBackfillResumes(t *testing.T) {
	walDir := t.TempDir()
	want := deferSamples(t, walDir)
	inner, root := fsBucket(t)
	bkt := &failingBucket{Bucket: inner, failAt: 2, uploads: map[string]int{}}
	b, err := backfill.New(quiet(), prometheus.NewRegistry(), bkt, options())
	if err != nil {
		t.Fatal(err)
	}
	dir := wal.DeferredDir(walDir, "ep")
	if _, err := b.Run(context.Background(), dir, nil); err == nil {
		t.Fatal("pass with a failing bucket succeeded")
	}
	segs, err := wal.DeferredSegments(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments removed before every block was uploaded: %v %v", segs, err)
	}
	st, err := wal.ReadBackfillState(dir)
	if err != nil || len(st.Blocks) != 3 || !st.Blocks[0].Uploaded || st.Blocks[1].Uploaded || st.LastError == "" {
		t.Fatalf("state after the failed pass %+v %v", st, err)
	}
	res, err := b.Run(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 1 || res.Blocks != 2 || res.Samples != 3*360 {
		t.Fatalf("resumed pass %+v", res)
	}
	for name, n := range bkt.uploads {
		// The block uploaded by the failed pass is not uploaded again; the partial one is.
		if strings.HasPrefix(name, st.Blocks[0].ULID+"/") && n != 1 {
			t.Fatalf("%s uploaded %d times", name, n)
		}
	}
	got, _ := readBucket(t, root)
	if !maps.EqualFunc(got, want, slices.Equal[[]int64]) {
		t.Fatal("bucket content differs after the resumed pass")
	}
	if segs, _ := wal.DeferredSegments(dir); len(segs) != 0 {
		t.Fatalf("segments %v left", segs)
	}
}

// TestInspect: the dry run's numbers, from the files alone.
func TestInspect(t *testing.T) {
	walDir := t.TempDir()
	deferSamples(t, walDir)
	p, err := backfill.Inspect(wal.DeferredDir(walDir, "ep"), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p.Samples != 3*360+60 || len(p.Windows) != 3 || p.MinTime != hour0 || p.MaxTime != hour0+359*60_000 || len(p.Segments) != 1 {
		t.Fatalf("plan %+v", p)
	}
}
