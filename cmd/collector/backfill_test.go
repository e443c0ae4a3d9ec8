package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/prometheus/prompb"
)

// TestBackfillCommand: `collector backfill` shows what is deferred, uploads nothing with
// --dry-run, uploads the blocks into a filesystem bucket, and a re-run finds nothing left; wal
// status reports the deferred and backfilled samples.
func TestBackfillCommand(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "wal")
	tw := buildWAL(t, base, "c1", 2, 10)
	tw.commitAgent(t, "hub", 10, nil)
	l, err := wal.OpenDeferred(filepath.Join(base, "c1"), "hub")
	if err != nil {
		t.Fatal(err)
	}
	// 3 series × 150 samples a minute apart from an aligned hour: two 2h windows.
	h0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC).UnixMilli()
	for _, s := range []string{"a", "b", "c"} {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "s", Value: s}}}
		for i := range 150 {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: h0 + int64(i)*60_000, Value: 1})
		}
		if err := l.Append([]prompb.TimeSeries{ts}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	bucket := t.TempDir()
	conf := filepath.Join(t.TempDir(), "bucket.yml")
	writeFile(t, conf, "type: FILESYSTEM\nconfig:\n  directory: "+bucket+"\n")
	blocks := func() int {
		entries, err := os.ReadDir(bucket)
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}

	r := runCmd(t, nil, "backfill", "--wal-dir", base, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "c1") || !strings.Contains(r.stdout, "450") || !strings.Contains(r.stdout, "2026-11-30T10:00:00Z .. 2026-11-30T12:29:00Z") {
		t.Fatalf("dry run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := blocks(); n != 0 {
		t.Fatalf("dry run uploaded %d blocks", n)
	}
	if r := runCmd(t, nil, "backfill", "--wal-dir", base); r.code != 2 {
		t.Fatalf("without a bucket: exit %d, want 2 (usage)\n%s", r.code, r.stderr)
	}
	r = runCmd(t, nil, "backfill", "--wal-dir", base, "--objstore.config-file", conf, "--label", "tenant_id=t1")
	if r.code != 0 || !strings.Contains(r.stdout, "backfilled 450 samples") {
		t.Fatalf("backfill: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := blocks(); n != 2 {
		t.Fatalf("%d blocks in the bucket, want 2", n)
	}
	r = runCmd(t, nil, "backfill", "--wal-dir", base, "--objstore.config-file", conf, "--label", "tenant_id=t1")
	if r.code != 0 || strings.Contains(r.stdout, "backfilled") || blocks() != 2 {
		t.Fatalf("second run: exit %d, %d blocks\n%s\n%s", r.code, blocks(), r.stdout, r.stderr)
	}

	rep := walStatusJSON(t, "--wal-dir", base)
	cs := rep.Clusters[0].Consumers[0]
	if cs.DeadLetter == nil || cs.DeadLetter.Samples != 0 || cs.DeadLetter.Backfill.Backfilled != 450 || cs.DeadLetter.Backfill.BlocksUploaded != 2 {
		t.Fatalf("wal status: dead letter %+v", cs.DeadLetter)
	}
	r = runCmd(t, nil, "wal", "status", "--wal-dir", base)
	if r.code != 0 || !strings.Contains(r.stdout, "AWAITING BACKFILL") {
		t.Fatalf("wal status table: exit %d\n%s", r.code, r.stdout)
	}
}
