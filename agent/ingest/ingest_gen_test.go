package ingest

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// update regenerates golden files and fixtures: go test ./agent/ -run 'Golden|Fixture' -update
var update = flag.Bool("update", false, "rewrite golden files and fixtures in testdata")

// genFamily describes one metric family of the generated federate output.
type genFamily struct {
	name   string
	weight int // share of the series
	labels func(r *rand.Rand, j int) []string
}

func genNamespaces() []string {
	return []string{
		"openshift-monitoring", "openshift-apiserver", "openshift-etcd", "openshift-ingress",
		"openshift-kube-apiserver", "openshift-dns", "openshift-console", "openshift-authentication",
		"openshift-marketplace", "openshift-operator-lifecycle-manager", "openshift-sdn",
		"openshift-image-registry", "openshift-cluster-version", "open-cluster-management-agent",
		"payments", "checkout", "inventory", "search", "frontend", "batch-jobs",
	}
}

func genPod(r *rand.Rand, j int) (ns, pod, container, uid string) {
	nss := genNamespaces()
	ns = nss[j%len(nss)]
	base := []string{"prometheus-k8s", "alertmanager-main", "thanos-querier", "node-exporter", "kube-state-metrics", "router-default", "etcd", "apiserver", "console", "oauth-openshift", "web", "worker", "api"}[r.IntN(13)]
	pod = fmt.Sprintf("%s-%08x-%05x", base, r.Uint32(), j)
	container = []string{"kube-rbac-proxy", "prometheus", "config-reloader", "main", "oauth-proxy", "server", "sidecar"}[r.IntN(7)]
	uid = fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
	return
}

func genNode(r *rand.Rand) (node, instance string) {
	k := r.IntN(60)
	return fmt.Sprintf("ip-10-0-%d-%d", 128+k/16, 10+k), fmt.Sprintf("10.0.%d.%d:10250", 128+k/16, 10+k)
}

func genCadvisor(r *rand.Rand, j int) []string {
	ns, pod, container, uid := genPod(r, j)
	node, instance := genNode(r)
	return []string{
		"container", container, "cpu", "total", "endpoint", "https-metrics",
		"id", "/kubepods.slice/kubepods-pod" + uid[:8],
		"instance", instance, "job", "kubelet",
		"namespace", ns, "node", node, "pod", pod, "service", "kubelet",
	}
}

func genKSM(r *rand.Rand, j int) []string {
	ns, pod, _, uid := genPod(r, j)
	return []string{
		"endpoint", "https-main", "instance", "10.128.2.14:8443",
		"job", "kube-state-metrics", "namespace", ns, "phase", []string{"Pending", "Running", "Succeeded", "Failed", "Unknown"}[j%5],
		"pod", pod, "service", "kube-state-metrics", "uid", uid,
	}
}

func genAPIServer(r *rand.Rand, j int) []string {
	res := []string{"pods", "configmaps", "secrets", "deployments", "leases", "events", "nodes", "namespaces", "routes", "clusteroperators"}
	_, instance := genNode(r)
	return []string{
		"apiserver", "kube-apiserver", "code", []string{"200", "201", "404", "409", "500"}[r.IntN(5)],
		"endpoint", "https", "instance", instance, "job", "apiserver",
		"namespace", "default", "resource", fmt.Sprintf("%s-%d", res[j%len(res)], j),
		"scope", []string{"cluster", "namespace", "resource"}[r.IntN(3)],
		"verb", []string{"GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE"}[r.IntN(7)],
	}
}

func genNodeExporter(r *rand.Rand, j int) []string {
	node, _ := genNode(r)
	return []string{
		"cpu", strconv.Itoa(j), "endpoint", "https", "instance", node,
		"job", "node-exporter", "mode", []string{"idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"}[r.IntN(8)],
		"namespace", "openshift-monitoring", "pod", fmt.Sprintf("node-exporter-%05x", r.Uint32()&0xfffff), "service", "node-exporter",
	}
}

func genFamilies() []genFamily {
	return []genFamily{
		{"apiserver_request_total", 2, genAPIServer},
		{"container_cpu_usage_seconds_total", 3, genCadvisor},
		{"container_memory_working_set_bytes", 3, genCadvisor},
		{"kube_pod_container_resource_requests", 1, genKSM},
		{"kube_pod_status_phase", 2, genKSM},
		{"node_cpu_seconds_total", 1, genNodeExporter},
	}
}

// genFederate writes n series of OpenShift-like /federate output (text format, ~300 bytes per
// line, families sorted by name, a TYPE line each, external labels prometheus and
// prometheus_replica), deterministic by seed, with timestamps within 30s before ts (ms).
func genFederate(w io.Writer, n, seed int, ts int64) error {
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	bw := bufio.NewWriter(w)
	total := 0
	fams := genFamilies()
	for _, f := range fams {
		total += f.weight
	}
	written := 0
	for fi, f := range fams {
		cnt := n * f.weight / total
		if fi == len(fams)-1 {
			cnt = n - written
		}
		written += cnt
		if cnt == 0 {
			continue
		}
		fmt.Fprintf(bw, "# TYPE %s untyped\n", f.name)
		for j := range cnt {
			kv := f.labels(r, j)
			kv = append(kv, "prometheus", "openshift-monitoring/k8s", "prometheus_replica", "prometheus-k8s-"+strconv.Itoa(j%2))
			type pair struct{ k, v string }
			ps := make([]pair, 0, len(kv)/2)
			for k := 0; k < len(kv); k += 2 {
				ps = append(ps, pair{kv[k], kv[k+1]})
			}
			slices.SortFunc(ps, func(a, b pair) int {
				return bytes.Compare([]byte(a.k), []byte(b.k))
			})
			bw.WriteString(f.name)
			bw.WriteByte('{')
			for k, p := range ps {
				if k > 0 {
					bw.WriteByte(',')
				}
				bw.WriteString(p.k)
				bw.WriteString(`="`)
				bw.WriteString(p.v)
				bw.WriteByte('"')
			}
			bw.WriteString("} ")
			var v float64
			switch r.IntN(4) {
			case 0:
				v = float64(r.IntN(2))
			case 1:
				v = float64(r.IntN(1 << 20))
			case 2:
				v = r.Float64() * 1e6
			default:
				v = r.ExpFloat64() * 1e9
			}
			bw.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
			bw.WriteByte(' ')
			bw.WriteString(strconv.FormatInt(ts-r.Int64N(30000), 10))
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

// federateBody is a generated body with the offsets of its timestamps, so that benchmarks can
// advance them in place.
type federateBody struct {
	b   []byte
	tss []int // offset of each 13-digit timestamp
}

func newFederateBody(tb testing.TB, n, seed int, ts int64) *federateBody {
	var buf bytes.Buffer
	if err := genFederate(&buf, n, seed, ts); err != nil {
		tb.Fatal(err)
	}
	fb := &federateBody{b: buf.Bytes()}
	for off := 0; off < len(fb.b); {
		e := bytes.IndexByte(fb.b[off:], '\n') + off
		if fb.b[off] != '#' {
			fb.tss = append(fb.tss, bytes.LastIndexByte(fb.b[off:e], ' ')+off+1)
		}
		off = e + 1
	}
	return fb
}

// shift adds d ms to every timestamp, in place (13 digits stay 13 digits).
func (fb *federateBody) shift(d int64) {
	var tmp [20]byte
	for _, off := range fb.tss {
		t, _ := parseTimestamp(fb.b[off : off+13])
		copy(fb.b[off:off+13], strconv.AppendInt(tmp[:0], t+d, 10))
	}
}

// TestGenFederateFixture keeps testdata/federate/openshift-sample.txt equal to the generator's
// output (regenerate with -update), and checks the generator's shape.
func TestGenFederateFixture(t *testing.T) {
	var buf bytes.Buffer
	if err := genFederate(&buf, 200, 1, 1764320000000); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "testdata", "federate", "openshift-sample.txt")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("%s differs from the generator's output; run with -update", path)
	}
	fb := newFederateBody(t, 10000, 7, 1764320000000)
	if len(fb.tss) != 10000 {
		t.Fatalf("%d series, want 10000", len(fb.tss))
	}
	if per := len(fb.b) / len(fb.tss); per < 250 || per > 400 {
		t.Errorf("%d bytes per line, want 250-400", per)
	}
}
