package queue

import (
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// Protobuf wire tags of the label fields of remote-write 1.0 (prompb.TimeSeries.labels, each a
// prompb.Label).
const (
	tagTimeSeriesLabels = 1<<3 | 2
	tagLabelName        = 1<<3 | 2
	tagLabelValue       = 2<<3 | 2
)

// errLabelEncoding is returned by decodeLabels for bytes that appendLabels did not write.
var errLabelEncoding = errors.New("malformed label encoding")

// appendLabels appends the encoding of lset that Series.Labels holds: its labels, in order, as
// the repeated TimeSeries.labels field of remote-write 1.0, byte for byte what gogo's generated
// Marshal writes for them (an empty name or value is left out, as proto3 does).
func appendLabels(b []byte, lset labels.Labels) []byte {
	lset.Range(func(l labels.Label) {
		nl, vl := len(l.Name), len(l.Value)
		if size := 4 + nl + vl; size < 0x80 && nl > 0 && vl > 0 {
			// The common case: every length fits one byte.
			i := len(b)
			b = slices.Grow(b, 2+size)[:i+2+size]
			b[i], b[i+1], b[i+2], b[i+3] = tagTimeSeriesLabels, byte(size), tagLabelName, byte(nl)
			i += 4 + copy(b[i+4:], l.Name)
			b[i], b[i+1] = tagLabelValue, byte(vl)
			copy(b[i+2:], l.Value)
			return
		}
		size := 0
		if nl > 0 {
			size += 1 + uvarintLen(nl) + nl
		}
		if vl > 0 {
			size += 1 + uvarintLen(vl) + vl
		}
		b = append(b, tagTimeSeriesLabels)
		b = appendUvarint(b, size)
		if nl > 0 {
			b = append(b, tagLabelName)
			b = appendUvarint(b, nl)
			b = append(b, l.Name...)
		}
		if vl > 0 {
			b = append(b, tagLabelValue)
			b = appendUvarint(b, vl)
			b = append(b, l.Value...)
		}
	})
	return b
}

// decodeLabels returns the labels of an encoding written by appendLabels, for the rare paths
// that need them as prompb labels (the dead-letter log). The strings share enc's memory.
func decodeLabels(enc string) ([]prompb.Label, error) {
	var out []prompb.Label
	for i := 0; i < len(enc); {
		if enc[i] != tagTimeSeriesLabels {
			return nil, fmt.Errorf("%w: tag %#x at %d", errLabelEncoding, enc[i], i)
		}
		msg, next, err := field(enc, i+1)
		if err != nil {
			return nil, err
		}
		var l prompb.Label
		for j := 0; j < len(msg); {
			tag := msg[j]
			v, nj, err := field(msg, j+1)
			if err != nil {
				return nil, err
			}
			switch tag {
			case tagLabelName:
				l.Name = v
			case tagLabelValue:
				l.Value = v
			default:
				return nil, fmt.Errorf("%w: label field tag %#x", errLabelEncoding, tag)
			}
			j = nj
		}
		out = append(out, l)
		i = next
	}
	return out, nil
}

// field reads a length and that many bytes of s from i; it returns them and the index after.
func field(s string, i int) (string, int, error) {
	n, shift := 0, 0
	for {
		if i >= len(s) || shift > 28 {
			return "", 0, fmt.Errorf("%w: bad length at %d", errLabelEncoding, i)
		}
		c := s[i]
		i++
		n |= int(c&0x7f) << shift
		if c < 0x80 {
			break
		}
		shift += 7
	}
	if n > len(s)-i {
		return "", 0, fmt.Errorf("%w: length %d past the end", errLabelEncoding, n)
	}
	return s[i : i+n], i + n, nil
}

func uvarintLen(v int) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendUvarint(b []byte, v int) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// toPrompb returns series as prompb time series (labels decoded, samples shared).
func toPrompb(series []Series) ([]prompb.TimeSeries, error) {
	out := make([]prompb.TimeSeries, len(series))
	for i, s := range series {
		ls, err := decodeLabels(s.Labels)
		if err != nil {
			return nil, fmt.Errorf("series %d: %w", i, err)
		}
		out[i] = prompb.TimeSeries{Labels: ls, Samples: s.Samples}
	}
	return out, nil
}
