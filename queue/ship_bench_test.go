package queue_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
)

// openShiftLabels returns the labels of series i of a federated OpenShift cluster: 12 labels,
// about 250 bytes.
func openShiftLabels(i int) labels.Labels {
	names := []string{
		"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"kube_pod_container_status_restarts_total", "apiserver_request_duration_seconds_bucket",
		"node_network_receive_bytes_total", "kube_deployment_status_replicas_available",
	}
	namespaces := []string{
		"openshift-monitoring", "openshift-apiserver", "openshift-etcd", "openshift-ingress",
		"open-cluster-management-addon-observability", "customer-payments-prod",
	}
	ns := namespaces[i%len(namespaces)]
	return labels.FromStrings(
		"__name__", names[i%len(names)],
		"clusterID", "9f1b3c2e-6a0d-4c7b-b8e5-2d4f7a9c1e03",
		"container", fmt.Sprintf("container-%d", i%23),
		"endpoint", "https-metrics",
		"instance", fmt.Sprintf("10.128.%d.%d:10250", (i/250)%256, i%250),
		"job", "kubelet",
		"namespace", ns,
		"node", fmt.Sprintf("ip-10-0-%d-%d.ec2.internal", (i/50)%256, i%50),
		"pod", fmt.Sprintf("%s-%x-%05d", ns[:min(len(ns), 18)], 0x5f8d7c9b4+i/97, i),
		"prometheus", "openshift-monitoring/k8s",
		"service", "kubelet",
	)
}

// BenchmarkShip is what the agent's process does per sample between the WAL and the wire: a
// queue reads a real WAL of OpenShift-like series (one sample per series per scrape, so one
// sample per series per request) and ships it through the real shipper (encoding, snappy, HTTP
// on loopback) to a receiver that counts the bytes and discards them. It reports wall and CPU ns
// per sample delivered (everything in the process: queue, shipper, receiver), and allocations
// per op of samples/op samples.
func BenchmarkShip(b *testing.B) {
	const nSeries, scrapes = 20_000, 10
	opts := wal.DefaultOptions()
	opts.Fsync = wal.FsyncSegment
	w, err := wal.Open(discardLogger(), nil, b.TempDir(), "c1", opts)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	app := w.Appender()
	refs := make([]wal.SeriesRef, nSeries)
	for i := range refs {
		refs[i] = app.Ref(openShiftLabels(i))
	}
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	for s := 0; s < scrapes; s++ {
		for i, ref := range refs {
			app.Append(ref, t0+int64(s)*15_000, float64(s*i))
		}
		if _, err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	var wire atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		wire.Add(n)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	sender := newSender(srv.URL, 30*time.Second)
	var samples int64
	b.ReportAllocs()
	cpu0 := cpuSeconds()
	for b.Loop() {
		o := queue.DefaultOptions()
		o.Consumer = "bench"
		o.StopAtEnd, o.NoCommit = true, true
		o.StartAt = &wal.Position{}
		o.MinShards, o.MaxShards = 4, 4
		q, err := queue.New(discardLogger(), prometheus.NewRegistry(), w, sender, o)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		samples += q.Stats().Delivered
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(samples), "ns/sample")
	b.ReportMetric((cpuSeconds()-cpu0)*1e9/float64(samples), "cpu-ns/sample")
	b.ReportMetric(float64(nSeries*scrapes), "samples/op")
	b.ReportMetric(float64(wire.Load())/float64(samples), "wire-B/sample")
	b.ReportMetric(0, "ns/op")
}
