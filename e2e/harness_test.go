package e2e

import (
	"bytes"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Deadlines of the harness.
const (
	// stopTimeout is how long a process has to exit after SIGTERM before it gets SIGKILL.
	stopTimeout = 15 * time.Second
	// readyTimeout bounds the wait for a started process to answer.
	readyTimeout = 60 * time.Second
	// pollPeriod is the period of a condition poll.
	pollPeriod = 100 * time.Millisecond
	// logTailLines is how much of a process' log a failed test prints.
	logTailLines = 60
)

// process is one child process of a test: its output goes to a log file (appended across
// restarts) whose tail is printed when the test fails, and t.Cleanup stops it by PID.
type process struct {
	t    testing.TB
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
	err  error         // the exit status; read after done is closed
}

// logTails registers, once per log file, a cleanup that prints the file's tail if the test failed.
type logTails struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (l *logTails) register(t testing.TB, name, path string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if l.seen[path] {
		return
	}
	l.seen[path] = true
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last %d lines of %s (%s) ---\n%s", logTailLines, name, path, tailFile(path, logTailLines))
		}
	})
}

// startProcess starts bin with args, its output appended to logPath. tails may be nil.
func startProcess(t testing.TB, tails *logTails, name, logPath, bin string, args ...string) *process {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open log of %s: %v", name, err)
	}
	fmt.Fprintf(f, "=== %s: %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	if tails != nil {
		tails.register(t, name, logPath)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = orphanKill()
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{t: t, name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	// Runs before the log tail is printed (cleanups run last registered first).
	t.Cleanup(func() { p.stop(stopTimeout) })
	return p
}

// orphanKill makes the kernel kill a child when the test binary ends without stopping it (a
// panic, or go test's -timeout): its cleanups do not run then, and the child would keep its ports
// and CPU. The signal goes when the thread that started the child exits; the Go runtime keeps its
// threads for the life of the process (it ends one only under a goroutine that exits while locked
// to it, which these tests never start children from), so that is when the test binary ends.
func orphanKill() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }

// pid returns the process ID.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to end. It reports whether it ended, and its exit
// status.
func (p *process) wait(timeout time.Duration) (bool, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true, p.err
	case <-t.C:
		return false, nil
	}
}

// stop sends SIGTERM and, if the process has not exited after timeout, SIGKILL. It reports
// whether the process exited on SIGTERM in time, and its exit status.
func (p *process) stop(timeout time.Duration) (bool, error) {
	if p.exited() {
		return true, p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if ok, err := p.wait(timeout); ok {
		return true, err
	}
	p.t.Logf("%s (pid %d) still running %v after SIGTERM: SIGKILL", p.name, p.pid(), timeout)
	p.kill()
	return false, p.err
}

// kill sends SIGKILL and waits for the process to end.
func (p *process) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// tailFile returns the last n lines of the file at path.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePort returns a loopback port that was free a moment ago, never one it returned before, taken
// below the kernel's ephemeral range (net.ipv4.ip_local_port_range). Outside that range no
// outgoing connection of any process can take the port as its source port: a component killed
// and started again on its ports (a receiver, the collector) would otherwise find one held by a
// keep-alive connection that got it while the component was down, and never bind again. A
// process that fails to bind a port at its first start is started on other ports (see
// startPrometheus and thanosProc.firstStart).
func freePort(t testing.TB) int {
	t.Helper()
	lo, hi := portRange()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := lo + mathrand.IntN(hi-lo)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free loopback port in [%d, %d)", lo, hi)
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// portRange is the range freePort picks from: from 10000 to the first ephemeral port, read from
// /proc/sys/net/ipv4/ip_local_port_range (32768 when it cannot be read).
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var first, last int
	if _, err := fmt.Sscan(string(data), &first, &last); err == nil && first > lo+1000 {
		hi = first
	}
	return lo, hi
}

// eventually polls cond every pollPeriod until it returns nil or timeout passes; it then fails the
// test with the last error.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("%s: not within %v: %v", what, timeout, err)
	}
}

// eventuallyEvery is eventually with a period of its own, for conditions that are expensive to
// evaluate (a `collector wal status` process each time).
func eventuallyEvery(t testing.TB, timeout, period time.Duration, what string, cond func() error) {
	t.Helper()
	if err := pollEvery(timeout, period, cond); err != nil {
		t.Fatalf("%s: not within %v: %v", what, timeout, err)
	}
}

// poll is eventually without the test: it returns the last error of cond after timeout, or at
// once when a process it waits for has exited (errExited).
func poll(timeout time.Duration, cond func() error) error {
	return pollEvery(timeout, pollPeriod, cond)
}

// pollEvery is poll with a period of its own, for conditions that are expensive to evaluate.
func pollEvery(timeout, period time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var exited errExited
		if errors.As(err, &exited) || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// httpClient is the client of every check: short timeouts, no keep-alive surprises across
// restarts of the servers.
var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// waitHTTP waits until GET url answers 200, failing early when p exits.
func waitHTTP(t testing.TB, p *process, url string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, p.name+" ready at "+url, func() error {
		if p.exited() {
			return errExited{p.name, p.err}
		}
		resp, err := httpClient.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
}

type errExited struct {
	name string
	err  error
}

func (e errExited) Error() string { return fmt.Sprintf("%s exited: %v", e.name, e.err) }

// requirePrometheus returns the path of the prometheus binary, failing (never skipping) the test
// when there is none.
func requirePrometheus(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("the e2e tests need Debian's prometheus package (run make deps): %v", err)
	}
	return p
}

// testDir returns a fresh temporary directory below t.TempDir named name.
func testDir(t testing.TB, name string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

var errNotYet = errors.New("not yet")
