package shipper

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// staleNaN is the Prometheus staleness marker (model/value.StaleNaN).
var staleNaN = math.Float64frombits(0x7ff0000000000002)

func lbls(kv ...string) []prompb.Label {
	out := make([]prompb.Label, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func encodeCases() map[string][]prompb.TimeSeries {
	long := string(bytes.Repeat([]byte("x"), 300)) // a two-byte length prefix
	return map[string][]prompb.TimeSeries{
		"empty": nil,
		"one sample": {{
			Labels:  lbls("__name__", "up", "job", "node"),
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1700000000000}},
		}},
		"zero values omitted like gogo": {{
			Labels:  lbls("__name__", "z", "empty", ""),
			Samples: []prompb.Sample{{Value: 0, Timestamp: 0}, {Value: math.Copysign(0, -1), Timestamp: 1}},
		}},
		"special floats and negative timestamps": {{
			Labels: lbls("__name__", "special"),
			Samples: []prompb.Sample{
				{Value: staleNaN, Timestamp: -1}, {Value: math.Inf(1), Timestamp: math.MinInt64},
				{Value: math.Inf(-1), Timestamp: math.MaxInt64}, {Value: math.SmallestNonzeroFloat64, Timestamp: 127},
				{Value: -math.MaxFloat64, Timestamp: 128},
			},
		}},
		"long and unicode labels": {{
			Labels:  lbls("__name__", long, "üñí", "çødé\x00bytes", long, long),
			Samples: []prompb.Sample{{Value: 2.5, Timestamp: 16384}},
		}},
		"no labels or no samples": {
			{Samples: []prompb.Sample{{Value: 3, Timestamp: 3}}},
			{Labels: lbls("__name__", "no_samples")},
			{},
		},
		"unrecognized label fields kept": {{
			Labels:  []prompb.Label{{Name: "a", Value: "b", XXX_unrecognized: bytes.Repeat([]byte{0x18, 0x01}, 70)}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1}},
		}},
		// The RW 2.0 symbol table compares each label with the previous series' label at the same
		// position before it hashes: labels that shift, names that change under the same value,
		// values equal to names, series longer and shorter than the previous one, and a label
		// that is the same as the previous series' but for an unknown field.
		"labels compared by position": {
			{Labels: lbls("__name__", "a", "job", "x", "pod", "p1")},
			{Labels: lbls("__name__", "a", "job", "x", "pod", "p2")},
			{Labels: lbls("__name__", "a", "pod", "x", "job", "p2")},
			{Labels: lbls("__name__", "b", "job", "x")},
			{Labels: lbls("__name__", "b", "job", "x", "pod", "p1", "zone", "job")},
			{Labels: lbls("job", "x", "__name__", "b")},
			{Labels: []prompb.Label{{Name: "job", Value: "x", XXX_unrecognized: []byte{0x18, 0x01}}, {Name: "__name__", Value: "b"}}},
			{Labels: lbls("", "", "job", "")},
			{Labels: lbls("__name__", "", "job", "x")},
			{Labels: lbls("__name__", "a", "job", "x", "pod", "p1")},
		},
		"many series":               manySeries(500, 3),
		"series longer than 16 KiB": manySeries(2, 2000),
		"series shorter than 128 B": manySeries(3, 0),
	}
}

func manySeries(n, samples int) []prompb.TimeSeries {
	out := make([]prompb.TimeSeries, n)
	for i := range out {
		out[i].Labels = lbls("__name__", fmt.Sprintf("metric_%d", i%7), "instance", fmt.Sprintf("10.0.%d.%d:9100", i/256, i%256))
		for j := 0; j < samples; j++ {
			out[i].Samples = append(out[i].Samples, prompb.Sample{Value: float64(i*j) / 3, Timestamp: int64(1700000000000 + j*30000)})
		}
	}
	return out
}

// toSeries returns series as the queue hands them over: the labels encoded as gogo's Marshal
// writes the labels field of a prompb.TimeSeries (the reference of Series.Labels), the samples
// copied. Exemplars, histograms and unknown fields of the TimeSeries and of its samples are not
// carried (the WAL has none; stripUnknown removes them from a reference).
func toSeries(series []prompb.TimeSeries) []Series {
	out := make([]Series, len(series))
	for i, ts := range series {
		enc, err := (&prompb.TimeSeries{Labels: ts.Labels}).Marshal()
		if err != nil {
			panic(err) // labels always marshal
		}
		out[i] = Series{Labels: string(enc), Samples: toSamples(ts.Samples)}
	}
	return out
}

// toSamples returns samples as Series holds them.
func toSamples(samples []prompb.Sample) []Sample {
	var out []Sample
	for _, s := range samples {
		out = append(out, Sample{Timestamp: s.Timestamp, Value: s.Value})
	}
	return out
}

// stripUnknown removes what a Series cannot hold from series, in place: the unknown fields of
// each sample, the exemplars and histograms of each series.
func stripUnknown(series []prompb.TimeSeries) []prompb.TimeSeries {
	for i := range series {
		series[i].Exemplars, series[i].Histograms, series[i].XXX_unrecognized = nil, nil, nil
		for j := range series[i].Samples {
			series[i].Samples[j].XXX_unrecognized = nil
		}
	}
	return series
}

// gogoMarshal is the reference encoding.
func gogoMarshal(t testing.TB, series []prompb.TimeSeries) []byte {
	t.Helper()
	want, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
	if err != nil {
		t.Fatalf("gogo marshal: %v", err)
	}
	return want
}

// checkEncoding asserts that the encoder's protobuf equals gogo's byte for byte and that the
// snappy block decodes, with golang/snappy and gogo, to a request that marshals to the same bytes.
func checkEncoding(t testing.TB, e *encoder, series []prompb.TimeSeries) {
	t.Helper()
	want := gogoMarshal(t, series)
	block, err := e.encode(toSeries(series))
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	if !bytes.Equal(e.proto, want) {
		t.Fatalf("protobuf differs from gogo Marshal:\n got %x\nwant %x", e.proto, want)
	}
	raw, err := snappy.Decode(nil, block)
	if err != nil {
		t.Fatalf("golang/snappy cannot decode the block: %v", err)
	}
	var got prompb.WriteRequest
	if err := got.Unmarshal(raw); err != nil {
		t.Fatalf("unmarshal decoded request: %v", err)
	}
	again, err := got.Marshal()
	if err != nil {
		t.Fatalf("marshal decoded request: %v", err)
	}
	if !bytes.Equal(again, want) {
		t.Fatalf("decoded request differs from the input")
	}
}

func TestEncodeMatchesGogoAndSnappy(t *testing.T) {
	e := &encoder{}
	for name, series := range encodeCases() {
		t.Run(name, func(t *testing.T) {
			checkEncoding(t, e, series) // one encoder for all cases: buffer reuse is exercised
		})
	}
}

func TestEncodeRoundTripValues(t *testing.T) {
	in := manySeries(50, 4)
	in[0].Samples[0].Value = staleNaN
	block, err := (&encoder{}).encode(toSeries(in))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := snappy.Decode(nil, block)
	if err != nil {
		t.Fatal(err)
	}
	var got prompb.WriteRequest
	if err := got.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	if len(got.Timeseries) != len(in) {
		t.Fatalf("got %d series, want %d", len(got.Timeseries), len(in))
	}
	for i := range in {
		if !reflect.DeepEqual(got.Timeseries[i].Labels, in[i].Labels) {
			t.Fatalf("series %d labels: got %v want %v", i, got.Timeseries[i].Labels, in[i].Labels)
		}
		for j, s := range in[i].Samples {
			g := got.Timeseries[i].Samples[j]
			if math.Float64bits(g.Value) != math.Float64bits(s.Value) || g.Timestamp != s.Timestamp {
				t.Fatalf("series %d sample %d: got %v want %v", i, j, g, s)
			}
		}
	}
}

func TestUvarintLen(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, 1<<63 - 1, 1 << 63, math.MaxUint64} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			var buf [binary.MaxVarintLen64]byte
			n := binary.PutUvarint(buf[:], v)
			if got := uvarintLen(v); got != n {
				t.Fatalf("uvarintLen(%d) = %d, want %d", v, got, n)
			}
			var b [binary.MaxVarintLen64]byte
			if end := putUvarint(b[:], 0, v); !bytes.Equal(b[:end], buf[:n]) {
				t.Fatalf("putUvarint(%d) = %x, want %x", v, b[:end], buf[:n])
			}
		})
	}
}

func TestRequestBodyRelease(t *testing.T) {
	rb := &requestBody{buf: []byte("abcdef")}
	p := make([]byte, 4)
	if n, err := rb.Read(p); n != 4 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	rb.release()
	if _, err := rb.Read(p); err != errBodyReleased {
		t.Fatalf("read after release: %v, want errBodyReleased", err)
	}
}

// FuzzEncode compares the encoder with gogo's Marshal on arbitrary input. The input is read
// either as a protobuf WriteRequest (so unknown fields of labels and samples are covered;
// exemplars, histograms and unknown fields of a series, which Series cannot carry, are removed)
// or, when it is not one, as a recipe of label strings, float bits and timestamps.
func FuzzEncode(f *testing.F) { fuzzEncoding(f, checkEncoding) }

// fuzzEncoding runs check on the seed corpus and the inputs of FuzzEncode and FuzzEncodeV2.
func fuzzEncoding(f *testing.F, check func(testing.TB, *encoder, []prompb.TimeSeries)) {
	for _, series := range encodeCases() {
		if b, err := (&prompb.WriteRequest{Timeseries: series}).Marshal(); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("\x02\x03name\x05value\x00\x00\x00\x00\x00\x00\xf8\x7f\x80\x01"))
	e := &encoder{}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req prompb.WriteRequest
		series := fuzzSeries(data)
		if err := req.Unmarshal(data); err == nil && len(req.Metadata) == 0 && req.XXX_unrecognized == nil {
			series = stripUnknown(req.Timeseries)
		}
		check(t, e, series)
	})
}

// fuzzSeries builds series from a byte recipe; it never fails.
func fuzzSeries(data []byte) []prompb.TimeSeries {
	next := func(n int) []byte {
		if n > len(data) {
			n = len(data)
		}
		b := data[:n]
		data = data[n:]
		return b
	}
	byteOr0 := func() int {
		if b := next(1); len(b) == 1 {
			return int(b[0])
		}
		return 0
	}
	var out []prompb.TimeSeries
	for len(data) > 0 && len(out) < 64 {
		var ts prompb.TimeSeries
		for n := byteOr0() % 8; n > 0; n-- {
			// A byte from 240 repeats the name of the previous series' label at this position,
			// from 248 its value too (the RW 2.0 encoder compares labels by position).
			var prev *prompb.Label
			if k := len(ts.Labels); len(out) > 0 && k < len(out[len(out)-1].Labels) {
				prev = &out[len(out)-1].Labels[k]
			}
			c := byteOr0()
			var name, value string
			switch {
			case c >= 248 && prev != nil:
				name, value = prev.Name, prev.Value
			case c >= 240 && prev != nil:
				name, value = prev.Name, string(next(byteOr0()%200))
			default:
				name, value = string(next(c%40)), string(next(byteOr0()%200))
			}
			ts.Labels = append(ts.Labels, prompb.Label{Name: name, Value: value})
		}
		for n := byteOr0() % 8; n > 0; n-- {
			var v, ts64 [8]byte
			copy(v[:], next(8))
			copy(ts64[:], next(8))
			ts.Samples = append(ts.Samples, prompb.Sample{
				Value:     math.Float64frombits(binary.LittleEndian.Uint64(v[:])),
				Timestamp: int64(binary.LittleEndian.Uint64(ts64[:])),
			})
		}
		out = append(out, ts)
	}
	return out
}
