package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// The hub of the Thanos tests is Thanos itself: the binary tools/thanos/go.mod pins, built by
// `make thanos` into <root>/.cache/bin/thanos-<version> (or, when that is missing, by the first
// test that needs it, the same way), run as `thanos receive` (one process that ingests, or
// ingestors behind a router with a hashring), `thanos query` over their Store APIs and
// `thanos store` over a filesystem bucket. What the hub holds is read back through the query's
// HTTP API only.

const (
	// thanosReplicaLabel is the external label (--label) that tells the receivers apart; queries
	// deduplicate along it.
	thanosReplicaLabel = "receive_replica"
	// thanosTenantLabel is the label receive adds to every series of a tenant (its default
	// --receive.tenant-label-name).
	thanosTenantLabel = "tenant_id"
	// thanosBuildTimeout bounds the build of the binary when the tests have to do it: 18 minutes
	// were measured cold on 2 shared cores (README); go test's -timeout must allow it too.
	thanosBuildTimeout = 30 * time.Minute
)

// thanosBuild is the binary's path, found or built once per test process.
var thanosBuild struct {
	once sync.Once
	path string
	err  error
}

// requireThanos returns the path of the pinned thanos binary, building it first when it is not
// there (minutes cold: README); it fails, never skips, when that does not work.
func requireThanos(t testing.TB) string {
	t.Helper()
	thanosBuild.once.Do(func() { thanosBuild.path, thanosBuild.err = buildThanos() })
	if thanosBuild.err != nil {
		t.Fatalf("the thanos binary of the e2e tests: %v", thanosBuild.err)
	}
	return thanosBuild.path
}

// buildThanos returns <root>/.cache/bin/thanos-<version>, building it as `make thanos` does when
// it is missing: into a temporary file renamed into place, so that concurrent test processes
// never run a half-written binary.
func buildThanos() (string, error) {
	root, err := filepath.Abs("..") // this package is <root>/e2e
	if err != nil {
		return "", err
	}
	version, err := thanosVersion(filepath.Join(root, "tools", "thanos", "go.mod"))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".cache", "bin", "thanos-"+version)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(bin), err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer os.Remove(tmp)
	fmt.Fprintf(os.Stderr, "e2e: %s is missing: building thanos %s (cold: minutes to tens of minutes; `make thanos` does it ahead)\n", bin, version)
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "netgo,slicelabels",
		"-ldflags", "-X github.com/prometheus/common/version.Version="+strings.TrimPrefix(version, "v"),
		"-o", tmp, "github.com/thanos-io/thanos/cmd/thanos")
	cmd.Dir = filepath.Join(root, "tools", "thanos")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	done := make(chan struct{})
	var out []byte
	var berr error
	go func() {
		out, berr = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(thanosBuildTimeout):
		_ = cmd.Process.Kill()
		<-done
		return "", fmt.Errorf("go build thanos %s: not done within %v", version, thanosBuildTimeout)
	}
	if berr != nil {
		return "", fmt.Errorf("go build thanos %s in tools/thanos: %w\n%s", version, berr, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("install %s: %w", bin, err)
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", bin, time.Since(start).Round(time.Second))
	return bin, nil
}

// thanosVersion reads the version of github.com/thanos-io/thanos that the tools module requires.
func thanosVersion(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", fmt.Errorf("read the thanos tools module: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "github.com/thanos-io/thanos" && strings.HasPrefix(fs[1], "v") {
			return fs[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", gomod, err)
	}
	return "", fmt.Errorf("%s requires no github.com/thanos-io/thanos version", gomod)
}

// thanosProc is one thanos component process with its own data directory and loopback ports. A
// restart keeps the ports and the data directory (a receiver's TSDB survives a SIGKILL).
type thanosProc struct {
	t     testing.TB
	tails *logTails
	name  string
	bin   string
	dir   string
	// ports by role: "http", "grpc" and, for receive, "write" and "capnp".
	ports map[string]int
	// args returns the arguments of a start (from the ports and the directory).
	args func() []string
	proc *process
}

// newThanosProc prepares a component named name with ports for roles; it does not start it.
func newThanosProc(t testing.TB, tails *logTails, name string, roles ...string) *thanosProc {
	t.Helper()
	p := &thanosProc{t: t, tails: tails, name: name, bin: requireThanos(t), dir: testDir(t, name), ports: map[string]int{}}
	p.pickPorts(roles)
	return p
}

func (p *thanosProc) pickPorts(roles []string) {
	for _, r := range roles {
		p.ports[r] = freePort(p.t)
	}
}

func (p *thanosProc) addr(role string) string { return fmt.Sprintf("127.0.0.1:%d", p.ports[role]) }

// URL is the base URL of the HTTP server (/-/ready, /metrics, the query API).
func (p *thanosProc) URL() string { return "http://" + p.addr("http") }

// GRPCAddr is the address of the Store API (and of a receiver's forwarding endpoint).
func (p *thanosProc) GRPCAddr() string { return p.addr("grpc") }

// logPath is the component's log, appended across restarts.
func (p *thanosProc) logPath() string { return filepath.Join(p.dir, p.name+".log") }

// firstStart starts the component, on other ports when the first ones were taken between
// freePort and the bind (a few attempts), and waits until it is ready.
func (p *thanosProc) firstStart() {
	p.t.Helper()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = p.tryStart(); err == nil {
			return
		}
		roles := make([]string, 0, len(p.ports))
		for r := range p.ports {
			roles = append(roles, r)
		}
		p.pickPorts(roles)
	}
	p.t.Fatalf("start %s: %v", p.name, err)
}

// tryStart starts the process and waits for /-/ready; it returns an error (and kills the
// process) when it exits first or is not ready within readyTimeout.
func (p *thanosProc) tryStart() error {
	p.proc = startProcess(p.t, p.tails, p.name, p.logPath(), p.bin, p.args()...)
	err := poll(readyTimeout, func() error {
		if p.proc.exited() {
			return errExited{p.name, p.proc.err}
		}
		resp, err := httpClient.Get(p.URL() + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		p.proc.kill()
	}
	return err
}

// restart starts the stopped or killed component again on the same ports and data directory,
// retrying a failed bind until readyTimeout.
func (p *thanosProc) restart() {
	p.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		err := p.tryStart()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("restart %s: %v", p.name, err)
		}
	}
}

// kill ends the component with SIGKILL.
func (p *thanosProc) kill() { p.proc.kill() }

// stop ends the component with SIGTERM (SIGKILL after stopTimeout, an error of the test).
func (p *thanosProc) stop() {
	p.t.Helper()
	if ok, _ := p.proc.stop(stopTimeout); !ok {
		p.t.Errorf("%s did not exit within %v of SIGTERM", p.name, stopTimeout)
	}
}

// receiveOptions vary a `thanos receive`.
type receiveOptions struct {
	// hashring, when set, makes a router (RouterOnly: no local endpoint) that forwards every
	// write to these ingestors (started) by a hashring file.
	hashring []*thanosProc
	// replicationFactor is --receive.replication-factor of a router (1 when zero).
	replicationFactor int
	// oooWindow, when set, is the receiver's --tsdb.out-of-order.time-window (Thanos' default: no
	// window). Without one, a sample older than its series' newest one is refused (409): a record
	// the collector sends again after a SIGKILL although the hub acknowledged it before, or a
	// backlog older than the head after the receiver flushed it (it does at every start and stop).
	oooWindow string
	// args are added to the receiver's arguments (e.g. the hidden --tsdb.min-block-duration).
	args []string
}

// startReceive starts a `thanos receive` named name and waits until it is ready. Without
// opts.hashring it ingests what it is sent (IngestorOnly, router and ingestor in one: the single
// hub, or one ingestor of a hashring); with it, it routes. Every receiver has the external label
// receive_replica=<name>, takes the tenant from THANOS-TENANT (the default header) and announces
// it as tenant_id.
func startReceive(t testing.TB, tails *logTails, name string, opts receiveOptions) *thanosProc {
	t.Helper()
	p := newThanosProc(t, tails, name, "http", "grpc", "write", "capnp")
	var hashringFile string
	if len(opts.hashring) > 0 {
		hashringFile = filepath.Join(p.dir, "hashrings.json")
		writeHashring(t, hashringFile, opts.hashring)
	}
	rf := max(opts.replicationFactor, 1)
	p.args = func() []string {
		args := []string{"receive",
			"--log.level=info",
			"--http-address=" + p.addr("http"),
			"--grpc-address=" + p.addr("grpc"),
			"--remote-write.address=" + p.addr("write"),
			"--receive.capnproto-address=" + p.addr("capnp"),
			"--tsdb.path=" + filepath.Join(p.dir, "data"),
			fmt.Sprintf("--label=%s=%q", thanosReplicaLabel, name),
			// No local retention, so no tenant pruning: receive v0.42.0 prunes at start when the
			// wall clock's minutes are a multiple of twice the max block duration, and panics
			// if a tenant's TSDB is still opening then (multitsdb.go:346, nil TSDB): with 2m
			// blocks that was one start in four. The tests run for minutes; nothing needs pruning.
			"--tsdb.retention=0d",
		}
		if opts.oooWindow != "" {
			args = append(args, "--tsdb.out-of-order.time-window="+opts.oooWindow)
		}
		args = append(args, opts.args...)
		if hashringFile != "" {
			args = append(args,
				"--receive.hashrings-file="+hashringFile,
				"--receive.replication-factor="+strconv.Itoa(rf))
		}
		return args
	}
	p.firstStart()
	return p
}

// WriteURL is a receiver's remote-write URL.
func (p *thanosProc) WriteURL() string { return "http://" + p.addr("write") + "/api/v1/receive" }

// writeHashring writes the hashring file of a router over ingestors: one hashring for every
// tenant, each ingestor by its gRPC and Cap'n Proto addresses.
func writeHashring(t testing.TB, path string, ingestors []*thanosProc) {
	t.Helper()
	type endpoint struct {
		Address          string `json:"address"`
		CapNProtoAddress string `json:"capnproto_address"`
	}
	eps := make([]endpoint, 0, len(ingestors))
	for _, in := range ingestors {
		eps = append(eps, endpoint{Address: in.GRPCAddr(), CapNProtoAddress: in.addr("capnp")})
	}
	data, err := json.Marshal([]map[string]any{{"hashring": "default", "endpoints": eps}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startThanosStore starts a `thanos store` (store gateway) over the filesystem bucket in
// bucketDir (objstore type FILESYSTEM), syncing the bucket every second, and waits until it
// is ready (its first sync done).
func startThanosStore(t testing.TB, tails *logTails, name, bucketDir string) *thanosProc {
	t.Helper()
	p := newThanosProc(t, tails, name, "http", "grpc")
	conf := filepath.Join(p.dir, "objstore.yml")
	if err := os.WriteFile(conf, []byte(filesystemBucketConfig(bucketDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.args = func() []string {
		return []string{"store",
			"--log.level=info",
			"--http-address=" + p.addr("http"),
			"--grpc-address=" + p.addr("grpc"),
			"--data-dir=" + filepath.Join(p.dir, "data"),
			"--objstore.config-file=" + conf,
			"--sync-block-duration=1s",
			"--consistency-delay=0s",
		}
	}
	p.firstStart()
	return p
}

// filesystemBucketConfig is the objstore configuration (the --objstore.config-file format) of a
// filesystem bucket in dir.
func filesystemBucketConfig(dir string) string {
	return fmt.Sprintf("type: FILESYSTEM\nconfig:\n  directory: %q\n", dir)
}

// thanosQuery is a `thanos query` over Store APIs.
type thanosQuery struct {
	*thanosProc
	stores []string
}

// startThanosQuery starts a `thanos query` over the Store APIs of stores (receivers, store
// gateways), deduplicating along receive_replica with the chain algorithm (the replicas of a
// receive hashring hold the same samples: a 1:1 merge, no penalty switching), answering errors
// rather than partial responses; it waits until it is ready and sees every store.
func startThanosQuery(t testing.TB, tails *logTails, name string, stores ...*thanosProc) *thanosQuery {
	t.Helper()
	p := newThanosProc(t, tails, name, "http", "grpc")
	q := &thanosQuery{thanosProc: p}
	for _, s := range stores {
		q.stores = append(q.stores, s.GRPCAddr())
	}
	p.args = func() []string {
		args := []string{"query",
			"--log.level=info",
			"--http-address=" + p.addr("http"),
			"--grpc-address=" + p.addr("grpc"),
			"--query.replica-label=" + thanosReplicaLabel,
			"--deduplication.func=chain",
			"--no-query.partial-response",
			"--query.max-concurrent=4",
		}
		for _, s := range q.stores {
			args = append(args, "--endpoint="+s)
		}
		return args
	}
	p.firstStart()
	q.waitStores()
	return q
}

// waitStores waits until the query sees every one of its stores healthy (after a start, or
// after a receiver came back).
func (q *thanosQuery) waitStores() {
	q.t.Helper()
	eventually(q.t, readyTimeout, q.name+" sees its stores", func() error {
		if q.proc.exited() {
			return errExited{q.name, q.proc.err}
		}
		healthy, err := q.healthyStores()
		if err != nil {
			return err
		}
		for _, s := range q.stores {
			if !healthy[s] {
				return fmt.Errorf("store %s not healthy yet (healthy: %v)", s, healthy)
			}
		}
		return nil
	})
}

// healthyStores returns the stores the query's /api/v1/stores lists without an error.
func (q *thanosQuery) healthyStores() (map[string]bool, error) {
	resp, err := httpClient.Get(q.URL() + "/api/v1/stores")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   map[string][]struct {
			Name      string  `json:"name"`
			LastError *string `json:"lastError"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("/api/v1/stores: status %s: decode: %w", resp.Status, err)
	}
	out := map[string]bool{}
	for _, ss := range r.Data {
		for _, s := range ss {
			if s.LastError == nil {
				out[s.Name] = true
			}
		}
	}
	return out, nil
}

// samples reads back, through the query's HTTP API, every raw sample of cluster clusterID with
// timestamps in [from, to] (ms): receiverSamples (label values, then a [range] matrix query per
// family, deduplicated over the replicas), with the tenant label checked (every series must be
// of tenant) and taken off, so that the series compare with what the source served.
func (q *thanosQuery) samples(src *federateSource, clusterID, tenant string, from, to int64) (seriesSet, error) {
	got, err := receiverSamples(q.URL(), clusterID, src, from, to)
	if err != nil {
		return nil, fmt.Errorf("thanos query: %w", err)
	}
	out := make(seriesSet, len(got))
	for key, ss := range got {
		lset, err := parser.NewParser(parser.Options{}).ParseMetric(key) // rawSamples keys a series by labels.Labels.String()
		if err != nil {
			return nil, fmt.Errorf("thanos query: series %s: %w", key, err)
		}
		if v := lset.Get(thanosTenantLabel); v != tenant {
			return nil, fmt.Errorf("thanos query: series %s: %s=%q, want %q", key, thanosTenantLabel, v, tenant)
		}
		if lset.Has(thanosReplicaLabel) {
			return nil, fmt.Errorf("thanos query: series %s still has the replica label: not deduplicated", key)
		}
		for i := 1; i < len(ss); i++ {
			if ss[i].T <= ss[i-1].T {
				return nil, fmt.Errorf("thanos query: series %s: sample %s after %s: a duplicate or out of order", key, ss[i], ss[i-1])
			}
		}
		k := labels.NewBuilder(lset).Del(thanosTenantLabel).Labels().String()
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("thanos query: series %s twice", k)
		}
		out[k] = ss
	}
	return out, nil
}

// replicaSamples counts the samples of cluster clusterID that each receiver holds (a query
// without deduplication, by receive_replica) in [from, to] (ms): what a hashring's replicas hold
// before the query merges them.
func (q *thanosQuery) replicaSamples(clusterID string, from, to int64) (map[string]int, error) {
	rng := (to-from)/1000 + 60
	at := time.UnixMilli(to + 30_000)
	v := url.Values{
		"query": {fmt.Sprintf(`count_over_time({clusterID=%q}[%ds])`, clusterID, rng)},
		"time":  {formatTime(at)},
		"dedup": {"false"},
	}
	resp, err := httpClient.PostForm(q.URL()+"/api/v1/query", v)
	if err != nil {
		return nil, fmt.Errorf("replica samples: %w", err)
	}
	defer resp.Body.Close()
	var qr queryResponse
	if err := json.NewDecoder(resp.Body).Decode(&qr); err != nil {
		return nil, fmt.Errorf("replica samples: status %s: decode: %w", resp.Status, err)
	}
	if qr.Status != "success" {
		return nil, fmt.Errorf("replica samples: %s: %s", qr.ErrorType, qr.Error)
	}
	var res []struct {
		Metric map[string]string `json:"metric"`
		Value  apiPoint          `json:"value"`
	}
	if err := json.Unmarshal(qr.Data.Result, &res); err != nil {
		return nil, fmt.Errorf("replica samples: decode vector: %w", err)
	}
	out := map[string]int{}
	for _, r := range res {
		out[r.Metric[thanosReplicaLabel]] += int(r.Value.V)
	}
	return out, nil
}

// newThanosPipeline prepares (does not start) a generated source and a collector of cluster id
// sending to writeURL (a receiver, a router or a fault proxy in front of one) with
// THANOS-TENANT tenant; finish reads the hub back through q. Each start of the collector asks
// the source with its own token (runToken), as newPipeline's.
func newThanosPipeline(t testing.TB, tails *logTails, id, tenant, writeURL string, q *thanosQuery, flags ...string) *pipeline {
	t.Helper()
	p := &pipeline{t: t, tails: tails, id: id}
	p.src = newChurningSource(t, pipelineSeries, id, churnOptions{Width: 20, Step: 5, Period: 5})
	args := append([]string{"--from", p.src.URL(), "--match", `{__name__=~".+"}`, "--to-upload", writeURL, "--to-upload-tenant", tenant}, fastFlags()...)
	p.col = newCollector(t, tails, "collector", id, append(args, flags...)...)
	p.col.perStart = func(n int) []string { return []string{"--from-token", runToken(n)} }
	p.hub = func(from, to int64) (seriesSet, error) { return q.samples(p.src, id, tenant, from, to) }
	return p
}

// waitHubFlowing waits until the hub (read through q) holds samples of the source's first
// series from at least n scrapes.
func waitHubFlowing(p *pipeline, q *thanosQuery, n int) {
	p.t.Helper()
	eventually(p.t, 60*time.Second, "samples at the hub", func() error {
		ss, err := rawSamples(q.URL(), exactSelector(&p.src.series[0])+"[1h]", time.Time{})
		if err != nil {
			return err
		}
		if got := len(first(ss)); got < n {
			return fmt.Errorf("%d samples of %s, want %d", got, p.src.series[0].lset, n)
		}
		return nil
	})
}
