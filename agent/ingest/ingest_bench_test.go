package ingest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/collector-dev/collector/wal"
)

const (
	benchSeries = 200000
	protoType   = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

// benchWAL opens a WAL as the benchmarks want it: fsync at segment cut, default compression.
func benchWAL(b testing.TB) *wal.WAL {
	b.Helper()
	opts := wal.DefaultOptions()
	opts.Fsync = wal.FsyncSegment
	w, err := wal.Open(nil, nil, b.TempDir(), "bench", opts)
	if err != nil {
		b.Fatal(err)
	}
	return w
}

func benchIngester(b testing.TB, w *wal.WAL, now *time.Time) *Ingester {
	b.Helper()
	cfg := DefaultTransformConfig()
	cfg.Labels = []LabelPair{{"cluster", "prod-1"}}
	cfg.ClusterID = "0d2f8ad8-4a6c-4b34-9b1c-ff1ea2d8a0b7"
	ing, err := NewIngester(nil, nil, w, cfg, testIngestOptions(now))
	if err != nil {
		b.Fatal(err)
	}
	return ing
}

// toProtobuf re-encodes a text body as delimited protobuf, as /federate serves it on request.
func toProtobuf(tb testing.TB, text []byte) []byte {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		tb.Fatal(err)
	}
	names := make([]string, 0, len(mfs))
	for n := range mfs {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, n := range names {
		if err := enc.Encode(mfs[n]); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

func reportRate(b *testing.B, samples int, m0, m1 *runtime.MemStats) {
	total := float64(samples) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/sample")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/total, "allocs/sample")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/total, "B/sample")
}

// BenchmarkIngest measures one 200k-series federate body (about 350 bytes per line, in memory)
// to WAL records on one goroutine.
//
//   - steady: the cache is warm, timestamps advance 30s per iteration (the production case);
//   - steady-gzip: the same with the body gzipped (level 6, as Prometheus serves it) and
//     inflated as the scrape does (klauspost gzip over a bufio.Reader): what
//     --from-compression gzip costs on top;
//   - cold: a new Ingester and WAL per iteration, every series new;
//   - protobuf: the same body as delimited protobuf through Ingest (textparse, no cache);
//   - textparse: Prometheus' text parser alone, labels and values (the baseline);
//   - expfmt-protobuf: the seeds' decoder alone on the protobuf body.
func BenchmarkIngest(b *testing.B) {
	fb := newFederateBody(b, benchSeries, 1, testNowMs)
	b.Run("steady", func(b *testing.B) { benchSteady(b, fb, false) })
	b.Run("steady-gzip", func(b *testing.B) { benchSteady(b, fb, true) })
	b.Run("cold", func(b *testing.B) {
		now := time.UnixMilli(testNowMs)
		b.SetBytes(int64(len(fb.b)))
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			w := benchWAL(b)
			ing := benchIngester(b, w, &now)
			b.StartTimer()
			res, err := ing.Ingest(bytes.NewReader(fb.b), textType)
			if err != nil || res.Appended != benchSeries {
				b.Fatalf("%+v %v", res, err)
			}
			b.StopTimer()
			w.Close()
			b.StartTimer()
		}
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		reportRate(b, benchSeries, &m0, &m1)
	})
	pb := toProtobuf(b, fb.b)
	b.Logf("body: text %d bytes, protobuf %d bytes, %d series", len(fb.b), len(pb), benchSeries)
	b.Run("protobuf", func(b *testing.B) {
		now := time.UnixMilli(testNowMs)
		w := benchWAL(b)
		defer w.Close()
		ing := benchIngester(b, w, &now)
		b.SetBytes(int64(len(pb)))
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		b.ResetTimer()
		for range b.N {
			res, err := ing.Ingest(bytes.NewReader(pb), protoType)
			if err != nil || res.Read != benchSeries {
				b.Fatalf("%+v %v", res, err)
			}
		}
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		reportRate(b, benchSeries, &m0, &m1)
	})
	b.Run("textparse", func(b *testing.B) {
		b.SetBytes(int64(len(fb.b)))
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		b.ResetTimer()
		for range b.N {
			n := 0
			p, err := newPromParser(fb.b, textType)
			if err != nil {
				b.Fatal(err)
			}
			var lset labels.Labels
			for {
				e, err := p.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if e == textparse.EntrySeries {
					p.Labels(&lset)
					_, _, _ = p.Series()
					n++
				}
			}
			if n != benchSeries {
				b.Fatal(n)
			}
		}
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		reportRate(b, benchSeries, &m0, &m1)
	})
	b.Run("expfmt-protobuf", func(b *testing.B) {
		b.SetBytes(int64(len(pb)))
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		b.ResetTimer()
		for range b.N {
			dec := expfmt.NewDecoder(bytes.NewReader(pb), expfmt.NewFormat(expfmt.TypeProtoDelim))
			n := 0
			for {
				var mf dto.MetricFamily
				if err := dec.Decode(&mf); err != nil {
					if errors.Is(err, io.EOF) {
						break
					}
					b.Fatal(err)
				}
				n += len(mf.GetMetric())
			}
			if n != benchSeries {
				b.Fatal(n)
			}
		}
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		reportRate(b, benchSeries, &m0, &m1)
	})
}

// benchSteady ingests fb again and again with a warm cache, its timestamps advanced 30s per
// iteration, gzipped (outside the timer) and inflated during the ingest when gz is set.
func benchSteady(b *testing.B, fb *federateBody, gz bool) {
	now := time.UnixMilli(testNowMs)
	w := benchWAL(b)
	defer w.Close()
	ing := benchIngester(b, w, &now)
	if _, err := ing.Ingest(bytes.NewReader(fb.b), textType); err != nil {
		b.Fatal(err)
	}
	var zbuf bytes.Buffer
	body := func() (io.Reader, error) { return bytes.NewReader(fb.b), nil }
	if gz {
		body = func() (io.Reader, error) { return gzip.NewReader(bufio.NewReader(bytes.NewReader(zbuf.Bytes()))) }
	}
	b.SetBytes(int64(len(fb.b)))
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		fb.shift(30000)
		now = now.Add(30 * time.Second)
		if gz {
			zbuf.Reset()
			zw, err := gzip.NewWriterLevel(&zbuf, 6)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := zw.Write(fb.b); err != nil {
				b.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		r, err := body()
		if err != nil {
			b.Fatal(err)
		}
		res, err := ing.Ingest(r, textType)
		if err != nil || res.Appended != benchSeries {
			b.Fatalf("%+v %v", res, err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	reportRate(b, benchSeries, &m0, &m1)
}

// BenchmarkIngestMemory measures the heap held per known series (the cache and the WAL's series
// state, labels included) after a cold scrape of 200k series, and the extra heap allocated by
// one steady-state scrape (GC off during the scrape, so every allocation counts).
func BenchmarkIngestMemory(b *testing.B) {
	fb := newFederateBody(b, benchSeries, 1, testNowMs)
	for range b.N {
		b.StopTimer()
		now := time.UnixMilli(testNowMs)
		w := benchWAL(b)
		var m0, m1, m2, m3 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		b.StartTimer()
		ing := benchIngester(b, w, &now)
		if _, err := ing.Ingest(bytes.NewReader(fb.b), textType); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		// A second scrape so that the buffers of the steady state exist before measuring.
		fb.shift(30000)
		now = now.Add(30 * time.Second)
		if _, err := ing.Ingest(bytes.NewReader(fb.b), textType); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		fb.shift(30000)
		now = now.Add(30 * time.Second)
		gc := debug.SetGCPercent(-1)
		runtime.ReadMemStats(&m2)
		res, err := ing.Ingest(bytes.NewReader(fb.b), textType)
		runtime.ReadMemStats(&m3)
		debug.SetGCPercent(gc)
		if err != nil || res.Appended != benchSeries {
			b.Fatalf("%+v %v", res, err)
		}
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/benchSeries, "bytes/series")
		b.ReportMetric(float64(m3.HeapAlloc-m2.HeapAlloc)/(1<<20), "extra-heap-MiB")
		b.ReportMetric(float64(m3.Mallocs-m2.Mallocs)/benchSeries, "steady-allocs/sample")
		// The cache's share: the heap it gives back when purged.
		var m4, m5 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m4)
		ing.cache.purge()
		runtime.GC()
		runtime.ReadMemStats(&m5)
		b.ReportMetric(float64(m4.HeapAlloc-m5.HeapAlloc)/benchSeries, "cache-bytes/series")
		runtime.KeepAlive(ing)
		w.Close()
		fb.shift(-90000)
	}
}
