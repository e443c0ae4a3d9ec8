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
	tagV2SeriesHistograms    = 3<<3 | 2 // TimeSeries.histograms
	tagV2SeriesExemplars     = 4<<3 | 2 // TimeSeries.exemplars
	tagV2ExemplarLabelsRefs  = 1<<3 | 2 // Exemplar.labels_refs, packed uint32
	tagV2ExemplarValue       = 2<<3 | 1 // Exemplar.value, fixed64 double
	tagV2ExemplarTimestamp   = 3<<3 | 0 // Exemplar.timestamp, varint int64
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
func (e *encoder) encodeV2(series []prompb.TimeSeries) ([]byte, error) {
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
// (federation does not give created timestamps: 0 means unknown).
//
// refs is scratch space for the label references of one series.
func appendV2Request(syms, ts []byte, t *symbolTable, refs *[]uint32, series []prompb.TimeSeries) ([]byte, []byte, error) {
	syms = append(syms, tagV2RequestSymbols, 0) // symbols[0] = ""
	for k := range series {
		s := &series[k]
		ts = append(ts, tagV2RequestTimeseries, 0, 0)
		start := len(ts)
		var r []uint32
		syms, r = appendLabelRefs(syms, t, (*refs)[:0], s.Labels)
		*refs = r
		ts = appendPackedUint32(ts, tagV2SeriesLabelsRefs, r)
		for j := range s.Samples {
			ts = appendV2Sample(ts, &s.Samples[j])
		}
		for j := range s.Histograms {
			// prompb.Histogram and writev2.Histogram share their field numbers and types (v2
			// adds start_timestamp, field 17, which stays unset): the RW 1.0 encoding is a valid
			// RW 2.0 one.
			var err error
			if ts, err = appendEmbedded(ts, tagV2SeriesHistograms, &s.Histograms[j]); err != nil {
				return syms, ts, fmt.Errorf("marshal histogram %d of series %d: %w", j, k, err)
			}
		}
		for j := range s.Exemplars {
			ex := &s.Exemplars[j]
			syms, r = appendLabelRefs(syms, t, (*refs)[:0], ex.Labels)
			*refs = r
			ts = appendV2Exemplar(ts, r, ex)
		}
		ts = putLength(ts, start)
	}
	return append(syms, ts...), ts, nil
}

// appendLabelRefs interns the names and values of ls and appends their references to refs.
func appendLabelRefs(syms []byte, t *symbolTable, refs []uint32, ls []prompb.Label) ([]byte, []uint32) {
	var r uint32
	for i := range ls {
		syms, r = t.ref(syms, ls[i].Name)
		refs = append(refs, r)
		syms, r = t.ref(syms, ls[i].Value)
		refs = append(refs, r)
	}
	return syms, refs
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

// appendV2Exemplar appends one TimeSeries.exemplars field of RW 2.0 with the label references
// refs.
func appendV2Exemplar(b []byte, refs []uint32, ex *prompb.Exemplar) []byte {
	n := 0
	if len(refs) > 0 {
		m := 0
		for _, v := range refs {
			m += uvarintLen(uint64(v))
		}
		n += 1 + uvarintLen(uint64(m)) + m
	}
	if ex.Value != 0 {
		n += 9
	}
	if ex.Timestamp != 0 {
		n += 1 + uvarintLen(uint64(ex.Timestamp))
	}
	b = grow(b, 1+binary.MaxVarintLen64)
	i := len(b)
	b = b[:cap(b)]
	b[i] = tagV2SeriesExemplars
	i = putUvarint(b, i+1, uint64(n))
	b = appendPackedUint32(b[:i], tagV2ExemplarLabelsRefs, refs)
	b = grow(b, 9+11)
	i = len(b)
	b = b[:cap(b)]
	if ex.Value != 0 {
		b[i] = tagV2ExemplarValue
		binary.LittleEndian.PutUint64(b[i+1:], math.Float64bits(ex.Value))
		i += 9
	}
	if ex.Timestamp != 0 {
		b[i] = tagV2ExemplarTimestamp
		i = putUvarint(b, i+1, uint64(ex.Timestamp))
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
