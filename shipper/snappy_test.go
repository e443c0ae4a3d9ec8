package shipper

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/prompb"
)

// checkProtoSnappy compresses src with p and asserts that golang/snappy and klauspost's s2
// decode the block to src.
func checkProtoSnappy(t testing.TB, p *protoSnappy, dst, src []byte) []byte {
	t.Helper()
	block := p.encode(dst, src)
	got, err := snappy.Decode(nil, block)
	if err != nil {
		t.Fatalf("golang/snappy cannot decode the block of %d bytes: %v", len(src), err)
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("golang/snappy decodes %d bytes to other bytes", len(src))
	}
	if got, err = s2.Decode(nil, block); err != nil || !bytes.Equal(got, src) {
		t.Fatalf("s2 decodes %d bytes to other bytes (err %v)", len(src), err)
	}
	return block
}

func TestProtoSnappyRoundTrip(t *testing.T) {
	var p protoSnappy
	var dst []byte
	for name, series := range encodeCases() {
		t.Run("v1/"+name, func(t *testing.T) {
			raw, err := appendWriteRequest(nil, series)
			if err != nil {
				t.Fatal(err)
			}
			dst = checkProtoSnappy(t, &p, dst, raw)
		})
		t.Run("v2/"+name, func(t *testing.T) {
			var refs []uint32
			raw, _, err := appendV2Request(nil, nil, newSymbolTable(), &refs, series)
			if err != nil {
				t.Fatal(err)
			}
			dst = checkProtoSnappy(t, &p, dst, raw)
		})
	}
	labels := realisticSeries(4000)
	for _, req := range realisticRequests(labels, 500, 4) {
		raw, err := appendWriteRequest(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		dst = checkProtoSnappy(t, &p, dst, raw)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 8, 9, 100, 70_000} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.IntN(4)) // not protobuf: falls back to s2
		}
		dst = checkProtoSnappy(t, &p, dst, src)
	}
}

// TestProtoSnappyLongDistances covers copies from more than 64 KiB back (4-byte offsets) and
// runs longer than 64 bytes.
func TestProtoSnappyLongDistances(t *testing.T) {
	long := string(bytes.Repeat([]byte("y"), 200))
	var series []prompb.TimeSeries
	series = append(series, prompb.TimeSeries{Labels: lbls("__name__", "first", "a", long)})
	for i := range 400 {
		series = append(series, prompb.TimeSeries{Labels: lbls("__name__", "filler", "x", string(rune('a'+i%26))+long)})
	}
	series = append(series, prompb.TimeSeries{Labels: lbls("__name__", "first", "a", long)})
	raw, err := appendWriteRequest(nil, series)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 1<<16 {
		t.Fatalf("request of %d bytes does not need 4-byte offsets", len(raw))
	}
	var p protoSnappy
	block := checkProtoSnappy(t, &p, nil, raw)
	if len(block) > len(raw)/4 {
		t.Errorf("block of %d bytes for %d input bytes: the repeats were not copied", len(block), len(raw))
	}
}

// FuzzProtoSnappy round-trips arbitrary bytes and marshalled requests built from them.
func FuzzProtoSnappy(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 'a'})
	for _, series := range encodeCases() {
		raw, err := appendWriteRequest(nil, series)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	var p protoSnappy
	f.Fuzz(func(t *testing.T, data []byte) {
		checkProtoSnappy(t, &p, nil, data)
		series := fuzzSeries(data)
		raw, err := appendWriteRequest(nil, series)
		if err != nil {
			return // not a request appendWriteRequest can write; the bytes were checked above
		}
		checkProtoSnappy(t, &p, nil, raw)
		var refs []uint32
		if raw, _, err = appendV2Request(nil, nil, newSymbolTable(), &refs, series); err == nil {
			checkProtoSnappy(t, &p, nil, raw)
		}
	})
}
