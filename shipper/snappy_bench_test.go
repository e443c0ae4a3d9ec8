package shipper

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/prompb"
)

// realisticSeries returns n label sets as the agent writes them to its WAL from a federate
// source like e2e/benche2e's: ten OpenShift-like families in federate order (grouped by metric
// name, a tenth of the series each), job, instance, prometheus and prometheus_replica from the
// federated Prometheus, clusterID added by the agent, labels sorted by name.
func realisticSeries(n int) [][]prompb.Label {
	namespaces := []string{"openshift-monitoring", "openshift-etcd", "openshift-ingress", "openshift-apiserver", "payments", "checkout", "search", "batch-jobs"}
	verbs := []string{"GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE"}
	resources := []string{"pods", "nodes", "services", "configmaps", "secrets", "deployments", "events", "leases", "endpoints", "namespaces"}
	buckets := []string{"0.005", "0.025", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
	phases := []string{"Pending", "Running", "Succeeded", "Failed", "Unknown"}
	pod := func(j int) string {
		ns := namespaces[j%len(namespaces)]
		return fmt.Sprintf("%s-%x-%06d", ns[strings.LastIndexByte(ns, '-')+1:], (j*2654435761)&0xfffff, j)
	}
	node := func(j int) string { return fmt.Sprintf("worker-%02d.cluster.local", j%24) }
	type family struct {
		name   string
		labels func(j int) []string
	}
	fams := []family{
		{"container_cpu_usage_seconds_total", func(j int) []string {
			return []string{"namespace", namespaces[j%len(namespaces)], "pod", pod(j), "container", "app", "node", node(j)}
		}},
		{"container_memory_working_set_bytes", func(j int) []string {
			return []string{"namespace", namespaces[j%len(namespaces)], "pod", pod(j), "container", "app", "node", node(j)}
		}},
		{"container_network_receive_bytes_total", func(j int) []string {
			return []string{"namespace", namespaces[j%len(namespaces)], "pod", pod(j), "interface", "eth0", "node", node(j)}
		}},
		{"kube_pod_container_status_restarts_total", func(j int) []string {
			return []string{"namespace", namespaces[j%len(namespaces)], "pod", pod(j), "container", "app", "uid", fmt.Sprintf("%08x-0000-4000-8000-%012x", j, j*7919)}
		}},
		{"kube_pod_status_phase", func(j int) []string {
			return []string{"namespace", namespaces[j%len(namespaces)], "pod", pod(j / len(phases)), "phase", phases[j%len(phases)]}
		}},
		{"apiserver_request_duration_seconds_bucket", func(j int) []string {
			k := j / len(buckets)
			return []string{"verb", verbs[k%len(verbs)], "resource", resources[(k/len(verbs))%len(resources)], "scope", "cluster", "component", fmt.Sprintf("apiserver-%d", k/(len(verbs)*len(resources))), "le", buckets[j%len(buckets)]}
		}},
		{"apiserver_request_total", func(j int) []string {
			return []string{"verb", verbs[j%len(verbs)], "resource", resources[(j/len(verbs))%len(resources)], "code", strconv.Itoa([]int{200, 201, 404, 409, 500}[(j/70)%5]), "client", fmt.Sprintf("controller-%d", j/350)}
		}},
		{"node_filesystem_avail_bytes", func(j int) []string {
			return []string{"node", node(j), "device", fmt.Sprintf("/dev/nvme%dn1p%d", j/24%8, j/192), "mountpoint", fmt.Sprintf("/var/lib/kubelet/pods/%06d", j), "fstype", "xfs"}
		}},
		{"etcd_disk_wal_fsync_duration_seconds_bucket", func(j int) []string {
			return []string{"member", fmt.Sprintf("etcd-%d", j/len(buckets)), "le", buckets[j%len(buckets)]}
		}},
		{"namespace:container_cpu_usage:sum", func(j int) []string {
			return []string{"namespace", fmt.Sprintf("tenant-%06d", j)}
		}},
	}
	per := n / len(fams)
	out := make([][]prompb.Label, 0, n)
	for fi, f := range fams {
		for j := range per {
			kv := append(f.labels(j), "__name__", f.name, "job", "kubernetes-pods",
				"instance", fmt.Sprintf("10.128.%d.%d:9100", j%256, fi),
				"prometheus", "openshift-monitoring/k8s", "prometheus_replica", "prometheus-k8s-0",
				"clusterID", "9f1b3c2e-6a0d-4c7b-b8e5-2d4f7a9c1e03")
			ls := lbls(kv...)
			sort.Slice(ls, func(a, b int) bool { return ls[a].Name < ls[b].Name })
			out = append(out, ls)
		}
	}
	return out
}

// randomSeries returns n label sets like agent/ingest's generated federate output: cadvisor,
// kube-state-metrics, apiserver and node-exporter families with random pod hashes, uids and
// nodes, external labels prometheus and prometheus_replica, clusterID, sorted by name.
func randomSeries(n int) [][]prompb.Label {
	r := rand.New(rand.NewPCG(7, 0x5eed))
	nss := []string{"openshift-monitoring", "openshift-apiserver", "openshift-etcd", "openshift-ingress", "openshift-kube-apiserver", "openshift-dns", "payments", "checkout", "inventory", "search", "frontend", "batch-jobs"}
	pod := func(j int) (ns, pod, container, uid string) {
		ns = nss[j%len(nss)]
		base := []string{"prometheus-k8s", "alertmanager-main", "thanos-querier", "node-exporter", "kube-state-metrics", "router-default", "etcd", "apiserver", "web", "worker", "api"}[r.IntN(11)]
		pod = fmt.Sprintf("%s-%08x-%05x", base, r.Uint32(), j)
		container = []string{"kube-rbac-proxy", "prometheus", "config-reloader", "main", "oauth-proxy", "server", "sidecar"}[r.IntN(7)]
		uid = fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
		return
	}
	nodeOf := func() (node, instance string) {
		k := r.IntN(60)
		return fmt.Sprintf("ip-10-0-%d-%d", 128+k/16, 10+k), fmt.Sprintf("10.0.%d.%d:10250", 128+k/16, 10+k)
	}
	fams := []struct {
		name   string
		labels func(j int) []string
	}{
		{"apiserver_request_total", func(j int) []string {
			_, instance := nodeOf()
			return []string{"apiserver", "kube-apiserver", "code", []string{"200", "201", "404", "409", "500"}[r.IntN(5)], "endpoint", "https", "instance", instance, "job", "apiserver", "namespace", "default", "resource", fmt.Sprintf("pods-%d", j), "verb", []string{"GET", "LIST", "WATCH", "POST"}[r.IntN(4)]}
		}},
		{"container_cpu_usage_seconds_total", func(j int) []string {
			ns, p, c, uid := pod(j)
			node, instance := nodeOf()
			return []string{"container", c, "cpu", "total", "endpoint", "https-metrics", "id", "/kubepods.slice/kubepods-pod" + uid[:8], "instance", instance, "job", "kubelet", "namespace", ns, "node", node, "pod", p, "service", "kubelet"}
		}},
		{"container_memory_working_set_bytes", func(j int) []string {
			ns, p, c, uid := pod(j)
			node, instance := nodeOf()
			return []string{"container", c, "endpoint", "https-metrics", "id", "/kubepods.slice/kubepods-pod" + uid[:8], "instance", instance, "job", "kubelet", "namespace", ns, "node", node, "pod", p, "service", "kubelet"}
		}},
		{"kube_pod_status_phase", func(j int) []string {
			ns, p, _, uid := pod(j)
			return []string{"endpoint", "https-main", "instance", "10.128.2.14:8443", "job", "kube-state-metrics", "namespace", ns, "phase", []string{"Pending", "Running", "Succeeded", "Failed", "Unknown"}[j%5], "pod", p, "service", "kube-state-metrics", "uid", uid}
		}},
		{"node_cpu_seconds_total", func(j int) []string {
			node, _ := nodeOf()
			return []string{"cpu", fmt.Sprint(j % 64), "endpoint", "https", "instance", node, "job", "node-exporter", "mode", []string{"idle", "user", "system", "iowait"}[r.IntN(4)], "namespace", "openshift-monitoring", "pod", fmt.Sprintf("node-exporter-%05x", r.Uint32()&0xfffff), "service", "node-exporter"}
		}},
	}
	per := n / len(fams)
	out := make([][]prompb.Label, 0, n)
	for _, f := range fams {
		for j := range per {
			kv := append(f.labels(j), "__name__", f.name, "prometheus", "openshift-monitoring/k8s", "prometheus_replica", "prometheus-k8s-0",
				"clusterID", "9f1b3c2e-6a0d-4c7b-b8e5-2d4f7a9c1e03")
			ls := lbls(kv...)
			sort.Slice(ls, func(a, b int) bool { return ls[a].Name < ls[b].Name })
			out = append(out, ls)
		}
	}
	return out
}

// realisticRequests cuts the series into requests of perReq series with samples samples each,
// one scrape interval apart, values of counters (integers) and gauges (fractions).
func realisticRequests(labels [][]prompb.Label, perReq, samples int) [][]prompb.TimeSeries {
	ts := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC).UnixMilli()
	var reqs [][]prompb.TimeSeries
	for start := 0; start+perReq <= len(labels); start += perReq {
		req := make([]prompb.TimeSeries, perReq)
		for i := range req {
			k := start + i
			req[i].Labels = labels[k]
			for s := range samples {
				v := float64((k*7919)%100000) + float64(s*(k%17+1))
				if k%2 == 1 {
					v = v*0.001 + float64(s)*0.0153
				}
				req[i].Samples = append(req[i].Samples, prompb.Sample{Value: v, Timestamp: ts + int64(s)*15000 + int64(k%7)})
			}
		}
		reqs = append(reqs, req)
	}
	return reqs
}

// BenchmarkSnappy compares protoSnappy with s2.EncodeSnappy on marshalled RW 1.0 and 2.0
// requests of realistic series: 2000 series x 1 sample and 500 series x 4 samples (the
// requests of one scrape of 20,000 series). It reports ns and compressed bytes per sample and
// MB/s of input.
func BenchmarkSnappy(b *testing.B) {
	for _, data := range []struct {
		name   string
		labels [][]prompb.Label
	}{{"benche2e", realisticSeries(20_000)}, {"ingest", randomSeries(20_000)}} {
		benchmarkSnappy(b, data.name, data.labels)
	}
}

func benchmarkSnappy(b *testing.B, dataName string, labels [][]prompb.Label) {
	for _, shape := range []struct {
		name           string
		series, sample int
	}{{"2000x1", 2000, 1}, {"500x4", 500, 4}} {
		reqs := realisticRequests(labels, shape.series, shape.sample)
		for _, proto := range []string{"v1", "v2"} {
			var raws [][]byte
			total, samples := 0, 0
			for _, req := range reqs {
				e := &encoder{}
				var err error
				if proto == "v1" {
					e.proto, err = appendWriteRequest(nil, req)
				} else {
					e.proto, e.series, err = appendV2Request(nil, nil, newSymbolTable(), &e.refs, req)
				}
				if err != nil {
					b.Fatal(err)
				}
				raws = append(raws, e.proto)
				total += len(e.proto)
				samples += shape.series * shape.sample
			}
			var p protoSnappy
			for _, c := range []struct {
				name string
				enc  func(dst, src []byte) []byte
			}{
				{"s2", s2.EncodeSnappy},
				{"proto", p.encode},
				{"diff", diffSnappy{}.encode},
				{"tokenize", tokenizeOnly},
			} {
				b.Run(dataName+"/"+shape.name+"/"+proto+"/"+c.name, func(b *testing.B) {
					var dst []byte
					sent := 0
					b.SetBytes(int64(total))
					for b.Loop() {
						sent = 0
						for _, raw := range raws {
							dst = c.enc(dst[:cap(dst)], raw)
							sent += len(dst)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(samples), "ns/sample")
					b.ReportMetric(float64(sent)/float64(samples), "bytes/sample")
					b.ReportMetric(float64(total)/float64(samples), "raw-bytes/sample")
				})
			}
		}
	}
}

func newSymbolTable() *symbolTable {
	t := &symbolTable{}
	t.reset()
	return t
}
