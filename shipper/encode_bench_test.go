//go:build unix

// The benchmark reads the process CPU time with getrusage, hence unix only.

package shipper

import (
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

const (
	benchSeries       = 200_000
	benchBatchSamples = 2000 // samples per request, Prometheus' max_samples_per_send
	benchRecords      = 20   // one scrape of all series written as 20 Samples records
)

// benchLabels returns OpenShift-like label sets: 12 labels, about 300 bytes per series.
func benchLabels(n int) [][]prompb.Label {
	names := []string{
		"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"kube_pod_container_status_restarts_total", "apiserver_request_duration_seconds_bucket",
		"node_network_receive_bytes_total", "kube_deployment_status_replicas_available",
		"container_network_transmit_packets_total", "etcd_disk_wal_fsync_duration_seconds_bucket",
	}
	namespaces := []string{
		"openshift-monitoring", "openshift-apiserver", "openshift-etcd", "openshift-ingress",
		"openshift-kube-controller-manager", "open-cluster-management-addon-observability",
		"customer-payments-prod", "customer-frontend-prod",
	}
	out := make([][]prompb.Label, n)
	for i := range out {
		ns := namespaces[i%len(namespaces)]
		pod := fmt.Sprintf("%s-%x-%05d", ns[:min(len(ns), 18)], 0x5f8d7c9b4+i/97, i%100000)
		out[i] = lbls(
			"__name__", names[i%len(names)],
			"clusterID", "9f1b3c2e-6a0d-4c7b-b8e5-2d4f7a9c1e03",
			"prometheus", "openshift-monitoring/k8s",
			"container", fmt.Sprintf("container-%d", i%23),
			"endpoint", "https-metrics",
			"instance", fmt.Sprintf("10.128.%d.%d:10250", (i/250)%256, i%250),
			"job", "kubelet",
			"namespace", ns,
			"node", fmt.Sprintf("ip-10-0-%d-%d.ec2.internal", (i/50)%256, i%50),
			"pod", pod,
			"service", "kubelet",
		)
	}
	return out
}

// benchWAL returns the Samples records of one scrape of n series, as the WAL stores them.
func benchWAL(n int) [][]byte {
	var enc record.Encoder
	ts := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC).UnixMilli()
	per := n / benchRecords
	recs := make([][]byte, 0, benchRecords)
	for r := 0; r < benchRecords; r++ {
		samples := make([]record.RefSample, 0, per)
		for i := r * per; i < (r+1)*per; i++ {
			samples = append(samples, record.RefSample{
				Ref: chunks.HeadSeriesRef(i), T: ts + int64(i%1000), V: float64(i%977) * 1.25,
			})
		}
		recs = append(recs, enc.Samples(samples, nil))
	}
	return recs
}

// BenchmarkEncode measures WAL records to compressed request bytes on one core: decode tsdb
// Samples records, build batches of 2000 one-sample series from labels encoded once per series
// (as the queue does; the references build prompb series from cached labels), encode and
// compress. "handrolled_s2" is the shipper's RW 1.0 path and "v2_handrolled_s2"
// its RW 2.0 path, "gogo_snappy" and "v2_prometheus_snappy" the references
// (prompb Marshal + golang/snappy); the two others show what each half contributes.
func BenchmarkEncode(b *testing.B) {
	labelsByRef := benchLabels(benchSeries)
	recs := benchWAL(benchSeries)
	labelBytes := 0
	for _, ls := range labelsByRef {
		for _, l := range ls {
			labelBytes += len(l.Name) + len(l.Value)
		}
	}
	b.Logf("%d series, %.0f label bytes per series", benchSeries, float64(labelBytes)/benchSeries)
	encodedByRef := make([]string, len(labelsByRef))
	for i, s := range toSeries(prompbSeries(labelsByRef)) {
		encodedByRef[i] = s.Labels // encoded once per series, as the queue does
	}

	// An encodeFunc takes the batch as Series (the shipper's input) or as prompb.TimeSeries (the
	// references'); the other is nil.
	type encodeFunc func(series []Series, ps []prompb.TimeSeries) int
	e := &encoder{}
	var gogoBuf []byte
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	variants := []struct {
		name   string
		encode encodeFunc
	}{
		{"handrolled_s2", func(series []Series, _ []prompb.TimeSeries) int {
			block, err := e.encode(series)
			if err != nil {
				b.Fatal(err)
			}
			return len(block)
		}},
		{"handrolled_snappy", func(series []Series, _ []prompb.TimeSeries) int {
			raw := appendWriteRequest(e.proto[:0], series)
			e.proto = raw
			gogoBuf = snappy.Encode(gogoBuf[:cap(gogoBuf)], raw)
			return len(gogoBuf)
		}},
		{"v2_handrolled_s2", func(series []Series, _ []prompb.TimeSeries) int {
			block, err := e.encodeV2(series)
			if err != nil {
				b.Fatal(err)
			}
			return len(block)
		}},
		{"v2_prometheus_snappy", func(_ []Series, series []prompb.TimeSeries) int {
			// Prometheus' own RW 2.0 path: its symbol table, writev2 structs, gogo's Marshal.
			st.Reset()
			req.Timeseries = req.Timeseries[:0]
			for _, ts := range series {
				var refs []uint32
				for _, l := range ts.Labels {
					refs = append(refs, st.Symbolize(l.Name), st.Symbolize(l.Value))
				}
				v2 := writev2.TimeSeries{LabelsRefs: refs}
				for _, smp := range ts.Samples {
					v2.Samples = append(v2.Samples, writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
				}
				req.Timeseries = append(req.Timeseries, v2)
			}
			req.Symbols = st.Symbols()
			raw, err := req.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			gogoBuf = snappy.Encode(gogoBuf[:cap(gogoBuf)], raw)
			return len(gogoBuf)
		}},
		{"gogo_s2", func(_ []Series, series []prompb.TimeSeries) int {
			raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			e.comp = s2.EncodeSnappy(e.comp[:cap(e.comp)], raw)
			return len(e.comp)
		}},
		{"gogo_snappy", func(_ []Series, series []prompb.TimeSeries) int {
			raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			gogoBuf = snappy.Encode(gogoBuf[:cap(gogoBuf)], raw)
			return len(gogoBuf)
		}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			pre := !strings.Contains(v.name, "gogo") && !strings.Contains(v.name, "prometheus")
			var (
				dec     = record.NewDecoder(nil, nil)
				refs    []record.RefSample
				batch   = make([]Series, 0, benchBatchSamples)
				pbatch  = make([]prompb.TimeSeries, 0, benchBatchSamples)
				samples = make([]Sample, benchBatchSamples)
				psmpls  = make([]prompb.Sample, benchBatchSamples)
				sent    int
				total   int
			)
			flush := func() {
				if pre {
					sent += v.encode(batch, nil)
				} else {
					sent += v.encode(nil, pbatch)
				}
				batch, pbatch = batch[:0], pbatch[:0]
			}
			b.ReportAllocs()
			cpu0 := cpuSeconds(b)
			for b.Loop() {
				for _, rec := range recs {
					var err error
					if refs, err = dec.Samples(rec, refs[:0]); err != nil {
						b.Fatal(err)
					}
					for _, s := range refs {
						k := len(batch) + len(pbatch)
						if pre {
							samples[k] = Sample{Value: s.V, Timestamp: s.T}
							batch = append(batch, Series{Labels: encodedByRef[s.Ref], Samples: samples[k : k+1]})
						} else {
							psmpls[k] = prompb.Sample{Value: s.V, Timestamp: s.T}
							pbatch = append(pbatch, prompb.TimeSeries{Labels: labelsByRef[s.Ref], Samples: psmpls[k : k+1]})
						}
						if k+1 == benchBatchSamples {
							flush()
						}
					}
					total += len(refs)
				}
				if len(batch)+len(pbatch) > 0 {
					flush()
				}
			}
			// samples/s is wall time, what a user sees on an idle core; samples/cpu-s discounts the
			// time other processes took the core (shared CI machines).
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(float64(total)/(cpuSeconds(b)-cpu0), "samples/cpu-s")
			b.ReportMetric(float64(sent)/float64(total), "bytes/sample")
		})
	}
}

// prompbSeries returns one sample-less series per label set.
func prompbSeries(ls [][]prompb.Label) []prompb.TimeSeries {
	out := make([]prompb.TimeSeries, len(ls))
	for i := range ls {
		out[i].Labels = ls[i]
	}
	return out
}

// cpuSeconds is the CPU time (user + system) the process has used, GC included.
func cpuSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkEncodeBatch encodes one request of 2000 OpenShift-like one-sample series over and
// over (labels pre-encoded, as the queue hands them over): the encoder alone, its input in
// cache, without the WAL decoding of BenchmarkEncode. It reports ns per sample.
func BenchmarkEncodeBatch(b *testing.B) {
	series := make([]prompb.TimeSeries, benchBatchSamples)
	for i, ls := range benchLabels(benchBatchSamples) {
		series[i] = prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: float64(i) * 1.25, Timestamp: 1764324000000 + int64(i)}}}
	}
	batch := toSeries(series)
	// The same series in body order: /federate writes a metric family's series together, so
	// consecutive series share the metric name and most labels.
	byName := append([]Series(nil), batch...)
	sort.SliceStable(byName, func(i, j int) bool { return series[i].Labels[0].Value < series[j].Labels[0].Value })
	for _, v := range []struct {
		name   string
		encode func(e *encoder) ([]byte, error)
	}{
		{"v1", func(e *encoder) ([]byte, error) { return e.encode(batch) }},
		{"v1_body_order", func(e *encoder) ([]byte, error) { return e.encode(byName) }},
		{"v2_body_order", func(e *encoder) ([]byte, error) { return e.encodeV2(byName) }},
		{"v1_proto_only", func(e *encoder) ([]byte, error) {
			e.proto = appendWriteRequest(e.proto[:0], batch)
			return e.proto, nil
		}},
		{"v2", func(e *encoder) ([]byte, error) { return e.encodeV2(batch) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			e := &encoder{}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.encode(e); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/sample")
		})
	}
}
