package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// federateSource is a deterministic /federate endpoint: a fixed set of series in the exposition
// text Prometheus' /federate writes (a # TYPE line per family, sorted labels, the source's
// external label prometheus, a timestamp on every sample), every series with a sample at the
// current second (timestamp = now truncated to the second) whose value is a function of the
// series and the second. It records every response: what it served, and when.
type federateSource struct {
	srv      *httptest.Server
	families []*genFamily
	series   []genSeries

	mu     sync.Mutex
	served []servedScrape // guarded by mu
}

// genSeries is one generated series.
type genSeries struct {
	family *genFamily
	// text is the line up to the value: name{labels} and a space.
	text []byte
	// lset is the series as the collector should append it (see expectedLabels).
	lset labels.Labels
	// base and step define the value (see value).
	base, step float64
}

// genFamily is a metric family of the generator.
type genFamily struct {
	name    string
	counter bool
	// labels returns the labels of the family's j-th series (without job, instance, prometheus).
	labels func(j int) map[string]string
}

// servedScrape is one /federate response.
type servedScrape struct {
	T          int64 // the samples' timestamp, ms
	Start, End time.Time
	Complete   bool // the whole body was written without error
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
	return fmt.Sprintf("%s-%x-%05d", app, (j*2654435761)&0xfffff, j)
}

// genFamilies are ten families of realistic cluster metrics; each family gets n/10 series.
func genFamilies() []*genFamily {
	node := func(j int) string { return fmt.Sprintf("worker-%02d.cluster.local", j%24) }
	return []*genFamily{
		{name: "container_cpu_usage_seconds_total", counter: true, labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j), "container": "app", "node": node(j)}
		}},
		{name: "container_memory_working_set_bytes", labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j), "container": "app", "node": node(j)}
		}},
		{name: "container_network_receive_bytes_total", counter: true, labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j), "interface": "eth0", "node": node(j)}
		}},
		{name: "kube_pod_container_status_restarts_total", counter: true, labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j), "container": "app", "uid": fmt.Sprintf("%08x-0000-4000-8000-%012x", j, j*7919)}
		}},
		{name: "kube_pod_status_phase", labels: func(j int) map[string]string {
			return map[string]string{"namespace": genNamespaces[j%len(genNamespaces)], "pod": genPod(j / len(genPhases)), "phase": genPhases[j%len(genPhases)]}
		}},
		{name: "apiserver_request_duration_seconds_bucket", counter: true, labels: func(j int) map[string]string {
			k := j / len(genBuckets)
			return map[string]string{"verb": genVerbs[k%len(genVerbs)], "resource": genResources[(k/len(genVerbs))%len(genResources)], "scope": "cluster", "component": fmt.Sprintf("apiserver-%d", k/(len(genVerbs)*len(genResources))), "le": genBuckets[j%len(genBuckets)]}
		}},
		{name: "apiserver_request_total", counter: true, labels: func(j int) map[string]string {
			return map[string]string{"verb": genVerbs[j%len(genVerbs)], "resource": genResources[(j/len(genVerbs))%len(genResources)], "code": strconv.Itoa([]int{200, 201, 404, 409, 500}[(j/70)%5]), "client": fmt.Sprintf("controller-%d", j/350)}
		}},
		{name: "node_filesystem_avail_bytes", labels: func(j int) map[string]string {
			return map[string]string{"node": node(j), "device": fmt.Sprintf("/dev/nvme%dn1p%d", j/24%8, j/192), "mountpoint": fmt.Sprintf("/var/lib/kubelet/pods/%05d", j), "fstype": "xfs"}
		}},
		{name: "etcd_disk_wal_fsync_duration_seconds_bucket", counter: true, labels: func(j int) map[string]string {
			return map[string]string{"member": fmt.Sprintf("etcd-%d", j/len(genBuckets)), "le": genBuckets[j%len(genBuckets)]}
		}},
		{name: "namespace:container_cpu_usage:sum", labels: func(j int) map[string]string {
			return map[string]string{"namespace": fmt.Sprintf("tenant-%05d", j)}
		}},
	}
}

// newFederateSource generates n series (a multiple of 10) and starts serving them. clusterID is
// the collector's --id: it is part of the labels the collector should append (expectedLabels).
func newFederateSource(t testing.TB, n int, clusterID string) *federateSource {
	t.Helper()
	fams := genFamilies()
	per := n / len(fams)
	fs := &federateSource{families: fams}
	seen := make(map[string]bool, n)
	for fi, f := range fams {
		for j := range per {
			ls := f.labels(j)
			ls["job"] = "federate"
			ls["instance"] = fmt.Sprintf("10.128.%d.%d:9100", j%256, fi)
			ls["prometheus"] = "openshift-monitoring/k8s"
			i := len(fs.series)
			s := genSeries{
				family: f,
				text:   seriesText(f.name, ls),
				lset:   expectedLabels(f.name, ls, clusterID),
				base:   float64((i * 7919) % 100000),
				step:   float64(i%17+1) * 0.25,
			}
			k := s.lset.String()
			if seen[k] {
				t.Fatalf("generator: series %s twice", k)
			}
			seen[k] = true
			fs.series = append(fs.series, s)
		}
	}
	fs.srv = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(fs.srv.Close)
	return fs
}

// seriesText is name{sorted labels} and a space.
func seriesText(name string, ls map[string]string) []byte {
	names := make([]string, 0, len(ls))
	for k := range ls {
		names = append(names, k)
	}
	sort.Strings(names)
	b := []byte(name)
	b = append(b, '{')
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

// expectedLabels is what collector makes of a series with default flags: the external label
// prometheus elided, clusterID added.
func expectedLabels(name string, ls map[string]string, clusterID string) labels.Labels {
	m := map[string]string{labels.MetricName: name, "clusterID": clusterID}
	for k, v := range ls {
		if k != "prometheus" {
			m[k] = v
		}
	}
	return labels.FromMap(m)
}

// value is the value of series s at timestamp t (ms): counters grow, gauges wander; all values
// are exact in binary floating point and in their shortest decimal form.
func (s *genSeries) value(t int64) float64 {
	sec := float64(t / 1000)
	if s.family.counter {
		return s.base + s.step*sec
	}
	return s.base + float64((t/1000)%60)*s.step
}

// URL is the base URL of the source (the collector adds /federate).
func (fs *federateSource) URL() string { return fs.srv.URL }

func (fs *federateSource) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/federate" {
		http.NotFound(w, r)
		return
	}
	start := time.Now()
	ts := start.Truncate(time.Second).UnixMilli()
	tsText := strconv.AppendInt(nil, ts, 10)
	buf := make([]byte, 0, len(fs.series)*128)
	var last *genFamily
	for i := range fs.series {
		s := &fs.series[i]
		if s.family != last {
			last = s.family
			buf = append(buf, "# TYPE "...)
			buf = append(buf, s.family.name...)
			buf = append(buf, " untyped\n"...)
		}
		buf = append(buf, s.text...)
		buf = strconv.AppendFloat(buf, s.value(ts), 'g', -1, 64)
		buf = append(buf, ' ')
		buf = append(buf, tsText...)
		buf = append(buf, '\n')
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
	_, err := w.Write(buf)
	if err == nil {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.served = append(fs.served, servedScrape{T: ts, Start: start, End: time.Now(), Complete: err == nil})
}

// scrapes returns what was served so far.
func (fs *federateSource) scrapes() []servedScrape {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]servedScrape(nil), fs.served...)
}

// completeCount is the number of complete responses so far.
func (fs *federateSource) completeCount() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, s := range fs.served {
		if s.Complete {
			n++
		}
	}
	return n
}

// index maps a series' expected labels (String()) to its position in fs.series.
func (fs *federateSource) index() map[string]int {
	m := make(map[string]int, len(fs.series))
	for i := range fs.series {
		m[fs.series[i].lset.String()] = i
	}
	return m
}
