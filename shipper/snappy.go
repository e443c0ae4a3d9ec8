package shipper

import (
	"encoding/binary"

	"github.com/klauspost/compress/s2"
)

// protoSnappy compresses marshalled remote-write requests into snappy blocks without generic
// match finding: it cuts the request into tokens along its protobuf structure (each top-level
// field is a record: its key and length, then each field of the embedded message, a field whose
// content starts with a fixed64 split into key, value and rest) and compares each token with
// the token at the same index of the previous record. Equal tokens become copies (consecutive
// ones at the same distance merge into one), others are looked up by content in a small hash
// table, and the rest is written as literals around the common prefix and suffix of the two
// tokens. Every copy is checked byte for byte, so the block decodes to the input whatever the
// tokens are; an input that does not parse as protobuf is compressed by s2.EncodeSnappy.
//
// It is not safe for concurrent use; the zero value is ready.
type protoSnappy struct {
	prev, cur []token
	table     []int32 // token content hash -> position+1 in src; reset per block
}

// token is a byte range src[off:off+n] of which the first h bytes are a field key and length.
type token struct {
	off, n int32
	h      int32
}

const (
	snappyTableBits = 12
	// minCopy is the shortest copy emitted on its own: shorter matches stay literals.
	minCopy = 4
	// maxProtoSnappyLen bounds the inputs handled here (int32 offsets); longer ones go to s2.
	maxProtoSnappyLen = 1 << 30
)

// encode appends the snappy block of src to dst[:0] and returns it.
func (p *protoSnappy) encode(dst, src []byte) []byte {
	if len(src) > maxProtoSnappyLen {
		return s2.EncodeSnappy(dst, src)
	}
	if n := s2.MaxEncodedLen(len(src)); cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	dst = binary.AppendUvarint(dst[:0], uint64(len(src)))
	if p.table == nil {
		p.table = make([]int32, 1<<snappyTableBits)
	} else {
		clear(p.table)
	}
	e := emitter{dst: dst, src: src}
	p.prev = p.prev[:0]
	for pos := 0; pos < len(src); {
		end, ok := p.record(src, pos)
		if !ok {
			return s2.EncodeSnappy(dst[:0], src)
		}
		p.match(&e)
		p.prev, p.cur = p.cur, p.prev
		pos = end
	}
	e.flushCopy()
	e.literal(len(src))
	return e.dst
}

// record cuts the top-level field at src[pos:] into p.cur and returns where it ends.
func (p *protoSnappy) record(src []byte, pos int) (int, bool) {
	p.cur = p.cur[:0]
	key, i, ok := uvarintAt(src, pos)
	if !ok {
		return 0, false
	}
	switch key & 7 {
	case 0:
		if _, i, ok = uvarintAt(src, i); !ok {
			return 0, false
		}
	case 1:
		i += 8
	case 5:
		i += 4
	case 2:
		n, j, ok := uvarintAt(src, i)
		if !ok || n > uint64(len(src)-j) {
			return 0, false
		}
		end := j + int(n)
		p.cur = append(p.cur, token{off: int32(pos), n: int32(j - pos)})
		if !p.message(src, j, end) {
			p.cur = append(p.cur[:1], token{off: int32(j), n: int32(n)})
		}
		return end, true
	default:
		return 0, false
	}
	if i > len(src) {
		return 0, false
	}
	p.cur = append(p.cur, token{off: int32(pos), n: int32(i - pos)})
	return i, true
}

// message appends the tokens of the fields of the message in src[pos:end] to p.cur; false if it
// is not a message (p.cur then holds partial tokens).
func (p *protoSnappy) message(src []byte, pos, end int) bool {
	for pos < end {
		start := pos
		key, i, ok := uvarintAt(src[:end], pos)
		if !ok {
			return false
		}
		switch key & 7 {
		case 0:
			if _, i, ok = uvarintAt(src[:end], i); !ok {
				return false
			}
		case 1:
			i += 8
		case 5:
			i += 4
		case 2:
			n, j, ok := uvarintAt(src[:end], i)
			if !ok || n > uint64(end-j) {
				return false
			}
			i = j + int(n)
			if n >= 9 && src[j] == tagSampleValue {
				// A sample: its key and length and the value's key, the value, the rest.
				p.cur = append(p.cur,
					token{off: int32(start), n: int32(j + 1 - start)},
					token{off: int32(j + 1), n: 8})
				if i > j+9 {
					p.cur = append(p.cur, token{off: int32(j + 9), n: int32(i - j - 9)})
				}
				pos = i
				continue
			}
			p.cur = append(p.cur, token{off: int32(start), n: int32(i - start), h: int32(j - start)})
			pos = i
			continue
		default:
			return false
		}
		if i > end {
			return false
		}
		p.cur = append(p.cur, token{off: int32(start), n: int32(i - start)})
		pos = i
	}
	return true
}

// match emits the tokens of p.cur, copying what the previous record or the table has.
func (p *protoSnappy) match(e *emitter) {
	src := e.src
	if len(p.cur) == 0 {
		return
	}
	last := p.cur[len(p.cur)-1]
	recEnd := last.off + last.n
	covered := int32(0)
	// extend copies the token t from d bytes back and as far beyond it as the bytes match.
	extend := func(t token, d int32) {
		end := t.off + t.n
		x := int32(commonPrefix(src[end:recEnd], src[end-d:recEnd-d]))
		e.copy(int(t.off), int(t.n+x), int(d))
		covered = end + x
	}
	for k, t := range p.cur {
		if t.off+t.n <= covered {
			continue
		}
		cur := src[t.off : t.off+t.n]
		var pt token
		if t.off < covered {
			// Partly copied already: look for a common suffix in the rest.
			if k < len(p.prev) {
				pt = p.prev[k]
				skip := covered - t.off
				if skip < pt.n {
					if suf := commonSuffix(cur[skip:], src[pt.off+skip:pt.off+pt.n]); suf >= minCopy {
						e.copy(int(t.off+t.n)-suf, suf, int(t.off+t.n-pt.off-pt.n))
					}
				}
			}
			continue
		}
		if k < len(p.prev) {
			pt = p.prev[k]
			if pt.n == t.n && string(src[pt.off:pt.off+pt.n]) == string(cur) {
				extend(t, t.off-pt.off)
				continue
			}
		}
		if t.n >= 8 {
			h := hashToken(cur)
			if c := p.table[h]; c > 0 {
				c--
				if string(src[c:c+t.n]) == string(cur) {
					p.table[h] = t.off + 1
					extend(t, t.off-c)
					continue
				}
			}
			p.table[h] = t.off + 1
		}
		if pt.n == 0 {
			continue
		}
		// Common prefix and suffix of the contents (after the key and length).
		a := cur[t.h:]
		b := src[pt.off+pt.h : pt.off+pt.n]
		pre := commonPrefix(a, b)
		if pre >= minCopy {
			e.copy(int(t.off+t.h), pre, int(t.off+t.h-pt.off-pt.h))
		}
		a, b = a[pre:], b[pre:]
		if suf := commonSuffix(a, b); suf >= minCopy {
			e.copy(int(t.off+t.n)-suf, suf, int(t.off+t.n-pt.off-pt.n))
		}
	}
}

func hashToken(b []byte) uint32 {
	x := binary.LittleEndian.Uint64(b)*0x9E3779B185EBCA87 ^
		binary.LittleEndian.Uint64(b[len(b)-8:])*0xC2B2AE3D27D4EB4F ^ uint64(len(b))
	return uint32((x * 0x165667B19E3779F9) >> (64 - snappyTableBits))
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + trailingZeroBytes(x)
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

func commonSuffix(a, b []byte) int {
	i, j := len(a), len(b)
	n := 0
	for ; i >= 8 && j >= 8; i, j = i-8, j-8 {
		if x := binary.BigEndian.Uint64(a[i-8:]) ^ binary.BigEndian.Uint64(b[j-8:]); x != 0 {
			return n + trailingZeroBytes(x)
		}
		n += 8
	}
	for ; i > 0 && j > 0 && a[i-1] == b[j-1]; i, j = i-1, j-1 {
		n++
	}
	return n
}

func trailingZeroBytes(x uint64) int {
	n := 0
	for x&0xff == 0 {
		x >>= 8
		n++
	}
	return n
}

// uvarintAt decodes the varint at b[i:]; false if it is truncated or longer than 10 bytes.
func uvarintAt(b []byte, i int) (uint64, int, bool) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1, true
	}
	if i >= len(b) {
		return 0, 0, false
	}
	v, n := binary.Uvarint(b[i:])
	if n <= 0 {
		return 0, 0, false
	}
	return v, i + n, true
}

// emitter writes the elements of a snappy block. The bytes of src before lit are written; a
// pending copy of clen bytes at cpos from cdist back grows while the next copy continues it.
type emitter struct {
	dst               []byte
	src               []byte
	lit               int
	cpos, clen, cdist int
}

func (e *emitter) copy(pos, n, dist int) {
	if e.clen > 0 && e.cpos+e.clen == pos && e.cdist == dist {
		e.clen += n
		return
	}
	e.flushCopy()
	e.cpos, e.clen, e.cdist = pos, n, dist
}

// flushCopy writes the literal before the pending copy and the copy, or leaves a copy too
// short to pay for itself to the next literal.
func (e *emitter) flushCopy() {
	n := e.clen
	e.clen = 0
	if n < minCopy || (e.cdist >= 1<<16 && n < 8) {
		return
	}
	e.literal(e.cpos)
	e.lit = e.cpos + n
	d := e.cdist
	if d >= 1<<16 {
		for n > 0 {
			l := min(n, 64)
			e.dst = append(e.dst, byte(l-1)<<2|3, byte(d), byte(d>>8), byte(d>>16), byte(d>>24))
			n -= l
		}
		return
	}
	for n >= 68 {
		e.dst = append(e.dst, 63<<2|2, byte(d), byte(d>>8))
		n -= 64
	}
	if n > 64 {
		e.dst = append(e.dst, 59<<2|2, byte(d), byte(d>>8))
		n -= 60
	}
	if n >= 12 || d >= 2048 {
		e.dst = append(e.dst, byte(n-1)<<2|2, byte(d), byte(d>>8))
		return
	}
	e.dst = append(e.dst, byte(d>>8)<<5|byte(n-4)<<2|1, byte(d))
}

// literal writes src[e.lit:end] as a literal.
func (e *emitter) literal(end int) {
	n := end - e.lit
	if n <= 0 {
		return
	}
	m := uint32(n - 1)
	switch {
	case m < 60:
		e.dst = append(e.dst, byte(m)<<2)
	case m < 1<<8:
		e.dst = append(e.dst, 60<<2, byte(m))
	case m < 1<<16:
		e.dst = append(e.dst, 61<<2, byte(m), byte(m>>8))
	case m < 1<<24:
		e.dst = append(e.dst, 62<<2, byte(m), byte(m>>8), byte(m>>16))
	default:
		e.dst = append(e.dst, 63<<2, byte(m), byte(m>>8), byte(m>>16), byte(m>>24))
	}
	e.dst = append(e.dst, e.src[e.lit:end]...)
	e.lit = end
}

// diffSnappy is the second variant: each top-level record is compared with the previous one
// word by word, aligned on their starts and on their ends, without cutting it into fields.
type diffSnappy struct{}

func (diffSnappy) encode(dst, src []byte) []byte {
	if len(src) > maxProtoSnappyLen {
		return s2.EncodeSnappy(dst, src)
	}
	if n := s2.MaxEncodedLen(len(src)); cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	dst = binary.AppendUvarint(dst[:0], uint64(len(src)))
	e := emitter{dst: dst, src: src}
	p0, p1 := 0, 0
	for pos := 0; pos < len(src); {
		key, i, ok := uvarintAt(src, pos)
		if !ok || key&7 != 2 {
			return s2.EncodeSnappy(dst[:0], src)
		}
		n, j, ok := uvarintAt(src, i)
		if !ok || n > uint64(len(src)-j) {
			return s2.EncodeSnappy(dst[:0], src)
		}
		c0, c1 := pos, j+int(n)
		if p1 > 0 {
			diffRecord(&e, c0, c1, c0-p0, c1-p1)
		}
		p0, p1 = c0, c1
		pos = c1
	}
	e.flushCopy()
	e.literal(len(src))
	return e.dst
}

// diffRecord emits copies of src[c0:c1] from dA or dB bytes back where they match.
func diffRecord(e *emitter, c0, c1, dA, dB int) {
	src := e.src
	if c0-dB < 0 {
		dB = dA
	}
	i := c0
	for i < c1 {
		// Where does a match of at least 4 bytes start, with either distance?
		d := 0
		for i+8 <= c1 {
			x := binary.LittleEndian.Uint64(src[i:]) ^ binary.LittleEndian.Uint64(src[i-dA:])
			if uint32(x) == 0 {
				d = dA
				break
			}
			y := binary.LittleEndian.Uint64(src[i:]) ^ binary.LittleEndian.Uint64(src[i-dB:])
			if uint32(y) == 0 {
				d = dB
				break
			}
			i++
		}
		if d == 0 {
			return
		}
		n := commonPrefix(src[i:c1], src[i-d:c1-d])
		e.copy(i, n, d)
		i += n
	}
}
