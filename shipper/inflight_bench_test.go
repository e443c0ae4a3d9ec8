package shipper

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/sirupsen/logrus"
)

// inFlight sends batches concurrently, rounds times, to a receiver that answers none of them
// until all arrived, and returns the heap in use while they wait less the heap before the first
// Send (which holds the batches themselves). With staggered, each Send starts once the previous
// one reached the receiver, so that no two requests are encoded at the same time.
func inFlight(tb testing.TB, proto Protocol, batches [][]Series, rounds int, staggered bool) uint64 {
	var arrived sync.WaitGroup
	var release chan struct{}
	var mu sync.Mutex
	one := make(chan struct{}, len(batches))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		rel := release
		mu.Unlock()
		arrived.Done()
		one <- struct{}{}
		<-rel
		if proto == ProtocolV2 {
			w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", "5000")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	opts := DefaultOptions()
	opts.Protocol = proto
	log := logrus.New()
	log.SetOutput(io.Discard)
	c, err := New(log, prometheus.NewRegistry(), srv.URL, opts)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	runtime.GC()
	runtime.GC()
	var before, during runtime.MemStats
	runtime.ReadMemStats(&before)
	for range rounds {
		mu.Lock()
		release = make(chan struct{})
		mu.Unlock()
		arrived.Add(len(batches))
		var wg sync.WaitGroup
		for _, batch := range batches {
			wg.Go(func() {
				if err := c.Send(context.Background(), batch); err != nil {
					tb.Error(err)
				}
			})
			if staggered {
				<-one
			}
		}
		arrived.Wait()
		for len(one) > 0 {
			<-one
		}
		runtime.GC()
		runtime.ReadMemStats(&during)
		close(release)
		wg.Wait()
	}
	return during.HeapInuse - min(during.HeapInuse, before.HeapInuse)
}

// inFlightBatches returns n batches of perSend OpenShift-like one-sample series.
func inFlightBatches(n, perSend int) [][]Series {
	labelsByRef := benchLabels(n * perSend)
	batches := make([][]Series, n)
	for k := range batches {
		ps := make([]prompb.TimeSeries, perSend)
		for i := range ps {
			ps[i] = prompb.TimeSeries{Labels: labelsByRef[k*perSend+i], Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1764324000000 + int64(i)}}}
		}
		batches[k] = toSeries(ps)
	}
	return batches
}

// TestHeapInFlight: a request waiting for its response holds its compressed bytes, not the
// encoder's buffers (the uncompressed message and a snappy buffer sized for the worst case),
// which go back to the pool once it is compressed. The requests are encoded one after the
// other, so one encoder serves them all. 20 requests of 5000 series in flight held 4.4 MiB
// each when the encoder stayed with its request; the compressed request is about 0.23 MiB.
func TestHeapInFlight(t *testing.T) {
	const requests, perSend = 20, 5000
	batches := inFlightBatches(requests, perSend)
	for _, proto := range []Protocol{ProtocolV1, ProtocolV2} {
		t.Run(string(proto), func(t *testing.T) {
			heap := inFlight(t, proto, batches, 2, true)
			perRequest := heap / requests
			t.Logf("%d requests in flight: %d KiB of heap, %d KiB each", requests, heap>>10, perRequest>>10)
			if perRequest > 3<<19 {
				t.Fatalf("%d KiB of heap per request in flight, want at most 1536", perRequest>>10)
			}
		})
	}
}

// BenchmarkHeapInFlight measures the heap that requests in flight hold: 50 concurrent Sends
// (the queue's default MaxShards) of 5000 OpenShift-like series each (its MaxSamplesPerSend):
// what a backlog drain costs on top of steady state, in all and per request.
func BenchmarkHeapInFlight(b *testing.B) {
	const shards, perSend = 50, 5000
	batches := inFlightBatches(shards, perSend)
	for _, proto := range []Protocol{ProtocolV1, ProtocolV2} {
		b.Run(string(proto), func(b *testing.B) {
			var heap uint64
			for b.Loop() {
				heap = inFlight(b, proto, batches, 1, false)
			}
			b.ReportMetric(float64(heap)/(1<<20), "inflight-heap-MiB")
			b.ReportMetric(float64(heap)/shards/(1<<10), "KiB/request")
		})
	}
}
