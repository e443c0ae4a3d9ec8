package shipper

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sync"

	"github.com/prometheus/prometheus/prompb"
)

// Protobuf wire tags (field number << 3 | wire type) of the RW 1.0 messages.
const (
	tagWriteRequestTimeseries = 1<<3 | 2 // WriteRequest.timeseries, length-delimited
	tagTimeSeriesLabels       = 1<<3 | 2 // TimeSeries.labels
	tagTimeSeriesSamples      = 2<<3 | 2 // TimeSeries.samples
	tagTimeSeriesExemplars    = 3<<3 | 2 // TimeSeries.exemplars
	tagTimeSeriesHistograms   = 4<<3 | 2 // TimeSeries.histograms
	tagLabelName              = 1<<3 | 2 // Label.name
	tagLabelValue             = 2<<3 | 2 // Label.value
	tagSampleValue            = 1<<3 | 1 // Sample.value, fixed64 double
	tagSampleTimestamp        = 2<<3 | 0 // Sample.timestamp, varint int64
)

// maxPooledBuffer bounds the buffers kept in the pool: one outsized request must not pin its
// memory for the life of the process.
const maxPooledBuffer = 16 << 20

// encoder holds the reusable buffers of one request. It is not safe for concurrent use; Client
// takes one from its pool per Send.
type encoder struct {
	proto []byte // the marshalled prompb.WriteRequest or io.prometheus.write.v2.Request
	comp  []byte // the snappy block

	// RW 2.0 only: the timeseries before they are appended to the symbols, the symbol table and
	// the label references of one series.
	series []byte
	syms   symbolTable
	refs   []uint32
}

// encode marshals series as a prompb.WriteRequest and compresses it into a snappy block. The
// returned slice aliases e.comp and is valid until the next call.
func (e *encoder) encode(series []prompb.TimeSeries) ([]byte, error) {
	var err error
	if e.proto, err = appendWriteRequest(e.proto[:0], series); err != nil {
		return nil, err
	}
	return e.compress()
}

// appendWriteRequest appends the protobuf encoding of prompb.WriteRequest{Timeseries: series} to
// b. The output is byte-for-byte what gogo's generated (*prompb.WriteRequest).Marshal produces,
// including its proto3 rule of omitting zero values (a -0.0 sample value is omitted like +0.0)
// and the XXX_unrecognized bytes of each message.
//
// It makes one pass over the labels (they are scattered in memory, so a second pass for the sizes
// would cost as much as the first): each series is written after a two-byte length slot, which
// fits series of 128 B to 16 KiB; other sizes move the series by a byte or more afterwards.
func appendWriteRequest(b []byte, series []prompb.TimeSeries) ([]byte, error) {
	for k := range series {
		ts := &series[k]
		b = append(b, tagWriteRequestTimeseries, 0, 0)
		start := len(b)
		for j := range ts.Labels {
			b = appendLabel(b, &ts.Labels[j])
		}
		for j := range ts.Samples {
			b = appendSample(b, &ts.Samples[j])
		}
		var err error
		for j := range ts.Exemplars {
			if b, err = appendEmbedded(b, tagTimeSeriesExemplars, &ts.Exemplars[j]); err != nil {
				return b, fmt.Errorf("marshal exemplar %d of series %d: %w", j, k, err)
			}
		}
		for j := range ts.Histograms {
			if b, err = appendEmbedded(b, tagTimeSeriesHistograms, &ts.Histograms[j]); err != nil {
				return b, fmt.Errorf("marshal histogram %d of series %d: %w", j, k, err)
			}
		}
		b = append(b, ts.XXX_unrecognized...)
		b = putLength(b, start)
	}
	return b, nil
}

// putLength writes the length of b[start:] into the two bytes before start, moving b[start:] if
// the varint needs another number of bytes.
func putLength(b []byte, start int) []byte {
	n := len(b) - start
	switch l := uvarintLen(uint64(n)); {
	case l == 2:
		b[start-2] = byte(n) | 0x80
		b[start-1] = byte(n >> 7)
	case l == 1:
		b[start-2] = byte(n)
		copy(b[start-1:], b[start:])
		b = b[:len(b)-1]
	default:
		b = append(b, make([]byte, l-2)...)
		copy(b[start-2+l:], b[start:start+n])
		putUvarint(b, start-2, uint64(n))
	}
	return b
}

// grow makes room for n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), 2*cap(b)+n)
	copy(nb, b)
	return nb
}

// appendLabel appends one TimeSeries.labels field.
func appendLabel(b []byte, l *prompb.Label) []byte {
	nl, vl := len(l.Name), len(l.Value)
	if size := 4 + nl + vl; size < 0x80 && nl > 0 && vl > 0 && len(l.XXX_unrecognized) == 0 {
		// The common case: every length fits one byte.
		b = grow(b, 2+size)
		i := len(b)
		b = b[:i+2+size]
		b[i] = tagTimeSeriesLabels
		b[i+1] = byte(size)
		b[i+2] = tagLabelName
		b[i+3] = byte(nl)
		copy(b[i+4:], l.Name)
		i += 4 + nl
		b[i] = tagLabelValue
		b[i+1] = byte(vl)
		copy(b[i+2:], l.Value)
		return b
	}
	size := labelSize(l)
	b = grow(b, 1+binary.MaxVarintLen64+size)
	i := len(b)
	b = b[:cap(b)]
	b[i] = tagTimeSeriesLabels
	i = putUvarint(b, i+1, uint64(size))
	if nl > 0 {
		b[i] = tagLabelName
		i = putUvarint(b, i+1, uint64(nl))
		i += copy(b[i:], l.Name)
	}
	if vl > 0 {
		b[i] = tagLabelValue
		i = putUvarint(b, i+1, uint64(vl))
		i += copy(b[i:], l.Value)
	}
	i += copy(b[i:], l.XXX_unrecognized)
	return b[:i]
}

func labelSize(l *prompb.Label) int {
	n := len(l.XXX_unrecognized)
	if len(l.Name) > 0 {
		n += 1 + uvarintLen(uint64(len(l.Name))) + len(l.Name)
	}
	if len(l.Value) > 0 {
		n += 1 + uvarintLen(uint64(len(l.Value))) + len(l.Value)
	}
	return n
}

// appendSample appends one TimeSeries.samples field.
func appendSample(b []byte, s *prompb.Sample) []byte {
	// At most 2 (tag, length) + 9 (value) + 11 (timestamp) bytes, plus unknown fields.
	b = grow(b, 2+binary.MaxVarintLen64+20+len(s.XXX_unrecognized))
	i := len(b)
	b = b[:cap(b)]
	b[i] = tagTimeSeriesSamples
	size := len(s.XXX_unrecognized)
	if s.Value != 0 {
		size += 9
	}
	if s.Timestamp != 0 {
		size += 1 + uvarintLen(uint64(s.Timestamp))
	}
	if size < 0x80 {
		b[i+1] = byte(size)
		i += 2
	} else {
		i = putUvarint(b, i+1, uint64(size))
	}
	if s.Value != 0 {
		b[i] = tagSampleValue
		binary.LittleEndian.PutUint64(b[i+1:], math.Float64bits(s.Value))
		i += 9
	}
	if s.Timestamp != 0 {
		b[i] = tagSampleTimestamp
		i = putUvarint(b, i+1, uint64(s.Timestamp))
	}
	i += copy(b[i:], s.XXX_unrecognized)
	return b[:i]
}

// sizedMarshaler is implemented by gogo's generated messages. Exemplars and native histograms
// are rare on this path (the WAL of collector holds float samples), so they reuse the generated
// code instead of a hand-written copy.
type sizedMarshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

func appendEmbedded(b []byte, tag byte, m sizedMarshaler) ([]byte, error) {
	n := m.Size()
	b = grow(b, 1+binary.MaxVarintLen64+n)
	start := len(b)
	i := start
	b = b[:cap(b)]
	b[i] = tag
	i = putUvarint(b, i+1, uint64(n))
	// MarshalToSizedBuffer writes backwards from the end of the slice it is given.
	if _, err := m.MarshalToSizedBuffer(b[i : i+n]); err != nil {
		return b[:start], err
	}
	return b[:i+n], nil
}

func uvarintLen(v uint64) int {
	// 1 + floor((bits-1)/7), with 0 taking one byte.
	return int(9*uint32(bits.Len64(v))+64) / 64
}

func putUvarint(b []byte, i int, v uint64) int {
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// encoderPool is a typed wrapper of sync.Pool for *encoder.
type encoderPool struct{ p sync.Pool }

func (p *encoderPool) get() *encoder {
	if e, ok := p.p.Get().(*encoder); ok {
		return e
	}
	return &encoder{}
}

func (p *encoderPool) put(e *encoder) {
	if cap(e.proto) > maxPooledBuffer || cap(e.comp) > maxPooledBuffer || cap(e.series) > maxPooledBuffer {
		return
	}
	p.p.Put(e)
}

// requestBody serves a pooled buffer to the HTTP transport. The transport may keep reading the
// body in its own goroutine after RoundTrip returned (an early response); release makes every
// later Read fail, so the buffer can be reused without a data race.
type requestBody struct {
	mu  sync.Mutex
	buf []byte // guarded by mu; nil once released
	off int    // guarded by mu
}

func (r *requestBody) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf == nil {
		return 0, errBodyReleased
	}
	if r.off >= len(r.buf) {
		return 0, io.EOF
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

func (r *requestBody) Close() error { return nil }

// release detaches the buffer; the caller owns it again when release returns.
func (r *requestBody) release() {
	r.mu.Lock()
	r.buf = nil
	r.mu.Unlock()
}
