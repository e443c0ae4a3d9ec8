package ingest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// newPromParser is the one call of textparse.New in collector: its signature changes between
// Prometheus versions. It reads formats other than text (delimited protobuf) and is the oracle
// of FuzzParseDifferential.
func newPromParser(b []byte, contentType string) (textparse.Parser, error) {
	p, err := textparse.New(b, contentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	if p == nil {
		if err == nil {
			err = fmt.Errorf("no parser for content type %q", contentType)
		}
		return nil, err
	}
	return p, nil
}

// maxProtoMessageBytes bounds one delimited message (one metric family) of a protobuf body.
// /federate writes all series of a metric name in one family; 64 MiB holds some 700 000 series
// (BenchmarkIngest's 200k-series body has an 18 MiB family). A message is read as its bytes
// arrive (readMessage), so a length that claims more than the body holds costs only what it holds.
const maxProtoMessageBytes = 64 << 20

// protoReadChunk is the size of the chunks in which readMessage reads a long message.
const protoReadChunk = 1 << 20

// parseOther reads a body in a format the text parser does not handle (delimited protobuf)
// with textparse, one message (metric family) at a time: it never holds more than one message
// of at most maxProtoMessageBytes, so that a compressed body cannot inflate in memory (the
// decompressed size is bounded by the caller's limit, as for text). It uses no cache: the
// scrape client asks for text (FederateAccept), this is the fallback for a server that answers
// otherwise. Native histograms are dropped and counted: the WAL holds floats.
func (i *Ingester) parseOther(st *ingestState, tr *transformer, body io.Reader, contentType string, nowMs int64, res *IngestResult) error {
	rec := &errRecorder{r: body}
	br := bufio.NewReaderSize(rec, 64<<10)
	var lset labels.Labels
	for msg := 1; ; msg++ {
		res.Bytes += skipZeros(br)
		n, err := binary.ReadUvarint(br)
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, io.ErrUnexpectedEOF):
			return &IngestError{Reason: ReasonRead, Err: fmt.Errorf("protobuf message %d: length cut (truncated body?): %w", msg, err)}
		case err != nil && rec.err != nil:
			return &IngestError{Reason: ReasonRead, Err: err}
		case err != nil: // the varint overflows
			return &IngestError{Reason: ReasonParse, Err: fmt.Errorf("protobuf message %d: length: %w", msg, err)}
		case n > maxProtoMessageBytes:
			return &IngestError{Reason: ReasonTooLarge, Err: fmt.Errorf("protobuf message %d: %d bytes exceed the bound of %d bytes of one metric family (the text format has no such bound)", msg, n, maxProtoMessageBytes)}
		case n == 0:
			res.Bytes++
			continue // an empty family: textparse skips it too
		}
		b, err := readMessage(br, n)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
				return &IngestError{Reason: ReasonRead, Err: fmt.Errorf("protobuf message %d: cut after its length (truncated body?): %w", msg, io.ErrUnexpectedEOF)}
			}
			return &IngestError{Reason: ReasonRead, Err: err}
		}
		res.Bytes += int64(len(b))
		p, err := newPromParser(b, contentType)
		if err != nil {
			return &IngestError{Reason: ReasonContentType, Err: err}
		}
		if err := i.parseFamily(st, tr, p, &lset, nowMs, res); err != nil {
			return err
		}
	}
}

// readMessage reads a delimited message of n bytes from r and returns it with its length
// prefix, as textparse's protobuf parser takes it. A long message is read in chunks of
// protoReadChunk and assembled once whole, so memory follows what the body holds (at most twice
// it, briefly), not what its length prefix claims.
func readMessage(r io.Reader, n uint64) ([]byte, error) {
	if n <= protoReadChunk {
		b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+int(n)), n)
		hdr := len(b)
		b = b[:hdr+int(n)]
		if _, err := io.ReadFull(r, b[hdr:]); err != nil {
			return nil, err
		}
		return b, nil
	}
	var chunks [][]byte
	for left := n; left > 0; {
		c := make([]byte, min(left, protoReadChunk))
		if _, err := io.ReadFull(r, c); err != nil {
			return nil, err
		}
		chunks = append(chunks, c)
		left -= uint64(len(c))
	}
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+int(n)), n)
	for _, c := range chunks {
		b = append(b, c...)
	}
	return b, nil
}

// skipZeros consumes the zero bytes at the reader's position in bulk: each is an empty message,
// which textparse skips too, and a body of zeros is the cheapest gzip bomb.
func skipZeros(br *bufio.Reader) int64 {
	var n int64
	for {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return n // ReadUvarint meets the error
			}
		}
		b, _ := br.Peek(br.Buffered())
		i := 0
		for i < len(b) && b[i] == 0 {
			i++
		}
		_, _ = br.Discard(i)
		n += int64(i)
		if i < len(b) {
			return n
		}
	}
}

// errRecorder keeps the first error other than io.EOF of r, to tell a failed body from an
// invalid one.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// parseFamily appends the samples of one protobuf message.
func (i *Ingester) parseFamily(st *ingestState, tr *transformer, p textparse.Parser, lset *labels.Labels, nowMs int64, res *IngestResult) error {
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &IngestError{Reason: ReasonParse, Err: err}
		}
		switch e {
		case textparse.EntrySeries:
			res.Read++
			if res.Read > i.opts.SampleLimit {
				return &IngestError{Reason: ReasonTooLarge, Err: fmt.Errorf("%w of %d samples", errSampleLimit, i.opts.SampleLimit)}
			}
			_, ts, v := p.Series()
			p.Labels(lset)
			name, pairs := splitLabels(*lset, st.pairs[:0])
			st.pairs = pairs
			var t int64
			if ts != nil {
				t = *ts
			}
			i.slowPath(st, tr, name, pairs, false, cacheKey{}, t, ts != nil, v, nowMs, res)
		case textparse.EntryHistogram:
			res.Read++
			res.drop(DropNativeHistogram, 1)
			res.Filtered++
		}
	}
}
