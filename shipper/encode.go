package shipper

import (
	"encoding/binary"
	"io"
	"math"
	"math/bits"
	"sync"
)

// Protobuf wire tags (field number << 3 | wire type) of the RW 1.0 messages.
const (
	tagWriteRequestTimeseries = 1<<3 | 2 // WriteRequest.timeseries, length-delimited
	tagTimeSeriesLabels       = 1<<3 | 2 // TimeSeries.labels
	tagTimeSeriesSamples      = 2<<3 | 2 // TimeSeries.samples
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

// Series is one series of a request. Labels holds its labels already encoded: the repeated
// TimeSeries.labels field of remote-write 1.0 (prompb.TimeSeries field 1, each a prompb.Label),
// byte for byte what gogo's generated Marshal writes for them; the WAL keeps
// them in memory in this form (wal.AppendLabels). Samples are its samples in time order. The WAL holds float samples only: there are no
// exemplars or histograms to send.
//
// Series is an alias of an unnamed struct type, the same type as queue.Series: the queue's
// Sender interface is satisfied without shipper importing queue.
type Series = struct {
	Labels  string
	Samples []Sample
}

// Sample is one sample of a Series: 16 bytes without pointers, where a prompb.Sample is 48 with
// one (its unknown fields, which the WAL never has). A batch of 5000 samples is 80 KB, which the
// garbage collector does not scan. It is an alias of an unnamed struct type, as Series is.
type Sample = struct {
	Timestamp int64
	Value     float64
}

// encode marshals series as a prompb.WriteRequest and compresses it into a snappy block. The
// returned slice aliases e.comp and is valid until the next call.
func (e *encoder) encode(series []Series) ([]byte, error) {
	e.proto = appendWriteRequest(e.proto[:0], series)
	return e.compress()
}

// appendWriteRequest appends the protobuf encoding of a prompb.WriteRequest of series to b. The
// output is byte-for-byte what gogo's generated (*prompb.WriteRequest).Marshal produces for the
// same series as prompb.TimeSeries, including its proto3 rule of omitting zero values (a -0.0
// sample value is omitted like +0.0).
//
// The labels are copied as they are (one copy per series); their length is known, so the size
// of a series is computed from its samples before it is written, and nothing moves afterwards.
func appendWriteRequest(b []byte, series []Series) []byte {
	for k := range series {
		ts := &series[k]
		n := len(ts.Labels)
		for j := range ts.Samples {
			n += 2 + sampleSize(&ts.Samples[j]) // tag, one-byte length (appendSample)
		}
		b = grow(b, 1+binary.MaxVarintLen64+n)
		i := len(b)
		b = b[:cap(b)]
		b[i] = tagWriteRequestTimeseries
		i = putUvarint(b, i+1, uint64(n))
		i += copy(b[i:], ts.Labels)
		b = b[:i]
		for j := range ts.Samples {
			b = appendSample(b, &ts.Samples[j])
		}
	}
	return b
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

// sampleSize is the size of the prompb.Sample message of s.
func sampleSize(s *Sample) int {
	size := 0
	if s.Value != 0 {
		size += 9
	}
	if s.Timestamp != 0 {
		size += 1 + uvarintLen(uint64(s.Timestamp))
	}
	return size
}

// appendSample appends one TimeSeries.samples field: at most 2 (tag, length) + 9 (value) + 11
// (timestamp) bytes, so its length takes one byte. RW 2.0 writes the same bytes: its
// TimeSeries.samples is field 2 too, and its Sample has the same value (1) and timestamp (2)
// fields (start_timestamp, 3, is left unset).
func appendSample(b []byte, s *Sample) []byte {
	b = grow(b, 2+9+11)
	i := len(b)
	b = b[:cap(b)]
	b[i] = tagTimeSeriesSamples
	b[i+1] = byte(sampleSize(s)) // at most 20
	i += 2
	if s.Value != 0 {
		b[i] = tagSampleValue
		binary.LittleEndian.PutUint64(b[i+1:], math.Float64bits(s.Value))
		i += 9
	}
	if s.Timestamp != 0 {
		b[i] = tagSampleTimestamp
		i = putUvarint(b, i+1, uint64(s.Timestamp))
	}
	return b[:i]
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

// bodyPool holds the buffers of compressed requests while they are sent.
type bodyPool struct{ p sync.Pool }

// get returns a buffer of capacity at least n.
func (p *bodyPool) get(n int) *[]byte {
	if bp, ok := p.p.Get().(*[]byte); ok {
		if cap(*bp) >= n {
			return bp
		}
		*bp = make([]byte, 0, n+n/4) // room for the next, slightly larger request
		return bp
	}
	b := make([]byte, 0, n+n/4)
	return &b
}

func (p *bodyPool) put(bp *[]byte) {
	if cap(*bp) > maxPooledBuffer {
		return
	}
	p.p.Put(bp)
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
