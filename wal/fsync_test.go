package wal

import (
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingSync returns a sync hook that fails with EIO while fail is set.
func failingSync(fail *atomic.Bool) func(int) error {
	return func(int) error {
		if fail.Load() {
			return syscall.EIO
		}
		return nil
	}
}

// failOnce returns a sync hook that fails with EIO once each time arm is set.
func failOnce(arm *atomic.Bool) func(int) error {
	return func(int) error {
		if arm.CompareAndSwap(true, false) {
			return syscall.EIO
		}
		return nil
	}
}

// TestFsyncFailureFailsTheScrape makes the fsync after a Commit fail (policy scrape) and checks
// that the Commit fails, the scrape's records are cut, the failure is counted, the writer moves to
// a new segment, and the next scrapes (the failed one again included) are appended normally.
func TestFsyncFailureFailsTheScrape(t *testing.T) {
	var fail atomic.Bool
	opts := testOptions()
	opts.syncHook = failOnce(&fail)
	reg := newTestRegistry()
	w, err := Open(nil, reg, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for ts := int64(1); ts <= 3; ts++ {
		appendScrape(t, w, 50, ts)
	}
	segBefore := w.cur

	fail.Store(true)
	app := w.Appender()
	for i := 0; i < 60; i++ { // 10 new series: their Series records are cut too
		app.Append(app.Ref(testSeries(i)), 4, 1)
	}
	if _, err := app.Commit(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("commit with a failing fsync: %v, want EIO", err)
	}
	if got := counterValue(t, reg, "collector_wal_fsync_failures_total", "", ""); got != 1 {
		t.Fatalf("fsync failures = %v, want 1", got)
	}
	if got := counterValue(t, reg, "collector_wal_commits_failed_total", "", ""); got != 1 {
		t.Fatalf("failed commits = %v, want 1", got)
	}
	if w.cur == segBefore {
		t.Fatalf("still writing segment %d after a failed fsync", w.cur)
	}
	// The failed scrape's records are gone from the segment it was written to.
	batches, err := readAll(t, w.Dir(), Position{})
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 3 {
		t.Fatalf("%d scrapes read back after the failed one, want 3", len(batches))
	}

	// The per-series state was rolled back: the same scrape is accepted again, whole.
	st := appendScrape(t, w, 60, 4)
	if st.Samples != 60 || st.NewSeries != 10 {
		t.Fatalf("retry of the failed scrape: %+v, want 60 samples and 10 new series", st)
	}
	appendScrape(t, w, 60, 5)
	batches, err = readAll(t, w.Dir(), Position{})
	if err != nil {
		t.Fatal(err)
	}
	var ts []int64
	for _, b := range batches {
		ts = append(ts, b.samples[0].t)
	}
	if len(batches) != 5 || ts[3] != 4 || ts[4] != 5 || len(batches[3].samples) != 60 {
		t.Fatalf("scrapes read back at %v, want 1..5 with scrape 4 whole", ts)
	}
}

// TestFsyncFailureIntervalStartsNewSegment checks the interval policy: a failed background fsync
// is counted and the writer leaves the segment instead of fsyncing it again.
func TestFsyncFailureIntervalStartsNewSegment(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	opts := testOptions()
	opts.Fsync = FsyncInterval
	opts.FsyncInterval = time.Millisecond
	opts.syncHook = failingSync(&fail)
	reg := newTestRegistry()
	w, err := Open(nil, reg, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	appendScrape(t, w, 50, 1)
	deadline := time.Now().Add(30 * time.Second)
	for counterValue(t, reg, "collector_wal_fsync_failures_total", "", "") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no fsync failure counted")
		}
		<-time.After(time.Millisecond)
	}
	fail.Store(false)
	w.mtx.Lock()
	cur := w.cur
	w.mtx.Unlock()
	if cur == 0 {
		t.Fatal("still writing segment 0 after a failed fsync")
	}
	appendScrape(t, w, 50, 2)
	batches, err := readAll(t, w.Dir(), Position{})
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 2 {
		t.Fatalf("%d scrapes read back, want both: the interval policy keeps acknowledged scrapes", len(batches))
	}
}
