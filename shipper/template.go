package shipper

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/klauspost/compress/s2"
)

// Request templates: a federating agent sends the same series in the same order every
// interval, so most requests repeat the previous interval's request byte for byte except for the
// samples' values and timestamps. Compressing such a request is most of what sending it costs
// (s2 over about 200 bytes of labels per sample, and the copy of those labels into the message,
// one cache miss after another). A template keeps a compressed request in a form where the
// sample bytes can be overwritten in place: the next request over the same series is the
// template's block with the new samples written into it, without building the message or
// compressing it.
//
// A snappy block is a sequence of literals (bytes given as they are) and copies (bytes repeated
// from an offset back in the output). s2's block for a message is turned into a template by
// splitting every copy where it writes or reads a sample's value or timestamp:
//   - a sample's bytes (its value and timestamp fields, not its tag and length) are written by
//     a literal, so that they can be overwritten, and no copy reads them, with two exceptions;
//   - a copy of a timestamp from the same place in an earlier, equal timestamp, which s2 finds
//     when series share a timestamp (the series of one scraped target do). It holds as long as
//     the two timestamps are equal: the template remembers the pair (deps);
//   - a copy that writes or reads zero bytes among the low pinnedBytes bytes of a value (round
//     values end in zero bytes). It holds as long as those bytes stay zero: the template
//     remembers which (zeros).
// A copy's kept parts are joined again where they are adjacent; a part shorter than 4 bytes
// that joins nothing becomes a literal.
//
// The rest of the message (the labels, the field tags and lengths) does not depend on the
// samples as long as each sample keeps its encoded size (a value of 0 is left out of the message,
// and the length of a timestamp's varint grows with it). A template is used for a request of the
// same series, in the same order, one sample each, of the same encoded sizes: the series are
// compared by their label strings' addresses (which the template keeps alive, so an address is
// never reused for other labels while the template exists) and lengths.
//
// Splitting costs some compression (BenchmarkTemplate: 10 % more bytes on requests of
// OpenShift-like series whose values have 30 significant bits): the bytes of a value that s2
// copied from another value's are literals. Templates are built on the first request over the
// series, verified by decoding them once, and dropped when no request used them for a while
// (learn, sweepLocked). The request that builds one sends s2's block; the later ones send the
// template's.

// pinnedBytes is how many of the low bytes of a value (little-endian float64 bits, the end of its
// mantissa) a copy may write or read: a value of up to 36 significant bits (an integer below
// 2^36, a count of quarters below 2^34) ends in two zero bytes, which s2 copies from the zeros of
// other values, and keeps them as the value moves. The third and fourth zero bytes of smaller
// values come and go more often: a value that moves by quarters has them every fourth interval
// (pinning four bytes saved 2 % of the bytes, BenchmarkTemplate, and broke templates in the
// harness every other interval).
const pinnedBytes = 2

// maxTemplateSeries bounds the series of a request that gets a template.
const maxTemplateSeries = 1 << 20

// templateCache holds the templates of one Client. Safe for concurrent use; a template is never
// modified once built, so requests render it concurrently.
type templateCache struct {
	mu    sync.Mutex
	byKey map[uint64]*reqTemplate // under mu
	waits map[uint64]templateWait // series whose templates never served (learn); under mu
	uses  atomic.Uint64           // requests looked up
	swept uint64                  // uses at the last sweep; under mu
}

// reqTemplate is the template of one request (see above).
type reqTemplate struct {
	labels []string // the series' labels, by identity
	sizes  []uint8  // the encoded size of each series' sample (sampleSize)
	deps   []int32  // per sample: the earlier sample whose timestamp a copy repeats, or -1
	// zeros has a bit per byte of each sample's value (math.Float64bits, little-endian: bit k
	// for byte k < pinnedBytes) that copies write or read: zero in the template, and a request
	// whose values are not zero there does not fit.
	zeros []uint8
	frags []patch       // where sample bytes are in comp, in order
	comp  []byte        // the block
	level uint8         // which copies may depend on samples (learn)
	used  atomic.Uint64 // the use count of the last request that looked it up
	hits  atomic.Uint64 // requests it served
}

// patch is a run of a sample's bytes inside a literal of the template's block: n bytes of sample
// j's encoding from offset rel, at comp[at:].
type patch struct {
	at     uint32
	j      uint32
	rel, n uint8
}

func newTemplateCache() *templateCache {
	return &templateCache{byKey: map[uint64]*reqTemplate{}, waits: map[uint64]templateWait{}}
}

// templateKey hashes the identity of the series of a request; ok is false when the request cannot
// have a template (not exactly one sample per series, or too many series).
func templateKey(series []Series) (key uint64, ok bool) {
	if len(series) == 0 || len(series) > maxTemplateSeries {
		return 0, false
	}
	h := uint64(len(series)) * 0x9e3779b97f4a7c15
	for i := range series {
		ts := &series[i]
		if len(ts.Samples) != 1 {
			return 0, false
		}
		h ^= uint64(uintptr(unsafe.Pointer(unsafe.StringData(ts.Labels)))) + uint64(len(ts.Labels))<<48
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	return h, true
}

// find returns the template of key if it fits series, else nil.
func (c *templateCache) find(key uint64, series []Series) *reqTemplate {
	n := c.uses.Add(1)
	c.mu.Lock()
	t := c.byKey[key]
	if t != nil {
		t.used.Store(n)
	}
	c.sweepLocked(n)
	c.mu.Unlock()
	if t == nil || !t.fits(series) {
		return nil
	}
	t.hits.Add(1)
	return t
}

// learn is told of a request that find could not serve: msg is its protobuf message and block
// the s2 block of it. It builds the template of the request and returns whether it did.
//
// A template of the same series that never served a request was too strict for them: the next
// one is built at the next level, which pins no zero bytes of values (level 1) and then repeats
// no timestamp either (level 2). A template of level 2 that never served
// (its series change the sizes of their samples from one request to the next) goes, and the
// series wait before their next build: 1 request, then 2, 4, up to maxTemplateWait, as long as
// their templates keep failing, so that they cost about what they did without templates. A
// template that did serve is rebuilt at its level.
func (c *templateCache) learn(key uint64, series []Series, msg, block []byte) bool {
	n := c.uses.Load()
	c.mu.Lock()
	c.sweepLocked(n)
	level := uint8(0)
	w, waiting := c.waits[key]
	switch old := c.byKey[key]; {
	case old != nil && old.hits.Load() > 0:
		level = old.level
		delete(c.waits, key)
	case old != nil && old.level < maxTemplateLevel:
		level = old.level + 1
	case old != nil:
		delete(c.byKey, key)
		w.wait = min(max(2*w.wait, 1), maxTemplateWait)
		w.left, w.used = w.wait, n
		c.waits[key] = w
		c.mu.Unlock()
		return false
	case waiting && w.left > 0:
		w.left--
		w.used = n
		c.waits[key] = w
		c.mu.Unlock()
		return false
	case waiting:
		level = maxTemplateLevel
	}
	c.mu.Unlock()
	t, err := buildTemplate(series, msg, block, level)
	if err != nil {
		return false
	}
	t.used.Store(n)
	c.mu.Lock()
	c.byKey[key] = t
	c.mu.Unlock()
	return true
}

// maxTemplateWait bounds the requests a batch of series whose templates never serve waits
// between builds (learn).
const maxTemplateWait = 64

// templateWait is how long the series of a key wait before their next build (learn).
type templateWait struct {
	wait, left uint32 // the current wait, and what is left of it
	used       uint64 // the use count when it was last looked at
}

// maxTemplateLevel is the last level of a template (learn): no copy depends on a sample.
const maxTemplateLevel = 2

// pinnedAt is how many low bytes of a value may be pinned at each level.
var pinnedAt = [maxTemplateLevel + 1]int{pinnedBytes, 0, 0}

// sweepLocked drops the templates (and waits) not used for as many requests as there are
// templates and waits (twice that, at least 64), once that many requests have gone by.
func (c *templateCache) sweepLocked(n uint64) {
	age := 2*uint64(len(c.byKey)+len(c.waits)) + 64
	if n-c.swept < age {
		return
	}
	for k, t := range c.byKey {
		if n-t.used.Load() > age {
			delete(c.byKey, k)
		}
	}
	for k, w := range c.waits {
		if n-w.used > age {
			delete(c.waits, k)
		}
	}
	c.swept = n
}

// fits reports whether the template serves series: the same label strings in the same order,
// one sample each of the same encoded size, the timestamps its copies repeat still equal and the
// value bytes they write or read still zero.
func (t *reqTemplate) fits(series []Series) bool {
	if len(series) != len(t.labels) {
		return false
	}
	for i := range series {
		ts := &series[i]
		l := t.labels[i]
		if len(ts.Samples) != 1 || len(ts.Labels) != len(l) || unsafe.StringData(ts.Labels) != unsafe.StringData(l) ||
			sampleSize(&ts.Samples[0]) != int(t.sizes[i]) {
			return false
		}
		if d := t.deps[i]; d >= 0 && ts.Samples[0].Timestamp != series[d].Samples[0].Timestamp {
			return false
		}
		if math.Float64bits(ts.Samples[0].Value)&zeroMasks[t.zeros[i]] != 0 {
			return false
		}
	}
	return true
}

// render appends the block of series (fits) to dst.
func (t *reqTemplate) render(dst []byte, series []Series) []byte {
	base := len(dst)
	dst = append(dst, t.comp...)
	var enc [20]byte
	cur := -1
	for _, p := range t.frags {
		if int(p.j) != cur {
			cur = int(p.j)
			putSample(enc[:], &series[cur].Samples[0])
		}
		copy(dst[base+int(p.at):], enc[p.rel:p.rel+p.n])
	}
	return dst
}

// putSample writes the value and timestamp fields of s (sampleSize bytes) to b.
func putSample(b []byte, s *Sample) {
	i := 0
	if s.Value != 0 {
		b[0] = tagSampleValue
		binary.LittleEndian.PutUint64(b[1:], math.Float64bits(s.Value))
		i = 9
	}
	if s.Timestamp != 0 {
		b[i] = tagSampleTimestamp
		putUvarint(b, i+1, uint64(s.Timestamp))
	}
}

var errTemplate = errors.New("snappy block does not match its message")

// sampleSpan is where a sample's bytes are in the message: [start, end) its value and timestamp
// fields, of which [vs, ts) is the value's 8 bytes (empty for a value of 0, which is left out) and
// [ts, end) the timestamp field. The value's tag, at start, does not change with the value.
type sampleSpan struct{ start, vs, ts, end int }

// buildTemplate makes the template of series (one sample each) from msg, their message as
// appendWriteRequest writes it, and block, msg compressed by s2.EncodeSnappy.
func buildTemplate(series []Series, msg, block []byte, level uint8) (*reqTemplate, error) {
	t := &reqTemplate{
		level:  level,
		labels: make([]string, len(series)),
		sizes:  make([]uint8, len(series)),
		deps:   make([]int32, len(series)),
		zeros:  make([]uint8, len(series)),
	}
	b := builders.Get().(*templateBuilder)
	defer func() {
		b.msg, b.t = nil, nil // the pool keeps the buffers, not the request
		builders.Put(b)
	}()
	b.reset(msg, len(series))
	pos := 0
	for i := range series {
		ts := &series[i]
		s := &ts.Samples[0]
		size := sampleSize(s)
		n := len(ts.Labels) + 2 + size
		pos += 1 + uvarintLen(uint64(n)) + len(ts.Labels) + 2
		vs, v := pos, 0
		if s.Value != 0 {
			vs, v = pos+1, 9
		}
		b.spans[i] = sampleSpan{start: pos, vs: vs, ts: pos + v, end: pos + size}
		b.ts[i], b.values[i] = s.Timestamp, math.Float64bits(s.Value)
		pos += size
		t.labels[i], t.sizes[i], t.deps[i] = ts.Labels, uint8(size), -1
	}
	if pos != len(msg) {
		return nil, errTemplate
	}
	b.t = t
	b.index()
	if err := b.build(block); err != nil {
		return nil, err
	}
	// The template must decode to the message it was made from: the splitting above is
	// exercised by tests, and this keeps a mistake from ever reaching a receiver.
	var err error
	if b.check, err = s2.Decode(b.check[:cap(b.check)], b.comp); err != nil || !bytes.Equal(b.check, msg) {
		return nil, errTemplate
	}
	t.comp = bytes.Clone(b.comp)
	t.frags = slices.Clone(b.frags)
	return t, nil
}

// builders recycles the scratch buffers of buildTemplate.
var builders = sync.Pool{New: func() any { return new(templateBuilder) }}

// reset readies b for msg, a message of n series.
func (b *templateBuilder) reset(msg []byte, n int) {
	*b = templateBuilder{
		msg:     msg,
		spans:   slices.Grow(b.spans[:0], n)[:n],
		ts:      slices.Grow(b.ts[:0], n)[:n],
		values:  slices.Grow(b.values[:0], n)[:n],
		buckets: slices.Grow(b.buckets[:0], len(msg)>>bucketShift+1)[:len(msg)>>bucketShift+1],
		comp:    b.comp[:0],
		frags:   b.frags[:0],
		acts:    b.acts[:0],
		check:   b.check[:0],
	}
}

// templateBuilder turns s2's block into a template (buildTemplate).
type templateBuilder struct {
	msg    []byte
	spans  []sampleSpan
	ts     []int64  // the timestamp of each sample
	values []uint64 // the bits of each sample's value
	t      *reqTemplate
	lit    int // start of the pending literal in msg; -1: none

	cpFrom, cpTo, cpOff int // the pending copy: msg[cpFrom:cpTo] from cpOff back; none if empty

	acts []constraint // of the kept segments of the copy being split

	buckets []int32 // spanAfter's index

	comp  []byte  // the template's block, being written
	frags []patch // its patches
	check []byte  // the block decoded
}

// region says where message position x is: in sample j's value (ts false) or timestamp (ts
// true) field at offset rel of that field, or in no sample (j -1); next is where that changes.
func (b *templateBuilder) region(x int) (j int, ts bool, rel, next int) {
	k := b.spanAfter(x)
	if k == len(b.spans) {
		return -1, false, 0, math.MaxInt
	}
	s := b.spans[k]
	switch {
	case x < s.vs:
		return -1, false, 0, s.vs
	case x < s.ts:
		return k, false, x - s.vs, s.ts
	default:
		return k, true, x - s.ts, s.end
	}
}

// spanAfter returns the index of the first sample whose bytes end after x.
func (b *templateBuilder) spanAfter(x int) int {
	k := int(b.buckets[x>>bucketShift])
	for k < len(b.spans) && b.spans[k].end <= x {
		k++
	}
	return k
}

// bucketShift sets the size of the buckets of spanAfter's index: 64 bytes of message, about a
// third of a series.
const bucketShift = 6

// index fills b.buckets: for each 64 bytes of the message, the first sample that ends after its
// start.
func (b *templateBuilder) index() {
	k := 0
	for i := range b.buckets {
		for k < len(b.spans) && b.spans[k].end <= i<<bucketShift {
			k++
		}
		b.buckets[i] = int32(k)
	}
}

func (b *templateBuilder) build(block []byte) error {
	dlen, k := binary.Uvarint(block)
	if k <= 0 || dlen != uint64(len(b.msg)) {
		return errTemplate
	}
	b.comp = binary.AppendUvarint(b.comp[:0], dlen)
	b.lit = -1
	s, pos := k, 0
	for s < len(block) {
		tag := block[s]
		var length, offset int
		switch tag & 3 {
		case 0:
			x := int(tag >> 2)
			switch {
			case x < 60:
				s++
			case x == 60 && s+1 < len(block):
				x = int(block[s+1])
				s += 2
			case x == 61 && s+2 < len(block):
				x = int(binary.LittleEndian.Uint16(block[s+1:]))
				s += 3
			case x == 62 && s+3 < len(block):
				x = int(block[s+1]) | int(block[s+2])<<8 | int(block[s+3])<<16
				s += 4
			case x == 63 && s+4 < len(block):
				x = int(binary.LittleEndian.Uint32(block[s+1:]))
				s += 5
			default:
				return errTemplate
			}
			length = x + 1
			if length > len(block)-s || length > len(b.msg)-pos {
				return errTemplate
			}
			s += length
			b.literal(pos)
			pos += length
			continue
		case 1:
			if s+1 >= len(block) {
				return errTemplate
			}
			length = 4 + int(tag>>2)&7
			offset = int(tag&0xe0)<<3 | int(block[s+1])
			s += 2
		case 2:
			if s+2 >= len(block) {
				return errTemplate
			}
			length = 1 + int(tag>>2)
			offset = int(binary.LittleEndian.Uint16(block[s+1:]))
			s += 3
		case 3:
			if s+4 >= len(block) {
				return errTemplate
			}
			length = 1 + int(tag>>2)
			offset = int(binary.LittleEndian.Uint32(block[s+1:]))
			s += 5
		}
		if offset <= 0 || offset > pos || length > len(b.msg)-pos {
			return errTemplate
		}
		b.copyOp(pos, pos+length, offset)
		pos += length
	}
	if pos != len(b.msg) {
		return errTemplate
	}
	b.flushCopy()
	b.flush(pos)
	return nil
}

// copyFrom takes msg[from:to] as a copy from offset back; it extends the pending copy when that
// ends at from with the same offset (the parts of one copy of s2's that are kept, around a
// timestamp or zeros, are one copy again).
func (b *templateBuilder) copyFrom(from, to, offset int) {
	if b.cpTo > b.cpFrom && b.cpTo == from && b.cpOff == offset {
		b.cpTo = to
		return
	}
	b.flushCopy()
	b.flush(from)
	b.cpFrom, b.cpTo, b.cpOff = from, to, offset
}

// flushCopy writes the pending copy.
func (b *templateBuilder) flushCopy() {
	if b.cpTo > b.cpFrom {
		b.comp = appendCopy(b.comp, b.cpOff, b.cpTo-b.cpFrom)
	}
	b.cpFrom, b.cpTo = 0, 0
}

// literal takes msg from position from as a literal, up to the next copy.
func (b *templateBuilder) literal(from int) {
	b.flushCopy()
	if b.lit < 0 {
		b.lit = from
	}
}

// copyOp takes msg[from:to], which s2 copied from offset back, splitting it where it writes or
// reads sample bytes.
func (b *templateBuilder) copyOp(from, to, offset int) {
	run := from // the kept segments since run are one copy
	b.acts = b.acts[:0]
	for x := from; x < to; {
		dj, dts, drel, dnext := b.region(x)
		sj, sts, srel, snext := b.region(x - offset)
		end := min(to, dnext, snext+offset)
		// Only the low pinned bytes of a value may be pinned (below).
		pinned := pinnedAt[b.t.level]
		if dj >= 0 && !dts {
			end = min(end, x+max(pinned-drel, 1))
		}
		if sj >= 0 && !sts {
			end = min(end, x+max(pinned-srel, 1))
		}
		keep := false
		switch {
		case dj < 0 && sj < 0:
			keep = true
		case dj >= 0 && sj >= 0 && dts && sts && drel == srel && sj < dj && b.ts[dj] == b.ts[sj] && b.t.level < maxTemplateLevel:
			// A timestamp repeated from the same place of an earlier, equal timestamp (s2 also
			// copies the equal bytes of unequal ones, which no later request can be trusted to
			// keep): kept if that is the only one this sample depends on.
			if b.depOK(dj, sj) {
				b.acts = append(b.acts, constraint{j: int32(dj), i: int32(sj)})
				keep = true
			}
		case (dj < 0 || !dts && drel < pinned) && (sj < 0 || !sts && srel < pinned) &&
			b.zero(dj, drel, end-x) && b.zero(sj, srel, end-x):
			// Zero bytes of values written or read by the copy, among the low pinned bytes of
			// the values: kept, and those bytes pinned to zero.
			if dj >= 0 {
				b.acts = append(b.acts, constraint{j: int32(dj), i: -1, mask: byteBits(drel, end-x)})
			}
			if sj >= 0 {
				b.acts = append(b.acts, constraint{j: int32(sj), i: -1, mask: byteBits(srel, end-x)})
			}
			keep = true
		}
		if !keep {
			b.endRun(run, x, offset)
			b.literal(x)
			run = end
		}
		x = end
	}
	b.endRun(run, to, offset)
}

// constraint is what a kept part of a copy requires of later requests: sample j's timestamp
// equal to sample i's, or (i -1) the bytes of sample j's value in mask (reqTemplate.zeros) zero.
type constraint struct {
	j, i int32
	mask uint8
}

// byteBits has bits rel to rel+n-1 set: n bytes of a value from byte rel (reqTemplate.zeros).
func byteBits(rel, n int) uint8 { return uint8((1<<n - 1) << rel) }

// depOK reports whether sample j may depend on sample i's timestamp: it depends on no other.
func (b *templateBuilder) depOK(j, i int) bool {
	if d := b.t.deps[j]; d >= 0 && int(d) != i {
		return false
	}
	for _, a := range b.acts {
		if int(a.j) == j && a.i >= 0 && int(a.i) != i {
			return false
		}
	}
	return true
}

// endRun ends a run of kept segments, msg[from:to] from offset back: a copy if it is at least 4
// bytes long or continues the pending copy, with the constraints of its segments; a literal
// otherwise (a copy that short saves nothing).
func (b *templateBuilder) endRun(from, to, offset int) {
	if from >= to {
		b.acts = b.acts[:0]
		return
	}
	if to-from >= 4 || b.cpTo > b.cpFrom && b.cpTo == from && b.cpOff == offset {
		for _, a := range b.acts {
			if a.i >= 0 {
				b.t.deps[a.j] = a.i
			} else {
				b.t.zeros[a.j] |= a.mask
			}
		}
		b.copyFrom(from, to, offset)
	} else {
		b.literal(from)
	}
	b.acts = b.acts[:0]
}

// zero reports whether the n bytes of sample j's value from rel are 0, or j is -1.
func (b *templateBuilder) zero(j, rel, n int) bool {
	return j < 0 || b.values[j]&byteMask(rel, n) == 0
}

// byteMask has the bits of n bytes from byte rel of a little-endian uint64.
func byteMask(rel, n int) uint64 { return (math.MaxUint64 >> (64 - 8*n)) << (8 * rel) }

// zeroMasks turns a reqTemplate.zeros entry into the bits of a value that must be zero.
var zeroMasks = func() (m [1 << pinnedBytes]uint64) {
	for z := range m {
		for k := range pinnedBytes {
			if z&(1<<k) != 0 {
				m[z] |= byteMask(k, 1)
			}
		}
	}
	return m
}()

// flush writes the pending literal, which ends at to, with the patches of the sample bytes in it.
func (b *templateBuilder) flush(to int) {
	from := b.lit
	if from < 0 || from >= to {
		b.lit = -1
		return
	}
	b.lit = -1
	b.comp = appendLiteralTag(b.comp, to-from)
	at := len(b.comp)
	b.comp = append(b.comp, b.msg[from:to]...)
	k := b.spanAfter(from)
	for ; k < len(b.spans) && b.spans[k].start < to; k++ {
		s := b.spans[k]
		lo, hi := max(from, s.start), min(to, s.end)
		if lo >= hi {
			continue
		}
		b.frags = append(b.frags, patch{at: uint32(at + lo - from), j: uint32(k), rel: uint8(lo - s.start), n: uint8(hi - lo)})
	}
}

// appendLiteralTag appends the tag of a snappy literal of n bytes.
func appendLiteralTag(b []byte, n int) []byte {
	x := n - 1
	switch {
	case x < 60:
		return append(b, byte(x)<<2)
	case x < 1<<8:
		return append(b, 60<<2, byte(x))
	case x < 1<<16:
		return append(b, 61<<2, byte(x), byte(x>>8))
	case x < 1<<24:
		return append(b, 62<<2, byte(x), byte(x>>8), byte(x>>16))
	}
	return append(b, 63<<2, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
}

// appendCopy appends snappy copies of length bytes (at least 4) from offset back.
func appendCopy(b []byte, offset, length int) []byte {
	for length > 0 {
		n := length
		switch {
		case n >= 68:
			n = 64
		case n > 64:
			n = 60 // leaves at least 5
		}
		switch {
		case offset >= 1<<16:
			b = append(b, byte(n-1)<<2|3, byte(offset), byte(offset>>8), byte(offset>>16), byte(offset>>24))
		case n < 12 && offset < 2048:
			b = append(b, byte(offset>>8)<<5|byte(n-4)<<2|1, byte(offset))
		default:
			b = append(b, byte(n-1)<<2|2, byte(offset), byte(offset>>8))
		}
		length -= n
	}
	return b
}
