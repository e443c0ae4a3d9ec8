package ingest

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIngestProtobuf: a delimited-protobuf body (a server ignoring FederateAccept) appends the
// same samples as its text form.
func TestIngestProtobuf(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "..", "testdata", "federate", "openshift-sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var got [2][]string
	for k, body := range [][]byte{text, toProtobuf(t, text)} {
		now := time.UnixMilli(testNowMs)
		ing, _ := newTestIngester(t, DefaultTransformConfig(), &now)
		ct := textType
		if k == 1 {
			ct = protoType
		}
		res, err := ing.Ingest(bytes.NewReader(body), ct)
		if err != nil || res.Appended != 200 {
			t.Fatalf("%s: %+v %v", ct, res, err)
		}
		got[k], _ = readWAL(t, ing.w.Dir())
		slices.Sort(got[k])
	}
	if strings.Join(got[0], "\n") != strings.Join(got[1], "\n") {
		t.Fatal("protobuf and text bodies appended different samples")
	}
}
