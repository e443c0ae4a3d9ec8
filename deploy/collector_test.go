package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// collectorBin is the binary under test, built by TestMain from this module.
var collectorBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "collector-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	collectorBin = filepath.Join(dir, "collector")
	build := exec.Command("go", "build", "-trimpath", "-o", collectorBin, "./cmd/collector")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build collector: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// source is a federating Prometheus: it checks the token and the match[] selectors it was told to
// expect, and serves series whose number grows by 200 a scrape up to 2000 (so that series records
// stay small and samples fill segments), plus one sample older than the ingest age limit.
type source struct {
	srv      *httptest.Server
	token    string
	matchers []string
	scrapes  atomic.Int64
	errs     chan error
}

func newSource(t *testing.T, token string, matchers []string, tlsCfg *tls.Config) *source {
	s := &source{token: token, matchers: matchers, errs: make(chan error, 16)}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if tlsCfg != nil {
		s.srv.TLS = tlsCfg
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(s.srv.Close)
	return s
}

func (s *source) fail(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

func (s *source) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/federate" {
		s.fail(fmt.Errorf("source: request for %s", r.URL.Path))
		http.NotFound(w, r)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+s.token {
		s.fail(fmt.Errorf("source: Authorization %q, want the service account token", got))
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if got := r.URL.Query()["match[]"]; !slices.Equal(got, s.matchers) {
		s.fail(fmt.Errorf("source: match[] %q, want the match file's %q", got, s.matchers))
	}
	n := min(200*(s.scrapes.Add(1)), 2000)
	now := time.Now().UnixMilli()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# TYPE deploy_test_value gauge")
	for i := range n {
		fmt.Fprintf(bw, "deploy_test_value{series=\"%d\",prometheus=\"openshift-monitoring/k8s\"} %g %d\n", i, rand.Float64(), now)
	}
	fmt.Fprintf(bw, "deploy_test_old 1 %d\n", now-25*time.Hour.Milliseconds())
	bw.Flush()
}

// Receiver behaviours.
const (
	sinkOK         int32 = iota
	sinkOutage           // 503 to everything
	sinkRejectOnce       // 400 about the request (permanent: the batch is dropped) to the next request, then ok
)

// sink is the hub's Thanos receive: mTLS with the hub CA's certificate, client certificates of the
// clients CA required.
type sink struct {
	srv      *httptest.Server
	mode     atomic.Int32
	requests atomic.Int64
	ok       atomic.Int64
}

func newSink(t *testing.T, p *pki) *sink {
	s := &sink{}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/receive" || r.Header.Get("Content-Encoding") != "snappy" {
			http.Error(w, "not a remote-write request", http.StatusBadRequest)
			return
		}
		switch s.mode.Load() {
		case sinkOutage:
			http.Error(w, "hub down", http.StatusServiceUnavailable)
			return
		case sinkRejectOnce:
			if s.mode.CompareAndSwap(sinkRejectOnce, sinkOK) {
				// Not a 409: a 409 is bisected and its samples deferred or delivered, not dropped.
				http.Error(w, "malformed request", http.StatusBadRequest)
				return
			}
		}
		s.ok.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	cfg := p.hub.serverTLS(t)
	pool := x509.NewCertPool()
	pool.AddCert(p.clients.cert)
	cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	s.srv.TLS = cfg
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// lockedBuffer collects the process' output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// running is a started collector.
type running struct {
	pd   *pod
	cmd  *exec.Cmd
	out  *lockedBuffer
	base string // http://127.0.0.1:port
	done chan error
}

// deployed lays out the variant's pod against a test source and sink and starts collector with
// the StatefulSet's arguments (and extra ones after them: the last value of a flag wins).
func deployed(t *testing.T, dir string, extra ...string) (*running, *rendered, *source, *sink) {
	t.Helper()
	r := mustRender(t, dir)
	p := newPKI(t)
	var srcTLS *tls.Config
	scheme := "http"
	if strings.HasPrefix(configMap(t, r, "collector-config").Data["from"], "https:") {
		srcTLS, scheme = p.service.serverTLS(t), "https"
	}
	var matchers []string
	for _, l := range strings.Split(configMap(t, r, "collector-config").Data["matchers.txt"], "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			matchers = append(matchers, l)
		}
	}
	src := newSource(t, p.token, matchers, srcTLS)
	snk := newSink(t, p)
	srcURL := scheme + "://" + src.srv.Listener.Addr().String()
	pd := newPod(t, r, p, map[string]string{"from": srcURL, "to-upload": snk.srv.URL + "/api/v1/receive"})
	if t.Failed() {
		t.FailNow()
	}
	if want := fmt.Sprintf(":%d", listenPort); pd.listen != want {
		t.Fatalf("--listen=%s, want %s (the container port)", pd.listen, want)
	}
	rn := startPod(t, pd, collectorBin, append(append([]string(nil), pd.args...), extra...))
	return rn, r, src, snk
}

// startPod runs bin with args and a free --listen address, in the pod's root and environment,
// and kills it at the end of the test (logging its output when the test failed).
func startPod(t *testing.T, pd *pod, bin string, args []string) *running {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	rn := &running{pd: pd, out: &lockedBuffer{}, base: "http://" + addr, done: make(chan error, 1)}
	rn.cmd = exec.Command(bin, append(args, "--listen="+addr)...)
	rn.cmd.Dir, rn.cmd.Env = pd.rootfs, pd.env
	rn.cmd.Stdout, rn.cmd.Stderr = rn.out, rn.out
	if err := rn.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { rn.done <- rn.cmd.Wait() }()
	t.Cleanup(func() {
		if rn.cmd.ProcessState == nil {
			_ = rn.cmd.Process.Kill()
			<-rn.done
		}
		if t.Failed() {
			t.Logf("%s\noutput:\n%s", pd, rn.out.String())
		}
	})
	return rn
}

// get returns the status and body of a GET on the collector's listener.
func (rn *running) get(path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rn.base+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// poll evaluates cond every 50ms until it holds (true) or the timeout passes (false). The process
// exiting fails the test.
func (rn *running) poll(t *testing.T, what string, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case err := <-rn.done:
			rn.done <- err
			t.Fatalf("collector exited while waiting for %s: %v", what, err)
		case <-deadline:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// waitFor is poll that fails the test on the timeout.
func (rn *running) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !rn.poll(t, what, timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// stop sends SIGTERM (what the kubelet does) and expects a clean exit well within the grace
// period.
func (rn *running) stop(t *testing.T) {
	t.Helper()
	if err := rn.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-rn.done:
		if err != nil {
			t.Fatalf("collector exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("collector did not exit within 20s of SIGTERM")
	}
}

// TestCollectorRunsWithManifestArgs starts the binary with each variant's StatefulSet arguments
// and environment, its files where the volumes put them, against a federate source (plain, or
// TLS with the service CA on OpenShift) and an mTLS receiver: it must federate with the token and
// the match file, deliver, answer the probes on their paths, write only under the WAL's volume
// and stop cleanly on SIGTERM.
func TestCollectorRunsWithManifestArgs(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			rn, r, src, snk := deployed(t, v.dir)
			c := container(t, one[appsv1.StatefulSet](t, r))
			rn.waitFor(t, "a delivered remote-write request", 30*time.Second, func() bool { return snk.ok.Load() > 0 })
			for _, pr := range []struct {
				name string
				path string
			}{{"readiness", c.ReadinessProbe.HTTPGet.Path}, {"liveness", c.LivenessProbe.HTTPGet.Path}} {
				var code int
				var body string
				rn.waitFor(t, pr.name+" probe "+pr.path, 10*time.Second, func() bool {
					code, body, _ = rn.get(pr.path)
					return code == http.StatusOK
				})
				t.Logf("%s probe GET %s: %d %s", pr.name, pr.path, code, strings.TrimSpace(body))
			}
			if code, _, _ := rn.get("/no-such-path"); code != http.StatusNotFound {
				t.Errorf("GET /no-such-path: %d; the probes above must not pass by accident", code)
			}
			select {
			case err := <-src.errs:
				t.Error(err)
			default:
			}
			rn.stop(t)
			if stray := rn.pd.strayWrites(t, filepath.Join(rn.pd.root, walMount)); len(stray) > 0 {
				t.Errorf("collector wrote outside the WAL volume (read-only root filesystem): %v", stray)
			}
			if entries, err := os.ReadDir(rn.pd.walDir); err != nil || len(entries) == 0 {
				t.Errorf("--wal-dir %s is empty (%v)", rn.pd.walDir, err)
			}
		})
	}
}

// TestMonitoringMetricsExported checks every metric the dashboard and the alert rules query, and
// the labels they match or group on, against a running collector's /metrics. Series of labelled
// counters exist only once something was counted, so the run provokes them: small segments and
// cap, a receiver outage long enough for evictions, then a permanent refusal (a drop), and a
// source serving a too-old sample.
func TestMonitoringMetricsExported(t *testing.T) {
	t.Parallel()
	q := queriedMetrics(t, monitoringExprs(t))
	rn, _, _, snk := deployed(t, "kubernetes",
		"--interval=1s", "--wal-segment-size=32768", "--wal-max-size=65536", "--wal-truncate-interval=1s",
		"--min-backoff=10ms", "--max-backoff=100ms", "--batch-send-deadline=100ms", "--max-samples-per-send=500",
		"--flush-deadline=2s")
	snk.mode.Store(sinkOutage)
	// exported maps each metric name to the labels its series carry.
	var body string
	exported := func() map[string]map[string]bool {
		code, b, err := rn.get("/metrics")
		if err != nil || code != http.StatusOK {
			return nil
		}
		body = b
		have := map[string]map[string]bool{}
		for _, l := range strings.Split(b, "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			name, rest, _ := strings.Cut(l, "{")
			name, _, _ = strings.Cut(name, " ")
			if have[name] == nil {
				have[name] = map[string]bool{}
			}
			for _, m := range labelName.FindAllStringSubmatch(rest, -1) {
				have[name][m[1]] = true
			}
		}
		return have
	}
	rn.waitFor(t, "evictions during the outage", 40*time.Second, func() bool {
		return exported()["collector_wal_samples_evicted_total"] != nil
	})
	snk.mode.Store(sinkRejectOnce)
	var missing []string
	check := func() bool {
		have := exported()
		missing = missing[:0]
		for n := range q.where {
			if have[n] == nil {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0
	}
	rn.poll(t, "every queried metric", 20*time.Second, check)
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("%s is queried by %v but collector does not export it", n, q.where[n])
	}
	have := exported()
	for name, labels := range q.labels {
		for l, where := range labels {
			if have[name] != nil && !have[name][l] {
				t.Errorf("%v use label %s of %s, which has no such label", where, l, name)
			}
		}
	}
	if t.Failed() {
		var lines []string
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "collector_") || strings.HasPrefix(l, "federate_") || strings.HasPrefix(l, "forward_") {
				lines = append(lines, l)
			}
		}
		t.Logf("receiver: %d requests, %d accepted; /metrics:\n%s", snk.requests.Load(), snk.ok.Load(), strings.Join(lines, "\n"))
	}
	rn.stop(t)
}

var labelName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
