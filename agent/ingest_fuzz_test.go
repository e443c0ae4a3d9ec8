package agent

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
)

// FuzzIngest: Ingest of arbitrary bytes, as text or as protobuf, never panics and appends all
// of a scrape or nothing: on error the WAL holds no sample; on success it holds what the result
// says, and Read = Appended + the drops. The body is ingested twice, so that the second pass
// takes the series cache: it must agree with the first. Seed corpus in
// testdata/fuzz/FuzzIngest, plus parseCases.
func FuzzIngest(f *testing.F) {
	for _, c := range parseCases() {
		f.Add([]byte(c), false)
	}
	f.Add(toProtobuf(f, []byte("# TYPE up untyped\nup{job=\"a\"} 1 1764319990000\nup{job=\"b\"} 0 1764319990000\n")), true)
	f.Fuzz(func(t *testing.T, body []byte, proto bool) {
		now := time.UnixMilli(testNowMs)
		opts := wal.DefaultOptions()
		opts.Fsync = wal.FsyncSegment
		w, err := wal.Open(nil, nil, t.TempDir(), "fuzz", opts)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		cfg := DefaultTransformConfig()
		cfg.MaxAge = 0 // keep arbitrary timestamps
		cfg.Labels = []LabelPair{{"cluster", "c"}}
		ing, err := NewIngester(nil, nil, w, cfg, testIngestOptions(&now))
		if err != nil {
			t.Fatal(err)
		}
		ct := textType
		if proto {
			ct = protoType
		}
		var results [2]IngestResult
		var errs [2]error
		total := 0
		for pass := range 2 {
			res, err := ing.Ingest(bytes.NewReader(body), ct)
			got, _ := readWAL(t, w.Dir())
			if err != nil {
				var ie *IngestError
				if !errors.As(err, &ie) {
					t.Fatalf("pass %d: error %v is not an *IngestError", pass, err)
				}
				if len(got) != total {
					t.Fatalf("pass %d: failed ingest (%v) changed the wal from %d to %d samples", pass, err, total, len(got))
				}
			} else {
				dropped := 0
				for _, n := range res.Dropped {
					dropped += n
				}
				if res.Read != res.Appended+dropped {
					t.Fatalf("pass %d: read %d != appended %d + dropped %d (%+v)", pass, res.Read, res.Appended, dropped, res)
				}
				if len(got) != total+res.Appended {
					t.Fatalf("pass %d: wal holds %d samples, want %d", pass, len(got), total+res.Appended)
				}
				total = len(got)
			}
			results[pass], errs[pass] = res, err
		}
		if (errs[0] == nil) != (errs[1] == nil) || results[0].Read != results[1].Read {
			t.Fatalf("second pass disagrees: %+v %v / %+v %v", results[0], errs[0], results[1], errs[1])
		}
	})
}
