package agent

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/config"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/collector-dev/collector/agent/ingest"
	"github.com/collector-dev/collector/wal"
)

const promTextType = "text/plain; version=0.0.4; charset=utf-8"

// sourceSample is one sample read back from a WAL.
type sourceSample struct {
	Series string
	T      int64
	V      float64
}

// readSourceWAL returns the samples of w and the number of scrapes (Samples records) they came in.
func readSourceWAL(t *testing.T, w *wal.WAL) ([]sourceSample, int) {
	t.Helper()
	r, err := wal.NewReader(w.Dir(), wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []sourceSample
	batches := 0
	for {
		b, err := r.Next(t.Context())
		if errors.Is(err, io.EOF) {
			return out, batches
		}
		if err != nil {
			t.Fatal(err)
		}
		batches++
		for _, s := range b.Samples {
			l, ok := r.Labels(s.Ref)
			if !ok {
				t.Fatalf("unresolved ref %d", s.Ref)
			}
			out = append(out, sourceSample{Series: l.String(), T: s.T, V: s.V})
		}
	}
}

func openSourceWAL(t *testing.T) *wal.WAL {
	t.Helper()
	w, err := wal.Open(discardLogger(), prometheus.NewRegistry(), t.TempDir(), "c1", wal.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func discardLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// testSource is a Source on a real WAL and Ingester, with a fake clock, its own registry and a
// log hook.
type testSource struct {
	*Source
	w     *wal.WAL
	reg   *prometheus.Registry
	clock *fakeClock
	logs  *logtest.Hook
}

func newTestSource(t *testing.T, cfg SourceConfig) *testSource {
	t.Helper()
	if cfg.ID == "" {
		cfg.ID = "c1"
	}
	if cfg.Elide == nil {
		cfg.Elide = []string{}
	}
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ts := &testSource{w: openSourceWAL(t), reg: prometheus.NewRegistry(), clock: newFakeClock(time.Now()), logs: hook}
	opts := DefaultSourceOptions()
	opts.Clock = ts.clock
	s, err := NewSource(logger, ts.reg, cfg, ts.w, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.Source = s
	return ts
}

// runCycle runs one scrape cycle synchronously.
func (ts *testSource) runCycle(t *testing.T) {
	t.Helper()
	ts.cycle(t.Context(), ts.clock.Now())
}

func (ts *testSource) failures(reason string) float64 {
	return testutil.ToFloat64(ts.metrics.failures.WithLabelValues(reason))
}

// warnings returns the warning lines logged since the last call.
func (ts *testSource) warnings() []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range ts.logs.AllEntries() {
		if e.Level == logrus.WarnLevel {
			out = append(out, e)
		}
	}
	ts.logs.Reset()
	return out
}

// body returns n federate lines with timestamps near now.
func federateLines(n int) string {
	var b strings.Builder
	ts := time.Now().UnixMilli()
	for i := range n {
		fmt.Fprintf(&b, "up{instance=\"i%d\",job=\"j\"} 1 %d\n", i, ts)
	}
	return b.String()
}

func gzipBytes(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

func TestScrapeAppends(t *testing.T) {
	for _, tc := range []struct {
		gz          bool   // the source gzips
		compression string // SourceConfig.Compression
		wantAE      string // Accept-Encoding the source must get
	}{
		{false, "", "identity"},
		{true, "", "identity"}, // a source that gzips anyway is inflated
		{true, CompressionGzip, "gzip"},
		{false, CompressionNone, "identity"},
	} {
		gz := tc.gz
		t.Run(fmt.Sprintf("gzip=%v,compression=%q", gz, tc.compression), func(t *testing.T) {
			payload := federateLines(3)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/federate" || r.Header.Get("Accept") != ingest.FederateAccept || r.Header.Get("Accept-Encoding") != tc.wantAE ||
					r.Header.Get("User-Agent") != "collector" {
					http.Error(w, "bad request "+r.URL.String(), http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", promTextType)
				if gz {
					w.Header().Set("Content-Encoding", "gzip")
					w.Write(gzipBytes(t, payload))
					return
				}
				io.WriteString(w, payload)
			}))
			defer srv.Close()
			ts := newTestSource(t, SourceConfig{From: srv.URL, Labels: map[string]string{"cluster": "x"}, Compression: tc.compression})
			ts.runCycle(t)
			got, batches := readSourceWAL(t, ts.w)
			if len(got) != 3 || batches != 1 {
				t.Fatalf("got %d samples in %d batches: %v", len(got), batches, got)
			}
			if want := `{__name__="up", cluster="x", clusterID="c1", instance="i0", job="j"}`; got[0].Series != want {
				t.Errorf("series %s, want %s", got[0].Series, want)
			}
			if n := testutil.ToFloat64(ts.metrics.bytes); n != float64(len(payload)) {
				t.Errorf("bytes %v, want %d (decompressed)", n, len(payload))
			}
			if n := testutil.ToFloat64(ts.metrics.requests.WithLabelValues("normal", "200")); n != 1 {
				t.Errorf("federate_requests_total{normal,200} = %v", n)
			}
			st := ts.Status()
			if !st.Attempted || st.LastError != nil || st.LastSuccess.IsZero() {
				t.Errorf("status %+v", st)
			}
			if len(ts.warnings()) != 0 {
				t.Error("warnings logged for a good scrape")
			}
		})
	}
}

// TestScrapeMalformed checks invariant 1 for every way a federate response can be bad: the scrape
// appends nothing to the real WAL, one warning names the source (and the line for a parse error),
// and the failure is counted under its reason.
func TestScrapeMalformed(t *testing.T) {
	good := federateLines(5)
	const limit = 64 << 10
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		reason   string
		errParts []string
		code     string // status_code of federate_requests_total
	}{
		{
			name: "non-200",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "prometheus is overloaded", http.StatusServiceUnavailable)
			},
			reason: reasonStatus, errParts: []string{"status 503", "prometheus is overloaded"}, code: "503",
		},
		{
			name: "200 with an HTML page",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, "<html><body>Application is not available</body></html>\n")
			},
			reason: reasonContentType, errParts: []string{`content type "text/html; charset=utf-8"`, "Application is not available"}, code: "200",
		},
		{
			name: "wrong content type",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, good)
			},
			reason: reasonContentType, errParts: []string{"application/json"}, code: "200",
		},
		{
			name: "text format of another version",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=1.0.0")
				io.WriteString(w, good)
			},
			reason: reasonContentType, errParts: []string{"1.0.0"}, code: "200",
		},
		{
			name: "unknown content encoding",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", promTextType)
				w.Header().Set("Content-Encoding", "br")
				io.WriteString(w, good)
			},
			reason: reasonContentType, errParts: []string{`content encoding "br"`}, code: "200",
		},
		{
			name: "content-length longer than the body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", promTextType)
				w.Header().Set("Content-Length", fmt.Sprint(len(good)+100))
				io.WriteString(w, good)
			},
			reason: reasonTruncated, errParts: []string{"unexpected EOF"}, code: "200",
		},
		{
			name: "connection closed mid-body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				conn, buf, err := w.(http.Hijacker).Hijack()
				if err != nil {
					panic(err)
				}
				defer conn.Close()
				fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n", promTextType)
				fmt.Fprintf(buf, "%x\r\n%s\r\n", len(good), good) // no terminating chunk
				buf.Flush()
			},
			reason: reasonTruncated, errParts: []string{"unexpected EOF"}, code: "200",
		},
		{
			name: "gzip stream cut",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", promTextType)
				w.Header().Set("Content-Encoding", "gzip")
				z := gzipBytes(t, good)
				w.Write(z[:len(z)-10])
			},
			reason: reasonTruncated, errParts: []string{"unexpected EOF"}, code: "200",
		},
		{
			name: "gzip bomb over the limit",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", promTextType)
				w.Header().Set("Content-Encoding", "gzip")
				w.Write(gzipBytes(t, strings.Repeat(good, 20*limit/len(good))))
			},
			reason: reasonTooLarge, errParts: []string{fmt.Sprintf("exceeds the limit of %d bytes", limit)}, code: "200",
		},
		{
			name: "body over the limit",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", promTextType)
				io.WriteString(w, strings.Repeat(good, 2*limit/len(good)))
			},
			reason: reasonTooLarge, errParts: []string{fmt.Sprintf("exceeds the limit of %d bytes", limit)}, code: "200",
		},
		{
			name: "parse error on the last line",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", promTextType)
				io.WriteString(w, good+"up{job=\"j\" 1\n")
			},
			reason: reasonParse, errParts: []string{"line 6"}, code: "200",
		},
		{
			name: "last line cut without newline",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", promTextType)
				io.WriteString(w, good[:len(good)-3])
			},
			reason: reasonParse, errParts: []string{"line 5"}, code: "200",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			ts := newTestSource(t, SourceConfig{From: srv.URL, LimitBytes: limit})
			ts.runCycle(t)
			if got, _ := readSourceWAL(t, ts.w); len(got) != 0 {
				t.Fatalf("%d samples appended, want none", len(got))
			}
			for _, r := range failureReasons {
				want := 0.0
				if r == tc.reason {
					want = 1
				}
				if got := ts.failures(r); got != want {
					t.Errorf("failures{reason=%q} = %v, want %v", r, got, want)
				}
			}
			if n := testutil.ToFloat64(ts.metrics.requests.WithLabelValues("normal", tc.code)); n != 1 {
				t.Errorf("federate_requests_total{normal,%s} = %v, want 1", tc.code, n)
			}
			warns := ts.warnings()
			if len(warns) != 1 {
				t.Fatalf("%d warnings, want 1: %v", len(warns), warns)
			}
			if warns[0].Data["cluster_id"] != "c1" || warns[0].Data["reason"] != tc.reason {
				t.Errorf("warning fields %v", warns[0].Data)
			}
			msg := fmt.Sprint(warns[0].Data["err"])
			for _, p := range append(tc.errParts, srv.URL+"/federate") {
				if !strings.Contains(msg, p) {
					t.Errorf("logged error %q does not contain %q", msg, p)
				}
			}
			st := ts.Status()
			if !st.Attempted || st.LastError == nil || !st.LastSuccess.IsZero() {
				t.Errorf("status %+v", st)
			}
			if testutil.ToFloat64(ts.metrics.lastSuccess) != 0 {
				t.Error("last success set by a failed scrape")
			}
		})
	}
}

func TestScrapeTransportErrorsAndTimeout(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		ts := newTestSource(t, SourceConfig{From: srv.URL})
		ts.runCycle(t)
		if ts.failures(reasonTransport) != 1 || testutil.ToFloat64(ts.metrics.requests.WithLabelValues("normal", "error")) != 1 {
			t.Fatalf("transport failure not counted")
		}
	})
	t.Run("timeout mid-body", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", promTextType)
			io.WriteString(w, federateLines(2))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer srv.Close()
		defer close(release)
		ts := newTestSource(t, SourceConfig{From: srv.URL, Interval: time.Second, Timeout: 100 * time.Millisecond})
		ts.runCycle(t)
		if got, _ := readSourceWAL(t, ts.w); len(got) != 0 || ts.failures(reasonTimeout) != 1 {
			t.Fatalf("appended %d, timeout failures %v", len(got), ts.failures(reasonTimeout))
		}
	})
	t.Run("token file gone", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		defer srv.Close()
		tf := filepath.Join(t.TempDir(), "token")
		writeTestFile(t, tf, "tok")
		ts := newTestSource(t, SourceConfig{From: srv.URL, HTTPClientConfig: tokenFileCfg(tf)})
		os.Remove(tf)
		ts.runCycle(t)
		if ts.failures(reasonAuth) != 1 {
			t.Fatal("auth failure not counted")
		}
	})
}

// federateRecorder serves distinct series per request and records the requests.
type federateRecorder struct {
	mtx      sync.Mutex
	matchers [][]string
	auth     []string
}

func (f *federateRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mtx.Lock()
	m := r.URL.Query()["match[]"]
	f.matchers = append(f.matchers, m)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	n := int64(len(f.auth))
	f.mtx.Unlock()
	w.Header().Set("Content-Type", promTextType)
	for _, s := range m {
		fmt.Fprintf(w, "m{sel=%q} 1 %d\n", s, time.Now().UnixMilli()+n)
	}
}

func (f *federateRecorder) requests() ([][]string, []string) {
	f.mtx.Lock()
	defer f.mtx.Unlock()
	m := append([][]string(nil), f.matchers...)
	sort.Slice(m, func(i, j int) bool { return m[i][0] < m[j][0] })
	return m, append([]string(nil), f.auth...)
}

func TestScrapeMatchersAndWorkers(t *testing.T) {
	dir := t.TempDir()
	matchFile := filepath.Join(dir, "match")
	writeTestFile(t, matchFile, "# platform\n\n{__name__=\"d\"}\n  {__name__=\"e\"}  \n# {__name__=\"ignored\"}\n{__name__=\"a\"}\n")
	sel := func(n string) string { return fmt.Sprintf("{__name__=%q}", n) }
	for _, tc := range []struct {
		name    string
		cfg     SourceConfig
		want    [][]string
		warning string
	}{
		{
			name: "default matcher",
			want: [][]string{{DefaultMatcher}},
		},
		{
			name: "flags and match file, deduplicated, three workers round-robin",
			cfg:  SourceConfig{Matchers: []string{sel("a"), sel("b"), sel("c")}, MatchFile: matchFile, WorkerNumber: 3},
			want: [][]string{{sel("a"), sel("d")}, {sel("b"), sel("e")}, {sel("c")}},
		},
		{
			name:    "more workers than matchers are clamped",
			cfg:     SourceConfig{Matchers: []string{sel("a"), sel("b")}, WorkerNumber: 5},
			want:    [][]string{{sel("a")}, {sel("b")}},
			warning: "worker_number 5 is more than the 2 matchers; using 2 workers",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &federateRecorder{}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			tc.cfg.From = srv.URL
			ts := newTestSource(t, tc.cfg)
			if tc.warning != "" {
				w := ts.warnings()
				if len(w) != 1 || w[0].Message != tc.warning {
					t.Errorf("warnings %v, want %q", w, tc.warning)
				}
			}
			ts.runCycle(t)
			got, _ := rec.requests()
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("match[] per request %q, want %q", got, tc.want)
			}
			samples, batches := readSourceWAL(t, ts.w)
			n := 0
			for _, g := range tc.want {
				n += len(g)
			}
			if batches != len(tc.want) || len(samples) != n {
				t.Fatalf("%d samples in %d commits, want %d in %d (one per worker)", len(samples), batches, n, len(tc.want))
			}
		})
	}
}

func TestScrapeBadMatchFile(t *testing.T) {
	mf := filepath.Join(t.TempDir(), "match")
	writeTestFile(t, mf, "{__name__=\"a\"}\n\nup{\n")
	_, err := NewSource(discardLogger(), prometheus.NewRegistry(), SourceConfig{ID: "c1", From: "http://localhost:1", MatchFile: mf}, openSourceWAL(t), DefaultSourceOptions())
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("error %v, want the line", err)
	}
}

func TestScrapeTokenRotation(t *testing.T) {
	rec := &federateRecorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	tf := filepath.Join(t.TempDir(), "token")
	writeTestFile(t, tf, "sha256~first")
	ts := newTestSource(t, SourceConfig{From: srv.URL, HTTPClientConfig: tokenFileCfg(tf)})
	ts.runCycle(t)
	writeTestFile(t, tf, "sha256~second-token")
	ts.runCycle(t)
	_, auth := rec.requests()
	if want := []string{"Bearer sha256~first", "Bearer sha256~second-token"}; !reflect.DeepEqual(auth, want) {
		t.Fatalf("Authorization %q, want %q", auth, want)
	}
	for _, e := range ts.logs.AllEntries() {
		if s, _ := e.String(); strings.Contains(s, "sha256~") {
			t.Fatalf("token logged: %s", s)
		}
	}
}

func TestLimitReader(t *testing.T) {
	for _, tc := range []struct {
		n, limit int
		wantErr  bool
	}{{10, 10, false}, {11, 10, true}, {0, 0, false}, {1, 0, true}, {100000, 99999, true}} {
		t.Run(fmt.Sprintf("%d/%d", tc.n, tc.limit), func(t *testing.T) {
			lr := &limitedBody{r: strings.NewReader(strings.Repeat("x", tc.n)), limit: int64(tc.limit)}
			b, err := io.ReadAll(lr)
			if tc.wantErr != errors.Is(err, ingest.ErrTooLarge) || tc.wantErr != errors.Is(lr.err, ingest.ErrTooLarge) {
				t.Fatalf("err %v (recorded %v)", err, lr.err)
			}
			if !tc.wantErr && len(b) != tc.n {
				t.Fatalf("read %d", len(b))
			}
		})
	}
}

func TestScrapeMTLS(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	other := newTestPKI(t, t.TempDir())
	srv := pki.mTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", promTextType)
		io.WriteString(w, federateLines(2))
	}))
	for _, tc := range []struct {
		name    string
		tls     config.TLSConfig
		samples int
		reason  string
	}{
		{"verified mTLS", config.TLSConfig{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}, 2, ""},
		{"unknown CA", config.TLSConfig{CAFile: other.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}, 0, reasonTransport},
		{"no CA file is not insecure", config.TLSConfig{CertFile: pki.certFile, KeyFile: pki.keyFile}, 0, reasonTransport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestSource(t, SourceConfig{From: srv.URL, HTTPClientConfig: tlsCfg(tc.tls)})
			ts.runCycle(t)
			got, _ := readSourceWAL(t, ts.w)
			if len(got) != tc.samples {
				t.Fatalf("%d samples, want %d", len(got), tc.samples)
			}
			if tc.reason != "" && ts.failures(tc.reason) != 1 {
				t.Fatalf("failures{%s} = %v", tc.reason, ts.failures(tc.reason))
			}
			if tc.reason != "" && !strings.Contains(ts.Status().LastError.Error(), "certificate signed by unknown authority") {
				t.Fatalf("error %v", ts.Status().LastError)
			}
		})
	}
}

// TestIngestErrorReasons: each reason of an ingest.IngestError is counted under its scrape
// failure reason; a WAL without room (a real one, its reserve larger than any disk) under
// disk_full.
func TestIngestErrorReasons(t *testing.T) {
	opts := wal.DefaultOptions()
	opts.ReserveBytes = 1 << 62 // more than any file system has free
	w, err := wal.Open(discardLogger(), prometheus.NewRegistry(), t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ing, err := ingest.NewIngester(discardLogger(), prometheus.NewRegistry(), w, ingest.TransformConfig{}, ingest.DefaultIngestOptions())
	if err != nil {
		t.Fatal(err)
	}
	_, diskFull := ing.Ingest(strings.NewReader(fmt.Sprintf("a{x=\"1\"} 1 %d\n", time.Now().UnixMilli())), promTextType)
	u := &url.URL{Scheme: "http", Host: "prometheus:9090", Path: "/federate"}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"disk full", diskFull, reasonDiskFull},
		{"parse", &ingest.IngestError{Reason: ingest.ReasonParse, Err: errors.New("x")}, reasonParse},
		{"read", &ingest.IngestError{Reason: ingest.ReasonRead, Err: io.ErrUnexpectedEOF}, reasonTruncated},
		{"too large", &ingest.IngestError{Reason: ingest.ReasonTooLarge, Err: ingest.ErrTooLarge}, reasonTooLarge},
		{"content type", &ingest.IngestError{Reason: ingest.ReasonContentType, Err: errors.New("x")}, reasonContentType},
		{"wal", &ingest.IngestError{Reason: ingest.ReasonWAL, Err: errors.New("x")}, reasonAppend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reasonOf(ingestError(u, tc.err)); got != tc.want {
				t.Fatalf("scrape failure reason of %v = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
