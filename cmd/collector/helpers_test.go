package main

// Helpers of the command's tests: the binary built once, a running process with its logs, a
// federate source, and a remote-write receiver over a real TSDB (the approach of
// queue/receiver_test.go, copied: test files are not imported across packages).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/sirupsen/logrus"

	"github.com/collector-dev/collector/wal"
)

// binary is the collector built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "collector-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "collector")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v0.0.0-test", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build collector:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the environment of the process without COLLECTOR_ variables and the seeds' FROM,
// FROM_QUERY and TO, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(kv, "COLLECTOR_") && name != "FROM" && name != "FROM_QUERY" && name != "TO" {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// result is the outcome of a command that ran to its end.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs the binary to its end (at most a minute).
func runCmd(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runBin(t, binary, env, args...)
}

// runBin is runCmd with another path to the binary (a symlink under a seed's name).
func runBin(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run collector %v: %v", args, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// proc is a running collector process.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{}
	code int

	mu     sync.Mutex
	stderr bytes.Buffer // guarded by mu
	stdout bytes.Buffer // guarded by mu
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// start runs the binary in the background; the test's cleanup kills it if it still runs.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startBin(t, binary, env, args...)
}

// startBin is start with another path to the binary (a symlink under a seed's name).
func startBin(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = cleanEnv(env...)
	p.cmd.Stderr = lockedWriter{&p.mu, &p.stderr}
	p.cmd.Stdout = lockedWriter{&p.mu, &p.stdout}
	// A panic or go test's -timeout skips the cleanups: the kernel kills the child instead (the
	// runtime keeps the starting thread for the life of the test binary).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = -int(ws.Signal())
			}
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("stderr of collector %v:\n%s", args, p.logText())
		}
	})
	return p
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait returns the exit code once the process ended, failing the test after timeout.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("collector still running after %v", timeout)
		return 0
	}
}

// logLines returns the JSON log lines written so far (lines that are not JSON are skipped).
func (p *proc) logLines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.logText()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitLog waits for a JSON log line with message msg for which match (may be nil) holds.
func (p *proc) waitLog(msg string, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	p.t.Helper()
	var found map[string]any
	waitFor(p.t, "log line "+msg, timeout, func() bool {
		for _, l := range p.logLines() {
			if l["msg"] == msg && (match == nil || match(l)) {
				found = l
				return true
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("collector exited with %d while waiting for %q:\n%s", p.code, msg, p.logText())
		default:
		}
		return false
	})
	return found
}

// listenAddr waits for the address of the HTTP server.
func (p *proc) listenAddr() string {
	p.t.Helper()
	l := p.waitLog("http server listening", 20*time.Second, nil)
	return l["listen"].(string)
}

// waitFor polls cond until it holds or the timeout passes.
// reopenWAL opens a WAL that the test closed a moment ago. The lock is a flock on a descriptor that a
// child process forked by a parallel test holds for the instant between its fork and its exec
// (close-on-exec), so the lock just released can still be held for that instant: wait for it, as a
// second agent would.
func reopenWAL(t *testing.T, logger logrus.FieldLogger, base, id string, opts wal.Options) *wal.WAL {
	t.Helper()
	var w *wal.WAL
	waitFor(t, "the WAL lock", 20*time.Second, func() bool {
		var err error
		w, err = wal.Open(logger, prometheus.NewRegistry(), base, id, opts)
		if err != nil && !errors.Is(err, wal.ErrLocked) {
			t.Fatalf("open wal: %v", err)
		}
		return err == nil
	})
	return w
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-poll.C:
		}
	}
}

// federate is a /federate endpoint: for every match[] selector naming a metric
// ({__name__="x"}) it returns the series x{instance="i1"} and x{instance="i2"}, at a timestamp
// that advances by one second per request. It remembers what it served.
type federate struct {
	*httptest.Server
	base     int64
	requests atomic.Int64

	mu     sync.Mutex
	served map[string]bool // name@timestamp; guarded by mu
}

var metricName = regexp.MustCompile(`__name__="([a-zA-Z_:][a-zA-Z0-9_:]*)"`)

func newFederate(t *testing.T) *federate {
	t.Helper()
	f := &federate{base: time.Now().Add(-time.Minute).UnixMilli(), served: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/federate" {
			http.NotFound(w, r)
			return
		}
		n := f.requests.Add(1)
		ts := f.base + n*1000
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		var b strings.Builder
		f.mu.Lock()
		for _, m := range r.URL.Query()["match[]"] {
			sm := metricName.FindStringSubmatch(m)
			if sm == nil {
				continue
			}
			for _, inst := range []string{"i1", "i2"} {
				fmt.Fprintf(&b, "%s{instance=%q} %d %d\n", sm[1], inst, n, ts)
			}
			f.served[sm[1]+"@"+fmt.Sprint(ts)] = true
		}
		f.mu.Unlock()
		io.WriteString(w, b.String())
	}))
	t.Cleanup(f.Close)
	return f
}

// servedSet returns name@timestamp of every series served (both instances share it).
func (f *federate) servedSet() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]bool, len(f.served))
	for k := range f.served {
		out[k] = true
	}
	return out
}

// receiver is a remote-write endpoint storing into a TSDB.
type receiver struct {
	t    *testing.T
	db   *tsdb.DB
	url  string
	next http.Handler
	srv  *http.Server

	requests atomic.Int64
	// behaviour, when set, is called instead of the write handler; it calls next to store.
	behaviour atomic.Pointer[func(w http.ResponseWriter, r *http.Request, next http.Handler)]
}

// newReceiver starts a receiver. ooo enables an out-of-order window of a day: the TSDB then
// accepts samples sent again (after a crash) that are older than a series' newest one.
func newReceiver(t *testing.T, ooo bool) *receiver {
	t.Helper()
	opts := tsdb.DefaultOptions()
	if ooo {
		opts.OutOfOrderTimeWindow = (24 * time.Hour).Milliseconds()
	}
	logger := slog.New(slog.DiscardHandler)
	db, err := tsdb.Open(t.TempDir(), logger, nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, db: db,
		next: remote.NewWriteHandler(logger, nil, db, remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, false)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.url = "http://" + ln.Addr().String() + "/api/v1/write"
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		if b := r.behaviour.Load(); b != nil {
			(*b)(w, req, r.next)
			return
		}
		r.next.ServeHTTP(w, req)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = r.srv.Close()
		_ = db.Close()
	})
	return r
}

func (r *receiver) setBehaviour(fn func(w http.ResponseWriter, r *http.Request, next http.Handler)) {
	r.behaviour.Store(&fn)
}

// set returns every stored sample as series@timestamp, the series being its label set.
func (r *receiver) set() map[string]bool {
	r.t.Helper()
	q, err := r.db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		r.t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	out := map[string]bool{}
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			ts, _ := it.At()
			out[fmt.Sprintf("%s@%d", s.Labels().String(), ts)] = true
		}
		if err := it.Err(); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := ss.Err(); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// nameSet returns the stored samples as name@timestamp.
func (r *receiver) nameSet() map[string]bool {
	out := map[string]bool{}
	for k := range r.set() {
		name := k[strings.Index(k, `__name__="`)+len(`__name__="`):]
		name = name[:strings.Index(name, `"`)]
		out[name+"@"+k[strings.LastIndex(k, "@")+1:]] = true
	}
	return out
}

// missing returns the keys of want that got lacks, sorted (at most 10).
func missing(want, got map[string]bool) []string {
	var out []string
	for k := range want {
		if !got[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return out
}

// httpDo sends a request and returns the status and body.
func httpDo(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
