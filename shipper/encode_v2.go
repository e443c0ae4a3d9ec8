package shipper

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"

	"github.com/klauspost/compress/s2"
)

// Protobuf wire tags of the RW 2.0 messages (io.prometheus.write.v2).
const (
	tagV2RequestSymbols      = 4<<3 | 2 // Request.symbols, repeated string
	tagV2RequestTimeseries   = 5<<3 | 2 // Request.timeseries
	tagV2SeriesLabelsRefs    = 1<<3 | 2 // TimeSeries.labels_refs, packed uint32
	maxPooledSymbolTableSize = 1 << 16  // symbol tables of more symbols than this are not kept in the pool
)

// symbolTable interns the strings of one RW 2.0 request. Index 0 is always "". It is reset
// after each request: the symbols are the request's, and its slots point into the request's
// symbols field.
//
// It is an open-addressing hash table of its own rather than a map[string]uint32: the map
// lookup of every name and value was two thirds of the cost of a 2.0 request. Most lookups do
// not reach the table at all: a series' labels are compared first with the labels of the
// previous series at the same position (prev), and in body order consecutive series share the
// metric name, the label names and most values.
type symbolTable struct {
	slots []symbolSlot // len is a power of two, at least twice the symbols; ref 0 marks a free slot
	n     uint32       // symbols interned, "" excluded
	seed  maphash.Seed
	// The labels of the previous series of the request, by position, as offsets into its
	// encoding prevEnc (offsets rather than strings: no write barriers in the hot loop).
	prev    []prevLabel
	prevEnc string
}

// symbolSlot is one interned symbol: where its bytes are in the symbols field being written
// (syms[off:off+n]), not a string, so that the table holds no pointers: no write barrier on
// insert, a third less memory to clear and to miss in than a string header and two words.
type symbolSlot struct {
	hash   uint32 // the high bits of the hash, compared before the bytes
	ref    uint32 // 0 marks a free slot
	off, n uint32
}

// prevLabel is one label of the previous series: where its encoded prompb.Label, its name and
// its value are in the previous series' encoding, and the references of the name and value.
type prevLabel struct {
	msg, name, value  span
	nameRef, valueRef uint32
}

// span is the substring s[off:off+n] of a string s known from the context.
type span struct{ off, n uint32 }

func (p span) of(s string) string { return s[p.off : p.off+p.n] }

const minSymbolSlots = 1 << 12

// ref returns the index of s, appending it to the symbols field b when it is new. b holds the
// symbols interned so far since the last reset, where their slots say.
func (t *symbolTable) ref(b []byte, s string) ([]byte, uint32, error) {
	if s == "" {
		return b, 0, nil
	}
	if 2*(int(t.n)+1) > len(t.slots) {
		t.grow(b)
	}
	h := maphash.String(t.seed, s)
	hi := uint32(h >> 32)
	mask := len(t.slots) - 1
	i := int(h) & mask
	for {
		e := &t.slots[i]
		if e.ref == 0 {
			break
		}
		if e.hash == hi && int(e.n) == len(s) && string(b[e.off:e.off+e.n]) == s {
			return b, e.ref, nil
		}
		i = (i + 1) & mask
	}
	if uint64(len(b))+1+binary.MaxVarintLen64+uint64(len(s)) > math.MaxUint32 {
		return b, 0, ErrRequestTooLarge // the slots could not say where its bytes are
	}
	b = grow(b, 1+binary.MaxVarintLen64+len(s))
	j := len(b)
	b = b[:cap(b)]
	b[j] = tagV2RequestSymbols
	j = putUvarint(b, j+1, uint64(len(s)))
	t.n++
	t.slots[i] = symbolSlot{hash: hi, ref: t.n, off: uint32(j), n: uint32(len(s))}
	j += copy(b[j:], s)
	return b[:j], t.n, nil
}

// grow doubles the table (or allocates it) and reinserts the symbols, whose bytes are in b.
func (t *symbolTable) grow(b []byte) {
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
		t.slots = make([]symbolSlot, minSymbolSlots)
		return
	}
	old := t.slots
	t.slots = make([]symbolSlot, 2*len(old))
	mask := len(t.slots) - 1
	for _, e := range old {
		if e.ref == 0 {
			continue
		}
		i := int(maphash.Bytes(t.seed, b[e.off:e.off+e.n])) & mask
		for t.slots[i].ref != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = e
	}
}

// reset empties the table, keeping its memory unless one large request grew it past
// maxPooledSymbolTableSize.
func (t *symbolTable) reset() {
	if len(t.slots) > 2*maxPooledSymbolTableSize {
		t.slots = nil
	} else {
		clear(t.slots)
	}
	t.prev, t.prevEnc = t.prev[:0], ""
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
			ts = appendSample(ts, &s.Samples[j]) // the same fields in 2.0 (start_timestamp unset)
		}
		ts = putLength(ts, start)
	}
	return append(syms, ts...), ts, nil
}

// appendLabelRefs interns the names and values of the labels encoded in enc (Series.Labels) and
// appends their references to refs. Unknown fields of a Label are skipped.
func appendLabelRefs(syms []byte, t *symbolTable, refs []uint32, enc string) ([]byte, []uint32, error) {
	prevEnc, prevLen := t.prevEnc, len(t.prev)
	k := 0 // position of the label in the series
	for i := 0; i < len(enc); k++ {
		if enc[i] != tagTimeSeriesLabels {
			return syms, refs, fmt.Errorf("%w: tag %#x at %d", errLabelEncoding, enc[i], i)
		}
		n, start, ok := uvarint(enc, i+1)
		if !ok || n > uint64(len(enc)-start) {
			return syms, refs, fmt.Errorf("%w: bad length at %d", errLabelEncoding, i+1)
		}
		i = start + int(n)
		msg := enc[start:i]
		if k >= prevLen {
			t.prev = append(t.prev, prevLabel{})
		}
		p := &t.prev[k]
		if k < prevLen && p.msg.of(prevEnc) == msg {
			// The same label as the previous series' at this position: the same references.
			refs = append(refs, p.nameRef, p.valueRef)
			p.name.off = p.name.off - p.msg.off + uint32(start)
			p.value.off = p.value.off - p.msg.off + uint32(start)
			p.msg.off = uint32(start)
			continue
		}
		var name, value span // in msg
		if m := len(msg); m > 4 && msg[0] == tagLabelName && msg[1] < 0x80 && m > 4+int(msg[1]) &&
			msg[2+int(msg[1])] == tagLabelValue && msg[3+int(msg[1])] < 0x80 && m == 4+int(msg[1])+int(msg[3+int(msg[1])]) {
			// The common case: a name and a value, each with a one-byte length.
			name = span{2, uint32(msg[1])}
			value = span{4 + uint32(msg[1]), uint32(msg[3+int(msg[1])])}
		} else {
			var err error
			if name, value, err = parseLabel(msg); err != nil {
				return syms, refs, err
			}
		}
		name.off += uint32(start)
		value.off += uint32(start)
		// The previous series' label at this position had another name or another value.
		nameRef, valueRef := p.nameRef, p.valueRef
		var err error
		if k >= prevLen || name.of(enc) != p.name.of(prevEnc) {
			if syms, nameRef, err = t.ref(syms, name.of(enc)); err != nil {
				return syms, refs, err
			}
		}
		if k >= prevLen || value.of(enc) != p.value.of(prevEnc) {
			if syms, valueRef, err = t.ref(syms, value.of(enc)); err != nil {
				return syms, refs, err
			}
		}
		*p = prevLabel{msg: span{uint32(start), uint32(len(msg))}, name: name, value: value, nameRef: nameRef, valueRef: valueRef}
		refs = append(refs, nameRef, valueRef)
	}
	t.prev, t.prevEnc = t.prev[:k], enc
	return syms, refs, nil
}

// parseLabel finds the name and value of an encoded prompb.Label, skipping unknown fields. A
// field that is absent is the empty span.
func parseLabel(msg string) (name, value span, err error) {
	for i := 0; i < len(msg); {
		tag, j, ok := uvarint(msg, i)
		if !ok {
			return name, value, fmt.Errorf("%w: bad label field tag", errLabelEncoding)
		}
		switch tag & 7 {
		case 0:
			if _, j, ok = uvarint(msg, j); !ok {
				return name, value, fmt.Errorf("%w: bad varint in a label", errLabelEncoding)
			}
		case 1, 5:
			n := 8
			if tag&7 == 5 {
				n = 4
			}
			if j += n; j > len(msg) {
				return name, value, fmt.Errorf("%w: truncated label", errLabelEncoding)
			}
		case 2:
			var v string
			if v, j, err = lengthDelimited(msg, j); err != nil {
				return name, value, err
			}
			sp := span{uint32(j - len(v)), uint32(len(v))}
			switch tag {
			case tagLabelName:
				name = sp
			case tagLabelValue:
				value = sp
			}
		default:
			return name, value, fmt.Errorf("%w: wire type %d in a label", errLabelEncoding, tag&7)
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
