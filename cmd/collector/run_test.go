package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/collector-dev/collector/queue/backfill"
	"github.com/collector-dev/collector/wal"
)

// endpointName is the default name of the endpoint of a URL: its host with _ for :.
func endpointName(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(u.Host, ":", "_")
}

// countName returns how many timestamps of metric name the receiver holds.
func countName(r *receiver, name string) int {
	n := 0
	for k := range r.nameSet() {
		if strings.HasPrefix(k, name+"@") {
			n++
		}
	}
	return n
}

// walSet returns every sample of a WAL directory as name@timestamp.
func walSet(t *testing.T, dir string) map[string]bool {
	t.Helper()
	r, err := wal.NewReader(dir, wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]bool{}
	for {
		b, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range b.Samples {
			l, ok := r.Labels(s.Ref)
			if !ok {
				t.Fatalf("ref %d has no labels", s.Ref)
			}
			out[fmt.Sprintf("%s@%d", l.Get("__name__"), s.T)] = true
		}
	}
}

// TestRunEndToEnd runs the agent from a federate source to a receiver over a real TSDB: data
// arrives, the settings from the environment apply, /metrics, /readyz and `wal status` work while
// it runs, reloads by SIGHUP and POST /-/reload change the matchers without losing data, a broken
// reload is refused and the old configuration keeps working, and SIGTERM flushes everything,
// commits the position and exits 0.
func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	src := newFederate(t)
	rcv := newReceiver(t, false)
	dir := t.TempDir()
	walDir := filepath.Join(dir, "wal")
	matchFile := filepath.Join(dir, "match.txt")
	writeFile(t, matchFile, "# initial\n{__name__=\"metric_a\"}\n")
	p := start(t, []string{"COLLECTOR_INTERVAL=1s", "COLLECTOR_LOG_LEVEL=debug", "COLLECTOR_BATCH_SEND_DEADLINE=100ms", "COLLECTOR_WAL_DIR=" + walDir, "COLLECTOR_WEB_ENABLE_LIFECYCLE=true"},
		"run", "--id", "c1", "--from", src.URL, "--match-file", matchFile, "--to-upload", rcv.url,
		"--listen", "127.0.0.1:0", "--log-format", "json", "--flush-deadline", "10s")
	ep := endpointName(t, rcv.url)
	base := "http://" + p.listenAddr()

	// The environment took effect: debug logging, the interval.
	if l := p.waitLog("source configured", 5*time.Second, nil); l["interval"] != "1s" {
		t.Errorf("source interval %v, want 1s from COLLECTOR_INTERVAL", l["interval"])
	}
	if l := p.waitLog("settings", 5*time.Second, nil); l["batch_send_deadline"] != "100ms" {
		t.Errorf("batch_send_deadline %v, want 100ms from COLLECTOR_BATCH_SEND_DEADLINE", l["batch_send_deadline"])
	}

	waitFor(t, "ready", 10*time.Second, func() bool { code, _ := httpDo(t, http.MethodGet, base+"/readyz"); return code == http.StatusOK })
	if code, body := httpDo(t, http.MethodGet, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := httpDo(t, http.MethodGet, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --enable-pprof: %d", code)
	}
	waitFor(t, "metric_a at the receiver", 15*time.Second, func() bool { return countName(rcv, "metric_a") >= 2 })
	code, body := httpDo(t, http.MethodGet, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, `collector_build_info{goversion="go`) || !strings.Contains(body, `version="v0.0.0-test"} 1`) {
		t.Errorf("/metrics: %d, collector_build_info missing", code)
	}

	// wal status beside the running agent.
	waitFor(t, "a committed position", 10*time.Second, func() bool { _, err := wal.ReadPosition(filepath.Join(walDir, "c1"), ep); return err == nil })
	r := runCmd(t, []string{"COLLECTOR_WAL_DIR=" + walDir}, "wal", "status", "-o", "json")
	if r.code != 0 {
		t.Fatalf("wal status beside the agent: %d %s", r.code, r.stderr)
	}
	var rep jsonReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("wal status output: %v\n%s", err, r.stdout)
	}
	if len(rep.Clusters) != 1 || rep.Clusters[0].ClusterID != "c1" || rep.Clusters[0].Samples < 4 ||
		len(rep.Clusters[0].Consumers) != 1 || rep.Clusters[0].Consumers[0].Name != ep {
		t.Errorf("wal status beside the agent: %s", r.stdout)
	}

	// SIGHUP applies a changed match file.
	writeFile(t, matchFile, "{__name__=\"metric_b\"}\n")
	p.signal(syscall.SIGHUP)
	p.waitLog("configuration reloaded", 10*time.Second, nil)
	waitFor(t, "metric_b at the receiver", 15*time.Second, func() bool { return countName(rcv, "metric_b") >= 2 })

	// POST /-/reload too.
	writeFile(t, matchFile, "{__name__=\"metric_c\"}\n")
	if code, body := httpDo(t, http.MethodPost, base+"/-/reload"); code != http.StatusOK || body != "reloaded\n" {
		t.Errorf("POST /-/reload: %d %q", code, body)
	}
	waitFor(t, "metric_c at the receiver", 15*time.Second, func() bool { return countName(rcv, "metric_c") >= 1 })

	// A broken match file is refused, with the reason, by both ways; metric_c keeps flowing.
	writeFile(t, matchFile, "up{\n")
	code, body = httpDo(t, http.MethodPost, base+"/-/reload")
	if code != http.StatusBadRequest || !strings.Contains(body, "reload refused, the running configuration is kept") || !strings.Contains(body, "match file "+matchFile+" line 1") {
		t.Errorf("POST /-/reload of a broken match file: %d %q", code, body)
	}
	p.signal(syscall.SIGHUP)
	p.waitLog("reload refused; the running configuration is kept", 10*time.Second, func(l map[string]any) bool {
		e, _ := l["error"].(string)
		return l["level"] == "error" && strings.Contains(e, "match file")
	})
	n := countName(rcv, "metric_c")
	waitFor(t, "metric_c still arriving", 15*time.Second, func() bool { return countName(rcv, "metric_c") >= n+2 })
	if countName(rcv, "metric_b") == 0 || countName(rcv, "up") != 0 {
		t.Error("the refused configuration was applied")
	}

	// SIGTERM: flush, commit, exit 0.
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	p.waitLog("stopped: positions committed", time.Second, nil)
	got := rcv.nameSet()
	if m := missing(walSet(t, filepath.Join(walDir, "c1")), got); len(m) > 0 {
		t.Errorf("appended to the WAL but not delivered: %v", m)
	}
	// Every scrape but the last (which SIGTERM may have cut) was appended and delivered.
	served := src.servedSet()
	last := src.base + src.requests.Load()*1000
	for k := range served {
		if strings.HasSuffix(k, fmt.Sprintf("@%d", last)) {
			delete(served, k)
		}
	}
	if m := missing(served, got); len(m) > 0 {
		t.Errorf("served by the source but not delivered: %v", m)
	}
	st, err := wal.ReadPosition(filepath.Join(walDir, "c1"), ep)
	if err != nil {
		t.Fatalf("position after SIGTERM: %v", err)
	}
	if want := int64(2 * len(got)); st.Delivered < want {
		t.Errorf("position: %d samples delivered, the receiver holds %d", st.Delivered, want)
	}
	// Nothing is left to send: wal status agrees.
	r = runCmd(t, nil, "wal", "status", "--wal-dir", walDir, "--id", "c1", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
		t.Fatalf("wal status after the stop: %d %v", r.code, err)
	}
	if cs := rep.Clusters[0].Consumers[0]; cs.UndeliveredSamples != 0 || cs.Position != st.Position {
		t.Errorf("wal status after a clean stop: %+v, position file %v", cs, st.Position)
	}
}

// TestRunStopFailingEndpoint: with the receiver failing, SIGTERM does not wait for
// --flush-deadline (10m here): it stops at once with exit 0, and what was not delivered stays in
// the WAL.
func TestRunStopFailingEndpoint(t *testing.T) {
	t.Parallel()
	src := newFederate(t)
	rcv := newReceiver(t, false)
	rcv.setBehaviour(func(w http.ResponseWriter, _ *http.Request, _ http.Handler) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	})
	walDir := filepath.Join(t.TempDir(), "wal")
	p := start(t, nil, "run", "--id", "c1", "--from", src.URL, "--match", `{__name__="m"}`, "--to-upload", rcv.url,
		"--wal-dir", walDir, "--listen", "", "--log-format", "json", "--interval", "1s",
		"--batch-send-deadline", "100ms", "--flush-deadline", "10m", "--min-backoff", "50ms", "--max-backoff", "100ms")
	waitFor(t, "failed requests", 15*time.Second, func() bool { return rcv.requests.Load() >= 2 })
	p.signal(syscall.SIGTERM)
	if code := p.wait(time.Minute); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	p.waitLog("endpoint failing at shutdown: not flushing; what the queue holds stays in the wal and is sent after restart", time.Second, nil)
	r := runCmd(t, nil, "wal", "status", "--wal-dir", walDir, "-o", "json")
	var rep jsonReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
		t.Fatalf("wal status: %d %v %s", r.code, err, r.stderr)
	}
	cs := rep.Clusters[0].Consumers
	if len(cs) != 1 || cs[0].UndeliveredSamples == 0 || cs[0].UndeliveredSamples != rep.Clusters[0].Samples || cs[0].OldestUndeliveredAge <= 0 {
		t.Errorf("undelivered samples did not stay in the WAL: %s", r.stdout)
	}
}

// TestRunSecondSignal: a second SIGTERM during the flush stops at once, still with exit 0.
func TestRunSecondSignal(t *testing.T) {
	t.Parallel()
	src := newFederate(t)
	rcv := newReceiver(t, false)
	rcv.setBehaviour(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		<-r.Context().Done() // hangs until the client gives up
	})
	walDir := filepath.Join(t.TempDir(), "wal")
	p := start(t, nil, "run", "--id", "c1", "--from", src.URL, "--match", `{__name__="m"}`, "--to-upload", rcv.url,
		"--wal-dir", walDir, "--listen", "", "--log-format", "json", "--interval", "1s",
		"--batch-send-deadline", "100ms", "--flush-deadline", "10m")
	waitFor(t, "a request in flight", 15*time.Second, func() bool { return rcv.requests.Load() >= 1 })
	p.signal(syscall.SIGTERM)
	p.waitLog("draining: scraping stopped, flushing while requests succeed until the flush deadline; a second signal stops at once", 10*time.Second, nil)
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d after two signals", code)
	}
	if _, err := wal.ReadPosition(filepath.Join(walDir, "c1"), endpointName(t, rcv.url)); err != nil {
		t.Errorf("no position committed: %v", err)
	}
}

// TestReloadConfigFile: a reload re-reads the config file: source settings apply, restart-only
// flags are kept with a warning, endpoint changes and bad keys are refused with the reason.
func TestReloadConfigFile(t *testing.T) {
	t.Parallel()
	src := newFederate(t)
	rcv := newReceiver(t, false)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "collector.yaml")
	body := func(extra string) string {
		return fmt.Sprintf("flags:\n  id: c1\n  from: %s\n  to-upload: %s\n  interval: 1s\n  batch-send-deadline: 100ms\n  wal-dir: %s\n  web.enable-lifecycle: true\n%s",
			src.URL, rcv.url, filepath.Join(dir, "wal"), extra)
	}
	writeFile(t, cfg, body("  match: '{__name__=\"metric_a\"}'\n  max-shards: 5\n"))
	p := start(t, nil, "run", "--config", cfg, "--listen", "127.0.0.1:0", "--log-format", "json")
	base := "http://" + p.listenAddr()
	waitFor(t, "metric_a at the receiver", 15*time.Second, func() bool { return countName(rcv, "metric_a") >= 1 })

	writeFile(t, cfg, body("  match: '{__name__=\"metric_b\"}'\n  max-shards: 6\n"))
	if code, body := httpDo(t, http.MethodPost, base+"/-/reload"); code != http.StatusOK {
		t.Fatalf("reload: %d %q", code, body)
	}
	p.waitLog("reload: these flags changed but need a restart; their running values are kept", 5*time.Second, func(l map[string]any) bool {
		return l["flags"] == "--max-shards"
	})
	waitFor(t, "metric_b at the receiver", 15*time.Second, func() bool { return countName(rcv, "metric_b") >= 1 })

	for _, tc := range []struct {
		name, extra, want string
	}{
		{"endpoint added", "remote_write:\n  - {name: other, url: 'http://127.0.0.1:1/w'}\n", "reload adds other: restart to add, remove or change endpoints"},
		{"unknown flag", "  intervall: 2s\n", "flags.intervall (line 9): collector run has no flag --intervall"},
		{"bad value", "  match: 'up{'\n", `--match "up{"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, cfg, body(tc.extra))
			code, body := httpDo(t, http.MethodPost, base+"/-/reload")
			if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
				t.Errorf("reload: %d %q, want 400 with %q", code, body, tc.want)
			}
		})
	}
	n := countName(rcv, "metric_b")
	waitFor(t, "metric_b still arriving", 15*time.Second, func() bool { return countName(rcv, "metric_b") > n })
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestRunPortClash: a --listen port that is taken ends the start-up with exit code 1 before the
// WAL directory is created.
func TestRunPortClash(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	walDir := filepath.Join(t.TempDir(), "wal")
	r := runCmd(t, nil, "run", "--id", "c1", "--to-upload", "http://127.0.0.1:1/w", "--wal-dir", walDir, "--listen", ln.Addr().String())
	if r.code != 1 || !strings.Contains(r.stderr, "listen on "+ln.Addr().String()) {
		t.Fatalf("exit code %d, stderr %q; want 1 and the address", r.code, r.stderr)
	}
	if _, err := os.Stat(walDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("wal directory touched: %v", err)
	}
}

// TestRunSignalDuringStartUp: a SIGTERM while the start-up is blocked (here reading a config file
// that is a FIFO nobody writes; in production a WAL repair or a slow volume) ends the process at
// once with exit code 0, without running.
func TestRunSignalDuringStartUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(dir, "wal")
	p := start(t, nil, "run", "--config", fifo, "--id", "c1", "--to-upload", "http://127.0.0.1:1/w",
		"--wal-dir", walDir, "--listen", "", "--log-format", "json")
	// A writer can open the FIFO only once the start-up has it open for reading; it then waits
	// for data that never comes.
	var w *os.File
	waitFor(t, "the start-up reading the config file", 20*time.Second, func() bool {
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		w = f
		return err == nil
	})
	defer w.Close()
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM during the start-up", code)
	}
	if log := p.logText(); !strings.Contains(log, "terminated during the start-up: stopped before running") {
		t.Fatalf("stderr %q", log)
	}
	if _, err := os.Stat(walDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the wal was opened: %v", err)
	}
}

// countingBucket is a real bucket whose closes are counted: the narrowest seam there is, as
// closing a FILESYSTEM bucket has no effect anyone could see.
type countingBucket struct {
	backfill.Bucket
	closes *atomic.Int64
}

func (b countingBucket) Close() error {
	b.closes.Add(1)
	return b.Bucket.Close()
}

// TestRunClosesBackfillBucket: once `run` has opened its backfill bucket, it closes it exactly
// once on every way out: a start-up that fails later (the listen address is taken, the WAL
// directory cannot be opened) and a run stopped by SIGTERM, after the agent has stopped.
func TestRunClosesBackfillBucket(t *testing.T) {
	t.Parallel()
	src := newFederate(t)
	rcv := newReceiver(t, false)
	conf := filepath.Join(t.TempDir(), "bucket.yml")
	writeFile(t, conf, "type: FILESYSTEM\nconfig:\n  directory: "+t.TempDir()+"\n")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	notDir := filepath.Join(t.TempDir(), "file")
	writeFile(t, notDir, "not a directory\n")

	// runIn starts the run command in this process with the signals of sigs and its log in log;
	// it returns a wait for the outcome and the count of bucket closes so far.
	type outcome struct {
		err    error
		opens  int64
		closes int64
	}
	runIn := func(t *testing.T, sigs <-chan os.Signal, log *bytes.Buffer, mu *sync.Mutex, args ...string) (func() outcome, *atomic.Int64) {
		var opens, closes atomic.Int64
		open := func(path string) (backfill.Bucket, error) {
			bkt, err := openBucket(path)
			if err != nil {
				return nil, err
			}
			opens.Add(1)
			return countingBucket{Bucket: bkt, closes: &closes}, nil
		}
		app := &cli.App{
			Name: "collector", Flags: runFlags(), DisableSliceFlagSeparator: true,
			Writer: io.Discard, ErrWriter: lockedWriter{mu: mu, b: log},
			Action: func(c *cli.Context) error { return runAgent(c, sigs, open) },
		}
		base := []string{"collector", "--id", "c1", "--from", src.URL, "--to-upload", rcv.url,
			"--backfill.objstore-config-file", conf, "--flush-deadline", "5s"}
		done := make(chan error, 1)
		go func() { done <- app.Run(append(base, args...)) }()
		return func() outcome {
			select {
			case err := <-done:
				return outcome{err: err, opens: opens.Load(), closes: closes.Load()}
			case <-time.After(time.Minute):
				t.Fatal("run did not return within a minute")
				return outcome{}
			}
		}, &closes
	}

	for _, tc := range []struct {
		name string
		args []string
		want string // in the start-up error
	}{
		{"listen address taken", []string{"--wal-dir", t.TempDir(), "--listen", taken.Addr().String()}, "listen on " + taken.Addr().String()},
		{"wal directory unusable", []string{"--wal-dir", notDir, "--listen", "127.0.0.1:0"}, notDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var log bytes.Buffer
			wait, _ := runIn(t, make(chan os.Signal), &log, &mu, tc.args...)
			o := wait()
			if o.err == nil || !strings.Contains(o.err.Error(), tc.want) {
				t.Fatalf("start-up error %v, want one naming %q", o.err, tc.want)
			}
			if o.opens != 1 || o.closes != 1 {
				t.Fatalf("bucket opened %d times, closed %d times; want 1 and 1", o.opens, o.closes)
			}
		})
	}

	t.Run("stopped by SIGTERM", func(t *testing.T) {
		var mu sync.Mutex
		var log bytes.Buffer
		sigs := make(chan os.Signal, 1)
		wait, closes := runIn(t, sigs, &log, &mu, "--wal-dir", t.TempDir(), "--listen", "127.0.0.1:0")
		// The agent logs this from Run: the start-up is over and runAgent holds the agent.
		waitFor(t, "the agent running", 30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return strings.Contains(log.String(), "http server listening")
		})
		if n := closes.Load(); n != 0 {
			t.Fatalf("bucket closed %d times while the agent runs", n)
		}
		sigs <- syscall.SIGTERM
		o := wait()
		if o.err != nil {
			t.Fatalf("run after SIGTERM: %v", o.err)
		}
		if o.opens != 1 || o.closes != 1 {
			t.Fatalf("bucket opened %d times, closed %d times; want 1 and 1", o.opens, o.closes)
		}
	})
}
