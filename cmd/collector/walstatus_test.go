package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/util/compression"
	"github.com/sirupsen/logrus"

	"github.com/collector-dev/collector/wal"
)

// testWAL is a WAL written by a test: scrapes records of series samples each, the k-th at
// t0+k*step.
type testWAL struct {
	base, dir string
	w         *wal.WAL
	t0, step  int64
	series    int
	scrapes   int
	// ends[k] is the position after the k-th record.
	ends []wal.Position
}

// buildWAL writes the WAL of cluster id below base and leaves it open (as a running agent
// would) until the test ends.
func buildWAL(t *testing.T, base, id string, series, scrapes int) *testWAL {
	t.Helper()
	logger := logrus.New()
	logger.SetOutput(discard{})
	opts := wal.DefaultOptions()
	opts.SegmentSize = 32 << 10 // several segments
	opts.Compression = compression.None
	w := reopenWAL(t, logger, base, id, opts)
	t.Cleanup(func() { w.Close() })
	tw := &testWAL{base: base, dir: filepath.Join(base, id), w: w, t0: time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli(),
		step: 10_000, series: series, scrapes: scrapes}
	refs := make([]wal.SeriesRef, series)
	for k := 0; k < scrapes; k++ {
		app := w.Appender()
		for i := range series {
			if k == 0 {
				refs[i] = app.Ref(tw.labels(i))
			}
			app.Append(refs[i], tw.ts(k), float64(k))
		}
		if _, err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	r, err := wal.NewReader(tw.dir, wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range scrapes {
		b, err := r.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tw.ends = append(tw.ends, b.End)
	}
	return tw
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (tw *testWAL) labels(i int) labels.Labels {
	return labels.FromStrings("__name__", "test_metric", "instance", fmt.Sprintf("s%03d", i))
}

func (tw *testWAL) ts(k int) int64 { return tw.t0 + int64(k)*tw.step }

// want returns the samples of scrapes [from, to) as the receiver's set keys.
func (tw *testWAL) want(from, to int) map[string]bool {
	out := map[string]bool{}
	for k := from; k < to; k++ {
		for i := range tw.series {
			out[fmt.Sprintf("%s@%d", tw.labels(i).String(), tw.ts(k))] = true
		}
	}
	return out
}

// commitAgent writes the position of an agent's endpoint after the k-th scrape.
func (tw *testWAL) commitAgent(t *testing.T, name string, k int, dropped map[string]int64) {
	t.Helper()
	st := wal.ConsumerState{Position: tw.ends[k-1], Delivered: int64(k * tw.series), Dropped: dropped, Updated: time.Now()}
	if err := wal.CommitPosition(tw.dir, name, st); err != nil {
		t.Fatal(err)
	}
}

func walStatusJSON(t *testing.T, args ...string) jsonReport {
	t.Helper()
	r := runCmd(t, nil, append([]string{"wal", "status", "-o", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("wal status %v: exit %d: %s", args, r.code, r.stderr)
	}
	var rep jsonReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("wal status %v: %v\n%s", args, err, r.stdout)
	}
	return rep
}

func TestWALStatus(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "wal")
	tw := buildWAL(t, base, "c1", 10, 300)
	tw.commitAgent(t, "hub", 100, map[string]int64{"http_400": 5})

	check := func(t *testing.T, rep jsonReport) {
		t.Helper()
		if len(rep.Clusters) != 1 {
			t.Fatalf("%d clusters", len(rep.Clusters))
		}
		st := rep.Clusters[0]
		if st.ClusterID != "c1" || st.Samples != 3000 || st.Segments < 2 || st.Bytes <= 0 {
			t.Errorf("cluster: id %s samples %d segments %d bytes %d", st.ClusterID, st.Samples, st.Segments, st.Bytes)
		}
		if !st.OldestSample.Equal(time.UnixMilli(tw.ts(0))) || !st.NewestSample.Equal(time.UnixMilli(tw.ts(299))) {
			t.Errorf("oldest %v newest %v, want %v and %v", st.OldestSample, st.NewestSample, time.UnixMilli(tw.ts(0)), time.UnixMilli(tw.ts(299)))
		}
		if len(st.Consumers) != 1 {
			t.Fatalf("consumers %+v", st.Consumers)
		}
		cs := st.Consumers[0]
		if cs.Name != "hub" || cs.Position != tw.ends[99] || cs.UndeliveredSamples != 2000 || cs.Delivered != 1000 || cs.UndeliveredBytes <= 0 {
			t.Errorf("consumer %+v", cs)
		}
		if !cs.OldestUndelivered.Equal(time.UnixMilli(tw.ts(100))) {
			t.Errorf("oldest undelivered %v, want %v", cs.OldestUndelivered, time.UnixMilli(tw.ts(100)))
		}
		if age := time.Since(time.UnixMilli(tw.ts(100))).Seconds(); cs.OldestUndeliveredAge < age-60 || cs.OldestUndeliveredAge > age+60 {
			t.Errorf("age of the oldest undelivered sample %v s, want about %v", cs.OldestUndeliveredAge, age)
		}
		if cs.Dropped["http_400"] != 5 || cs.DroppedTotal != 5 {
			t.Errorf("dropped %v total %d", cs.Dropped, cs.DroppedTotal)
		}
	}

	t.Run("beside the writer", func(t *testing.T) { check(t, walStatusJSON(t, "--wal-dir", base)) })
	t.Run("by id", func(t *testing.T) { check(t, walStatusJSON(t, "--wal-dir", base, "--id", "c1")) })

	copied := filepath.Join(t.TempDir(), "pvc")
	if out, err := exec.Command("cp", "-a", base, copied).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	t.Run("on a copy", func(t *testing.T) { check(t, walStatusJSON(t, "--wal-dir", copied)) })
	t.Run("on one cluster's directory", func(t *testing.T) { check(t, walStatusJSON(t, "--wal-dir", filepath.Join(copied, "c1"))) })

	t.Run("table", func(t *testing.T) {
		r := runCmd(t, nil, "wal", "status", "--wal-dir", base)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		for _, want := range []string{"CLUSTER", "c1", "hub", "2000", "http_400=5", "ago)"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, r.stdout)
			}
		}
	})

	notWAL := t.TempDir()
	if err := os.WriteFile(filepath.Join(notWAL, "README"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(notWAL, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not a WAL", []string{"--wal-dir", notWAL}, notWAL + " is not a WAL directory"},
		{"missing directory", []string{"--wal-dir", filepath.Join(notWAL, "nope")}, "no such file or directory"},
		{"unknown id", []string{"--wal-dir", base, "--id", "c2"}, "cluster c2: " + filepath.Join(base, "c2") + " is not a WAL directory"},
		{"id of a plain directory", []string{"--wal-dir", notWAL, "--id", "sub"}, "is not a WAL directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(t, nil, append([]string{"wal", "status"}, tc.args...)...)
			if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d stderr %q, want 1 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

// TestWALStatusSegmentProblems: a segment missing from the middle and a position past the end are
// said by the table and the JSON, before the writer opens the WAL and after.
func TestWALStatusSegmentProblems(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "wal")
	tw := buildWAL(t, base, "c1", 50, 300)
	if err := tw.w.Close(); err != nil {
		t.Fatal(err)
	}
	last := tw.ends[len(tw.ends)-1].Segment
	if err := wal.CommitPosition(tw.dir, "hub", wal.ConsumerState{Position: wal.Position{Segment: last + 3}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tw.dir, "00000001")); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, nil, "wal", "status", "--wal-dir", base)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"warning: cluster c1: segments 1 to 1 are missing", "(past end: starts at "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	rep := walStatusJSON(t, "--wal-dir", base)
	st := rep.Clusters[0]
	if len(st.Warnings) == 0 || st.Consumers[0].PositionAdjusted != "past_end" || st.Consumers[0].UndeliveredSamples != st.Samples {
		t.Errorf("json: warnings %q, consumer %+v; want a warning and everything undelivered from the oldest segment", st.Warnings, st.Consumers[0])
	}

	// The writer opens the WAL (it refused to: "segments are not sequential") and status says what
	// it found.
	opts := wal.DefaultOptions()
	opts.Consumers = []string{"hub"}
	w := reopenWAL(t, nil, base, "c1", opts) // fails the test on anything but the lock
	w.Close()
	rep = walStatusJSON(t, "--wal-dir", base)
	if st := rep.Clusters[0]; len(st.Stats.MissingSegments) != 1 || st.Stats.MissingSegments[0] != 1 {
		t.Errorf("json after open: missing segments %v, want [1]", st.Stats.MissingSegments)
	}
}
