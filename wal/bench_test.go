package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/util/compression"
)

const (
	benchSeries = 200_000
	benchScrape = 10_000
)

// benchLabels returns an OpenShift-like label set of about 300 bytes.
func benchLabels(i int) labels.Labels {
	return labels.FromStrings(
		"__name__", "container_memory_working_set_bytes",
		"clusterID", "0c3f3a9e-5a4b-4f7b-9c59-1f0e2e4d6a71",
		"container", "kube-rbac-proxy-"+strconv.Itoa(i%17),
		"endpoint", "https-metrics",
		"id", "/kubepods.slice/kubepods-burstable.slice/pod"+strconv.Itoa(i),
		"image", "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:"+strconv.Itoa(i*7919),
		"instance", "10.0."+strconv.Itoa(i%250)+"."+strconv.Itoa(i%199)+":10250",
		"job", "kubelet",
		"namespace", "openshift-monitoring-"+strconv.Itoa(i%40),
		"node", "worker-"+strconv.Itoa(i%60)+".example.internal",
		"pod", "prometheus-k8s-"+strconv.Itoa(i),
		"service", "kubelet",
	)
}

// prepareAppend opens a WAL with 200k known series (Series records already written).
func prepareAppend(b *testing.B, opts Options) (*WAL, []SeriesRef) {
	w, err := Open(nil, nil, b.TempDir(), "bench", opts)
	if err != nil {
		b.Fatal(err)
	}
	refs := make([]SeriesRef, benchSeries)
	app := w.Appender()
	for i := range refs {
		refs[i] = app.Ref(benchLabels(i))
		app.Append(refs[i], 1, 0)
	}
	if _, err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	return w, refs
}

func walBytes(w *WAL) int64 {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	w.wl.Sync()
	return w.sizeLocked()
}

// BenchmarkAppend appends 10k-sample scrapes over 200k known series: the cost of a scrape's
// bookkeeping (ref check, dedupe, encoding) and of writing it.
func BenchmarkAppend(b *testing.B) {
	for _, tc := range []struct {
		compr compression.Type
		fsync FsyncPolicy
	}{
		{compression.None, FsyncSegment},
		{compression.Snappy, FsyncSegment},
		{compression.Zstd, FsyncSegment},
		{compression.Snappy, FsyncScrape},
	} {
		b.Run(fmt.Sprintf("compression=%s/fsync=%s", tc.compr, tc.fsync), func(b *testing.B) {
			opts := DefaultOptions()
			opts.Compression, opts.Fsync = tc.compr, tc.fsync
			w, refs := prepareAppend(b, opts)
			defer w.Close()
			app := w.Appender()
			before := walBytes(w)
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				base := (n * benchScrape) % benchSeries
				ts := int64(2 + n*benchScrape/benchSeries) // a new timestamp per pass over the series
				for i := 0; i < benchScrape; i++ {
					app.Append(refs[base+i], ts*1000, float64(n+i))
				}
				st, err := app.Commit()
				if err != nil || st.Samples != benchScrape {
					b.Fatalf("commit: %+v %v", st, err)
				}
			}
			b.StopTimer()
			samples := float64(b.N) * benchScrape
			b.ReportMetric(samples/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(float64(walBytes(w)-before)/samples, "disk-bytes/sample")
		})
	}
}

// BenchmarkRead reads and decodes a WAL of 200 scrapes of 10k samples from its start.
func BenchmarkRead(b *testing.B) {
	for _, compr := range []compression.Type{compression.None, compression.Snappy} {
		b.Run("compression="+string(compr), func(b *testing.B) {
			opts := DefaultOptions()
			opts.Compression, opts.Fsync = compr, FsyncSegment
			w, refs := prepareAppend(b, opts)
			app := w.Appender()
			const scrapes = 200
			for n := 0; n < scrapes; n++ {
				base := (n * benchScrape) % benchSeries
				for i := 0; i < benchScrape; i++ {
					app.Append(refs[base+i], int64(2+n*benchScrape/benchSeries)*1000, float64(i))
				}
				if _, err := app.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			dir := w.Dir()
			w.Close()
			// Start after the Series records: the position a running consumer resumes from.
			r, err := NewReader(dir, Position{}, ReaderOptions{})
			if err != nil {
				b.Fatal(err)
			}
			first, err := r.Next(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			from := first.End
			r.Close()
			b.ReportAllocs()
			b.ResetTimer()
			var read int
			for n := 0; n < b.N; n++ {
				b.StopTimer() // opening loads the 200k series: BenchmarkOpenReader
				r, err := NewReader(dir, from, ReaderOptions{})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for {
					batch, err := r.Next(context.Background())
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					read += len(batch.Samples)
				}
				r.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
