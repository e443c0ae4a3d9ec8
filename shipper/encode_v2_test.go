package shipper

import (
	"bytes"
	"errors"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// referenceV2 builds the io.prometheus.write.v2.Request of series with Prometheus' own symbol
// table, interning in the order the encoder does (each series' labels in order).
func referenceV2(series []prompb.TimeSeries) *writev2.Request {
	st := writev2.NewSymbolTable()
	refs := func(ls []prompb.Label) []uint32 {
		var out []uint32
		for _, l := range ls {
			out = append(out, st.Symbolize(l.Name), st.Symbolize(l.Value))
		}
		return out
	}
	req := &writev2.Request{}
	for _, s := range series {
		ts := writev2.TimeSeries{LabelsRefs: refs(s.Labels)}
		for _, smp := range s.Samples {
			ts.Samples = append(ts.Samples, writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = st.Symbols()
	return req
}

// checkEncodingV2 decodes the encoder's block with golang/snappy and gogo's generated Unmarshal
// and compares the message with the reference, through gogo's Marshal of both (so NaNs compare
// by their bits).
func checkEncodingV2(t testing.TB, e *encoder, series []prompb.TimeSeries) {
	t.Helper()
	block, err := e.encodeV2(toSeries(series))
	if err != nil {
		t.Fatalf("encodeV2: %v", err)
	}
	raw, err := snappy.Decode(nil, block)
	if err != nil {
		t.Fatalf("snappy decode: %v", err)
	}
	var got writev2.Request
	if err := got.Unmarshal(raw); err != nil {
		t.Fatalf("unmarshal io.prometheus.write.v2.Request: %v", err)
	}
	if len(got.Symbols) == 0 || got.Symbols[0] != "" {
		t.Fatalf("symbols must start with the empty string, got %q", got.Symbols)
	}
	gotBytes, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want, err := referenceV2(series).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotBytes, want) {
		t.Fatalf("decoded request differs from the reference:\n got %+v\nwant %+v", got, referenceV2(series))
	}
	// The labels read back as the receiver reads them (sorted by name).
	b := labels.NewScratchBuilder(0)
	for i, ts := range got.Timeseries {
		ls, err := ts.ToLabels(&b, got.Symbols)
		if err != nil {
			t.Fatalf("series %d: %v", i, err)
		}
		wb := labels.NewScratchBuilder(len(series[i].Labels))
		for _, l := range series[i].Labels {
			wb.Add(l.Name, l.Value)
		}
		wb.Sort()
		if want := wb.Labels(); !labels.Equal(ls, want) {
			t.Fatalf("series %d: labels %v, want %v", i, ls, want)
		}
	}
}

func TestEncodeV2MatchesPrometheusSymbolTable(t *testing.T) {
	e := &encoder{}
	cases := encodeCases()
	// More symbols than the first table holds, so that it grows within a request.
	var many []prompb.TimeSeries
	for i, ls := range benchLabels(3000) {
		many = append(many, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1}}})
	}
	cases["table grows"] = many
	for name, series := range cases {
		t.Run(name, func(t *testing.T) {
			checkEncodingV2(t, e, series) // the encoder is reused, as in the pool
		})
	}
}

// TestEncodeV2SymbolsPerRequest: every request carries its own symbols, and a string repeated
// across series and across names and values is sent once.
func TestEncodeV2SymbolsPerRequest(t *testing.T) {
	e := &encoder{}
	series := []prompb.TimeSeries{
		{Labels: lbls("__name__", "up", "job", "up"), Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}},
		{Labels: lbls("__name__", "up", "job", "node"), Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}},
	}
	for range 2 {
		block, err := e.encodeV2(toSeries(series))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := snappy.Decode(nil, block)
		if err != nil {
			t.Fatal(err)
		}
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		if want := []string{"", "__name__", "up", "job", "node"}; !equalStrings(req.Symbols, want) {
			t.Fatalf("symbols %q, want %q", req.Symbols, want)
		}
	}
}

// TestEncodeV2Smaller: on the benchmark's OpenShift-like series, RW 2.0 is smaller on the wire
// than RW 1.0 (the figures are BenchmarkEncode's bytes/sample).
func TestEncodeV2Smaller(t *testing.T) {
	labelsByRef := benchLabels(2000)
	series := make([]prompb.TimeSeries, len(labelsByRef))
	for i, ls := range labelsByRef {
		series[i] = prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1700000000000}}}
	}
	e := &encoder{}
	v1, err := e.encode(toSeries(series))
	if err != nil {
		t.Fatal(err)
	}
	n1 := len(v1)
	v2, err := e.encodeV2(toSeries(series))
	if err != nil {
		t.Fatal(err)
	}
	if len(v2) >= n1 {
		t.Fatalf("RW 2.0 block %d bytes, RW 1.0 %d: want smaller", len(v2), n1)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzEncodeV2 compares the RW 2.0 encoder with Prometheus' symbol table and gogo's Marshal on
// the inputs of FuzzEncode.
func FuzzEncodeV2(f *testing.F) { fuzzEncoding(f, checkEncodingV2) }

// TestEncodeV2MalformedLabels: labels that are not the RW 1.0 encoding are an encode error,
// never a panic and never a request.
func TestEncodeV2MalformedLabels(t *testing.T) {
	good := toSeries([]prompb.TimeSeries{{Labels: lbls("__name__", "up", "job", "node")}})[0].Labels
	for name, enc := range map[string]string{
		"wrong field tag":      "\x12\x00",
		"truncated length":     "\x0a",
		"length past end":      "\x0a\x05\x0a\x01a",
		"group in a label":     "\x0a\x02\x1b\x1c",
		"runaway varint":       "\x0a\x02\x0a\xff",
		"cut short":            good[:len(good)-1],
		"bad field in a label": "\x0a\x03\x0a\x05a",
	} {
		t.Run(name, func(t *testing.T) {
			series := []Series{{Labels: enc, Samples: []Sample{{Value: 1, Timestamp: 1}}}}
			if _, err := (&encoder{}).encodeV2(series); !errors.Is(err, errLabelEncoding) {
				t.Fatalf("encodeV2 of labels %x: %v, want errLabelEncoding", enc, err)
			}
		})
	}
}
