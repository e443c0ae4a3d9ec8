package agent

import (
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

// parseOther reads a body in a format the text parser does not handle (delimited protobuf)
// with textparse. It holds the whole body in memory (bounded by the caller's size limit) and
// uses no cache: the scrape client asks for text (FederateAccept), this is the fallback for a
// server that answers otherwise. Native histograms are dropped and counted: the WAL holds floats.
func (i *Ingester) parseOther(st *ingestState, tr *transformer, body io.Reader, contentType string, nowMs int64, res *IngestResult) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return &IngestError{Reason: ReasonRead, Err: err}
	}
	p, err := newPromParser(b, contentType)
	if err != nil {
		return &IngestError{Reason: ReasonContentType, Err: err}
	}
	res.Bytes = int64(len(b))
	var lset labels.Labels
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
			p.Labels(&lset)
			name, pairs := splitLabels(lset, st.pairs[:0])
			st.pairs = pairs
			var t int64
			if ts != nil {
				t = *ts
			}
			i.slowPath(st, tr, name, pairs, false, 0, 0, t, ts != nil, v, nowMs, res)
		case textparse.EntryHistogram:
			res.Read++
			res.drop(DropNativeHistogram, 1)
			res.Filtered++
		}
	}
}
