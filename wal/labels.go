package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
)

// The labels of a series are kept in memory in one form, shared by the writer and by every
// reader in its process (ReaderOptions.ShareLabels): the protobuf encoding of the repeated
// TimeSeries.labels field of remote-write 1.0 (prompb.TimeSeries field 1, each a prompb.Label),
// in label order, byte for byte what gogo's generated Marshal writes for them. That is the form
// the queue copies into every request, so a series' label data is in memory once per WAL, not
// once for the writer and once more for the shipper. The writer and the readers turn it back
// into labels.Labels only on the rare paths that need them (Series records, checkpoints, write
// relabeling).

// Protobuf wire tags of the label fields of remote-write 1.0.
const (
	tagTimeSeriesLabels = 1<<3 | 2
	tagLabelName        = 1<<3 | 2
	tagLabelValue       = 2<<3 | 2
)

// ErrLabelEncoding is returned for bytes that AppendLabels did not write.
var ErrLabelEncoding = errors.New("malformed label encoding")

// AppendLabels appends the encoding of lset (see above) to b. An empty name or value is left
// out, as proto3 does; it decodes back as "".
func AppendLabels(b []byte, lset labels.Labels) []byte {
	lset.Range(func(l labels.Label) { b = appendLabel(b, l.Name, l.Value) })
	return b
}

// appendLabel appends the encoding of one label (AppendLabels).
func appendLabel[S string | []byte](b []byte, name, value S) []byte {
	nl, vl := len(name), len(value)
	if size := 4 + nl + vl; size < 0x80 && nl > 0 && vl > 0 {
		// The common case: every length fits one byte.
		i := len(b)
		b = slices.Grow(b, 2+size)[:i+2+size]
		b[i], b[i+1], b[i+2], b[i+3] = tagTimeSeriesLabels, byte(size), tagLabelName, byte(nl)
		i += 4 + copy(b[i+4:], name)
		b[i], b[i+1] = tagLabelValue, byte(vl)
		copy(b[i+2:], value)
		return b
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
		b = append(b, name...)
	}
	if vl > 0 {
		b = append(b, tagLabelValue)
		b = appendUvarint(b, vl)
		b = append(b, value...)
	}
	return b
}

// RangeLabels calls f with the name and value of each label of enc, an encoding written by
// AppendLabels, in order. The strings share enc's memory. Bytes AppendLabels did not write are
// an ErrLabelEncoding, never a panic; f may have been called for the labels before them.
func RangeLabels(enc string, f func(name, value string)) error {
	for i := 0; i < len(enc); {
		if enc[i] != tagTimeSeriesLabels {
			return fmt.Errorf("%w: tag %#x at %d", ErrLabelEncoding, enc[i], i)
		}
		msg, next, err := field(enc, i+1)
		if err != nil {
			return err
		}
		var name, value string
		for j := 0; j < len(msg); {
			tag := msg[j]
			v, nj, err := field(msg, j+1)
			if err != nil {
				return err
			}
			switch tag {
			case tagLabelName:
				name = v
			case tagLabelValue:
				value = v
			default:
				return fmt.Errorf("%w: label field tag %#x", ErrLabelEncoding, tag)
			}
			j = nj
		}
		f(name, value)
		i = next
	}
	return nil
}

// DecodeLabels returns the labels encoded in enc (AppendLabels), built with b.
func DecodeLabels(enc string, b *labels.ScratchBuilder) (labels.Labels, error) {
	b.Reset()
	if err := RangeLabels(enc, func(name, value string) { b.Add(name, value) }); err != nil {
		return labels.EmptyLabels(), err
	}
	return b.Labels(), nil
}

// field reads a length and that many bytes of s from i; it returns them and the index after.
func field(s string, i int) (string, int, error) {
	n, shift := 0, 0
	for {
		if i >= len(s) || shift > 28 {
			return "", 0, fmt.Errorf("%w: bad length at %d", ErrLabelEncoding, i)
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
		return "", 0, fmt.Errorf("%w: length %d past the end", ErrLabelEncoding, n)
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

// encodedSeries is a series of a Series record: its ref and its encoded labels.
type encodedSeries struct {
	ref SeriesRef
	enc string
}

// appendSeriesRecord appends a tsdb/record Series record of series to b, byte for byte what
// record.Encoder.Series writes for the same series with their labels decoded: the writer keeps
// the labels encoded (AppendLabels) and writes Series records and checkpoints without turning
// them back into labels.Labels.
func appendSeriesRecord(b []byte, series []encodedSeries) ([]byte, error) {
	b = append(b, byte(record.Series))
	for _, s := range series {
		b = binary.BigEndian.AppendUint64(b, uint64(s.ref))
		n := 0
		if err := RangeLabels(s.enc, func(string, string) { n++ }); err != nil {
			return b, fmt.Errorf("labels of series %d: %w", s.ref, err)
		}
		b = binary.AppendUvarint(b, uint64(n))
		_ = RangeLabels(s.enc, func(name, value string) {
			b = binary.AppendUvarint(b, uint64(len(name)))
			b = append(b, name...)
			b = binary.AppendUvarint(b, uint64(len(value)))
			b = append(b, value...)
		})
	}
	return b, nil
}

// errSeriesRecord is returned for a Series record that does not decode.
var errSeriesRecord = errors.New("malformed series record")

// encodedRecord is the series of Series records, decoded straight into the encoding the WAL
// keeps (AppendLabels) without building labels.Labels: series k has ref refs[k] and the labels
// data[ends[k-1]:ends[k]] (from 0 for the first).
type encodedRecord struct {
	refs []SeriesRef
	data []byte
	ends []int
}

func (d *encodedRecord) len() int { return len(d.refs) }

// enc returns the encoded labels of series k; valid until the next add or reset.
func (d *encodedRecord) enc(k int) []byte {
	start := 0
	if k > 0 {
		start = d.ends[k-1]
	}
	return d.data[start:d.ends[k]]
}

func (d *encodedRecord) reset() { d.refs, d.data, d.ends = d.refs[:0], d.data[:0], d.ends[:0] }

// add appends the series of the tsdb/record Series record rec (what record.Decoder.Series
// reads). A record that does not decode adds nothing.
func (d *encodedRecord) add(rec []byte) error {
	n0, m0 := len(d.refs), len(d.data)
	if err := d.decode(rec); err != nil {
		d.refs, d.ends, d.data = d.refs[:n0], d.ends[:n0], d.data[:m0]
		return err
	}
	return nil
}

func (d *encodedRecord) decode(rec []byte) error {
	if len(rec) == 0 || record.Type(rec[0]) != record.Series {
		return fmt.Errorf("%w: not a series record", errSeriesRecord)
	}
	b := rec[1:]
	for len(b) > 0 {
		if len(b) < 8 {
			return fmt.Errorf("%w: truncated ref", errSeriesRecord)
		}
		ref := SeriesRef(binary.BigEndian.Uint64(b))
		n, k := binary.Uvarint(b[8:])
		if k <= 0 || n > uint64(len(b)) {
			return fmt.Errorf("%w: bad label count", errSeriesRecord)
		}
		b = b[8+k:]
		for ; n > 0; n-- {
			var name, value []byte
			var ok bool
			if name, b, ok = uvarintBytes(b); !ok {
				return fmt.Errorf("%w: truncated label name", errSeriesRecord)
			}
			if value, b, ok = uvarintBytes(b); !ok {
				return fmt.Errorf("%w: truncated label value", errSeriesRecord)
			}
			d.data = appendLabel(d.data, name, value)
		}
		d.refs = append(d.refs, ref)
		d.ends = append(d.ends, len(d.data))
	}
	return nil
}

// uvarintBytes reads a uvarint length and that many bytes from b.
func uvarintBytes(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, b, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}
