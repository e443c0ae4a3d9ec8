package ingest

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// fastFloatCases are the inputs of TestFastFloat and the seeds of FuzzFastFloat: what
// FormatFloat writes, and the edges of the fast path's range.
func fastFloatCases() []string {
	return []string{
		"0", "-0", "1", "-1", "1.5", "0.1", "0.3", "0.30000000000000004", "123456789012345",
		"9007199254740991", "9007199254740992", "9007199254740993", "1.7976931348623157e+308",
		"5e-324", "2.2250738585072014e-308", "1.234567e+06", "5.0123456775e+08", "1e+21", "1e22",
		"1e23", "1e37", "1e38", "123e35", "1e-22", "1e-23", "0.000001", "1.2e-05", "1e0000",
		"1e00001", "1E5", "1e+5", "1e-5", "1e", "1e+", "1.e5", ".5", "-.5", ".", "-", "1..2",
		"+1", "0x10", "NaN", "+Inf", "-Inf", "Inf", "1_0", "1p1", "00000000000000000001",
		"0000000000000000001", "9999999999999999999", "18446744073709551616", "1 2", "1{",
		"4.9406564584124654e-324", "123456.78901234567", "3.3333333333333335", "1e-0",
	}
}

// checkFastFloat fails unless fastFloat agrees with strconv.ParseFloat on what it accepts.
func checkFastFloat(t *testing.T, s string) {
	t.Helper()
	f, n, ok := fastFloat([]byte(s))
	if !ok {
		return
	}
	if n == 0 || n > len(s) {
		t.Fatalf("%q: fastFloat took %d bytes", s, n)
	}
	want, err := strconv.ParseFloat(s[:n], 64)
	if err != nil {
		t.Fatalf("%q: fastFloat %v from %q, strconv: %v", s, f, s[:n], err)
	}
	if math.Float64bits(f) != math.Float64bits(want) {
		t.Fatalf("%q: fastFloat %v (%#x), strconv %v (%#x)", s[:n], f, math.Float64bits(f), want, math.Float64bits(want))
	}
	// It stops where the number ends: what follows cannot continue it.
	if n < len(s) {
		if _, err := strconv.ParseFloat(s[:n+1], 64); err == nil && !strings.ContainsAny(s[n:n+1], "eE.") {
			t.Fatalf("%q: fastFloat stopped at %d, but %q is a number", s, n, s[:n+1])
		}
	}
}

func TestFastFloat(t *testing.T) {
	for _, s := range fastFloatCases() {
		t.Run(s, func(t *testing.T) { checkFastFloat(t, s) })
	}
	t.Run("range", func(t *testing.T) {
		for _, c := range []struct {
			s  string
			ok bool
		}{
			{"5.0123456775e+08", true}, {"1.234567e+06", true}, {"0.1", true}, {"-0", true}, {"1e37", true},
			{"9007199254740993", true}, {"123456.78901234567", true}, {"1.2345678901234567e-03", true},
			{"9999999999999999999", true}, {"1.2345678901234567e+17", false}, {"1.2345678901234567e-04", false},
			{"123e35", false}, {"1e38", false}, {"1e-23", false},
			{"00000000000000000001", true}, {"0.00000000000000000000000001", false}, {"12345678901234567890", false}, {"NaN", false}, {"+1", false}, {"1e", false}, {"1e00001", false},
		} {
			if _, n, ok := fastFloat([]byte(c.s)); ok != c.ok || (ok && n != len(c.s)) {
				t.Errorf("fastFloat(%q): took %d bytes, ok %v; want ok %v", c.s, n, ok, c.ok)
			}
		}
	})
}

// TestFastFloatFormatted checks fastFloat against strconv.ParseFloat on 131072 values as
// FormatFloat writes them (shortest 'g', as /federate does, and other precisions and forms),
// and that the shortest form of values with at most 15 significant digits always takes the
// fast path, and so does every shortest form between 1e-3 and 1e16. Deterministic: a fixed seed.
func TestFastFloatFormatted(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 2))
	fast, total := 0, 0
	for range 1 << 17 {
		var v float64
		switch r.IntN(6) {
		case 0:
			v = float64(r.Int64N(1 << 53))
		case 1:
			v = math.Float64frombits(r.Uint64()) // any bits: huge, tiny, subnormal, NaN, Inf
		case 2:
			v = r.Float64() * math.Pow10(r.IntN(40)-20)
		case 3:
			v = float64(r.Int64N(1e9)) / math.Pow10(r.IntN(10)) // short decimals
		case 4:
			v = r.ExpFloat64() * 1e9
		default:
			v = float64(r.IntN(1<<20)) * 0.25 // counters of quarters, as the bench-e2e source
		}
		if r.IntN(2) == 0 {
			v = -v
		}
		for _, s := range []string{
			strconv.FormatFloat(v, 'g', -1, 64),
			strconv.FormatFloat(v, 'e', r.IntN(18), 64),
			strconv.FormatFloat(v, 'f', r.IntN(8), 64),
		} {
			checkFastFloat(t, s)
		}
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if _, n, ok := fastFloat([]byte(s)); ok && n == len(s) {
			fast++
		} else if a := math.Abs(v); (sigDigits(s) <= 15 && a >= 1e-7 && a < 1e15) || a >= 1e-3 && a < 1e16 {
			t.Fatalf("%q took the slow path", s)
		}
		total++
	}
	t.Logf("%d of %d shortest forms on the fast path", fast, total)
}

// TestDivPow10 checks the 16-to-19-digit path against strconv.ParseFloat: random mantissas at
// every scale, and exact ties ((2^53+odd)*5^k / 10^k lies halfway between two float64 values).
func TestDivPow10(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 4))
	check := func(m uint64, k int) {
		t.Helper()
		d := strconv.FormatUint(m, 10)
		s := d
		if k > 0 {
			s = strings.Repeat("0", max(k-len(d)+1, 0)) + d
			s = s[:len(s)-k] + "." + s[len(s)-k:]
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got := divPow10(m, k); math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("divPow10(%d, %d) = %v, strconv.ParseFloat(%q) = %v", m, k, got, s, want)
		}
		checkFastFloat(t, s)
	}
	for k := 0; k <= 19; k++ {
		for range 5000 {
			m := 1<<53 + r.Uint64N(math.MaxUint64-1<<53)
			if r.IntN(2) == 0 {
				m = 1<<53 + r.Uint64N(1<<(r.IntN(11)+1)) // near 2^53, where the mantissa has 54 bits
			}
			check(m, k)
		}
	}
	for k := 0; k <= 4; k++ {
		p := uint64(math.Pow(5, float64(k)))
		for j := uint64(0); j < 500; j++ {
			check((1<<53+2*j+1)*p, k)
		}
	}
	for j := uint64(0); j < 500; j++ {
		check(1<<62+j*1024+512, 0) // halfway between two float64 values of 2^62 and more
	}
	check(math.MaxUint64, 0)
	check(math.MaxUint64, 19)
	check(1<<53, 19)
}

// sigDigits counts the significant digits of a decimal number as FormatFloat writes it.
func sigDigits(s string) int {
	mant, _, _ := strings.Cut(strings.TrimPrefix(s, "-"), "e")
	mant = strings.TrimLeft(strings.Replace(mant, ".", "", 1), "0")
	n := 0
	for _, c := range mant {
		if c >= '0' && c <= '9' {
			n++
		}
	}
	return n
}

// TestParseValue checks the one-pass path of parseValue against the general one.
func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		rest string
		v    float64
		t    int64
		hasT bool
		err  string
	}{
		{rest: " 1", v: 1},
		{rest: " 1.5e+06 1764320000000", v: 1.5e6, t: 1764320000000, hasT: true},
		{rest: "\t-2\t17 ", v: -2, t: 17, hasT: true},
		{rest: " 1{", v: 1, err: "expected timestamp"},
		{rest: " 1 9223372036854775807", v: 1, t: math.MaxInt64, hasT: true},
		{rest: " 1 9223372036854775808", err: "out of range"},
		{rest: " 1 99999999999999999999999", err: "out of range"},
		{rest: " 1 000000000000000000000000017", v: 1, t: 17, hasT: true},
		{rest: " 1x 2", err: "parse value"},
		{rest: " NaN 2", v: math.NaN(), t: 2, hasT: true},
		{rest: " +Inf", v: math.Inf(1)},
		{rest: " 1 2 3", err: "expected next entry"},
		{rest: " 1 -2", err: "expected timestamp"},
		{rest: " ", err: "expected value"},
		{rest: " 1e400", err: "out of range"},
	} {
		t.Run(c.rest, func(t *testing.T) {
			v, ts, hasT, err := parseValue([]byte(c.rest))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (v != c.v && !(math.IsNaN(v) && math.IsNaN(c.v))) || ts != c.t || hasT != c.hasT {
				t.Fatalf("%v %d %v, want %v %d %v", v, ts, hasT, c.v, c.t, c.hasT)
			}
		})
	}
}

// TestParseValueTimestamp checks the timestamp of parseValue (8 digits at a time) against
// strconv.ParseInt on every length from 1 to 24 digits, with a non-digit at every position.
func TestParseValueTimestamp(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 3))
	for n := 1; n <= 24; n++ {
		for k := range 200 {
			d := make([]byte, n)
			for i := range d {
				d[i] = byte('0' + r.IntN(10))
			}
			if k%3 == 0 {
				const odd = "x/:\x00 {"
				d[r.IntN(n)] = odd[r.IntN(len(odd))]
			}
			rest := " 1 " + string(d)
			_, got, hasT, err := parseValue([]byte(rest))
			digits := strings.Trim(string(d), " ") // blanks around the timestamp are allowed
			want, werr := strconv.ParseInt(digits, 10, 64)
			if digits == "" {
				want, werr = 0, nil // no timestamp
			} else if strings.Trim(digits, "0123456789") != "" {
				werr = strconv.ErrSyntax
			}
			if (err == nil) != (werr == nil) || (err == nil && (got != want || hasT != (digits != ""))) {
				t.Fatalf("%q: %d %v, %v; strconv.ParseInt: %d, %v", rest, got, hasT, err, want, werr)
			}
		}
	}
}

// FuzzFastFloat: whatever fastFloat accepts, strconv.ParseFloat reads as the same float64; and
// parseFloat accepts what strconv.ParseFloat accepts (without p exponents and underscores, as
// textparse) and returns the same value.
func FuzzFastFloat(f *testing.F) {
	for _, s := range fastFloatCases() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkFastFloat(t, s)
		got, err := parseFloat([]byte(s))
		want, werr := strconv.ParseFloat(s, 64)
		if strings.ContainsAny(s, "pP_") {
			werr = strconv.ErrSyntax
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: parseFloat err %v, strconv err %v", s, err, werr)
		}
		if err == nil && math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) {
			t.Fatalf("%q: parseFloat %v, strconv %v", s, got, want)
		}
	})
}

// BenchmarkParseValue: the value and timestamp of a sample line as /federate writes them.
func BenchmarkParseValue(b *testing.B) {
	for _, rest := range []string{" 5.0123456775e+08 1764320000000", " 1 1764320000000", " 0.0123 1764320000000", " 123456.78901234567 1764320000000"} {
		b.Run(strings.Fields(rest)[0], func(b *testing.B) {
			r := []byte(rest)
			for range b.N {
				if _, _, _, err := parseValue(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
