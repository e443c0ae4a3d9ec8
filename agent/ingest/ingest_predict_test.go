package ingest

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"
	"time"
	"unsafe"
)

// TestIngestPredictedSeries: a line at the position of a known series takes the predicted path
// (length and hash of its start, no split) only when it is that series with a valid rest;
// anything else ends as it would without the prediction. Each second body is ingested by a warm
// Ingester, whose cache predicts b{y="2"} after a{x="1"}, and by a cold one: they must fail with
// the same error, or append the same samples.
func TestIngestPredictedSeries(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string // the second sample line of the second body
		ok   bool
		news int // series the warm Ingester did not know
	}{
		{name: "same series", line: `b{y="2"} 5 1764319995000`, ok: true},
		{name: "same series, blanks", line: "b{y=\"2\"}\t 5  1764319995000 ", ok: true},
		{name: "same series, no timestamp", line: `b{y="2"} 5`, ok: true},
		{name: "same length, other value", line: `b{y="3"} 5 1764319995000`, ok: true, news: 1},
		{name: "same length, other name", line: `d{y="2"} 5 1764319995000`, ok: true, news: 1},
		{name: "longer series", line: `b{y="2",z="1"} 5 1764319995000`, ok: true, news: 1},
		{name: "shorter series", line: `b{} 5 1764319995000`, ok: true, news: 1},
		{name: "series ends mid-prefix", line: `b{y="2} 5 1764319995000`},
		{name: "closing brace after value", line: `b{y="2"} 5 }`},
		{name: "closing brace in timestamp", line: `b{y="2"} 5 17643199}95000`},
		{name: "closing brace in value", line: `b{y="2"} 5} 1764319995000`},
		{name: "second closing brace", line: `b{y="2"}} 5 1764319995000`},
		{name: "opening brace after value", line: `b{y="2"} 5{ 1764319995000`},
		{name: "opening brace after timestamp", line: `b{y="2"} 5 1764319995000{`},
		{name: "no value", line: `b{y="2"}`},
		{name: "blank only", line: `b{y="2"} `},
		{name: "bad value", line: `b{y="2"} five 1764319995000`},
		{name: "three fields", line: `b{y="2"} 5 1764319995000 7`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			second := "# TYPE a untyped\na{x=\"1\"} 1 1764319995000\n" + tc.line + "\nc 3 1764319995000\n"
			werr, news := comparePredicted(t, []byte(predictFirst), []byte(second))
			if (werr == nil) != tc.ok || (werr == nil && news != tc.news) {
				t.Fatalf("warm: %d new series, %v; want ok %v, %d new series", news, werr, tc.ok, tc.news)
			}
		})
	}
}

const predictFirst = "# TYPE a untyped\na{x=\"1\"} 1 1764319990000\nb{y=\"2\"} 2 1764319990000\nc 3 1764319990000\n"

// comparePredicted ingests second with an Ingester that ingested first (warm) and with a new one
// (cold), and fails unless both fail with the same error or append the same samples. The warm
// Ingester reads second whole, one byte per Read (no line is wholly buffered when the cache is
// asked), and with a 64-byte buffer (lines cut at every point; the cold one then has the same
// buffer). It returns the warm error and how many series the warm Ingester did not know.
func comparePredicted(t *testing.T, first, second []byte) (error, int) {
	t.Helper()
	now := time.UnixMilli(testNowMs)
	ingester := func(maxLine int) *Ingester {
		opts := testIngestOptions(&now)
		opts.MaxLineBytes = maxLine
		ing, err := NewIngester(nil, nil, openTestWAL(t), DefaultTransformConfig(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return ing
	}
	var werr error
	news := -1
	for _, c := range []struct {
		wrap    func(io.Reader) io.Reader
		maxLine int
	}{
		{func(r io.Reader) io.Reader { return r }, 1 << 20},
		{iotest.OneByteReader, 1 << 20},
		{func(r io.Reader) io.Reader { return r }, 64},
	} {
		cold := ingester(c.maxLine)
		cres, cerr := cold.Ingest(bytes.NewReader(second), textType)
		warm := ingester(c.maxLine)
		warm.Ingest(bytes.NewReader(first), textType) // a failed first body leaves the cache as it was
		base, _ := readWAL(t, warm.w.Dir())
		var wres IngestResult
		wres, werr = warm.Ingest(c.wrap(bytes.NewReader(second)), textType)
		if werr != nil || cerr != nil {
			var ie *IngestError
			if werr == nil || cerr == nil || !errors.As(werr, &ie) || werr.Error() != cerr.Error() {
				t.Fatalf("buffer %d: warm error %v, cold error %v", c.maxLine, werr, cerr)
			}
			continue
		}
		if news >= 0 && wres.NewSeries != news {
			t.Fatalf("warm: %d new series, %d when read otherwise", wres.NewSeries, news)
		}
		news = wres.NewSeries
		if wres.Read != cres.Read || wres.Appended != cres.Appended || wres.Filtered != cres.Filtered || wres.Bytes != cres.Bytes {
			t.Fatalf("warm %+v, cold %+v", wres, cres)
		}
		// New series are appended at the end of the scrape: the order of the two differs.
		wgot, _ := readWAL(t, warm.w.Dir())
		cgot, _ := readWAL(t, cold.w.Dir())
		wgot = wgot[len(base):]
		slices.Sort(wgot)
		slices.Sort(cgot)
		if !slices.Equal(wgot, cgot) {
			t.Fatalf("warm appended %q, cold %q", wgot, cgot)
		}
	}
	return werr, news
}

// FuzzIngestPredicted: whatever the cache predicts from a first body, a second body ends as it
// does for a new Ingester (comparePredicted). Seeds: the lines of TestIngestPredictedSeries.
func FuzzIngestPredicted(f *testing.F) {
	for _, line := range []string{`b{y="2"} 5 1764319995000`, `b{y="3"} 5`, `b{y="2"} 5 }`, `b{y="2"}} 5`, `b{y="2"} 5{`, `b{y="2"}`} {
		f.Add([]byte(predictFirst), []byte("a{x=\"1\"} 1 1764319995000\n"+line+"\nc 3 1764319995000\n"))
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		comparePredicted(t, first, second)
	})
}

// TestCacheEntrySize: the entry keeps the size seriesCache's memory note states.
func TestCacheEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(cacheEntry{}); n != 40 {
		t.Fatalf("cacheEntry is %d bytes, the doc says 40", n)
	}
}
