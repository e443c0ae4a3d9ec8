package ingest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/collector-dev/collector/wal"
)

// walAppended returns the WAL's count of appended samples.
func walAppended(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "collector_wal_samples_appended_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("collector_wal_samples_appended_total not registered")
	return 0
}

// FuzzIngest: Ingest of arbitrary bytes, as text or as protobuf, never panics and appends all
// of a scrape or nothing: on error the WAL appended no sample; on success it appended what the
// result says, and Read = Appended + the drops. One Ingester (and its cache) and one WAL serve
// every input of a fuzz worker, and each body is ingested twice, so that cache hits on series of
// earlier inputs are exercised: the second pass must agree with the first. Seed corpus in
// testdata/fuzz/FuzzIngest, plus parseCases.
func FuzzIngest(f *testing.F) {
	for _, c := range parseCases() {
		f.Add([]byte(c), false)
	}
	f.Add(toProtobuf(f, []byte("# TYPE up untyped\nup{job=\"a\"} 1 1764319990000\nup{job=\"b\"} 0 1764319990000\n")), true)
	now := time.UnixMilli(testNowMs)
	opts := wal.DefaultOptions()
	opts.Fsync = wal.FsyncSegment
	reg := prometheus.NewRegistry()
	w, err := wal.Open(nil, reg, f.TempDir(), "fuzz", opts)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { w.Close() })
	cfg := DefaultTransformConfig()
	cfg.MaxAge = 0 // keep arbitrary timestamps
	cfg.Labels = []LabelPair{{"cluster", "c"}}
	ing, err := NewIngester(nil, nil, w, cfg, testIngestOptions(&now))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, proto bool) {
		ct := textType
		if proto {
			ct = protoType
		}
		var results [2]IngestResult
		var errs [2]error
		for pass := range 2 {
			before := walAppended(t, reg)
			res, err := ing.Ingest(bytes.NewReader(body), ct)
			appended := int(walAppended(t, reg) - before)
			if err != nil {
				var ie *IngestError
				if !errors.As(err, &ie) {
					t.Fatalf("pass %d: error %v is not an *IngestError", pass, err)
				}
				if appended != 0 {
					t.Fatalf("pass %d: failed ingest (%v) appended %d samples", pass, err, appended)
				}
			} else {
				dropped := 0
				for _, n := range res.Dropped {
					dropped += n
				}
				if res.Read != res.Appended+dropped {
					t.Fatalf("pass %d: read %d != appended %d + dropped %d (%+v)", pass, res.Read, res.Appended, dropped, res)
				}
				if appended != res.Appended {
					t.Fatalf("pass %d: wal appended %d samples, result says %d", pass, appended, res.Appended)
				}
			}
			results[pass], errs[pass] = res, err
		}
		if (errs[0] == nil) != (errs[1] == nil) || results[0].Read != results[1].Read {
			t.Fatalf("second pass disagrees: %+v %v / %+v %v", results[0], errs[0], results[1], errs[1])
		}
	})
}
