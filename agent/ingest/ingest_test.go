package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/collector-dev/collector/wal"
)

const textType = "text/plain; version=0.0.4; charset=utf-8"

func newTestIngester(t testing.TB, cfg TransformConfig, now *time.Time) (*Ingester, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	ing, err := NewIngester(nil, reg, openTestWAL(t), cfg, testIngestOptions(now))
	if err != nil {
		t.Fatal(err)
	}
	return ing, reg
}

// ingestLimitReader fails with ErrTooLarge after n bytes, as the scrape client's limit does.
type ingestLimitReader struct {
	r io.Reader
	n int64
}

func (l *ingestLimitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("read body: %w", ErrTooLarge)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// TestIngestMalformed: a body that is not wholly valid appends nothing and fails with its reason.
func TestIngestMalformed(t *testing.T) {
	good := "# TYPE up untyped\nup{job=\"a\"} 1 1764319990000\nup{job=\"b\"} 1 1764319990000\n"
	mbe := func(r io.Reader) io.Reader {
		rec := httptest.NewRecorder()
		return http.MaxBytesReader(rec, io.NopCloser(r), 40)
	}
	for _, tc := range []struct {
		name        string
		body        io.Reader
		contentType string
		reason      string
		line        int
		is          error
	}{
		{name: "truncated mid-line", body: strings.NewReader(good[:len(good)-8]), reason: ReasonParse, line: 3},
		{name: "truncated mid-value", body: strings.NewReader(good + "up{job=\"c\"} 1"), reason: ReasonParse, line: 4},
		{name: "html page", body: strings.NewReader("<html><body>502 Bad Gateway</body></html>\n"), reason: ReasonParse, line: 1},
		{name: "html content type", body: strings.NewReader(good), contentType: "text/html; charset=utf-8", reason: ReasonContentType},
		{name: "openmetrics", body: strings.NewReader(good), contentType: "application/openmetrics-text; version=1.0.0", reason: ReasonContentType},
		{name: "garbage", body: strings.NewReader(good + "\x01\x02\x03 garbage\n"), reason: ReasonParse, line: 4},
		{name: "garbage after valid value", body: strings.NewReader(good + "up{job=\"c\"} 1 2 3\n"), reason: ReasonParse, line: 4},
		{name: "over-long line", body: strings.NewReader(good + "up{job=\"" + strings.Repeat("x", 2<<20) + "\"} 1 1\n"), reason: ReasonParse, line: 4},
		{name: "invalid utf-8 label value", body: strings.NewReader(good + "up{job=\"\xff\"} 1 1764319990000\n"), reason: ReasonParse, line: 4},
		{name: "duplicate label names", body: strings.NewReader(good + "up{job=\"c\",job=\"d\"} 1 1764319990000\n"), reason: ReasonParse, line: 4},
		{name: "__name__ label", body: strings.NewReader(good + "up{__name__=\"x\"} 1 1764319990000\n"), reason: ReasonParse, line: 4},
		{name: "nul byte", body: strings.NewReader(good + "up{job=\"\x00\"} 1 1764319990000\n"), reason: ReasonParse, line: 4},
		{name: "invalid type", body: strings.NewReader("# TYPE up gauge2\n" + good), reason: ReasonParse, line: 1},
		{name: "leading whitespace", body: strings.NewReader(good + " up{job=\"c\"} 1 1764319990000\n"), reason: ReasonParse, line: 4},
		{name: "size limit", body: &ingestLimitReader{strings.NewReader(good + good), int64(len(good)) + 10}, reason: ReasonTooLarge, is: ErrTooLarge},
		{name: "http max bytes", body: mbe(strings.NewReader(good)), reason: ReasonTooLarge},
		{name: "read error", body: io.MultiReader(strings.NewReader(good), iotest.ErrReader(io.ErrUnexpectedEOF)), reason: ReasonRead, is: io.ErrUnexpectedEOF},
		{name: "protobuf garbage", body: strings.NewReader("\x05garbage"), contentType: "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited", reason: ReasonParse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.UnixMilli(testNowMs)
			ing, reg := newTestIngester(t, DefaultTransformConfig(), &now)
			ct := tc.contentType
			if ct == "" {
				ct = textType
			}
			res, err := ing.Ingest(tc.body, ct)
			var ie *IngestError
			if !errors.As(err, &ie) {
				t.Fatalf("err %v (%+v), want an *IngestError", err, res)
			}
			if ie.Reason != tc.reason || (tc.line != 0 && ie.Line != tc.line) {
				t.Fatalf("reason %q line %d, want %q line %d: %v", ie.Reason, ie.Line, tc.reason, tc.line, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("errors.Is(%v, %v) = false", err, tc.is)
			}
			if got, n := readWAL(t, ing.w.Dir()); len(got) != 0 || n != 0 {
				t.Fatalf("wal holds %d samples in %d scrapes after a failed ingest", len(got), n)
			}
			if v := testutil.ToFloat64(ing.metrics.appended); v != 0 {
				t.Fatalf("appended counter %v", v)
			}
			// The same ingester then takes a valid body whole: the failure left nothing behind.
			res, err = ing.Ingest(strings.NewReader(good), textType)
			if err != nil || res.Appended != 2 {
				t.Fatalf("valid body after failure: %+v %v", res, err)
			}
			_ = reg
		})
	}
}

// TestIngestSteadyState: the second scrape of the same series takes the cache and appends the
// same series with the new timestamps; counters add up.
func TestIngestSteadyState(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	cfg := DefaultTransformConfig()
	cfg.Labels = []LabelPair{{"cluster", "c1"}}
	ing, reg := newTestIngester(t, cfg, &now)
	fb := newFederateBody(t, 1000, 3, testNowMs)
	var first []string
	for scrape := range 3 {
		res, err := ing.Ingest(bytes.NewReader(fb.b), textType)
		if err != nil {
			t.Fatal(err)
		}
		wantNew := 0
		if scrape == 0 {
			wantNew = 1000
		}
		if res.Read != 1000 || res.Appended != 1000 || res.NewSeries != wantNew || len(res.Dropped) != 0 {
			t.Fatalf("scrape %d: %+v", scrape, res)
		}
		got, n := readWAL(t, ing.w.Dir())
		if n != scrape+1 || len(got) != 1000*(scrape+1) {
			t.Fatalf("scrape %d: wal holds %d samples in %d scrapes", scrape, len(got), n)
		}
		last := got[len(got)-1000:]
		if scrape == 0 {
			first = last
		} else {
			// Same series, timestamps shifted by 30s per scrape.
			for k := range last {
				if seriesOf(last[k]) != seriesOf(first[k]) {
					t.Fatalf("scrape %d sample %d: %s, first scrape had %s", scrape, k, last[k], first[k])
				}
			}
		}
		fb.shift(30000)
		now = now.Add(30 * time.Second)
	}
	if got := ing.cache.len(); got != 1000 {
		t.Fatalf("cache holds %d series, want 1000", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP collector_scrape_samples_appended_total Samples of scrapes and recording rules appended to the WAL.
# TYPE collector_scrape_samples_appended_total counter
collector_scrape_samples_appended_total 3000
# HELP collector_scrape_series_cache_size Series in the ingest cache (known series skip parsing and transforms).
# TYPE collector_scrape_series_cache_size gauge
collector_scrape_series_cache_size 1000
# HELP federate_samples Samples read in the last scrape, before transforms (the seeds' gauge).
# TYPE federate_samples gauge
federate_samples 1000
`), "collector_scrape_samples_appended_total", "collector_scrape_series_cache_size", "federate_samples"); err != nil {
		t.Fatal(err)
	}

	// The same body again: every sample is a duplicate of what the WAL holds.
	fb.shift(-30000)
	res, err := ing.Ingest(bytes.NewReader(fb.b), textType)
	if err != nil || res.Appended != 0 || res.Dropped[DropDuplicate] != 1000 {
		t.Fatalf("repeated scrape: %+v %v", res, err)
	}
}

func seriesOf(line string) string {
	return line[:strings.LastIndexByte(line[:strings.LastIndexByte(line, ' ')], ' ')]
}

// TestIngestSetConfig: a reload invalidates the cache, so known series get the new transforms.
func TestIngestSetConfig(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	ing, _ := newTestIngester(t, DefaultTransformConfig(), &now)
	body := func(ts int64) io.Reader {
		return strings.NewReader(fmt.Sprintf("up{job=\"a\",prometheus=\"k8s\"} 1 %d\nALERTS{a=\"b\"} 1 %d\n", ts, ts))
	}
	if _, err := ing.Ingest(body(testNowMs-2000), textType); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultTransformConfig()
	cfg.Labels = []LabelPair{{"cluster", "new"}}
	cfg.Renames = map[string]string{"ALERTS": "alerts"}
	if err := ing.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if ing.cache.len() != 0 {
		t.Fatalf("cache not purged: %d", ing.cache.len())
	}
	if _, err := ing.Ingest(body(testNowMs-1000), textType); err != nil {
		t.Fatal(err)
	}
	got, _ := readWAL(t, ing.w.Dir())
	want := []string{
		`up{job="a"} 1 1764319998000`,
		`ALERTS{a="b"} 1 1764319998000`,
		`up{cluster="new",job="a"} 1 1764319999000`,
		`alerts{a="b",cluster="new"} 1 1764319999000`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := ing.SetConfig(TransformConfig{Anonymize: []string{"a"}}); err == nil {
		t.Fatal("SetConfig accepted anonymize without salt")
	}
}

// TestIngestCacheEviction: series not seen for the TTL leave the cache.
func TestIngestCacheEviction(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	ing, _ := newTestIngester(t, TransformConfig{}, &now)
	ing.opts.CacheTTL = 10 * time.Minute
	for k, body := range []string{"a 1 %d\nb 1 %[1]d\n", "a 1 %d\n", "a 1 %d\n", "a 1 %d\n"} {
		now = now.Add(4 * time.Minute)
		if _, err := ing.Ingest(strings.NewReader(fmt.Sprintf(body, now.UnixMilli())), textType); err != nil {
			t.Fatal(err)
		}
		want := 2
		if k == 3 {
			want = 1 // b was last seen 12 minutes ago
		}
		if got := ing.cache.len(); got != want {
			t.Fatalf("scrape %d: cache holds %d, want %d", k, got, want)
		}
	}
}

// TestIngestSamples: recording-rule results get the same transforms, in one scrape.
func TestIngestSamples(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	cfg := DefaultTransformConfig()
	cfg.Labels = []LabelPair{{"cluster", "c1"}}
	ing, _ := newTestIngester(t, cfg, &now)
	res, err := ing.IngestSamples([]RuleSample{
		{Name: "cluster:cpu:sum", Labels: labels.FromStrings("namespace", "a", "prometheus", "x"), T: testNowMs, V: 1.5},
		{Name: "cluster:cpu:sum", Labels: labels.FromStrings("__name__", "ignored", "namespace", "b"), T: testNowMs, V: 2},
		{Name: "cluster:old", Labels: labels.EmptyLabels(), T: testNowMs - 25*3600*1000, V: 3},
		{Name: "cluster:stale", Labels: labels.EmptyLabels(), T: testNowMs, V: staleNaN()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Read != 4 || res.Appended != 2 || res.Dropped[DropTooOld] != 1 || res.Dropped[DropStaleMarker] != 1 {
		t.Fatalf("%+v", res)
	}
	got, n := readWAL(t, ing.w.Dir())
	want := `cluster:cpu:sum{cluster="c1",namespace="a"} 1.5 1764320000000` + "\n" + `cluster:cpu:sum{cluster="c1",namespace="b"} 2 1764320000000`
	if n != 1 || strings.Join(got, "\n") != want {
		t.Fatalf("%d scrapes:\n%s", n, strings.Join(got, "\n"))
	}
}

// TestIngestConcurrent: several workers of one source share an Ingester and its cache.
func TestIngestConcurrent(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	ing, _ := newTestIngester(t, DefaultTransformConfig(), &now)
	bodies := make([][]byte, 4)
	for k := range bodies {
		var b bytes.Buffer
		for j := range 500 {
			fmt.Fprintf(&b, "m%d{j=\"%d\"} %d %d\n", k, j, j, testNowMs-1000)
		}
		bodies[k] = b.Bytes()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*5)
	for k := range bodies {
		wg.Go(func() {
			for range 5 {
				if _, err := ing.Ingest(bytes.NewReader(bodies[k]), textType); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, n := readWAL(t, ing.w.Dir())
	if len(got) != 2000 || ing.cache.len() != 2000 {
		t.Fatalf("%d samples in %d scrapes, cache %d", len(got), n, ing.cache.len())
	}
}

func TestFederateFormat(t *testing.T) {
	for _, tc := range []struct {
		ct   string
		text bool
		ok   bool
	}{
		{"", true, true},
		{"text/plain", true, true},
		{"text/plain; version=0.0.4; charset=utf-8; escaping=allow-utf-8", true, true},
		{"text/plain; version=1.0.0", false, false},
		{"application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited", false, true},
		{"application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text", false, false},
		{"text/html", false, false},
		{"garbage;;", false, false},
	} {
		t.Run(tc.ct, func(t *testing.T) {
			text, err := federateFormat(tc.ct)
			if text != tc.text || (err == nil) != tc.ok {
				t.Fatalf("got %v %v", text, err)
			}
		})
	}
}

func staleNaN() float64 { return math.Float64frombits(value.StaleNaN) }

// TestIngestSlowBodyDoesNotBlock: while one worker waits for a slow body, another worker of the
// same source ingests and commits (the cache lock is not held across reads of the body).
func TestIngestSlowBodyDoesNotBlock(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	ing, _ := newTestIngester(t, DefaultTransformConfig(), &now)
	pr, pw := io.Pipe()
	slow := make(chan error, 1)
	go func() {
		_, err := ing.Ingest(pr, textType)
		slow <- err
	}()
	// Write returns once the slow Ingest has read the chunk; its next Read blocks.
	if _, err := pw.Write([]byte("a{x=\"1\"} 1 1764319990000\n")); err != nil {
		t.Fatal(err)
	}
	fast := make(chan error, 1)
	go func() {
		_, err := ing.Ingest(strings.NewReader("b{x=\"1\"} 1 1764319990000\n"), textType)
		fast <- err
	}()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ingest blocked behind a slow body")
	}
	pw.Write([]byte("a{x=\"2\"} 1 1764319990000\n"))
	pw.Close()
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if got, n := readWAL(t, ing.w.Dir()); len(got) != 3 || n != 2 {
		t.Fatalf("%d samples in %d scrapes", len(got), n)
	}
}

// TestIngestSeriesBackAfterTruncation: a series the cache still holds comes back after truncation
// deleted every segment with its definition (here after an hour away, the cache TTL is 15m but it
// was seen on every scrape... until it was not). Its sample is appended, not dropped: the WAL
// declares the series again, and a reader resolves it. The same holds for a series that was
// evicted from the cache meanwhile.
func TestIngestSeriesBackAfterTruncation(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	w, ing := newTruncatingIngester(t, &now)
	ingest := func(body string) IngestResult {
		t.Helper()
		res, err := ing.Ingest(strings.NewReader(body), textType)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	fill := func(round int) { fillAndTruncate(t, w, ing, round, now) }
	ingest(fmt.Sprintf("a{x=\"1\"} 1 %d\nb{x=\"1\"} 1 %d\n", testNowMs-1000, testNowMs-1000))
	fill(0)
	fill(1)
	res := ingest(fmt.Sprintf("a{x=\"1\"} 2 %d\n", testNowMs))
	if res.Appended != 1 || len(res.Dropped) != 0 {
		t.Fatalf("series back from the cache after truncation: %+v", res)
	}
	// b is evicted from the cache (not seen for the TTL) and comes back later.
	now = now.Add(time.Hour)
	ingest(fmt.Sprintf("a{x=\"1\"} 3 %d\n", now.UnixMilli()-2000))
	fill(2)
	fill(3)
	res = ingest(fmt.Sprintf("a{x=\"1\"} 4 %d\nb{x=\"1\"} 4 %d\n", now.UnixMilli()-1000, now.UnixMilli()-1000))
	if res.Appended != 2 || len(res.Dropped) != 0 {
		t.Fatalf("series back after eviction and truncation: %+v", res)
	}
	got, _ := readWAL(t, w.Dir()) // fails on a ref that does not resolve
	var ab []string
	for _, s := range got {
		if !strings.HasPrefix(s, "filler") {
			ab = append(ab, s)
		}
	}
	want := []string{
		fmt.Sprintf("a{x=\"1\"} 4 %d", now.UnixMilli()-1000),
		fmt.Sprintf("b{x=\"1\"} 4 %d", now.UnixMilli()-1000),
	}
	if strings.Join(ab, "\n") != strings.Join(want, "\n") {
		t.Fatalf("retained samples of a and b:\n%s\nwant\n%s", strings.Join(ab, "\n"), strings.Join(want, "\n"))
	}
}

// TestIngestManyLabels: a line with 90k labels (a broken or hostile exporter) costs linear time:
// the duplicate checks switch to a map above a few dozen labels.
func TestIngestManyLabels(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	ing, _ := newTestIngester(t, DefaultTransformConfig(), &now)
	var b strings.Builder
	b.WriteString("m{")
	for k := range 90000 {
		fmt.Fprintf(&b, "l%d=\"v\",", k)
	}
	fmt.Fprintf(&b, "} 1 %d\n", testNowMs)
	res, err := ing.Ingest(strings.NewReader(b.String()), textType)
	if err != nil || res.Appended != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	dup := strings.Replace(b.String(), "l89999=", "l0=", 1)
	if _, err := ing.Ingest(strings.NewReader(dup), textType); err == nil || !strings.Contains(err.Error(), "duplicate label name") {
		t.Fatalf("err %v, want a duplicate label name", err)
	}
}

func TestSampleLimitRejectsWholeScrape(t *testing.T) {
	w, err := wal.Open(nil, nil, t.TempDir(), "c1", wal.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	opts := DefaultIngestOptions()
	opts.SampleLimit = 3
	ing, err := NewIngester(nil, prometheus.NewRegistry(), w, DefaultTransformConfig(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().UnixMilli()
	body := fmt.Sprintf("a 1 %d\nb 1 %d\nc 1 %d\nd 1 %d\n", ts, ts, ts, ts)
	_, err = ing.Ingest(strings.NewReader(body), "text/plain; version=0.0.4")
	var ie *IngestError
	if !errors.As(err, &ie) || ie.Reason != ReasonTooLarge {
		t.Fatalf("Ingest over the sample limit = %v, want reason %s", err, ReasonTooLarge)
	}
	if res, err := ing.Ingest(strings.NewReader(body[:strings.Index(body, "d ")]), "text/plain; version=0.0.4"); err != nil || res.Appended != 3 {
		t.Fatalf("Ingest at the limit = %+v, %v", res, err)
	}
}

// TestIngestDiskFull: a scrape the WAL refuses for lack of space fails with ReasonDiskFull (the
// scrape loop counts it under reason disk_full: agent's TestIngestErrorReasons).
func TestIngestDiskFull(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	opts := wal.DefaultOptions()
	opts.ReserveBytes = 1 << 62 // more than any file system has free
	w, err := wal.Open(nil, nil, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ing, err := NewIngester(nil, nil, w, TransformConfig{}, testIngestOptions(&now))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ing.Ingest(strings.NewReader(fmt.Sprintf("a{x=\"1\"} 1 %d\n", testNowMs)), textType)
	var ie *IngestError
	if !errors.As(err, &ie) || ie.Reason != ReasonDiskFull || !errors.Is(err, wal.ErrDiskFull) {
		t.Fatalf("ingest on a full disk: %v, want an IngestError with reason %s", err, ReasonDiskFull)
	}
}

// newTruncatingIngester returns an Ingester over a WAL of small uncompressed segments, so that a
// test fills several segments and truncates them in a few scrapes (fillAndTruncate).
func newTruncatingIngester(t *testing.T, now *time.Time) (*wal.WAL, *Ingester) {
	t.Helper()
	opts := wal.DefaultOptions()
	opts.Fsync = wal.FsyncSegment
	opts.SegmentSize = 32 << 10
	opts.Compression = "none"
	w, err := wal.Open(nil, nil, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	ing, err := NewIngester(nil, nil, w, TransformConfig{}, testIngestOptions(now))
	if err != nil {
		t.Fatal(err)
	}
	return w, ing
}

// fillAndTruncate fills several segments with series of its own (filler{r="round",...}), then
// truncates: no consumer holds anything back.
func fillAndTruncate(t *testing.T, w *wal.WAL, ing *Ingester, round int, now time.Time) {
	t.Helper()
	for k := range 40 {
		var b strings.Builder
		for j := range 100 {
			fmt.Fprintf(&b, "filler{r=\"%d\",k=\"%d\",j=\"%d\",pad=\"%s\"} 1 %d\n", round, k, j, strings.Repeat("p", 60), now.UnixMilli())
		}
		if _, err := ing.Ingest(strings.NewReader(b.String()), textType); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := w.Truncate(); err != nil || st.Deleted == 0 {
		t.Fatalf("truncate: %+v %v", st, err)
	}
}
