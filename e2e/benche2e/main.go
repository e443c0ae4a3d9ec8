// Command benche2e runs collector and Prometheus in agent mode one after the other on the same
// workload and prints what each costs: CPU-seconds per million samples delivered in steady state,
// peak RSS, and bytes per sample on the wire, with the ratio of the two.
//
// The workload is a generated /federate source (OpenShift-like labels, gzipped, new timestamps
// and values every interval) and a remote-write receiver on loopback that counts samples and
// wire bytes; both run inside this process, whose CPU is not counted. Each agent scrapes the
// source with match[]={__name__=~".+"} and honor_labels and remote-writes to the receiver.
//
// Steady state starts at the first quiet point after the first scrape was delivered whole (the
// cold path, which declares every series, is reported apart) and ends at the first quiet point
// after -duration. A quiet point is a moment when every sample of every slot served so far has
// reached the receiver and no response is being written. The CPU time of the agent (utime+stime
// of /proc/PID/stat) between the two, divided by the samples received between them, is the
// figure; peak RSS is VmHWM of /proc/PID/status at the end of steady state.
//
// The agents inherit the environment, GOMEMLIMIT and GOMAXPROCS included (the harness ignores
// both for itself).
//
// With -outage the receiver then answers 503 for that long and the harness waits for the
// backlog to drain, reporting RSS and VmHWM at the end of the drain.
//
// `make bench-e2e SERIES=200000 DURATION=3m` runs it; see the Makefile.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// config is the harness' command line.
type config struct {
	series     int
	interval   time.Duration
	duration   time.Duration
	outage     time.Duration
	agents     string
	collector  string
	prometheus string
	workDir    string
	pprofDir   string
	gzip       bool
	gzipLevel  int
	rate       float64 // source bytes per second; 0: unpaced
	extraArgs  string
	coldLimit  time.Duration
}

func main() {
	var c config
	flag.IntVar(&c.series, "series", 200000, "series in the federate body (a multiple of 10)")
	flag.DurationVar(&c.interval, "interval", 15*time.Second, "scrape interval of the agents; the source's values and timestamps move every interval")
	flag.DurationVar(&c.duration, "duration", 3*time.Minute, "length of the steady-state window of each agent")
	flag.DurationVar(&c.outage, "outage", 0, "after steady state, the receiver answers 503 for this long, then the backlog drains (0: no outage)")
	flag.StringVar(&c.agents, "agents", "collector,prometheus", "agents to run, in order (collector, prometheus)")
	flag.StringVar(&c.collector, "collector", "bin/collector", "collector binary")
	flag.StringVar(&c.prometheus, "prometheus", "/usr/bin/prometheus", "Prometheus binary (2.x, run with --enable-feature=agent)")
	flag.StringVar(&c.workDir, "workdir", "", "directory for WALs, configurations and logs (default: a temporary directory, removed at the end unless the run failed)")
	flag.StringVar(&c.pprofDir, "pprof", "", "if set, save a CPU profile of the steady-state window and heap profiles at the end of the cold start and of the window of each agent there (with -outage also at the end of the outage and of the drain)")
	flag.BoolVar(&c.gzip, "source-gzip", true, "the source gzips its body when the request accepts it")
	flag.IntVar(&c.gzipLevel, "source-gzip-level", 6, "gzip level of the source (6: the default level of Prometheus' compression handler)")
	flag.Float64Var(&c.rate, "source-rate", 0, "MB per second the source writes a body at, in 4 KiB chunked pieces as Prometheus serves /federate (Prometheus 2.42 served 85 MB of 200k series at about 35 on a 2-core VM); 0: the whole body in one write, as fast as the socket takes it")
	flag.StringVar(&c.extraArgs, "collector-args", "", "more collector flags, separated by spaces")
	flag.DurationVar(&c.coldLimit, "cold-timeout", 10*time.Minute, "how long the first scrape may take to be delivered")
	flag.Parse()
	// GOMEMLIMIT in the environment is meant for the agents, which inherit it; the harness holds
	// the bodies of a million series and is not measured.
	debug.SetMemoryLimit(math.MaxInt64)
	// So is GOMAXPROCS: the harness renders the source's bodies on every core.
	runtime.SetDefaultGOMAXPROCS()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "benche2e:", err)
		os.Exit(1)
	}
}

func run(c config) (err error) {
	if c.series <= 0 || c.series%10 != 0 {
		return fmt.Errorf("-series %d: want a positive multiple of 10", c.series)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.workDir == "" {
		d, mkErr := os.MkdirTemp("", "benche2e-")
		if mkErr != nil {
			return fmt.Errorf("work directory: %w", mkErr)
		}
		// A failed run keeps the agents' logs that its error names.
		defer func() {
			if err == nil {
				os.RemoveAll(d)
			} else {
				fmt.Fprintf(os.Stderr, "benche2e: kept %s (logs, WALs) after the error\n", d)
			}
		}()
		c.workDir = d
	}
	if c.pprofDir != "" {
		if err := os.MkdirAll(c.pprofDir, 0o755); err != nil {
			return fmt.Errorf("pprof directory: %w", err)
		}
	}
	rate := "whole bodies in one write"
	if c.rate > 0 {
		rate = fmt.Sprintf("%g MB/s in 4 KiB pieces", c.rate)
	}
	fmt.Printf("benche2e: %d series every %s, steady state %s, source gzip %v, %s, GOMEMLIMIT=%q, GOMAXPROCS=%q, %d CPUs\n",
		c.series, c.interval, c.duration, c.gzip, rate, os.Getenv("GOMEMLIMIT"), os.Getenv("GOMAXPROCS"), runtime.NumCPU())
	src := newSource(c.series, c.interval, c.gzip, c.gzipLevel, c.rate*1e6)
	srcCtx, stopSrc := context.WithCancel(ctx)
	defer stopSrc()
	go src.run(srcCtx)
	src.body(time.Now().Truncate(c.interval).UnixMilli()) // rendered before the first agent starts
	srcURL, closeSrc, err := serve(src)
	if err != nil {
		return err
	}
	defer closeSrc()
	var results []result
	for _, name := range strings.Split(c.agents, ",") {
		a, err := newAgent(strings.TrimSpace(name), c)
		if err != nil {
			return err
		}
		src.reset()
		r, err := measure(ctx, c, a, src, srcURL)
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		results = append(results, r)
		fmt.Printf("%s: %s\n", a.name, r.line())
	}
	src.mu.Lock()
	if src.rendered > 0 {
		fmt.Printf("source: %d bodies of %.1f MiB plain, %.1f MiB gzipped; gzip took %.2f s per body\n", src.rendered,
			float64(len(firstBody(src).plain))/(1<<20), float64(len(firstBody(src).gz))/(1<<20), src.gzipCPU.Seconds()/float64(src.rendered))
	}
	src.mu.Unlock()
	fmt.Println()
	printTable(os.Stdout, c, results)
	return nil
}

// firstBody returns one of the bodies the source holds. The caller holds src.mu.
func firstBody(src *source) *slotBody {
	for _, b := range src.bodies {
		select {
		case <-b.ready:
			return b
		default:
		}
	}
	return &slotBody{}
}

// serve serves h on a loopback port and returns its base URL.
func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// agent is one process under measurement.
type agent struct {
	name  string
	start func(dir, srcURL, writeURL string) (*exec.Cmd, string, error) // the command and its base URL (/debug/pprof)
}

func newAgent(name string, c config) (agent, error) {
	switch name {
	case "collector":
		return agent{name: name, start: func(dir, srcURL, writeURL string) (*exec.Cmd, string, error) {
			port, err := freePort()
			if err != nil {
				return nil, "", err
			}
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			args := []string{"run", "--id", "bench", "--wal-dir", filepath.Join(dir, "wal"), "--listen", addr,
				"--from", srcURL, "--match", `{__name__=~".+"}`, "--to-upload", writeURL,
				"--interval", c.interval.String(), "--log-level", "info", "--enable-pprof"}
			args = append(args, strings.Fields(c.extraArgs)...)
			return exec.Command(c.collector, args...), "http://" + addr, nil
		}}, nil
	case "prometheus":
		return agent{name: name, start: func(dir, srcURL, writeURL string) (*exec.Cmd, string, error) {
			port, err := freePort()
			if err != nil {
				return nil, "", err
			}
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			conf := filepath.Join(dir, "prometheus.yml")
			text := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
scrape_configs:
  - job_name: federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{__name__=~".+"}']
    static_configs:
      - targets: [%[2]q]
remote_write:
  - url: %[3]q
`, c.interval, strings.TrimPrefix(srcURL, "http://"), writeURL)
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				return nil, "", fmt.Errorf("write %s: %w", conf, err)
			}
			return exec.Command(c.prometheus, "--enable-feature=agent", "--config.file", conf,
				"--storage.agent.path", filepath.Join(dir, "data"), "--web.listen-address", addr), "http://" + addr, nil
		}}, nil
	}
	return agent{}, fmt.Errorf("unknown agent %q: want collector or prometheus", name)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// result is what the harness measured of one agent.
type result struct {
	agent        string
	coldCPU      float64 // CPU-s from start to the first quiet point after the first scrape
	coldWall     time.Duration
	cpu          float64 // CPU-s in steady state
	sysCPU       float64 // of cpu, the kernel's (stime)
	samples      int64   // received in steady state
	wireBytes    int64   // received in steady state
	window       time.Duration
	scrapes      int // slots served in steady state
	peakRSS      int64
	endRSS       int64
	coldPeakRSS  int64  // VmHWM at the end of the cold start
	mem          string // the Go agent's memory at the end of steady state (goMemory), if it has go_memstats
	behind       bool   // the end of steady state was not a quiet point: the agent fell behind
	v2           bool   // the agent sent remote-write 2.0
	drainPeakRSS int64
	drainEndRSS  int64
	drainWall    time.Duration
	lost         int64 // samples of whole scrapes never delivered before steady state
	seriesN      int   // series per scrape
}

func (r result) cpuPerMillion() float64 {
	if r.samples == 0 {
		return 0
	}
	return r.cpu / (float64(r.samples) / 1e6)
}

// sysShare is the percentage of the window's CPU time spent in the kernel (stime): socket reads
// and writes, the WAL's writes and fsyncs, the scheduler's waits.
func (r result) sysShare() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return 100 * r.sysCPU / r.cpu
}

func (r result) bytesPerSample() float64 {
	if r.samples == 0 {
		return 0
	}
	return float64(r.wireBytes) / float64(r.samples)
}

func (r result) line() string {
	s := fmt.Sprintf("%.3f CPU-s per 1M samples (%.1f CPU-s, %.0f %% of it in the kernel, %d samples, %d scrapes in %s), peak RSS %.0f MiB, RSS %.0f MiB, %.2f bytes/sample, cold start %.1f CPU-s in %s",
		r.cpuPerMillion(), r.cpu, r.sysShare(), r.samples, r.scrapes, r.window.Round(time.Second), mib(r.peakRSS), mib(r.endRSS), r.bytesPerSample(), r.coldCPU, r.coldWall.Round(time.Second))
	s += fmt.Sprintf(", peak RSS at the end of the cold start %.0f MiB", mib(r.coldPeakRSS))
	if r.mem != "" {
		s += "; " + r.mem
	}
	if r.behind {
		s += " (BEHIND: the end of the window was not a quiet point)"
	}
	if r.lost > 0 {
		s += fmt.Sprintf("; LOST %d samples (%d scrapes) before steady state: never delivered, or the agent stays that far behind", r.lost, r.lost/int64(r.seriesN))
	}
	if r.drainWall > 0 {
		s += fmt.Sprintf("; outage drained in %s, peak RSS %.0f MiB, RSS at the end %.0f MiB", r.drainWall.Round(time.Second), mib(r.drainPeakRSS), mib(r.drainEndRSS))
	}
	return s
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// measure runs one agent through the workload.
func measure(ctx context.Context, c config, a agent, src *source, srcURL string) (result, error) {
	r := result{agent: a.name, seriesN: c.series}
	dir := filepath.Join(c.workDir, a.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, fmt.Errorf("directory: %w", err)
	}
	rcv := &receiver{}
	rcvURL, closeRcv, err := serve(rcv)
	if err != nil {
		return r, err
	}
	defer closeRcv()
	cmd, base, err := a.start(dir, srcURL, rcvURL+"/api/v1/write")
	if err != nil {
		return r, err
	}
	logf, err := os.Create(filepath.Join(dir, a.name+".log"))
	if err != nil {
		return r, fmt.Errorf("log: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer stopProcess(cmd, done)
	pid := cmd.Process.Pid
	n := int64(c.series)

	// quiet reports whether every sample of every slot served so far was received, at least
	// minSlots slots were served, and no response is being written.
	quiet := func(minSlots int) (bool, int, counts) {
		slots, inFlight := src.servedSlots()
		cs := rcv.snapshot()
		return slots >= minSlots && inFlight == 0 && cs.Samples+r.lost >= int64(slots)*n, slots, cs
	}
	wait := func(what string, timeout time.Duration, cond func() bool) error {
		deadline := time.Now().Add(timeout)
		for !cond() {
			select {
			case err := <-done:
				return fmt.Errorf("exited while waiting for %s: %v (log: %s)", what, err, logf.Name())
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not within %s (log: %s)", what, timeout, logf.Name())
			}
		}
		return nil
	}

	var slots0 int
	var c0 counts
	lost := lostScrapes{n: n, interval: c.interval}
	if err := wait("the first scrape", c.coldLimit, func() bool {
		var ok bool
		ok, slots0, c0 = quiet(1)
		if ok {
			return true
		}
		_, inFlight := src.servedSlots()
		if l := lost.observe(slots0, inFlight, c0.Samples, time.Now()); l > 0 {
			r.lost = l
			ok, slots0, c0 = quiet(1)
		}
		return ok
	}); err != nil {
		return r, err
	}
	u0, err := readUsage(pid)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	r.coldCPU, r.coldWall, r.coldPeakRSS = u0.CPUSeconds, t0.Sub(started), u0.PeakRSS
	var profDone chan struct{}
	if c.pprofDir != "" {
		c.heapProfile(base, a.name, "cold")
		profDone = make(chan struct{})
		go func() {
			defer close(profDone)
			secs := int(c.duration.Seconds())
			if err := fetch(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), filepath.Join(c.pprofDir, fmt.Sprintf("%s-%d-cpu.pprof", a.name, c.series)), c.duration+time.Minute); err != nil {
				fmt.Fprintf(os.Stderr, "benche2e: %s: cpu profile: %v\n", a.name, err)
			}
		}()
	}
	select {
	case <-time.After(c.duration):
	case <-ctx.Done():
		return r, ctx.Err()
	case err := <-done:
		return r, fmt.Errorf("exited: %v (log: %s)", err, logf.Name())
	}
	var slots1 int
	var c1 counts
	err = wait("a quiet point after the window", 2*c.interval+time.Minute, func() bool {
		var ok bool
		ok, slots1, c1 = quiet(slots0 + 1)
		return ok
	})
	if errors.Is(err, context.Canceled) {
		return r, err
	}
	r.behind = err != nil
	u1, err := readUsage(pid)
	if err != nil {
		return r, err
	}
	r.window = time.Since(t0)
	r.cpu = u1.CPUSeconds - u0.CPUSeconds
	r.sysCPU = u1.SysSeconds - u0.SysSeconds
	r.samples = c1.Samples - c0.Samples
	r.wireBytes = c1.WireBytes - c0.WireBytes
	r.scrapes = slots1 - slots0
	r.peakRSS, r.endRSS = u1.PeakRSS, u1.RSS
	r.v2 = c1.V2 > 0
	if m, err := readGoMemory(base + "/metrics"); err == nil {
		r.mem = m.String()
	}
	if c.pprofDir != "" {
		if err := fetch(base+"/debug/pprof/heap", filepath.Join(c.pprofDir, fmt.Sprintf("%s-%d-heap.pprof", a.name, c.series)), time.Minute); err != nil {
			fmt.Fprintf(os.Stderr, "benche2e: %s: heap profile: %v\n", a.name, err)
		}
		<-profDone
	}
	if c.outage > 0 {
		rcv.down.Store(true)
		select {
		case <-time.After(c.outage):
		case <-ctx.Done():
			return r, ctx.Err()
		}
		c.heapProfile(base, a.name, "outage")
		rcv.down.Store(false)
		t := time.Now()
		if err := wait("the backlog to drain", c.outage+10*time.Minute, func() bool {
			ok, _, _ := quiet(0)
			return ok
		}); err != nil {
			return r, err
		}
		r.drainWall = time.Since(t)
		c.heapProfile(base, a.name, "drained")
		u, err := readUsage(pid)
		if err != nil {
			return r, err
		}
		r.drainPeakRSS, r.drainEndRSS = u.PeakRSS, u.RSS
	}
	return r, nil
}

// heapProfile saves a heap profile of the agent at base as <agent>-<series>-<when>-heap.pprof in
// the -pprof directory, if there is one.
func (c config) heapProfile(base, agent, when string) {
	if c.pprofDir == "" {
		return
	}
	path := filepath.Join(c.pprofDir, fmt.Sprintf("%s-%d-%s-heap.pprof", agent, c.series, when))
	if err := fetch(base+"/debug/pprof/heap", path, time.Minute); err != nil {
		fmt.Fprintf(os.Stderr, "benche2e: %s: heap profile %s: %v\n", agent, when, err)
	}
}

// fetch saves the body of url to path.
func fetch(url, path string, timeout time.Duration) error {
	cl := &http.Client{Timeout: timeout}
	resp, err := cl.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// stopProcess sends SIGTERM and, after a minute, SIGKILL; it waits for the exit.
func stopProcess(cmd *exec.Cmd, done chan error) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
	}
}

// printTable prints the results as a Markdown table, with the ratios of the first agent to
// the others.
func printTable(w io.Writer, c config, rs []result) {
	drain, drainSep := "", ""
	if c.outage > 0 {
		drain, drainSep = fmt.Sprintf(" after a %s outage: peak RSS MiB | RSS MiB at the end of the drain |", c.outage), "---|---|"
	}
	fmt.Fprintf(w, "| %d series / %s | CPU-s per 1M samples | peak RSS MiB | bytes/sample on the wire | cold start CPU-s |%s\n", c.series, c.interval, drain)
	fmt.Fprintln(w, "|---|---|---|---|---|"+drainSep)
	for _, r := range rs {
		name := r.agent
		if r.v2 {
			name += " (RW 2.0)"
		}
		if r.behind {
			name += " (behind)"
		}
		fmt.Fprintf(w, "| %s | %.3f | %.0f | %.2f | %.1f |", name, r.cpuPerMillion(), mib(r.peakRSS), r.bytesPerSample(), r.coldCPU)
		if c.outage > 0 {
			fmt.Fprintf(w, " %.0f | %.0f |", mib(r.drainPeakRSS), mib(r.drainEndRSS))
		}
		fmt.Fprintln(w)
	}
	for _, r := range rs[min(1, len(rs)):] {
		a := rs[0]
		fmt.Fprintf(w, "| ratio %s/%s | %.2f | %.2f | %.2f | %.2f |", a.agent, r.agent,
			ratio(a.cpuPerMillion(), r.cpuPerMillion()), ratio(mib(a.peakRSS), mib(r.peakRSS)), ratio(a.bytesPerSample(), r.bytesPerSample()), ratio(a.coldCPU, r.coldCPU))
		if c.outage > 0 {
			fmt.Fprintf(w, " %.2f | %.2f |", ratio(mib(a.drainPeakRSS), mib(r.drainPeakRSS)), ratio(mib(a.drainEndRSS), mib(r.drainEndRSS)))
		}
		fmt.Fprintln(w)
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// lostScrapes finds the scrapes an agent drops before it settles. The Prometheus agent's
// remote-write WAL watcher skips samples older than its own start, so a scrape written before it
// finished replaying is never sent, and the agent never reaches a quiet point. When for three
// intervals the same whole number of scrapes stays missing while the agent delivers at least two
// later scrapes in full, those scrapes are lost: the harness counts them and says so.
type lostScrapes struct {
	n        int64 // samples per scrape
	interval time.Duration

	gap   int64 // samples missing at the last observation that was a whole number of scrapes
	base  int64 // samples received when gap was first seen
	since time.Time
}

// observe takes the slots served, the responses being written and the samples received; it
// returns the samples lost once the rule holds, else 0.
func (l *lostScrapes) observe(slots, inFlight int, received int64, now time.Time) int64 {
	if inFlight != 0 || slots < 2 {
		return 0
	}
	gap := int64(slots)*l.n - received
	switch {
	case gap <= 0 || gap%l.n != 0:
		return 0 // nothing missing, or a scrape being delivered
	case gap != l.gap:
		l.gap, l.base, l.since = gap, received, now
		return 0
	case now.Sub(l.since) < 3*l.interval || received-l.base < 2*l.n:
		return 0
	}
	return gap
}
