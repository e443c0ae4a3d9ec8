package queue

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// TestAppendLabelsMatchesGogo: the encoding the queue keeps per series is byte for byte gogo's
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
			got := appendLabels([]byte("prefix"), lset)
			if string(got) != "prefix"+string(want) {
				t.Fatalf("encoding differs from gogo's:\n got %x\nwant prefix+%x", got, want)
			}
			back, err := decodeLabels(string(want))
			if err != nil {
				t.Fatal(err)
			}
			b := labels.NewScratchBuilder(len(back))
			for _, l := range back {
				b.Add(l.Name, l.Value)
			}
			if !labels.Equal(b.Labels(), lset) {
				t.Fatalf("decoded %v, want %v", b.Labels(), lset)
			}
		})
	}
}

// TestDecodeLabelsMalformed: bytes that appendLabels did not write are an error, never a panic.
func TestDecodeLabelsMalformed(t *testing.T) {
	good := string(appendLabels(nil, labels.FromStrings("__name__", "up", "job", "node")))
	for name, enc := range map[string]string{
		"wrong field tag":   "\x12\x00",
		"truncated length":  "\x0a",
		"length past end":   "\x0a\x05\x0a\x01a",
		"unknown label tag": "\x0a\x02\x18\x01",
		"runaway varint":    "\x0a\xff\xff\xff\xff\xff\xff",
		"cut short":         good[:len(good)-1],
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeLabels(enc); !errors.Is(err, errLabelEncoding) {
				t.Fatalf("decodeLabels(%x) = %v, want errLabelEncoding", enc, err)
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
