package shipper

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/prompb"
)

// Protobuf wire tags of the RW 2.0 messages (io.prometheus.write.v2).
const (
	tagV2RequestSymbols      = 4<<3 | 2 // Request.symbols, repeated string
	tagV2RequestTimeseries   = 5<<3 | 2 // Request.timeseries
	tagV2SeriesLabelsRefs    = 1<<3 | 2 // TimeSeries.labels_refs, packed uint32
	tagV2SeriesSamples       = 2<<3 | 2 // TimeSeries.samples
	tagV2SampleValue         = 1<<3 | 1 // Sample.value
	tagV2SampleTimestamp     = 2<<3 | 0 // Sample.timestamp
	maxPooledSymbolTableSize = 1 << 16  // symbol maps larger than this are not kept in the pool
)

// symbolTable interns the strings of one RW 2.0 request. Index 0 is always "". It is reset
// after each request: a table that outlived its request would pin the label strings of series
// long gone.
type symbolTable struct {
	index map[string]uint32
	n     uint32
}

// ref returns the index of s, appending it to the symbols field in b when it is new.
func (t *symbolTable) ref(b []byte, s string) ([]byte, uint32) {
	if s == "" {
		return b, 0
	}
	if r, ok := t.index[s]; ok {
		return b, r
	}
	t.n++
	t.index[s] = t.n
	b = grow(b, 1+binary.MaxVarintLen64+len(s))
	i := len(b)
	b = b[:cap(b)]
	b[i] = tagV2RequestSymbols
	i = putUvarint(b, i+1, uint64(len(s)))
	i += copy(b[i:], s)
	return b[:i], t.n
}

func (t *symbolTable) reset() {
	if t.index == nil || len(t.index) > maxPooledSymbolTableSize {
		t.index = make(map[string]uint32, 1024)
	} else {
		clear(t.index)
	}
	t.n = 0
}

// encodeV2 marshals series as an io.prometheus.write.v2.Request and compresses it into a snappy
// block. The returned slice aliases e.comp and is valid until the next call.
func (e *encoder) encodeV2(series []Series) ([]byte, error) {
	var err error
	e.syms.reset()
	e.proto, e.series, err = appendV2Request(e.proto[:0], e.series[:0], &e.syms, &e.refs, series)
	e.syms.reset()
	if err != nil {
		return nil, err
	}
	return e.compress()
}

// appendV2Request appends the symbols of an io.prometheus.write.v2.Request for series to syms
// and its timeseries to ts, then ts to syms: the symbols come first, as gogo's generated Marshal
// writes them. Metadata is left out (the WAL carries none: the receiver sees the type
// METRIC_TYPE_UNSPECIFIED, as if the empty message were sent) and so is Sample.start_timestamp
// (federation does not give created timestamps: 0 means unknown). The names and values are read
// from the RW 1.0 encoding of each series' labels (Series.Labels); they are interned as
// substrings of it, without a copy.
//
// refs is scratch space for the label references of one series.
func appendV2Request(syms, ts []byte, t *symbolTable, refs *[]uint32, series []Series) ([]byte, []byte, error) {
	syms = append(syms, tagV2RequestSymbols, 0) // symbols[0] = ""
	for k := range series {
		s := &series[k]
		ts = append(ts, tagV2RequestTimeseries, 0, 0)
		start := len(ts)
		var r []uint32
		var err error
		if syms, r, err = appendLabelRefs(syms, t, (*refs)[:0], s.Labels); err != nil {
			return syms, ts, fmt.Errorf("labels of series %d: %w", k, err)
		}
		*refs = r
		ts = appendPackedUint32(ts, tagV2SeriesLabelsRefs, r)
		for j := range s.Samples {
			ts = appendV2Sample(ts, &s.Samples[j])
		}
		ts = putLength(ts, start)
	}
	return append(syms, ts...), ts, nil
}

// appendLabelRefs interns the names and values of the labels encoded in enc (Series.Labels) and
// appends their references to refs. Unknown fields of a Label are skipped.
func appendLabelRefs(syms []byte, t *symbolTable, refs []uint32, enc string) ([]byte, []uint32, error) {
	var r uint32
	for i := 0; i < len(enc); {
		if enc[i] != tagTimeSeriesLabels {
			return syms, refs, fmt.Errorf("%w: tag %#x at %d", errLabelEncoding, enc[i], i)
		}
		msg, next, err := lengthDelimited(enc, i+1)
		if err != nil {
			return syms, refs, err
		}
		i = next
		if len(msg) > 2 && msg[0] == tagLabelName && int(msg[1]) < 0x80 && len(msg) >= 2+int(msg[1]) {
			// The common case: a name with a one-byte length, then the value.
			n := 2 + int(msg[1])
			if rest := msg[n:]; len(rest) > 2 && rest[0] == tagLabelValue && rest[1] < 0x80 && int(rest[1]) == len(rest)-2 {
				syms, r = t.ref(syms, msg[2:n])
				refs = append(refs, r)
				syms, r = t.ref(syms, rest[2:])
				refs = append(refs, r)
				continue
			}
		}
		name, value, err := parseLabel(msg)
		if err != nil {
			return syms, refs, err
		}
		syms, r = t.ref(syms, name)
		refs = append(refs, r)
		syms, r = t.ref(syms, value)
		refs = append(refs, r)
	}
	return syms, refs, nil
}

// parseLabel reads the name and value of an encoded prompb.Label, skipping unknown fields.
func parseLabel(msg string) (name, value string, err error) {
	for i := 0; i < len(msg); {
		tag, j, ok := uvarint(msg, i)
		if !ok {
			return "", "", fmt.Errorf("%w: bad label field tag", errLabelEncoding)
		}
		switch tag & 7 {
		case 0:
			if _, j, ok = uvarint(msg, j); !ok {
				return "", "", fmt.Errorf("%w: bad varint in a label", errLabelEncoding)
			}
		case 1, 5:
			n := 8
			if tag&7 == 5 {
				n = 4
			}
			if j += n; j > len(msg) {
				return "", "", fmt.Errorf("%w: truncated label", errLabelEncoding)
			}
		case 2:
			var v string
			if v, j, err = lengthDelimited(msg, j); err != nil {
				return "", "", err
			}
			switch tag {
			case tagLabelName:
				name = v
			case tagLabelValue:
				value = v
			}
		default:
			return "", "", fmt.Errorf("%w: wire type %d in a label", errLabelEncoding, tag&7)
		}
		i = j
	}
	return name, value, nil
}

// lengthDelimited reads a length at s[i:] and that many bytes after it; it returns them and the
// index after them.
func lengthDelimited(s string, i int) (string, int, error) {
	n, j, ok := uvarint(s, i)
	if !ok || n > uint64(len(s)-j) {
		return "", 0, fmt.Errorf("%w: bad length at %d", errLabelEncoding, i)
	}
	return s[j : j+int(n)], j + int(n), nil
}

// uvarint reads a varint at s[i:]; it returns the value and the index after it.
func uvarint(s string, i int) (uint64, int, bool) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(s) {
			return 0, 0, false
		}
		c := s[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i, true
		}
	}
	return 0, 0, false
}

// appendPackedUint32 appends a packed repeated uint32 field; nothing when vs is empty.
func appendPackedUint32(b []byte, tag byte, vs []uint32) []byte {
	if len(vs) == 0 {
		return b
	}
	n := 0
	for _, v := range vs {
		n += uvarintLen(uint64(v))
	}
	b = grow(b, 1+binary.MaxVarintLen64+n)
	i := len(b)
	b = b[:cap(b)]
	b[i] = tag
	i = putUvarint(b, i+1, uint64(n))
	for _, v := range vs {
		i = putUvarint(b, i, uint64(v))
	}
	return b[:i]
}

// appendV2Sample appends one TimeSeries.samples field of RW 2.0 (start_timestamp unset). Unknown
// fields of the prompb.Sample are not carried over: they belong to the RW 1.0 message.
func appendV2Sample(b []byte, s *prompb.Sample) []byte {
	b = grow(b, 2+9+11)
	i := len(b)
	b = b[:cap(b)]
	size := 0
	if s.Value != 0 {
		size += 9
	}
	if s.Timestamp != 0 {
		size += 1 + uvarintLen(uint64(s.Timestamp))
	}
	b[i] = tagV2SeriesSamples
	b[i+1] = byte(size) // at most 20
	i += 2
	if s.Value != 0 {
		b[i] = tagV2SampleValue
		binary.LittleEndian.PutUint64(b[i+1:], math.Float64bits(s.Value))
		i += 9
	}
	if s.Timestamp != 0 {
		b[i] = tagV2SampleTimestamp
		i = putUvarint(b, i+1, uint64(s.Timestamp))
	}
	return b[:i]
}

// compress compresses e.proto into e.comp as one snappy block.
func (e *encoder) compress() ([]byte, error) {
	if s2.MaxEncodedLen(len(e.proto)) < 0 {
		return nil, ErrRequestTooLarge
	}
	// EncodeSnappy writes the snappy block format (decodable by golang/snappy.Decode and by every
	// remote-write receiver) and reuses e.comp when it is large enough.
	e.comp = s2.EncodeSnappy(e.comp[:cap(e.comp)], e.proto)
	return e.comp, nil
}
