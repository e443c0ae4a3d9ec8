package agent

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

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

// TestIngestProtobufErrors: a cut, invalid or oversized protobuf body appends nothing and is
// classified.
func TestIngestProtobufErrors(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "testdata", "federate", "openshift-sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	good := toProtobuf(t, text)
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"cut in a message", good[:len(good)-3], ReasonRead},
		{"cut in a length", append(append([]byte(nil), good...), 0x80), ReasonRead},
		{"length overflows", append(append([]byte(nil), good...), bytes.Repeat([]byte{0xff}, 11)...), ReasonParse},
		{"message over the bound", binary.AppendUvarint(append([]byte(nil), good...), maxProtoMessageBytes+1), ReasonTooLarge},
		{"not a metric family", append(binary.AppendUvarint(append([]byte(nil), good...), 3), 0xff, 0xff, 0xff), ReasonParse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.UnixMilli(testNowMs)
			ing, _ := newTestIngester(t, DefaultTransformConfig(), &now)
			_, err := ing.Ingest(bytes.NewReader(tc.body), protoType)
			var ie *IngestError
			if !errors.As(err, &ie) || ie.Reason != tc.want {
				t.Fatalf("Ingest = %v, want reason %s", err, tc.want)
			}
			if got, _ := readWAL(t, ing.w.Dir()); len(got) != 0 {
				t.Fatalf("%d samples appended", len(got))
			}
		})
	}
	// The body reader's own error is a read error.
	now := time.UnixMilli(testNowMs)
	ing, _ := newTestIngester(t, DefaultTransformConfig(), &now)
	cut := errors.New("connection reset")
	_, err = ing.Ingest(io.MultiReader(bytes.NewReader(good), &failingReader{err: cut}), protoType)
	var ie *IngestError
	if !errors.As(err, &ie) || ie.Reason != ReasonRead || !errors.Is(err, cut) {
		t.Fatalf("Ingest = %v, want a read error", err)
	}
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

// TestIngestProtobufEmptyMessages: empty messages (zero lengths) around and between families are
// skipped, as textparse does.
func TestIngestProtobufEmptyMessages(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "testdata", "federate", "openshift-sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	good := toProtobuf(t, text)
	zeros := make([]byte, 100<<10) // more than the reader's buffer
	body := append(append(append(append([]byte(nil), zeros...), good...), zeros...), good...)
	now := time.UnixMilli(testNowMs)
	ing, _ := newTestIngester(t, DefaultTransformConfig(), &now)
	res, err := ing.Ingest(bytes.NewReader(body), protoType)
	if err != nil || res.Read != 400 || res.Bytes != int64(len(body)) {
		t.Fatalf("Ingest = %+v, %v; want 400 samples read from %d bytes", res, err, len(body))
	}
}
