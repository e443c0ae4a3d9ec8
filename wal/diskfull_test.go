package wal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWriteFailureKeepsScrapesWhole makes the disk refuse writes in the middle of a scrape
// (RLIMIT_FSIZE in a child process: writes past the limit fail with EFBIG, as they would with
// ENOSPC) and checks that the failed scrape leaves nothing behind (the writer cuts it), the next
// scrapes land in a new segment, and a reader following the WAL sees every committed scrape
// whole and nothing of the failed one.
func TestWriteFailureKeepsScrapesWhole(t *testing.T) {
	if os.Getenv("WAL_DISKFULL_CHILD") != "" {
		diskFullChild()
		return
	}
	base := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFailureKeepsScrapesWhole$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WAL_DISKFULL_CHILD=1", "WAL_DISKFULL_DIR="+base)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s\n%s", err, out, stderr.String())
	}
	committed := map[int64]bool{}
	failed := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		ts, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "ok":
			committed[ts] = true
		case "fail":
			failed++
		}
	}
	if failed == 0 || len(committed) < 5 {
		t.Fatalf("child output does not show a failure between commits:\n%s", out)
	}
	dir := filepath.Join(base, "c1")
	batches, err := readAll(t, dir, Position{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	for _, b := range batches {
		ts := b.samples[0].t
		if len(b.samples) != 1000 {
			t.Fatalf("scrape %d read back with %d samples", ts, len(b.samples))
		}
		if !committed[ts] {
			t.Fatalf("scrape %d reads back but its Commit failed", ts)
		}
		got[ts] = true
	}
	for ts := range committed {
		if !got[ts] {
			t.Fatalf("committed scrape %d is missing", ts)
		}
	}
	// The failed scrapes were cut by the writer itself: nothing is left for a repair.
	reg := newTestRegistry()
	w, err := Open(nil, reg, base, "c1", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if n := counterValue(t, reg, "collector_wal_repairs_total", "kind", "torn_tail") + counterValue(t, reg, "collector_wal_repairs_total", "kind", "corruption"); n != 0 {
		t.Fatalf("reopening after the failed scrapes made %v repairs; the writer left a torn tail", n)
	}
}

// diskFullChild appends 1000-sample scrapes under a 96 KiB file-size limit while a reader follows.
func diskFullChild() {
	signal.Ignore(syscall.SIGXFSZ)
	base := os.Getenv("WAL_DISKFULL_DIR")
	opts := testOptions()
	opts.SegmentSize = 1 << 20
	w, err := Open(nil, nil, base, "c1", opts)
	if err != nil {
		fmt.Println("open", err)
		os.Exit(3)
	}
	limit := uint64(96 << 10)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Println("setrlimit", err)
		os.Exit(3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := NewReader(w.Dir(), Position{}, ReaderOptions{Follow: true, Changed: w.Changed})
	if err != nil {
		fmt.Println("reader", err)
		os.Exit(3)
	}
	read := make(chan int, 100)
	go func() {
		n := 0
		for {
			b, err := r.Next(ctx)
			if err != nil {
				read <- -n - 1
				return
			}
			if len(b.Samples) != 1000 {
				fmt.Fprintln(os.Stderr, "reader saw a partial scrape")
				os.Exit(4)
			}
			n++
			read <- n
		}
	}()
	fails, oks := 0, 0
	for ts := int64(1); ts <= 40 && fails < 3; ts++ {
		app := w.Appender()
		for i := 0; i < 1000; i++ {
			app.Append(app.Ref(testSeries(i)), ts, float64(i))
		}
		if _, err := app.Commit(); err != nil {
			fmt.Println("fail", ts)
			fails++
			continue
		}
		oks++
		fmt.Println("ok", ts)
	}
	// The follower reaches every committed scrape.
	for n := 0; n < oks; {
		select {
		case n = <-read:
			if n < 0 {
				fmt.Fprintln(os.Stderr, "reader stopped after", -n-1)
				os.Exit(5)
			}
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "reader did not catch up")
			os.Exit(6)
		}
	}
	cancel()
	w.Close()
	os.Exit(0)
}
