package ingest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
