package ingest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/prometheus/model/labels"
)

// TestIngestFailedCommitKeepsCachedSeriesUsable pins what doc.go says of a failed Commit: the
// scrape leaves nothing in the WAL, its new series stay in the cache, and the next scrape that
// commits declares them, so every sample of the WAL resolves.
func TestIngestFailedCommitKeepsCachedSeriesUsable(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	w := openTestWAL(t)
	ing, err := NewIngester(nil, nil, w, TransformConfig{}, testIngestOptions(&now))
	if err != nil {
		t.Fatal(err)
	}
	// The seam: the open segment's name is gone for one Commit, which cannot locate the end of
	// the segment and fails before writing.
	seg := ""
	entries, err := os.ReadDir(w.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if len(e.Name()) == 8 && strings.Trim(e.Name(), "0123456789") == "" {
			seg = filepath.Join(w.Dir(), e.Name())
		}
	}
	if seg == "" {
		t.Fatalf("no segment in %s", w.Dir())
	}
	if err := os.Rename(seg, seg+".away"); err != nil {
		t.Fatal(err)
	}
	_, err = ing.Ingest(strings.NewReader(fmt.Sprintf("a{x=\"1\"} 1 %d\n", testNowMs)), textType)
	var ie *IngestError
	if !errors.As(err, &ie) || ie.Reason != ReasonWAL {
		t.Fatalf("ingest with the segment gone: %v, want an IngestError with reason %s", err, ReasonWAL)
	}
	if n := ing.cache.len(); n != 1 {
		t.Fatalf("cache holds %d series after the failed commit, want 1 (doc.go)", n)
	}
	if err := os.Rename(seg+".away", seg); err != nil {
		t.Fatal(err)
	}
	res, err := ing.Ingest(strings.NewReader(fmt.Sprintf("a{x=\"1\"} 2 %d\n", testNowMs+1000)), textType)
	if err != nil || res.Appended != 1 || res.NewSeries != 0 {
		t.Fatalf("next scrape = %+v, %v; want 1 sample appended from the cache", res, err)
	}
	got, scrapes := readWAL(t, w.Dir())
	if scrapes != 1 || len(got) != 1 || !strings.Contains(got[0], `x="1"`) {
		t.Fatalf("WAL holds %q in %d scrapes, want the second scrape's sample", got, scrapes)
	}
}

// TestIngestFailedBodyForgetsItsSeries pins what doc.go says of a body that fails to parse: its
// new series were created in the WAL's memory as it was read, nothing of it is written, the
// cache does not learn them, truncation forgets them once unused, and a later body that has them
// declares them again.
func TestIngestFailedBodyForgetsItsSeries(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	w, ing := newTruncatingIngester(t, &now)
	names := []string{"a", "b", "c"}
	var good strings.Builder
	for _, n := range names {
		fmt.Fprintf(&good, "%s{x=\"1\"} 1 %d\n", n, testNowMs)
	}
	// known returns how many of a, b and c the WAL has in memory (refs are issued from 1 up).
	known := func() int {
		n := 0
		for _, name := range names {
			enc := wal.AppendLabels(nil, labels.FromStrings("__name__", name, "x", "1"))
			for ref := wal.SeriesRef(1); ref < 20_000; ref++ {
				if _, ok := w.ShareLabels(ref, enc); ok {
					n++
					break
				}
			}
		}
		return n
	}
	_, err := ing.Ingest(strings.NewReader(good.String()+"d{x=\"1\" 1 0\n"), textType)
	var ie *IngestError
	if !errors.As(err, &ie) || ie.Reason != ReasonParse {
		t.Fatalf("ingest of a malformed body: %v, want an IngestError with reason %s", err, ReasonParse)
	}
	if got, scrapes := readWAL(t, w.Dir()); scrapes != 0 || len(got) != 0 {
		t.Fatalf("WAL holds %q in %d scrapes after a failed body, want nothing", got, scrapes)
	}
	if n := ing.cache.len(); n != 0 {
		t.Fatalf("cache holds %d series after a failed body, want 0", n)
	}
	if n := known(); n != 3 {
		t.Fatalf("WAL knows %d of the failed body's series, want 3 (created as the body was read)", n)
	}
	// Two rounds of other scrapes filling segments, each followed by a truncation: the first
	// truncation orphans the unwritten series, the second finds them unused.
	fillAndTruncate(t, w, ing, 0, now)
	fillAndTruncate(t, w, ing, 1, now)
	if n := known(); n != 0 {
		t.Fatalf("WAL still knows %d of the failed body's series after truncation, want 0", n)
	}
	res, err := ing.Ingest(strings.NewReader(good.String()), textType)
	if err != nil || res.Appended != 3 || res.NewSeries != 3 {
		t.Fatalf("ingest of the body without its bad line = %+v, %v; want 3 new series appended", res, err)
	}
	got, _ := readWAL(t, w.Dir()) // fails on a ref that does not resolve
	var abc []string
	for _, s := range got {
		if !strings.HasPrefix(s, "filler") {
			abc = append(abc, s)
		}
	}
	if len(abc) != 3 {
		t.Fatalf("WAL holds %q of a, b and c, want their 3 samples", abc)
	}
}
