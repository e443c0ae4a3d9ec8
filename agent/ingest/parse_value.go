package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"

	"github.com/prometheus/prometheus/model/value"
)

// value parses the rest of the current sample line after the series (see parseValue).
func (p *textParser) value(rest []byte) (float64, int64, bool, error) {
	v, t, hasT, err := parseValue(rest)
	if err != nil {
		return 0, 0, false, p.lineError(err)
	}
	return v, t, hasT, nil
}

// parseValue parses the rest of a sample line after the series: blanks, the value, and
// optionally blanks and a timestamp in milliseconds, then optional blanks. The value ends at a
// blank or '{', as textparse's token does.
//
// The common case is one pass over the bytes: the value as fastFloat reads it, then the digits
// of a timestamp of at most 18 digits (which cannot overflow). Anything else takes the general
// path, which scans the value token first and gives it to parseFloat.
func parseValue(rest []byte) (v float64, t int64, hasT bool, err error) {
	i := skipBlanks(rest, 0)
	f, n, ok := fastFloat(rest[i:])
	j := i + n
	if !ok || (j < len(rest) && rest[j] != ' ' && rest[j] != '\t' && rest[j] != '{') {
		for j = i; j < len(rest) && rest[j] != ' ' && rest[j] != '\t' && rest[j] != '{'; j++ {
		}
		if i == j {
			return 0, 0, false, fmt.Errorf("expected value after metric: %s", excerpt(rest))
		}
		if f, err = parseFloat(rest[i:j]); err != nil {
			return 0, 0, false, err
		}
	}
	v = f
	i = skipBlanks(rest, j)
	if i == len(rest) {
		return v, 0, false, nil
	}
	// u wraps past 19 digits: then parseTimestamp decides.
	var u uint64
	for j = i; j+8 <= len(rest); j += 8 {
		x := binary.LittleEndian.Uint64(rest[j:])
		if !eightDigits(x) {
			break
		}
		u = u*1e8 + parseEightDigits(x)
	}
	for ; j < len(rest) && rest[j]-'0' < 10; j++ {
		u = u*10 + uint64(rest[j]-'0')
	}
	switch {
	case i == j:
		return 0, 0, false, fmt.Errorf("expected timestamp or new record: %s", excerpt(rest))
	case j-i <= 18:
		t = int64(u)
	default:
		if t, err = parseTimestamp(rest[i:j]); err != nil {
			return 0, 0, false, err
		}
	}
	if skipBlanks(rest, j) != len(rest) {
		return 0, 0, false, fmt.Errorf("expected next entry after timestamp: %s", excerpt(rest))
	}
	return v, t, true, nil
}

// parseFloat parses a sample value as textparse does (strconv.ParseFloat without the Go 1.13
// forms: no hex floats with p exponents, no underscores), through fastFloat when it can. NaN
// becomes the canonical NaN.
func parseFloat(b []byte) (float64, error) {
	if f, n, ok := fastFloat(b); ok && n == len(b) {
		return f, nil
	}
	for _, c := range b {
		if c == 'p' || c == 'P' || c == '_' {
			return 0, fmt.Errorf("unsupported character in float %s", excerpt(b))
		}
	}
	f, err := strconv.ParseFloat(yolo(b), 64)
	if err != nil {
		return 0, fmt.Errorf("parse value %s: %w", excerpt(b), errors.Unwrap(err))
	}
	if math.IsNaN(f) {
		f = math.Float64frombits(value.NormalNaN)
	}
	return f, nil
}

// fastFloat parses the decimal number at the start of b, `-?digits(.digits)?([eE][+-]?digits)?`,
// the forms strconv.FormatFloat(v, 'g', -1, 64) writes for every finite value (what /federate
// writes: expfmt and Prometheus' text encoder), and returns it and the bytes it took. It gives
// up (ok false) on anything else and on the numbers it does not convert exactly: more than 19
// significant digits, an exponent of more than 4 digits, a value out of the ranges below. The caller then
// asks strconv.ParseFloat; ok means the result is the float64 that strconv.ParseFloat returns
// for b[:n], bit for bit (FuzzFastFloat).
//
// Exactness. A mantissa m < 2^53 (up to 15 or 16 digits) takes Clinger's fast path, strconv's
// atof64exact: m and 10^k for k <= 22 are exact float64 values, so m*10^k and m/10^k are one
// correctly rounded IEEE operation; for 22 < k <= 37 the excess zeros first go into m when
// m*10^(k-22) stays at most 10^15, which is then exact too. A larger mantissa (16 to 19 digits,
// as the shortest form of most computed values has) divided by 10^k, k <= 19, is rounded in
// integer arithmetic (divPow10). The sign is applied last: rounding to nearest even is
// symmetric.
func fastFloat(b []byte) (f float64, n int, ok bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	var m uint64
	digits, sig, frac := 0, 0, 0 // all digits; significant ones (from the first non-zero); after the dot
	for ; i < len(b) && b[i]-'0' < 10; i++ {
		m = m*10 + uint64(b[i]-'0')
		digits++
		if sig > 0 || b[i] != '0' {
			sig++
		}
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && b[i]-'0' < 10; i++ {
			m = m*10 + uint64(b[i]-'0')
			digits++
			if sig > 0 || b[i] != '0' {
				sig++
			}
			frac++
		}
	}
	// At most 19 significant digits: m did not wrap.
	if digits == 0 || sig > 19 {
		return 0, 0, false
	}
	exp := 0
	if i < len(b) && b[i]|0x20 == 'e' {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		start := i
		for ; i < len(b) && b[i]-'0' < 10; i++ {
			if i-start == 4 {
				return 0, 0, false
			}
			exp = exp*10 + int(b[i]-'0')
		}
		if i == start {
			return 0, 0, false
		}
		if eneg {
			exp = -exp
		}
	}
	exp -= frac
	if m >= 1<<53 {
		if exp > 0 || exp < -19 {
			return 0, 0, false
		}
		f = divPow10(m, -exp)
		if neg {
			f = -f
		}
		return f, i, true
	}
	f = float64(m)
	switch {
	case exp == 0:
	case exp < 0 && exp >= -22:
		f /= math.Pow10(-exp)
	case exp > 0 && exp <= 22:
		f *= math.Pow10(exp)
	case exp > 22 && exp <= 22+15:
		f *= math.Pow10(exp - 22)
		if f > 1e15 {
			return 0, 0, false
		}
		f *= 1e22
	default:
		return 0, 0, false
	}
	if neg {
		f = -f
	}
	return f, i, true
}

// eightDigits reports whether the 8 bytes of x (little endian) are all ASCII digits
// (Lemire's fast_float: a byte is a digit iff its high nibble is 3 and adding 6 keeps it 3).
func eightDigits(x uint64) bool {
	return x&0xF0F0F0F0F0F0F0F0|(x+0x0606060606060606)&0xF0F0F0F0F0F0F0F0>>4 == 0x3333333333333333
}

// parseEightDigits returns the value of the 8 ASCII digits in x, the first in the lowest byte
// (fast_float's parse_eight_digits_unrolled): pairs, then quadruples, then the 8 digits, each
// step one multiply.
func parseEightDigits(x uint64) uint64 {
	const mask = 0x000000FF000000FF
	const mul1 = 100 + 1000000<<32
	const mul2 = 1 + 10000<<32
	x -= 0x3030303030303030
	x = x*10 + x>>8
	return (x&mask*mul1 + x>>16&mask*mul2) >> 32
}

// divPow10 returns the float64 nearest to m/10^k, ties to even, for 2^53 <= m < 2^64 and
// 0 <= k <= 19. The quotient q = floor(m*2^e / 10^k) is made to have 63 or 64 bits by the choice
// of e (m*2^e/10^k lies in (2^62, 2^64), so the 128-bit division does not overflow); its top 53
// bits are the mantissa, rounded by the bits below them and, for an exact tie, by whether the
// division left a remainder. The result is at least 2^53/10^19: a normal float64.
func divPow10(m uint64, k int) float64 {
	d := uint64(math.Pow10(k)) // exact: 10^k <= 10^19 < 2^64 is a float64 for k <= 22
	e := 63 - bits.Len64(m) + bits.Len64(d)
	hi := m>>uint(64-e) | m<<uint(e-64) // m<<e as 128 bits; shifts of 64 or more give 0
	lo := m << uint(e)
	q, r := bits.Div64(hi, lo, d)
	s := bits.Len64(q) - 53 // 10 or 11 bits below the mantissa
	mant, rem, half := q>>s, q&(1<<s-1), uint64(1)<<(s-1)
	if rem > half || (rem == half && (r != 0 || mant&1 == 1)) {
		mant++ // at most 2^53: still exact as a float64
	}
	return float64(mant) * math.Float64frombits(uint64(1023+s-e)<<52) // times 2^(s-e), exact
}

// parseTimestamp parses decimal digits as an int64, failing on overflow as strconv.ParseInt.
func parseTimestamp(b []byte) (int64, error) {
	var n uint64
	for _, c := range b {
		d := uint64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, fmt.Errorf("timestamp %s out of range", excerpt(b))
		}
		n = n*10 + d
	}
	return int64(n), nil
}
