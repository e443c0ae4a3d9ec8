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
// series and the second. With churn, a window of further series slides over time: series appear
// and disappear for good. Everything a response holds is a function of its second, so two
// responses in the same second are the same.
//
// It logs every request it answered (servedScrape): the second, the run of the collector that
// asked (its bearer token), the status, whether the whole body was written, and what the body
// held (servedBody: the series and the values, as formatted into it). That log is the oracle of
// the tests (oracle_test.go), not the collector's WAL.
type federateSource struct {
	srv       *httptest.Server
	families  []*genFamily
	series    []genSeries // the stable series; ID i is series[i]
	churn     churnOptions
	clusterID string

	mu        sync.Mutex
	served    []servedScrape          // guarded by mu
	bodies    map[int64]*servedBody   // what was served at each second; guarded by mu
	churned   map[int]*genSeries      // churn series by window index, made on first use; guarded by mu
	closed    bool                    // answer 503 from now on; guarded by mu
	texts     map[int64][]byte        // the text of the bodies of the last seconds; guarded by mu
	rendering map[int64]chan struct{} // closed when the body of a second is rendered; guarded by mu
	lastT     int64                   // the second (ms) of the last request served; guarded by mu
}

// churnOptions make series come and go: at second sec the churn series with window indexes
// [lo, lo+Width) are served, lo = (sec / Period) * Step. Zero Width: no churn.
type churnOptions struct {
	Width, Step int
	Period      int64 // seconds
}

// servedBody is what a 200 response held: the series (by ID: see federateSource.byID; nil
// means every stable series in order) and the value formatted for each, all at one timestamp.
type servedBody struct {
	ids    []int
	values []float64
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

// servedScrape is one answered /federate request.
type servedScrape struct {
	T          int64 // the samples' timestamp, ms
	Start, End time.Time
	Status     int    // 200, or 503 once the source is closed
	Complete   bool   // the whole response was written without error
	Token      string // the bearer token of the request: which run of the collector asked
}

// ok reports whether the response was a whole 200 body: the collector had every sample of it.
func (s servedScrape) ok() bool { return s.Status == http.StatusOK && s.Complete }

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
	return newChurningSource(t, n, clusterID, churnOptions{})
}

// newChurningSource is newFederateSource with series churn.
func newChurningSource(t testing.TB, n int, clusterID string, churn churnOptions) *federateSource {
	t.Helper()
	fams := genFamilies()
	per := n / len(fams)
	fs := &federateSource{families: fams, churn: churn, clusterID: clusterID, bodies: map[int64]*servedBody{}, churned: map[int]*genSeries{},
		texts: map[int64][]byte{}, rendering: map[int64]chan struct{}{}}
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
	if churn.Width > 0 {
		fs.families = append(fs.families, churnFamily)
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

// churnFamily is the family of the churn series: one per short-lived job.
var churnFamily = &genFamily{name: "kube_job_status_active", labels: func(k int) map[string]string {
	return map[string]string{"namespace": genNamespaces[k%len(genNamespaces)], "job_name": fmt.Sprintf("cron-%07d", k)}
}}

// churnSeries returns the churn series of window index k, made on first use. fs.mu is held.
func (fs *federateSource) churnSeries(k int) *genSeries {
	if s, ok := fs.churned[k]; ok {
		return s
	}
	ls := churnFamily.labels(k)
	ls["job"] = "federate"
	ls["instance"] = "10.129.0.1:8443"
	ls["prometheus"] = "openshift-monitoring/k8s"
	s := &genSeries{
		family: churnFamily,
		text:   seriesText(churnFamily.name, ls),
		lset:   expectedLabels(churnFamily.name, ls, fs.clusterID),
		base:   float64(k % 5),
		step:   1,
	}
	fs.churned[k] = s
	return s
}

// byID returns the series of an ID: stable series first, then the churn series (ID
// len(fs.series)+k for window index k).
func (fs *federateSource) byID(id int) *genSeries {
	if id < len(fs.series) {
		return &fs.series[id]
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.churnSeries(id - len(fs.series))
}

// bodyAt returns what a response at ts (ms) holds and its text, rendered once per second by
// whoever asks first (serve, or its prefetch of the next second: rendering 50k series in a test
// binary built with -race takes a good part of a second on a loaded machine, which must not eat
// the collector's scrape timeout).
func (fs *federateSource) bodyAt(ts int64) (*servedBody, []byte) {
	fs.mu.Lock()
	if buf, ok := fs.texts[ts]; ok {
		defer fs.mu.Unlock()
		return fs.bodies[ts], buf
	}
	if ch, ok := fs.rendering[ts]; ok {
		fs.mu.Unlock()
		<-ch
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return fs.bodies[ts], fs.texts[ts]
	}
	ch := make(chan struct{})
	fs.rendering[ts] = ch
	fs.mu.Unlock()

	body, buf := fs.render(ts)

	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.bodies[ts], fs.texts[ts] = body, buf
	for t := range fs.texts {
		if t < ts-2000 {
			delete(fs.texts, t) // the texts of old seconds; what they held stays in bodies
		}
	}
	delete(fs.rendering, ts)
	close(ch)
	return body, buf
}

// render makes the body of second ts (ms).
func (fs *federateSource) render(ts int64) (*servedBody, []byte) {
	var ids []int
	if fs.churn.Width > 0 {
		ids = make([]int, 0, len(fs.series)+fs.churn.Width)
		for i := range fs.series {
			ids = append(ids, i)
		}
		lo := int(ts/1000/fs.churn.Period) * fs.churn.Step
		for k := lo; k < lo+fs.churn.Width; k++ {
			ids = append(ids, len(fs.series)+k)
		}
	}
	n := len(fs.series)
	if ids != nil {
		n = len(ids)
	}
	body := &servedBody{ids: ids, values: make([]float64, n)}
	tsText := strconv.AppendInt(nil, ts, 10)
	buf := make([]byte, 0, n*128)
	var last *genFamily
	for j := range n {
		var s *genSeries
		if ids == nil || ids[j] < len(fs.series) {
			s = &fs.series[j]
		} else {
			s = fs.byID(ids[j])
		}
		if s.family != last {
			last = s.family
			buf = append(buf, "# TYPE "...)
			buf = append(buf, s.family.name...)
			buf = append(buf, " untyped\n"...)
		}
		v := s.value(ts)
		body.values[j] = v
		buf = append(buf, s.text...)
		buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
		buf = append(buf, ' ')
		buf = append(buf, tsText...)
		buf = append(buf, '\n')
	}
	return body, buf
}

// close makes the source answer 503 to every later request: the collector appends nothing more.
func (fs *federateSource) close() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.closed = true
}

func (fs *federateSource) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/federate" {
		http.NotFound(w, r)
		return
	}
	start := time.Now()
	ts := start.Truncate(time.Second).UnixMilli()
	rec := servedScrape{T: ts, Start: start, Status: http.StatusOK, Token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}
	fs.mu.Lock()
	closed := fs.closed
	// The next request is expected one interval later: the distance between the last two
	// requests' seconds, or a second when that is not known or not plausible (a restart).
	next := ts + 1000
	if gap := ts - fs.lastT; gap > 1000 && gap <= 10000 {
		next = ts + gap
	}
	if ts > fs.lastT {
		fs.lastT = ts
	}
	fs.mu.Unlock()
	var buf []byte
	if !closed {
		_, buf = fs.bodyAt(ts)
		go fs.bodyAt(next) // the next scrape's body, ahead of its request
	}
	var err error
	if closed {
		rec.Status = http.StatusServiceUnavailable
		http.Error(w, "e2e: source closed", rec.Status)
	} else {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
		_, err = w.Write(buf)
		if err == nil {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
	}
	rec.End, rec.Complete = time.Now(), err == nil
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.served = append(fs.served, rec)
}

// body returns what the responses at ts (ms) held, nil if none was served.
func (fs *federateSource) body(ts int64) *servedBody {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.bodies[ts]
}

// scrapes returns what was served so far.
func (fs *federateSource) scrapes() []servedScrape {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]servedScrape(nil), fs.served...)
}

// completeCount is the number of complete 200 responses so far.
func (fs *federateSource) completeCount() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, s := range fs.served {
		if s.ok() {
			n++
		}
	}
	return n
}
