package wal

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/record"
)

// TestAppendLabelsMatchesGogo: the encoding the WAL keeps per series (and the queue sends) is byte for byte gogo's
// Marshal of the labels field of a prompb.TimeSeries, and decodes back to the labels.
func TestAppendLabelsMatchesGogo(t *testing.T) {
	long := strings.Repeat("x", 300) // two-byte lengths
	for name, lset := range map[string]labels.Labels{
		"none":         labels.EmptyLabels(),
		"one":          labels.FromStrings("__name__", "up"),
		"openshift":    openShiftLabelsInternal(),
		"empty value":  labels.FromStrings("__name__", "up", "a", ""),
		"long":         labels.FromStrings("__name__", long, long, "v"),
		"label of 127": labels.FromStrings("__name__", strings.Repeat("n", 60), "v", strings.Repeat("v", 59)),
		"unicode":      labels.FromStrings("__name__", "üñí", "çødé", "\x00\xff"),
	} {
		t.Run(name, func(t *testing.T) {
			var pl []prompb.Label
			lset.Range(func(l labels.Label) { pl = append(pl, prompb.Label{Name: l.Name, Value: l.Value}) })
			want, err := (&prompb.TimeSeries{Labels: pl}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got := AppendLabels([]byte("prefix"), lset)
			if string(got) != "prefix"+string(want) {
				t.Fatalf("encoding differs from gogo's:\n got %x\nwant prefix+%x", got, want)
			}
			var b labels.ScratchBuilder
			back, err := DecodeLabels(string(want), &b)
			if err != nil {
				t.Fatal(err)
			}
			if !labels.Equal(back, lset) {
				t.Fatalf("decoded %v, want %v", back, lset)
			}
		})
	}
}

// TestDecodeLabelsMalformed: bytes that AppendLabels did not write are an error, never a panic.
func TestDecodeLabelsMalformed(t *testing.T) {
	good := string(AppendLabels(nil, labels.FromStrings("__name__", "up", "job", "node")))
	for name, enc := range map[string]string{
		"wrong field tag":   "\x12\x00",
		"truncated length":  "\x0a",
		"length past end":   "\x0a\x05\x0a\x01a",
		"unknown label tag": "\x0a\x02\x18\x01",
		"runaway varint":    "\x0a\xff\xff\xff\xff\xff\xff",
		"cut short":         good[:len(good)-1],
	} {
		t.Run(name, func(t *testing.T) {
			var b labels.ScratchBuilder
			if _, err := DecodeLabels(enc, &b); !errors.Is(err, ErrLabelEncoding) {
				t.Fatalf("DecodeLabels(%x) = %v, want ErrLabelEncoding", enc, err)
			}
		})
	}
}

// openShiftLabelsInternal is a label set of the size the agent ships (about 250 bytes).
func openShiftLabelsInternal() labels.Labels {
	return labels.FromStrings(
		"__name__", "container_memory_working_set_bytes",
		"clusterID", "9f1b3c2e-6a0d-4c7b-b8e5-2d4f7a9c1e03",
		"container", "container-7",
		"endpoint", "https-metrics",
		"instance", "10.128.3.17:10250",
		"job", "kubelet",
		"namespace", "openshift-monitoring",
		"node", "ip-10-0-4-17.ec2.internal",
		"pod", "openshift-monitori-5f8d7c9b4-00017",
		"prometheus", "openshift-monitoring/k8s",
		"service", "kubelet",
	)
}

// TestSeriesRecordMatchesEncoder: a Series record written from encoded labels is byte for byte
// what tsdb/record's Encoder writes for the decoded labels, and reads back with its Decoder.
func TestSeriesRecordMatchesEncoder(t *testing.T) {
	long := strings.Repeat("x", 300)
	sets := []labels.Labels{
		labels.EmptyLabels(),
		labels.FromStrings("__name__", "up"),
		openShiftLabelsInternal(),
		labels.FromStrings("__name__", "up", "a", ""),
		labels.FromStrings("__name__", long, long, "v"),
		labels.FromStrings("__name__", "üñí", "çødé", "\x00\xff"),
	}
	var rs []record.RefSeries
	var es []encodedSeries
	for i, lset := range sets {
		ref := SeriesRef(1 + i*1000)
		rs = append(rs, record.RefSeries{Ref: ref, Labels: lset})
		es = append(es, encodedSeries{ref: ref, enc: string(AppendLabels(nil, lset))})
	}
	var enc record.Encoder
	want := enc.Series(rs, nil)
	got, err := appendSeriesRecord([]byte{}, es)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("record differs from record.Encoder's:\n got %x\nwant %x", got, want)
	}
	var dec record.Decoder
	back, err := dec.Series(got, nil)
	if err != nil || len(back) != len(sets) {
		t.Fatalf("decoded %d series, %v", len(back), err)
	}
	for i := range back {
		if back[i].Ref != rs[i].Ref || !labels.Equal(back[i].Labels, sets[i]) {
			t.Errorf("series %d decoded as %d %v", i, back[i].Ref, back[i].Labels)
		}
	}
	if _, err := appendSeriesRecord(nil, []encodedSeries{{ref: 1, enc: "\x12\x00"}}); !errors.Is(err, ErrLabelEncoding) {
		t.Fatalf("malformed labels: %v, want ErrLabelEncoding", err)
	}
}

// TestEncodedRecord: a Series record decodes straight into the labels' encoding, the same as
// decoding it with tsdb/record and encoding the labels; a record that does not decode adds
// nothing to what was decoded before it.
func TestEncodedRecord(t *testing.T) {
	sets := []labels.Labels{
		openShiftLabelsInternal(),
		labels.EmptyLabels(),
		labels.FromStrings("__name__", "up", "a", ""),
		labels.FromStrings("__name__", strings.Repeat("x", 300), "v", "w"),
	}
	var rs []record.RefSeries
	for i, lset := range sets {
		rs = append(rs, record.RefSeries{Ref: SeriesRef(7 + i), Labels: lset})
	}
	var enc record.Encoder
	rec := enc.Series(rs, nil)
	var d encodedRecord
	if err := d.add(rec); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{rec[:len(rec)-1], rec[:5], {byte(record.Samples)}, nil, append(append([]byte{}, rec[:9]...), 0xff, 0xff, 0xff, 0x0f)} {
		if err := d.add(bad); !errors.Is(err, errSeriesRecord) {
			t.Errorf("record %x: %v, want errSeriesRecord", bad, err)
		}
	}
	if d.len() != len(sets) {
		t.Fatalf("%d series, want %d", d.len(), len(sets))
	}
	for k, lset := range sets {
		if d.refs[k] != rs[k].Ref || string(d.enc(k)) != string(AppendLabels(nil, lset)) {
			t.Errorf("series %d: ref %d labels %x, want %d %x", k, d.refs[k], d.enc(k), rs[k].Ref, AppendLabels(nil, lset))
		}
	}
}

// FuzzEncodedRecord: whatever the bytes, encodedRecord never panics, a record it refuses adds
// nothing, and a record it accepts is one tsdb/record's decoder reads with the same series. (The
// other direction is not compared: that decoder loops once per announced label, however many the
// bytes can hold, so a hostile count exhausts it; encodedRecord refuses one the bytes cannot hold.)
func FuzzEncodedRecord(f *testing.F) {
	var enc record.Encoder
	f.Add(enc.Series([]record.RefSeries{{Ref: 1, Labels: openShiftLabelsInternal()}, {Ref: 2, Labels: labels.FromStrings("a", "")}}, nil))
	f.Add([]byte{byte(record.Series)})
	f.Add([]byte{byte(record.Series), 0, 0, 0, 0, 0, 0, 0, 1, 0x80})
	f.Fuzz(func(t *testing.T, rec []byte) {
		var d encodedRecord
		if err := d.add(rec); err != nil {
			if !errors.Is(err, errSeriesRecord) || d.len() != 0 || len(d.data) != 0 {
				t.Fatalf("refused with %v after adding %d series", err, d.len())
			}
			return
		}
		var dec record.Decoder
		want, err := dec.Series(rec, nil)
		if err != nil {
			t.Fatalf("accepted a record record.Decoder refuses: %v", err)
		}
		if d.len() != len(want) {
			t.Fatalf("%d series, record.Decoder %d", d.len(), len(want))
		}
		for k, s := range want {
			if d.refs[k] != s.Ref || string(d.enc(k)) != string(AppendLabels(nil, s.Labels)) {
				t.Fatalf("series %d: ref %d %x, record.Decoder %d %v", k, d.refs[k], d.enc(k), s.Ref, s.Labels)
			}
		}
	})
}
