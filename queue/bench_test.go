package queue_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
)

// benchWAL appends scrapes of nSeries realistic series (8 labels) and returns the WAL; the caller
// closes it (not b.Cleanup, which would keep it reachable from the finished benchmark).
func benchWAL(b *testing.B, nSeries, scrapes int) *wal.WAL {
	b.Helper()
	opts := wal.DefaultOptions()
	opts.Fsync = wal.FsyncSegment
	w, err := wal.Open(discardLogger(), nil, b.TempDir(), "c1", opts)
	if err != nil {
		b.Fatal(err)
	}
	app := w.Appender()
	refs := make([]wal.SeriesRef, nSeries)
	for i := range refs {
		refs[i] = app.Ref(labels.FromStrings(
			"__name__", "container_cpu_usage_seconds_total",
			"cluster", "managed-cluster-01",
			"container", "app-"+strconv.Itoa(i%97),
			"instance", "10.0."+strconv.Itoa(i/256%256)+"."+strconv.Itoa(i%256)+":9100",
			"job", "kubelet",
			"namespace", "ns-"+strconv.Itoa(i%31),
			"pod", "pod-"+strconv.Itoa(i),
		))
	}
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	for s := 0; s < scrapes; s++ {
		for i, ref := range refs {
			app.Append(ref, t0+int64(s)*30_000, float64(s*i))
		}
		if _, err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return w
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkEndToEnd replays a WAL of 1 M samples over loopback HTTP into a receiver that reads and
// discards each request. It reports samples/s and the CPU seconds (queue, sender and receiver
// together, all in this process) per million samples.
func BenchmarkEndToEnd(b *testing.B) {
	const nSeries, scrapes = 10_000, 100
	w := benchWAL(b, nSeries, scrapes)
	defer w.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	for _, shards := range []int{4, 16} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			var samples int64
			cpu0, t0 := cpuSeconds(), time.Now()
			for b.Loop() {
				o := queue.DefaultOptions()
				o.Consumer = "bench"
				o.StopAtEnd, o.NoCommit = true, true
				o.StartAt = &wal.Position{}
				o.MinShards, o.MaxShards = shards, shards
				q, err := queue.New(discardLogger(), prometheus.NewRegistry(), w, newSender(srv.URL, 30*time.Second), o)
				if err != nil {
					b.Fatal(err)
				}
				if err := q.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
				samples += q.Stats().Delivered
			}
			elapsed, cpu := time.Since(t0).Seconds(), cpuSeconds()-cpu0
			b.ReportMetric(float64(samples)/elapsed, "samples/s")
			b.ReportMetric(cpu/(float64(samples)/1e6), "cpu-s/Msamples")
		})
	}
}

// blockingSender accepts the first `free` requests, then blocks until released.
type blockingSender struct {
	free    atomic.Int64
	blocked chan struct{}
	once    sync.Once
	release chan struct{}
}

func (s *blockingSender) Send(ctx context.Context, _ []queue.Series) error {
	if s.free.Add(-1) >= 0 {
		return nil
	}
	s.once.Do(func() { close(s.blocked) })
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BenchmarkHeapBacklog measures the heap in use while the queue is draining a backlog with a
// blocked sender: 100 k series with 100 scrapes each (10 M samples) against the same series with
// one scrape (100 k samples) and ten (1 M). Memory must not grow with the backlog: the series
// (held by the WAL writer and the reader) cost the same in each case; the buffers are bounded by
// MaxShards × (Capacity + MaxSamplesPerSend) samples plus one record.
func BenchmarkHeapBacklog(b *testing.B) {
	const nSeries = 100_000
	for _, scrapes := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("backlog=%d", nSeries*scrapes), func(b *testing.B) {
			w := benchWAL(b, nSeries, scrapes)
			defer w.Close()
			for b.Loop() {
				s := &blockingSender{blocked: make(chan struct{}), release: make(chan struct{})}
				s.free.Store(20)
				o := queue.DefaultOptions()
				o.Consumer = "bench"
				o.MinShards, o.MaxShards = 50, 50 // the most memory the defaults allow
				o.NoCommit = true
				q, err := queue.New(discardLogger(), prometheus.NewRegistry(), w, s, o)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- q.Run(ctx) }()
				<-s.blocked
				// Let the tailer fill every buffer it may: wait until reading stops.
				var last int64 = -1
				for {
					st := q.Stats()
					if st.Pending == last {
						break
					}
					last = st.Pending
					waitRead(q, last)
				}
				runtime.GC()
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
				b.ReportMetric(float64(q.Stats().Pending), "pending-samples")
				cancel()
				q.Abort()
				close(s.release)
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// waitRead waits until pending moves past last or 200 ms pass without change (the buffers are
// full, or the backlog ended).
func waitRead(q *queue.Queue, last int64) {
	deadline := time.Now().Add(200 * time.Millisecond)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if q.Stats().Pending != last {
			return
		}
		<-tick.C
	}
}
