package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestChunkMatchers(t *testing.T) {
	m := func(n int) string { return strings.Repeat("a", n) }
	size := func(ms []string) int {
		n := 0
		for _, x := range ms {
			n += matchParamLen + len(url.QueryEscape(x))
		}
		return n
	}
	for _, tc := range []struct {
		name     string
		matchers []string
		budget   int
		want     []int // matchers per chunk
	}{
		{"one", []string{m(5)}, 100, []int{1}},
		{"fits exactly", []string{m(10), m(10)}, 2 * (matchParamLen + 10), []int{2}},
		{"one byte over", []string{m(10), m(10)}, 2*(matchParamLen+10) - 1, []int{1, 1}},
		{"long one alone", []string{m(5), m(500), m(5)}, 100, []int{1, 1, 1}},
		{"escaping counts", []string{`{__name__="x"}`, `{__name__="y"}`}, 2*(matchParamLen+len(`{__name__="x"}`)) + 1, []int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := chunkMatchers(tc.matchers, tc.budget)
			var counts []int
			var all []string
			for _, c := range got {
				counts = append(counts, len(c))
				all = append(all, c...)
				if len(c) > 1 && size(c) > tc.budget {
					t.Errorf("chunk of %d bytes over the budget %d", size(c), tc.budget)
				}
			}
			if fmt.Sprint(counts) != fmt.Sprint(tc.want) || strings.Join(all, "|") != strings.Join(tc.matchers, "|") {
				t.Errorf("chunks %v, want %v, in order", counts, tc.want)
			}
		})
	}
}

// manyMatchers writes a match file of n selectors of metrics m_0 ... m_(n-1) and "up".
func writeManyMatchers(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{__name__=\"m_%d\"}\n", i)
	}
	b.WriteString("{__name__=\"up\"}\n")
	path := filepath.Join(t.TempDir(), "match.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestScrapeManyMatchers: 100 000 matchers are sent in requests whose request line a proxy
// accepts, every matcher once, each response appended; a warning says what the list costs.
func TestScrapeManyMatchers(t *testing.T) {
	const n = 100_000
	var mtx sync.Mutex
	seen := map[string]int{}
	requests, longest := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mtx.Lock()
		requests++
		longest = max(longest, len(r.URL.RequestURI()))
		for _, m := range r.URL.Query()["match[]"] {
			seen[m]++
		}
		mtx.Unlock()
		if r.URL.Query().Get("apikey") != "k" {
			http.Error(w, "the URL's own query was lost", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", promTextType)
		fmt.Fprintf(w, "up{job=\"a\"} 1 %d\n", time.Now().UnixMilli())
	}))
	defer srv.Close()
	ts := newTestSource(t, SourceConfig{From: srv.URL + "/federate?apikey=k", MatchFile: writeManyMatchers(t, n), WorkerNumber: 4})
	warned := 0
	for _, e := range ts.warnings() {
		if strings.Contains(e.Message, fmt.Sprintf("%d matchers (more than %d)", n+1, manyMatchers)) {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings about the matcher count, want 1", warned)
	}
	ts.runCycle(t)
	if err := ts.Status().LastError; err != nil {
		t.Fatal(err)
	}
	mtx.Lock()
	defer mtx.Unlock()
	if longest > maxRequestURIBytes {
		t.Errorf("a request URI of %d bytes", longest)
	}
	if len(seen) != n+1 {
		t.Errorf("%d distinct matchers sent, want %d", len(seen), n+1)
	}
	for m, c := range seen {
		if c != 1 {
			t.Fatalf("matcher %s sent %d times", m, c)
		}
	}
	if ok := testutil.ToFloat64(ts.metrics.requests.WithLabelValues(requestTypeFederate, "200")); int(ok) != requests || requests < 2 {
		t.Errorf("%v successful requests counted, the server saw %d", ok, requests)
	}
}

// startPrometheus starts the real prometheus binary scraping itself every second and returns
// its URL once /federate serves its up series.
func startPrometheus(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cfg := filepath.Join(dir, "prometheus.yml")
		conf := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{targets: [%q]}]\n", addr)
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/usr/bin/prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr, "--log.level=warn")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // killed if the test binary dies first
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait(); logf.Close() }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		base := "http://" + addr
		err = waitUntil(30*time.Second, exited, func() bool {
			resp, err := http.Get(base + "/federate?match[]=up")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode == http.StatusOK && strings.Contains(string(b), "up{")
		})
		if err == nil {
			t.Cleanup(stop)
			return base
		}
		stop()
		if attempt == 4 {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("prometheus did not start: %v\n%s", err, log)
		}
		// Someone took the port between the probe and the bind: another one.
	}
}

// waitUntil polls cond until it holds, the process exits or the timeout passes.
func waitUntil(timeout time.Duration, exited <-chan error, cond func() bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		case <-ctx.Done():
			return errors.New("timed out")
		case <-tick.C:
		}
	}
	return nil
}

// TestFederateManyMatchersPrometheus: 100 000 matchers against a real Prometheus /federate (which
// takes match[] from the URL only) scrape without a failure.
func TestFederateManyMatchersPrometheus(t *testing.T) {
	base := startPrometheus(t)
	ts := newTestSource(t, SourceConfig{From: base, MatchFile: writeManyMatchers(t, 100_000), WorkerNumber: 4})
	ts.runCycle(t)
	if err := ts.Status().LastError; err != nil {
		t.Fatal(err)
	}
	if ok := testutil.ToFloat64(ts.metrics.requests.WithLabelValues(requestTypeFederate, "200")); ok < 400 {
		t.Errorf("%v successful requests, want the 100 001 matchers in more than 400", ok)
	}
	got, _ := readSourceWAL(t, ts.w)
	if !slices.ContainsFunc(got, func(s sourceSample) bool { return strings.HasPrefix(s.Series, `{__name__="up"`) }) {
		t.Errorf("up missing: %v", got)
	}
}
