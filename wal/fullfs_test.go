package wal

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// These tests mount real file systems (root: this machine and CI run as root) to make the disk
// full or read-only under a running writer.

// mountTmpfs mounts a tmpfs of size bytes and returns its directory; it is unmounted at cleanup.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o750); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "tmpfs", mnt)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	return mnt
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// fullfsScrape commits one scrape of 100 samples at ts.
func fullfsScrape(w *WAL, ts int64) error {
	app := w.Appender()
	for i := 0; i < 100; i++ {
		app.Append(app.Ref(testSeries(i)), ts, float64(i))
	}
	_, err := app.Commit()
	return err
}

// checkCommitted reads the WAL back and checks that it holds exactly the scrapes of committed,
// each whole.
func checkCommitted(t *testing.T, dir string, committed []int64) []readBatch {
	t.Helper()
	batches, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != len(committed) {
		t.Fatalf("%d scrapes read back, %d were committed", len(batches), len(committed))
	}
	for i, b := range batches {
		if len(b.samples) != 100 || b.samples[0].t != committed[i] {
			t.Fatalf("scrape %d read back at t=%d with %d samples, want t=%d whole", i, b.samples[0].t, len(b.samples), committed[i])
		}
	}
	return batches
}

// TestDiskFullENOSPC fills a tmpfs under the writer with no reserve: the writes fail with ENOSPC.
// The failed scrapes are counted and leave nothing behind, a position commit on the full disk
// fails without touching the old position, and appending resumes by itself once space returns.
func TestDiskFullENOSPC(t *testing.T) {
	mnt := mountTmpfs(t, 1<<20)
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 256<<10), 0o640); err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.Consumers = []string{"hub"}
	opts.ReserveBytes = 0
	reg := newTestRegistry()
	w, err := Open(nil, reg, mnt, "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := CommitPosition(w.Dir(), "hub", ConsumerState{Delivered: 7}); err != nil {
		t.Fatal(err)
	}
	var committed []int64
	fails := 0
	ts := int64(1)
	for ; ts < 1000 && fails < 3; ts++ {
		err := fullfsScrape(w, ts)
		if err == nil {
			committed = append(committed, ts)
			continue
		}
		if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("commit on a full disk: %v, want ErrDiskFull and ENOSPC", err)
		}
		fails++
	}
	if fails != 3 || len(committed) < 10 {
		t.Fatalf("%d scrapes committed, %d failed: the disk did not fill", len(committed), fails)
	}
	if got := counterValue(t, reg, "collector_wal_commits_failed_total", "", ""); got != 3 {
		t.Fatalf("failed commits counted %v, want 3", got)
	}
	checkCommitted(t, w.Dir(), committed)

	// A position commit on the full disk fails and leaves the old position whole.
	fill(t, filepath.Join(mnt, "filler2"))
	if err := CommitPosition(w.Dir(), "hub", ConsumerState{Position: Position{Segment: 3}, Delivered: 99}); err == nil {
		t.Fatal("position commit succeeded on a full disk")
	}
	if st, err := ReadPosition(w.Dir(), "hub"); err != nil || st.Delivered != 7 {
		t.Fatalf("position after a failed commit: %+v, %v", st, err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(w.Dir(), positionDir, "*.tmp")); len(tmp) > 0 {
		t.Fatalf("temporary position files left: %v", tmp)
	}

	// Space returns: the next scrape is appended without anything else being done.
	for _, f := range []string{filler, filepath.Join(mnt, "filler2")} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := fullfsScrape(w, ts); err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	committed = append(committed, ts)
	checkCommitted(t, w.Dir(), committed)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// Nothing half-written is left for a repair.
	reg = newTestRegistry()
	w, err = Open(nil, reg, mnt, "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := counterValue(t, reg, "collector_wal_repairs_total", "kind", "torn_tail") + counterValue(t, reg, "collector_wal_repairs_total", "kind", "corruption"); n != 0 {
		t.Fatalf("reopening made %v repairs: a failed scrape left bytes behind", n)
	}
	checkCommitted(t, w.Dir(), committed)
}

// TestDiskFullReserveShippingFreesSpace fills a tmpfs under the writer with the reserve on: the
// scrapes fail before the disk is full, the consumer still commits its position, truncation
// (which writes a checkpoint first) frees the delivered segments, and appending resumes.
func TestDiskFullReserveShippingFreesSpace(t *testing.T) {
	mnt := mountTmpfs(t, 2<<20)
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.Consumers = []string{"hub"}
	opts.ReserveBytes = 512 << 10
	reg := newTestRegistry()
	w, err := Open(nil, reg, mnt, "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var committed []int64
	ts := int64(1)
	for ; ; ts++ {
		err := fullfsScrape(w, ts)
		if err == nil {
			committed = append(committed, ts)
			if ts > 10000 {
				t.Fatal("the disk never filled")
			}
			continue
		}
		if !errors.Is(err, ErrDiskFull) || errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("commit near a full disk: %v, want ErrDiskFull before ENOSPC", err)
		}
		break
	}
	if got := counterValue(t, reg, "collector_wal_commits_failed_total", "", ""); got != 1 {
		t.Fatalf("failed commits counted %v, want 1", got)
	}
	// The consumer ships everything and commits; truncation frees space.
	batches := checkCommitted(t, w.Dir(), committed)
	end := batches[len(batches)-1].end
	if err := CommitPosition(w.Dir(), "hub", ConsumerState{Position: end, Delivered: int64(100 * len(batches))}); err != nil {
		t.Fatalf("position commit within the reserve: %v", err)
	}
	tst, err := w.Truncate()
	if err != nil {
		t.Fatalf("truncate within the reserve: %v", err)
	}
	if tst.Deleted == 0 {
		t.Fatal("truncation deleted nothing")
	}
	ts++
	if err := fullfsScrape(w, ts); err != nil {
		t.Fatalf("append after truncation freed space: %v", err)
	}
	got, err := readAll(t, w.Dir(), end)
	if err != nil || len(got) != 1 || got[0].samples[0].t != ts {
		t.Fatalf("after the delivered position: %d scrapes, err %v; want the new one", len(got), err)
	}
}

// TestReadOnlyFilesystem turns the WAL's file system read-only under the writer (an ext4 image
// with errors=remount-ro and a triggered file system error, as the kernel does on an I/O error).
// Scrapes fail cleanly and are counted, and what was committed before reads back whole.
func TestReadOnlyFilesystem(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "ext4.img")
	if err := os.WriteFile(img, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfs.ext4", "-q", "-F", "-O", "^has_journal", img)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o750); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-o", "loop,errors=remount-ro", img, mnt)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	dev := mountSource(t, mnt)

	opts := testOptions()
	opts.ReserveBytes = 1 << 20
	opts.Consumers = []string{"hub"}
	reg := newTestRegistry()
	w, err := Open(nil, reg, mnt, "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := CommitPosition(w.Dir(), "hub", ConsumerState{Delivered: 7}); err != nil {
		t.Fatal(err)
	}
	var committed []int64
	for ts := int64(1); ts <= 5; ts++ {
		if err := fullfsScrape(w, ts); err != nil {
			t.Fatal(err)
		}
		committed = append(committed, ts)
	}
	trigger := filepath.Join("/sys/fs/ext4", filepath.Base(dev), "trigger_fs_error")
	if err := os.WriteFile(trigger, []byte("1"), 0o200); err != nil {
		t.Fatalf("trigger file system error: %v", err)
	}
	for ts := int64(6); ts <= 8; ts++ {
		err := fullfsScrape(w, ts)
		if !errors.Is(err, syscall.EROFS) {
			t.Fatalf("commit on a read-only file system: %v, want EROFS", err)
		}
	}
	if got := counterValue(t, reg, "collector_wal_commits_failed_total", "", ""); got != 3 {
		t.Fatalf("failed commits counted %v, want 3", got)
	}
	checkCommitted(t, w.Dir(), committed)
	if st, err := ReadPosition(w.Dir(), "hub"); err != nil || st.Delivered != 7 {
		t.Fatalf("position on the read-only file system: %+v, %v", st, err)
	}
	_ = w.Close() // fails: stats.json cannot be written
}

// mountSource returns the device mounted at mnt (from /proc/self/mountinfo).
func mountSource(t *testing.T, mnt string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[4] != mnt {
			continue
		}
		for i, fl := range fields {
			if fl == "-" && i+2 < len(fields) {
				return fields[i+2]
			}
		}
	}
	t.Fatalf("%s is not mounted", mnt)
	return ""
}
