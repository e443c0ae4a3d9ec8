package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// source serves /federate like Prometheus does: the exposition text of every series, a # TYPE
// line per family, a timestamp on every sample, gzipped when the request accepts it (at the
// default level, as Prometheus' compression handler does). Time is cut into slots of one
// scrape interval; every response in a slot holds the same body, with the slot's start as the
// samples' timestamp and values that move from slot to slot. The body of a slot is rendered
// once, ahead of time by run (at the start of each slot, the next slot's), or on the first
// request if run was late.
type source struct {
	interval time.Duration
	gzip     bool    // serve gzip to requests that accept it
	level    int     // gzip level
	rate     float64 // bytes per second of a body, in pieces of pieceBytes; 0: as fast as the socket takes it, in one write
	series   []genSeries

	mu       sync.Mutex
	bodies   map[int64]*slotBody // by slot start, ms; guarded by mu
	served   map[int64]bool      // slots of which a whole 200 response was written; guarded by mu
	inFlight int                 // responses being written; guarded by mu
	gzipCPU  time.Duration       // time spent compressing bodies; guarded by mu
	rendered int                 // bodies rendered; guarded by mu
}

// slotBody is the body of one slot, plain and gzipped.
type slotBody struct {
	ready     chan struct{} // closed once plain and gz are set
	plain, gz []byte
}

// genSeries is one generated series: its text up to the value, and how its value moves.
type genSeries struct {
	family     *genFamily
	text       []byte // name{labels} and a space
	base, step float64
}

// genFamily is a metric family of the generator.
type genFamily struct {
	name   string
	labels func(j int) map[string]string // labels of the j-th series, without job and instance
}

func newSource(n int, interval time.Duration, gz bool, level int, rate float64) *source {
	fams := genFamilies()
	per := n / len(fams)
	s := &source{interval: interval, gzip: gz, level: level, rate: rate, series: make([]genSeries, 0, per*len(fams)), bodies: map[int64]*slotBody{}, served: map[int64]bool{}}
	for fi, f := range fams {
		for j := range per {
			ls := f.labels(j)
			ls["job"] = "kubernetes-pods"
			ls["instance"] = fmt.Sprintf("10.128.%d.%d:9100", j%256, fi)
			ls["prometheus"] = "openshift-monitoring/k8s"
			ls["prometheus_replica"] = "prometheus-k8s-0"
			i := len(s.series)
			s.series = append(s.series, genSeries{family: f, text: seriesText(f.name, ls), base: float64((i * 7919) % 100000), step: float64(i%17+1) * 0.25})
		}
	}
	return s
}

var (
	genNamespaces = []string{"openshift-monitoring", "openshift-etcd", "openshift-ingress", "openshift-apiserver", "payments", "checkout", "search", "batch-jobs"}
	genVerbs      = []string{"GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE"}
	genResources  = []string{"pods", "nodes", "services", "configmaps", "secrets", "deployments", "events", "leases", "endpoints", "namespaces"}
	genBuckets    = []string{"0.005", "0.025", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
	genPhases     = []string{"Pending", "Running", "Succeeded", "Failed", "Unknown"}
)

// genPod is the j-th pod name: <app>-<replicaset hash>-<suffix>, unique per j.
func genPod(j int) string {
	ns := genNamespaces[j%len(genNamespaces)]
	app := ns[strings.LastIndexByte(ns, '-')+1:]
	return fmt.Sprintf("%s-%x-%06d", app, (uint64(j)*2654435761)&0xfffff, j)
}

// genFamilies are ten families of OpenShift-like cluster metrics (the e2e tests' generator);
// each gets a tenth of the series, each series unique by construction.
func genFamilies() []*genFamily {
	node := func(j int) string { return fmt.Sprintf("worker-%02d.cluster.local", j%24) }
	return []*genFamily{
		{name: "container_cpu_usage_seconds_total", labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j), "container": "app", "node": node(j)}
		}},
		{name: "container_memory_working_set_bytes", labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j), "container": "app", "node": node(j)}
		}},
		{name: "container_network_receive_bytes_total", labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j), "interface": "eth0", "node": node(j)}
		}},
		{name: "kube_pod_container_status_restarts_total", labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j), "container": "app", "uid": fmt.Sprintf("%08x-0000-4000-8000-%012x", j, j*7919)}
		}},
		{name: "kube_pod_status_phase", labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j / len(genPhases)), "phase": genPhases[j%len(genPhases)]}
		}},
		{name: "apiserver_request_duration_seconds_bucket", labels: func(j int) map[string]string {
			k := j / len(genBuckets)
			return map[string]string{"verb": genVerbs[k%len(genVerbs)], "resource": genResources[(k/len(genVerbs))%len(genResources)], "scope": "cluster", "component": fmt.Sprintf("apiserver-%d", k/(len(genVerbs)*len(genResources))), "le": genBuckets[j%len(genBuckets)]}
		}},
		{name: "apiserver_request_total", labels: func(j int) map[string]string {
			return map[string]string{"verb": genVerbs[j%len(genVerbs)], "resource": genResources[(j/len(genVerbs))%len(genResources)], "code": strconv.Itoa([]int{200, 201, 404, 409, 500}[(j/70)%5]), "client": fmt.Sprintf("controller-%d", j/350)}
		}},
		{name: "node_filesystem_avail_bytes", labels: func(j int) map[string]string {
			return map[string]string{"node": node(j), "device": fmt.Sprintf("/dev/nvme%dn1p%d", j/24%8, j/192), "mountpoint": fmt.Sprintf("/var/lib/kubelet/pods/%06d", j), "fstype": "xfs"}
		}},
		{name: "etcd_disk_wal_fsync_duration_seconds_bucket", labels: func(j int) map[string]string {
			return map[string]string{"member": fmt.Sprintf("etcd-%d", j/len(genBuckets)), "le": genBuckets[j%len(genBuckets)]}
		}},
		{name: "namespace:container_cpu_usage:sum", labels: func(j int) map[string]string {
			return map[string]string{"namespace": fmt.Sprintf("tenant-%06d", j)}
		}},
	}
}

// seriesText is name{sorted labels} and a space, as Prometheus' /federate writes it.
func seriesText(name string, ls map[string]string) []byte {
	names := make([]string, 0, len(ls))
	for k := range ls {
		names = append(names, k)
	}
	sort.Strings(names)
	b := append([]byte(name), '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, k...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, ls[k])
	}
	return append(b, "} "...)
}

// reset forgets what was served (a new agent starts).
func (s *source) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.served = map[int64]bool{}
}

// servedSlots is how many distinct slots were served whole, and how many responses are being
// written now.
func (s *source) servedSlots() (slots, inFlight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.served), s.inFlight
}

// body returns the body of the slot starting at ts (ms), rendering it if it is the first ask.
func (s *source) body(ts int64) *slotBody {
	s.mu.Lock()
	b, ok := s.bodies[ts]
	if !ok {
		b = &slotBody{ready: make(chan struct{})}
		s.bodies[ts] = b
		for k := range s.bodies {
			if k < ts-s.interval.Milliseconds() {
				delete(s.bodies, k)
			}
		}
	}
	s.mu.Unlock()
	if ok {
		<-b.ready
		return b
	}
	b.plain = s.render(ts)
	start := time.Now()
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, s.level)
	if err != nil {
		zw = gzip.NewWriter(&gz)
	}
	zw.Write(b.plain)
	zw.Close()
	b.gz = gz.Bytes()
	s.mu.Lock()
	s.gzipCPU += time.Since(start)
	s.rendered++
	s.mu.Unlock()
	close(b.ready)
	return b
}

// run renders the body of the current slot and, at the start of every slot, the next slot's,
// so that no request waits for a render, until ctx is done.
func (s *source) run(ctx context.Context) {
	for {
		now := time.Now()
		ts := now.Truncate(s.interval)
		s.body(ts.UnixMilli())
		s.body(ts.Add(s.interval).UnixMilli())
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(ts.Add(s.interval))):
		}
	}
}

// render makes the plain text body of the slot starting at ts (ms).
func (s *source) render(ts int64) []byte {
	k := float64(ts / s.interval.Milliseconds())
	tsText := strconv.AppendInt(nil, ts, 10)
	buf := make([]byte, 0, len(s.series)*(len(s.series[0].text)+32))
	var last *genFamily
	for i := range s.series {
		g := &s.series[i]
		if g.family != last {
			last = g.family
			buf = append(buf, "# TYPE "...)
			buf = append(buf, g.family.name...)
			buf = append(buf, " untyped\n"...)
		}
		buf = append(buf, g.text...)
		buf = strconv.AppendFloat(buf, g.base+g.step*k, 'g', -1, 64)
		buf = append(buf, ' ')
		buf = append(buf, tsText...)
		buf = append(buf, '\n')
	}
	return buf
}

func (s *source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/federate" {
		http.NotFound(w, r)
		return
	}
	ts := time.Now().Truncate(s.interval).UnixMilli()
	b := s.body(ts)
	s.mu.Lock()
	s.inFlight++
	s.mu.Unlock()
	data := b.plain
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if s.gzip && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		data = b.gz
		w.Header().Set("Content-Encoding", "gzip")
	}
	var err error
	if s.rate > 0 {
		err = writePaced(w, data, s.rate)
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, err = w.Write(data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	if err == nil {
		s.served[ts] = true
	}
}

// pieceBytes is the size of the writes of a paced body: Prometheus 2.42 wrote /federate in
// writes of 4 to 6 KiB (strace), chunked.
const pieceBytes = 4 << 10

// writePaced writes data in pieces of pieceBytes, chunked (no Content-Length), at rate bytes per
// second, as Prometheus serves /federate: slower than an agent parses it, a little at a time.
func writePaced(w http.ResponseWriter, data []byte, rate float64) error {
	start := time.Now()
	for off := 0; off < len(data); {
		n := min(pieceBytes, len(data)-off)
		if _, err := w.Write(data[off : off+n]); err != nil {
			return err
		}
		off += n
		if ahead := time.Duration(float64(off)/rate*float64(time.Second)) - time.Since(start); ahead > time.Millisecond {
			time.Sleep(ahead)
		}
	}
	return nil
}
