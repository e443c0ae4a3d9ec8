package ingest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// textParser reads the Prometheus text format (version 0.0.4) as /federate writes it, line by
// line from a bounded buffer: it never holds more than one line of the body.
//
// It accepts exactly what Prometheus' textparse.PromParser accepts and yields the same series,
// values and timestamps (FuzzParseDifferential), except that it is stricter where textparse
// accepts what no exposition encoder writes and what would be unsafe to forward:
//
//   - the body must end with a newline: a body cut mid-line is a truncated body;
//   - no NUL bytes (textparse silently stops at a NUL at the start of a token);
//   - no line longer than the buffer;
//   - no raw newline inside a quoted string (encoders write \n);
//   - no duplicate label names (textparse leaves them to the scrape loop, which rejects them);
//   - quoted metric and label names must be valid UTF-8 (textparse checks only values);
//   - a sample line must not start with whitespace (textparse then makes the whitespace part of
//     the metric name).
//
// Not safe for concurrent use.
type textParser struct {
	r      *bufio.Reader
	lineNo int
	bytes  int64            // bytes of the lines read
	cur    []byte           // the current line, for error messages
	mtype  model.MetricType // of the last TYPE line: textparse applies it to every later line

	// Slow-path scratch, valid until the next line is read.
	name  string
	pairs []rawLabel
	arena []byte
}

func newTextParser(maxLine int) *textParser {
	return &textParser{
		r:     bufio.NewReaderSize(nil, maxLine),
		pairs: make([]rawLabel, 0, 32),
		arena: make([]byte, 0, 4096),
	}
}

// reset starts a new body.
func (p *textParser) reset(r io.Reader) {
	p.r.Reset(r)
	p.lineNo, p.bytes = 0, 0
	p.mtype = model.MetricTypeUnknown
}

// release drops the reference to the body.
func (p *textParser) release() {
	p.r.Reset(nil)
	p.cur = nil
}

func (p *textParser) errorf(format string, args ...any) error {
	return p.lineError(fmt.Errorf(format, args...))
}

// lineError makes err a parse error of the current line. A NUL byte anywhere in the line is
// named: it is the reason the line is rejected where textparse may stop silently.
func (p *textParser) lineError(err error) error {
	if bytes.IndexByte(p.cur, 0) >= 0 {
		err = fmt.Errorf("NUL byte in line: %w", err)
	}
	return &IngestError{Reason: ReasonParse, Line: p.lineNo, Err: err}
}

// excerpt quotes at most 80 bytes of b for an error message.
func excerpt(b []byte) string {
	if len(b) > 80 {
		return strconv.Quote(string(b[:80])) + "..."
	}
	return strconv.Quote(string(b))
}

// next returns the next sample line without its newline, or io.EOF after the last line. HELP,
// TYPE, comment and blank lines are consumed here. The line is valid until the next call.
func (p *textParser) next() ([]byte, error) {
	for {
		line, err := p.r.ReadSlice('\n')
		switch {
		case err == nil:
		case errors.Is(err, bufio.ErrBufferFull):
			p.lineNo++
			return nil, p.errorf("line longer than %d bytes", p.r.Size())
		case err == io.EOF:
			if len(line) == 0 {
				return nil, io.EOF
			}
			p.lineNo++
			return nil, p.errorf("last line has no newline (truncated body?): %s", excerpt(line))
		default:
			return nil, &IngestError{Reason: ReasonRead, Line: p.lineNo + 1, Err: err}
		}
		p.lineNo++
		p.bytes += int64(len(line))
		line = line[:len(line)-1]
		p.cur = line
		i := 0
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		switch {
		case i == len(line):
			continue // blank
		case line[i] == '#':
			if err := p.comment(line[i:]); err != nil {
				return nil, err
			}
			continue
		case i > 0:
			return nil, p.errorf("sample line starts with whitespace: %s", excerpt(line))
		}
		return line, nil
	}
}

// comment parses a line starting with '#': HELP and TYPE lines as textparse does, anything
// else is a comment.
func (p *textParser) comment(c []byte) error {
	if bytes.IndexByte(c, 0) >= 0 {
		return p.errorf("NUL byte in comment line")
	}
	i := 1
	for i < len(c) && (c[i] == ' ' || c[i] == '\t') {
		i++
	}
	if i == 1 || len(c) < i+5 || (c[i+4] != ' ' && c[i+4] != '\t') {
		return nil
	}
	kw := string(c[i : i+4])
	if kw != "HELP" && kw != "TYPE" {
		return nil
	}
	i += 4
	for i < len(c) && (c[i] == ' ' || c[i] == '\t') {
		i++
	}
	switch {
	case i < len(c) && c[i] == '"':
		end, err := scanQuoted(c, i)
		if err != nil {
			return p.errorf("metric name in %s line: %v", kw, err)
		}
		i = end
	case i < len(c) && isNameStart(c[i], true):
		i = scanName(c, i, true)
	default:
		return p.errorf("expected metric name after %s: %s", kw, excerpt(c))
	}
	text := c[i:]
	if len(text) > 1 {
		text = text[1:]
	} else {
		text = nil
	}
	if kw == "HELP" {
		if !utf8.Valid(text) {
			return p.errorf("help text %s is not valid UTF-8", excerpt(text))
		}
		return nil
	}
	switch string(text) {
	case "counter":
		p.mtype = model.MetricTypeCounter
	case "gauge":
		p.mtype = model.MetricTypeGauge
	case "histogram":
		p.mtype = model.MetricTypeHistogram
	case "summary":
		p.mtype = model.MetricTypeSummary
	case "untyped":
		p.mtype = model.MetricTypeUnknown
	default:
		return p.errorf("invalid metric type %s", excerpt(text))
	}
	return nil
}

// cacheable reports whether the labels of a series depend on its bytes alone: textparse rewrites
// the le and quantile values of histogram and summary series (normalizeFloatsInLabelValues).
func (p *textParser) cacheable() bool {
	return p.mtype != model.MetricTypeHistogram && p.mtype != model.MetricTypeSummary
}

// splitSeries splits a sample line into the series (name and labels) and the rest (value and
// timestamp). For a valid line the split is exact: after the closing brace no '}' can follow, and
// a name without labels ends where the name characters end (textparse accepts `up+1`). An
// invalid line may be split anywhere; the parsers of the two parts reject it.
func splitSeries(line []byte) (series, rest []byte) {
	if e := lastIndexBrace(line); e >= 0 {
		return line[:e+1], line[e+1:]
	}
	if len(line) > 0 && isNameStart(line[0], true) {
		i := scanName(line, 0, true)
		if j := skipBlanks(line, i); j < len(line) && line[j] == '{' {
			return line, nil // labels without a closing brace: parseSeries says what is wrong
		}
		return line[:i], line[i:]
	}
	return line, nil
}

// lastIndexBrace is bytes.LastIndexByte(b, '}'), 8 bytes at a time from the end: the brace of
// a sample line is followed by its value and timestamp, 15 to 40 bytes that a byte loop takes
// one by one.
func lastIndexBrace(b []byte) int {
	const lows = 0x7F7F7F7F7F7F7F7F
	i := len(b)
	for ; i >= 8; i -= 8 {
		x := binary.LittleEndian.Uint64(b[i-8:]) ^ ('}' * 0x0101010101010101) // '}' bytes become 0
		// The high bit of each byte that is 0, exactly: no carry crosses a byte.
		if z := ^((x&lows + lows) | x | lows); z != 0 {
			return i - 8 + (63-bits.LeadingZeros64(z))/8
		}
	}
	for i--; i >= 0; i-- {
		if b[i] == '}' {
			return i
		}
	}
	return -1
}

// parseSeries parses the series part of a sample line into p.name and p.pairs (input order,
// unescaped), with textparse's grammar. The strings are valid until the next line.
func (p *textParser) parseSeries(s []byte) error {
	p.name, p.pairs, p.arena = "", p.pairs[:0], p.arena[:0]
	nameSet := false
	i := 0
	switch {
	case len(s) > 0 && isNameStart(s[0], true):
		i = scanName(s, 0, true)
		p.name, nameSet = yolo(s[:i]), true
		i = skipBlanks(s, i)
		if i == len(s) {
			return nil
		}
		if s[i] != '{' {
			return p.errorf("expected value after metric: %s", excerpt(s))
		}
	case len(s) > 0 && s[0] == '{':
	default:
		return p.errorf("expected a valid start token: %s", excerpt(s))
	}
	i++ // '{'
	for {
		i = skipBlanks(s, i)
		if i == len(s) {
			return p.errorf("expected label name: %s", excerpt(s))
		}
		var lname string
		quoted := false
		switch c := s[i]; {
		case c == '}':
			if i+1 != len(s) {
				return p.errorf("expected value after metric: %s", excerpt(s))
			}
			if !nameSet {
				return p.errorf("metric name not set: %s", excerpt(s))
			}
			return p.checkDuplicates()
		case isNameStart(c, false):
			end := scanName(s, i, false)
			lname, i = yolo(s[i:end]), end
		case c == '"':
			end, err := scanQuoted(s, i)
			if err != nil {
				return p.errorf("label name: %v: %s", err, excerpt(s))
			}
			lname, quoted, i = p.unescape(s[i+1:end-1]), true, end
		default:
			return p.errorf("expected label name: %s", excerpt(s))
		}
		i = skipBlanks(s, i)
		if quoted && i < len(s) && (s[i] == ',' || s[i] == '}') {
			if nameSet {
				return p.errorf("metric name already set: %s", excerpt(s))
			}
			p.name, nameSet = lname, true
			if s[i] == ',' {
				i++
			}
			continue
		}
		if i == len(s) || s[i] != '=' {
			return p.errorf("expected equal after label name: %s", excerpt(s))
		}
		i = skipBlanks(s, i+1)
		if i == len(s) || s[i] != '"' {
			return p.errorf("expected label value: %s", excerpt(s))
		}
		end, err := scanQuoted(s, i)
		if err != nil {
			return p.errorf("label value: %v: %s", err, excerpt(s))
		}
		p.pairs = append(p.pairs, rawLabel{lname, p.unescape(s[i+1 : end-1])})
		i = skipBlanks(s, end)
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
}

// checkDuplicates rejects a label set with a repeated name, __name__ included.
func (p *textParser) checkDuplicates() error {
	var seen map[string]struct{}
	if len(p.pairs) > smallLabelSet {
		seen = make(map[string]struct{}, len(p.pairs))
	}
	for i, a := range p.pairs {
		if a.name == labels.MetricName {
			return p.errorf("label name %q is reserved for the metric name", a.name)
		}
		if seenBefore(p.pairs[:i], a.name, seen) {
			return p.errorf("duplicate label name %q", excerptString(a.name))
		}
	}
	return nil
}

func excerptString(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// normalize applies textparse's normalizeFloatsInLabelValues to le and quantile values.
func (p *textParser) normalize() {
	for i, l := range p.pairs {
		if (p.mtype == model.MetricTypeSummary && l.name == model.QuantileLabel) ||
			(p.mtype == model.MetricTypeHistogram && l.name == model.BucketLabel) {
			if f, err := strconv.ParseFloat(l.value, 64); err == nil {
				p.pairs[i].value = labels.FormatOpenMetricsFloat(f)
			}
		}
	}
}

// unescape returns s with \\, \" and \n unescaped (other escapes are kept as they are, as
// textparse does), aliasing s when it holds no escape.
func (p *textParser) unescape(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return yolo(s)
	}
	start := len(p.arena)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case '\\', '"':
				c = s[i+1]
				i++
			case 'n':
				c = '\n'
				i++
			}
		}
		p.arena = append(p.arena, c)
	}
	return yolo(p.arena[start:])
}

// scanQuoted returns the index after the quoted string starting at s[i] == '"'. The string must
// be valid UTF-8 without NUL bytes.
func scanQuoted(s []byte, i int) (int, error) {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			if !utf8.Valid(s[i:j]) {
				return 0, errors.New("invalid UTF-8 in quoted string")
			}
			if bytes.IndexByte(s[i:j], 0) >= 0 {
				return 0, errors.New("NUL byte in quoted string")
			}
			return j + 1, nil
		}
	}
	return 0, errors.New("unterminated quoted string")
}

// isNameStart reports whether c starts a metric name ([a-zA-Z_:], metric) or label name
// ([a-zA-Z_]).
func isNameStart(c byte, metric bool) bool {
	return (c|0x20 >= 'a' && c|0x20 <= 'z') || c == '_' || (metric && c == ':')
}

// scanName returns the end of the name starting at s[i].
func scanName(s []byte, i int, metric bool) int {
	for i++; i < len(s); i++ {
		if c := s[i]; !isNameStart(c, metric) && (c < '0' || c > '9') {
			break
		}
	}
	return i
}

func skipBlanks(s []byte, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// yolo returns b as a string without copying; the string is valid while b is unchanged.
func yolo(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
