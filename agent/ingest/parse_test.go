package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// parseOurs returns what the text parser yields for b, one string per sample.
func parseOurs(b []byte) ([]string, error) {
	p := newTextParser(1 << 16)
	p.reset(bytes.NewReader(b))
	var out []string
	builder := labels.NewScratchBuilder(16)
	for {
		line, err := p.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		series, rest := splitSeries(line)
		if err := p.parseSeries(series); err != nil {
			return nil, err
		}
		v, t, hasT, err := p.value(rest)
		if err != nil {
			return nil, err
		}
		if !p.cacheable() {
			p.normalize()
		}
		builder.Reset()
		builder.Add(labels.MetricName, p.name)
		for _, l := range p.pairs {
			builder.Add(l.name, l.value)
		}
		builder.Sort()
		out = append(out, sampleString(builder.Labels(), t, hasT, v))
	}
}

// parseTextparse returns what Prometheus' textparse yields for b, one string per sample.
func parseTextparse(b []byte) ([]string, error) {
	p, err := newPromParser(b, "text/plain; version=0.0.4")
	if err != nil {
		return nil, err
	}
	var out []string
	var lset labels.Labels
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if e != textparse.EntrySeries {
			continue
		}
		_, ts, v := p.Series()
		p.Labels(&lset)
		var t int64
		if ts != nil {
			t = *ts
		}
		out = append(out, sampleString(lset, t, ts != nil, v))
	}
}

func sampleString(lset labels.Labels, t int64, hasT bool, v float64) string {
	ts := "none"
	if hasT {
		ts = fmt.Sprint(t)
	}
	return fmt.Sprintf("%s %#x %s", lset.String(), math.Float64bits(v), ts)
}

// checkDifferential fails unless the text parser and textparse agree on b: the same samples, or
// both reject it, or the text parser rejects it for a documented reason.
func checkDifferential(t *testing.T, b []byte) {
	t.Helper()
	// The errors by which the parser rejects what textparse accepts (see textParser): each names
	// a documented difference.
	strictReasons := []string{
		"NUL byte", "no newline", "longer than", "unterminated quoted string", "duplicate label name",
		"reserved for the metric name", "invalid UTF-8 in quoted string", "starts with whitespace",
	}
	ours, oerr := parseOurs(b)
	theirs, terr := parseTextparse(b)
	switch {
	case oerr == nil && terr == nil:
		if strings.Join(ours, "\n") != strings.Join(theirs, "\n") {
			t.Fatalf("input %q:\nours:\n%s\ntextparse:\n%s", b, strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
		}
	case oerr == nil:
		t.Fatalf("input %q: accepted, textparse rejects it: %v\nours:\n%s", b, terr, strings.Join(ours, "\n"))
	case terr == nil:
		for _, r := range strictReasons {
			if strings.Contains(oerr.Error(), r) {
				return
			}
		}
		t.Fatalf("input %q: rejected (%v), textparse accepts it:\n%s", b, oerr, strings.Join(theirs, "\n"))
	}
	var ie *IngestError
	if oerr != nil && (!errors.As(oerr, &ie) || ie.Reason != ReasonParse) {
		t.Fatalf("input %q: error %v is not a parse *IngestError", b, oerr)
	}
}

// parseCases are exposition snippets for the differential test and its seed corpus.
func parseCases() []string {
	return []string{
		"",
		"up 1\n",
		"up 1 1764320000000\n",
		"# TYPE up untyped\nup{job=\"a\",instance=\"b:9090\"} 1 1764320000000\n",
		"# HELP up Up.\n# TYPE up untyped\nup{job=\"a\"} 1.5e+06 1\n",
		"up{job=\"a\\\"b\\\\c\\nd\\t\"} 1 1\n",
		"up{job=\"a\",} 1\n",
		"up {job=\"a\"} 1\n",
		"up{job=\"a\"}1 2\n",
		"up{ job = \"a\" , x=\"y\" } 1   2  \n",
		"up{job=\"a\" x=\"y\"} 1\n",
		"{\"up.time\",\"service.name\"=\"x\"} 1\n",
		"{\"up\"} 1\n",
		"up{\"up\"} 1\n",
		"{} 1\n",
		"up{job=\"a\",job=\"b\"} 1\n",
		"up{__name__=\"x\"} 1\n",
		"up NaN\nup +Inf\nup -Inf\nup -0\nup 0x1p3\nup 1_000\nup 1e400\nup .5\nup 5.\nup Infinity\nup nan\n",
		"up 1 -1\n",
		"up 1 99999999999999999999\n",
		"up 1 9223372036854775807\n",
		"up 1 1.5\n",
		"up 1 1 1\n",
		"up\n",
		"up{\n",
		"up{job=\"a\"\n",
		"up{job=a} 1\n",
		"up{job=\"\xff\"} 1\n",
		"up{\"\xff\"=\"a\"} 1\n",
		"up{job=\"\x00\"} 1\n",
		"up 1\x00\n",
		" up 1\n",
		"\t\n  \n# comment\n#comment\n# HELP\n# TYPE up\n",
		"# TYPE up counter\n# TYPE up gauge\n",
		"# TYPE up  untyped\n",
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_bucket{le=\"x\"} 1\n",
		"# TYPE s summary\ns{quantile=\"0.50\"} 1\n# TYPE u untyped\nu{le=\"1\"} 1\n",
		"# HELP up \xff\n",
		"# HELP \"a.b\" text\n",
		"up 1",
		"up{a=\"1\"}} 1\n",
		"up{a=\"1\"}{b=\"2\"} 1\n",
		"up{a=\"}\"} 1\n",
		"up{a=\"x\ny\"} 1\n",
		"up 1\r\n",
		"up:x_y:z 1\n",
		"<html><body>error</body></html>\n",
	}
}

func TestParseDifferential(t *testing.T) {
	for _, c := range parseCases() {
		t.Run(fmt.Sprintf("%q", c), func(t *testing.T) { checkDifferential(t, []byte(c)) })
	}
}

func TestParseFloat(t *testing.T) {
	for _, s := range []string{
		"0", "1", "-1", "1.5", "0.1", "0.3", "123456789012345", "1234567890123456", "0.000000000000001",
		"9007199254740993", "3.141592653589793", "1e5", "-0", "00012", "1.", ".1", "-.5", "-", ".",
		"1..2", "1-", "+1", "0x10", "NaN", "-Inf", "1_0", "1p1",
	} {
		t.Run(s, func(t *testing.T) {
			got, err := parseFloat([]byte(s))
			want, werr := parseTextparse([]byte("m " + s + "\n"))
			if (err == nil) != (werr == nil) {
				t.Fatalf("err %v, textparse err %v", err, werr)
			}
			if err == nil && sampleString(labels.FromStrings("__name__", "m"), 0, false, got) != want[0] {
				t.Fatalf("%v, textparse %s", got, want[0])
			}
		})
	}
}

func TestParseLineTooLong(t *testing.T) {
	p := newTextParser(64)
	p.reset(strings.NewReader("up 1\nup{a=\"" + strings.Repeat("x", 100) + "\"} 1\n"))
	if _, err := p.next(); err != nil {
		t.Fatal(err)
	}
	_, err := p.next()
	var ie *IngestError
	if !errors.As(err, &ie) || ie.Reason != ReasonParse || ie.Line != 2 {
		t.Fatalf("err %v, want a parse error at line 2", err)
	}
}

// TestLastIndexBrace checks lastIndexBrace against bytes.LastIndexByte on every length up to 40
// with bytes around '}' (0x7d) in value and in bit pattern, at every position.
func TestLastIndexBrace(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 5))
	const alphabet = "}\x7c\x7e\xfd\xff\x00\x80a 1"
	for n := 0; n <= 40; n++ {
		for range 500 {
			b := make([]byte, n)
			for i := range b {
				b[i] = alphabet[r.IntN(len(alphabet))]
				if r.IntN(3) > 0 {
					b[i] = 'a' // mostly no brace, so the search runs far
				}
			}
			if got, want := lastIndexBrace(b), bytes.LastIndexByte(b, '}'); got != want {
				t.Fatalf("lastIndexBrace(%q) = %d, want %d", b, got, want)
			}
		}
	}
}
