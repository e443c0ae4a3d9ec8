package agent

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// protoType is the Content-Type of delimited protobuf, the exposition format besides text.
const protoType = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"

// gzipZeros compresses n zero bytes after prefix.
func gzipZeros(t *testing.T, prefix []byte, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(prefix); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for written := 0; written < n; written += len(chunk) {
		if _, err := zw.Write(chunk[:min(len(chunk), n-written)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestProtobufGzipBomb: a gzip bomb answered as delimited protobuf (a source that ignores our
// Accept header) is refused as too_large with the memory of a text scrape, not the size of the
// body: the protobuf path streams one message at a time under the same --limit-bytes.
func TestProtobufGzipBomb(t *testing.T) {
	const limit = 16 << 20
	huge := binary.AppendUvarint(nil, 1<<30) // one message claiming 1 GiB
	for _, tc := range []struct {
		name string
		body []byte
	}{
		// Zeros: empty messages, valid, until the limit cuts the body.
		{"zeros past the limit", gzipZeros(t, nil, limit+1<<20)},
		// A message longer than the bound of one family, below the limit.
		{"one message of 1 GiB", gzipZeros(t, huge, limit/2)},
		// A message within the bound that claims more than the limit lets through: read as its
		// bytes arrive, it costs what the body holds, not what its length claims.
		{"one message claiming 60 MiB", gzipZeros(t, binary.AppendUvarint(nil, 60<<20), limit+1<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", protoType)
				w.Header().Set("Content-Encoding", "gzip")
				_, _ = w.Write(tc.body)
			}))
			defer srv.Close()
			ts := newTestSource(t, SourceConfig{From: srv.URL, LimitBytes: limit})
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			ts.runCycle(t)
			runtime.ReadMemStats(&after)
			if got := ts.failures(reasonTooLarge); got != 1 {
				t.Fatalf("too_large failures %v, want 1 (status %v)", got, ts.Status().LastError)
			}
			// Everything allocated during the scrape, freed or not: at most what the limit lets
			// through, twice for the growing buffer, however much the body or a length claims
			// (the old io.ReadAll allocated the whole body).
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %d KiB", alloc>>10)
			if alloc > 2*limit+4<<20 {
				t.Errorf("the scrape allocated %d MiB", alloc>>20)
			}
		})
	}
}
