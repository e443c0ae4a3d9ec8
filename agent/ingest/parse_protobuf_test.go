package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestIngestProtobufErrors: a cut, invalid or oversized protobuf body appends nothing and is
// classified.
func TestIngestProtobufErrors(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "..", "testdata", "federate", "openshift-sample.txt"))
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
	text, err := os.ReadFile(filepath.Join("..", "..", "testdata", "federate", "openshift-sample.txt"))
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
