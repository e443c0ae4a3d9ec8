package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/sirupsen/logrus"

	"github.com/collector-dev/collector/agent/ingest"
)

const (
	// maxRuleParallelism bounds the recording-rule queries in flight per source.
	maxRuleParallelism = 4
	// MaxRuleQueryBytes and MaxRuleQueryDepth bound a recording rule's query before the PromQL
	// parser sees it: the parser's time grows quadratically with the nesting, and a start-up or
	// a reload must not hang on one rule. Real rules are far below both.
	MaxRuleQueryBytes = 16 << 10
	MaxRuleQueryDepth = 64
)

// checkRuleQuery refuses a query longer than MaxRuleQueryBytes or nesting parentheses, brackets
// and braces (outside string literals) deeper than MaxRuleQueryDepth. It reads each byte once.
func checkRuleQuery(q string) error {
	if len(q) > MaxRuleQueryBytes {
		return fmt.Errorf("query is %d bytes, at most %d", len(q), MaxRuleQueryBytes)
	}
	depth := 0
	var quote byte // the open string literal's quote, or 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		if quote != 0 {
			switch {
			case c == '\\' && quote != '`':
				i++ // the escaped byte
			case c == quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'', '`':
			quote = c
		case '#':
			for i < len(q) && q[i] != '\n' { // a comment, to the end of the line
				i++
			}
		case '(', '[', '{':
			if depth++; depth > MaxRuleQueryDepth {
				return fmt.Errorf("query nests parentheses, brackets or braces deeper than %d", MaxRuleQueryDepth)
			}
		case ')', ']', '}':
			depth--
		}
	}
	return nil
}

// queryResponse is the part of the Prometheus HTTP API response of an instant query we read.
type queryResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// vectorSample is one element of a vector result. A native-histogram sample has Histogram set
// instead of Value.
type vectorSample struct {
	Metric    map[string]string `json:"metric"`
	Value     []json.RawMessage `json:"value"`
	Histogram json.RawMessage   `json:"histogram"`
}

// evalRules evaluates every rule at ts, at most maxRuleParallelism at a time, each result
// ingested as its own WAL commit. A failing rule is counted and logged, and does not stop the
// others. It returns after every query ended.
func (s *Source) evalRules(ctx context.Context, st *sourceState, ts time.Time) {
	sem := make(chan struct{}, maxRuleParallelism)
	done := make(chan struct{}, len(st.rules))
	for _, r := range st.rules {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; done <- struct{}{} }()
			n, err := s.evalRule(ctx, st, r, ts)
			if err != nil {
				if ctx.Err() != nil {
					return // shutting down: not the rule's failure
				}
				s.metrics.ruleFailures.WithLabelValues(r.Name).Inc()
				s.logger.WithFields(logrus.Fields{"rule": r.Name, "reason": reasonOf(err), "err": err}).Warn("recording rule failed; nothing appended for it this interval")
				return
			}
			s.logger.WithFields(logrus.Fields{"rule": r.Name, "series": n}).Debug("recording rule evaluated")
		}()
	}
	for range st.rules {
		<-done
	}
}

// evalRule runs one instant query and ingests its result under the rule's name. It returns the
// number of series ingested.
func (s *Source) evalRule(ctx context.Context, st *sourceState, r RecordingRule, ts time.Time) (int, error) {
	qr, err := s.instantQuery(ctx, st, r.Query, ts, st.cfg.Timeout, requestTypeRecording)
	if err != nil {
		return 0, err
	}
	samples, err := ruleSamples(r.Name, qr)
	if err != nil {
		return 0, &scrapeError{Reason: reasonParse, Err: fmt.Errorf("query %s: %w", redactURL(st.query), err)}
	}
	if len(samples) == 0 {
		return 0, nil
	}
	if _, err := s.ing.IngestSamples(samples); err != nil {
		return 0, &scrapeError{Reason: reasonAppend, Err: fmt.Errorf("ingest result of rule %s: %w", r.Name, err)}
	}
	return len(samples), nil
}

// instantQuery runs query at ts against the source's query API within timeout, counting the
// request under reqType, and returns the decoded response. Its errors are *scrapeError.
func (s *Source) instantQuery(ctx context.Context, st *sourceState, query string, ts time.Time, timeout time.Duration, reqType string) (*queryResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := *st.query
	q := u.Query()
	q.Set("query", query)
	q.Set("time", strconv.FormatFloat(float64(ts.UnixMilli())/1000, 'f', 3, 64))
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &scrapeError{Reason: reasonTransport, Err: fmt.Errorf("query %s: %w", redactURL(st.query), err)}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", s.agent)
	resp, err := st.client.Do(req)
	if err != nil {
		if !errors.Is(err, errAuth) {
			s.metrics.requests.WithLabelValues(reqType, "error").Inc()
		}
		return nil, requestError(ctx, "query", st.query, err)
	}
	defer drainClose(resp.Body)
	s.metrics.requests.WithLabelValues(reqType, strconv.Itoa(resp.StatusCode)).Inc()
	body, err := decodedBody(resp)
	if err != nil {
		return nil, classifyBodyError(ctx, "query", st.query, err, st.cfg.LimitBytes)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(body, 4<<10))
		var qr queryResponse
		msg := bodySnippet(bytes.NewReader(b), st.secrets())
		if json.Unmarshal(b, &qr) == nil && qr.Error != "" {
			msg = strconv.Quote(redactSecrets(qr.ErrorType+": "+qr.Error, st.secrets()))
		}
		return nil, &scrapeError{Reason: reasonStatus, Code: resp.StatusCode, Err: fmt.Errorf("query %s: status %d: %s", redactURL(st.query), resp.StatusCode, msg)}
	}
	lr := &limitedBody{r: body, limit: st.cfg.LimitBytes}
	var qr queryResponse
	derr := json.NewDecoder(lr).Decode(&qr)
	if lr.err != nil {
		return nil, classifyBodyError(ctx, "query", st.query, lr.err, st.cfg.LimitBytes)
	}
	if derr != nil {
		return nil, &scrapeError{Reason: reasonParse, Err: fmt.Errorf("query %s: decode response: %w", redactURL(st.query), derr)}
	}
	return &qr, nil
}

// ruleSamples converts an instant-query result to samples named name: a vector gives one sample
// per element (labels with empty values dropped, as the seed; __name__ replaced), a scalar one
// sample without labels. Other result types are errors.
func ruleSamples(name string, qr *queryResponse) ([]ingest.RuleSample, error) {
	if qr.Status != "success" {
		return nil, fmt.Errorf("status %q: %s: %s", qr.Status, qr.ErrorType, qr.Error)
	}
	switch qr.Data.ResultType {
	case "vector":
		var vec []vectorSample
		if err := json.Unmarshal(qr.Data.Result, &vec); err != nil {
			return nil, fmt.Errorf("decode vector: %w", err)
		}
		out := make([]ingest.RuleSample, 0, len(vec))
		b := labels.NewScratchBuilder(8)
		for i, vs := range vec {
			if vs.Histogram != nil {
				return nil, fmt.Errorf("vector element %d: native histograms are not supported", i)
			}
			t, v, err := parseQueryPoint(vs.Value)
			if err != nil {
				return nil, fmt.Errorf("vector element %d: %w", i, err)
			}
			b.Reset()
			for k, val := range vs.Metric {
				if k != labels.MetricName && k != "" && val != "" {
					b.Add(k, val)
				}
			}
			b.Sort()
			out = append(out, ingest.RuleSample{Name: name, Labels: b.Labels(), T: t, V: v})
		}
		return out, nil
	case "scalar":
		var point []json.RawMessage
		if err := json.Unmarshal(qr.Data.Result, &point); err != nil {
			return nil, fmt.Errorf("decode scalar: %w", err)
		}
		t, v, err := parseQueryPoint(point)
		if err != nil {
			return nil, fmt.Errorf("scalar: %w", err)
		}
		return []ingest.RuleSample{{Name: name, Labels: labels.EmptyLabels(), T: t, V: v}}, nil
	default:
		return nil, fmt.Errorf("result type %q is not supported (want vector or scalar)", qr.Data.ResultType)
	}
}

// parseQueryPoint parses [<unix seconds>, "<value>"].
func parseQueryPoint(p []json.RawMessage) (int64, float64, error) {
	if len(p) != 2 {
		return 0, 0, fmt.Errorf("point has %d elements, want 2", len(p))
	}
	var sec float64
	if err := json.Unmarshal(p[0], &sec); err != nil {
		return 0, 0, fmt.Errorf("timestamp: %w", err)
	}
	var vs string
	if err := json.Unmarshal(p[1], &vs); err != nil {
		return 0, 0, fmt.Errorf("value: %w", err)
	}
	v, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("value %q: %w", vs, err)
	}
	return int64(math.Round(sec * 1000)), v, nil
}
