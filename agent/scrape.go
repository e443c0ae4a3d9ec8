package agent

// Scraping (scrape.go, source.go, client.go, rules.go, config.go, allowlist.go)
//
// A Source federates one Prometheus into one WAL. Every interval (DefaultInterval 5m, RHACM's
// default; the first cycle at Run's start) it sends GET <from>/federate with the source's
// match[] selectors spread round-robin over worker_number parallel workers (clamped to the
// number of selectors, with a warning), and evaluates the recording rules alongside. A worker
// whose selectors would make a request line longer than 8000 bytes (proxies refuse longer ones
// with 414; Prometheus' /federate takes no POST) sends them in several requests one after the
// other, each a scrape of its own; after a transport, timeout or auth failure it skips the rest
// of its requests until the next cycle. More than 10 000 selectors are warned about at start.
// A cycle that runs past the next tick delays the schedule to the tick after it; ticks are
// skipped, never queued, and counted in collector_scrape_overruns_total.
//
// Each request's response is one scrape: streamed (never read whole) through a size limit on the
// decompressed bytes (limit_bytes, default 1 GiB = RHACM's scrapeSizeLimitBytes; the seeds' 200
// KiB failed real clusters) into ingest.Ingester.Ingest, which appends it in one WAL commit or not at
// all. A scrape that fails appends nothing, is counted in collector_scrape_failures_total{reason}
// (transport, timeout, status, content_type, too_large, truncated, parse, auth, append) and
// logged once with the source's cluster_id, the reason and the error (which names the line for a
// parse error). The request timeout (timeout) defaults to 90% of the interval, so that a hung
// request ends before the next tick; the seeds used the whole interval.
//
// The client (sourceClient) is built by prometheus/common/config from the source's http_config
// (the seed flags map onto it): TLS verified unless insecure_skip_verify is set explicitly (the
// seed skipped verification whenever no CA file was given), a client certificate for mTLS, CA,
// certificate and key compared at every request and the connection rebuilt when one changed,
// credentials files (a bearer token in any format, not only a JWT: projected service-account
// tokens rotate) read at every request. It asks for an uncompressed body (Accept-Encoding:
// identity) unless the source's compression is gzip, inflates a gzipped body itself, keeps
// connections alive, drains and closes every body, follows no redirect unless follow_redirects
// (and then never with the credentials to another host) and uses no proxy unless configured (the
// source is in-cluster, as in the seed).
//
// Recording rules ({"name","query"}; from RHACM allowlists record/expr) are instant queries on
// from_query (default: from with /federate replaced by /api/v1/query) at the cycle's start time,
// each with its own timeout and WAL commit, at most four in flight. Vector results become one
// series per element named after the rule (labels with empty values dropped, as the seed), a
// scalar one series without labels; anything else is an error. A failing rule is counted in
// collector_recording_rule_failures_total{rule} and logged; the others go on.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/collector-dev/collector/agent/ingest"
)

// Reasons of a failed scrape, the values of the reason label of
// collector_scrape_failures_total. A failed scrape appends nothing.
const (
	// reasonTransport: no response (DNS, connection refused, TLS handshake, ...).
	reasonTransport = "transport"
	// reasonTimeout: the request or the body took longer than the timeout.
	reasonTimeout = "timeout"
	// reasonStatus: the response status is not 200.
	reasonStatus = "status"
	// reasonContentType: a 200 with a body that is not an exposition format (an HTML error page
	// of a proxy, JSON, ...), or an unknown Content-Encoding.
	reasonContentType = "content_type"
	// reasonTooLarge: the decompressed body is larger than the limit.
	reasonTooLarge = "too_large"
	// reasonTruncated: the body ended early (Content-Length not reached, the connection cut,
	// a gzip stream cut or corrupt).
	reasonTruncated = "truncated"
	// reasonParse: a line of the body does not parse, or a series is invalid.
	reasonParse = "parse"
	// reasonAuth: a credential or TLS file cannot be read.
	reasonAuth = "auth"
	// reasonAppend: the WAL refused the scrape.
	reasonAppend = "append"
	// reasonDiskFull: the WAL's file system has no room for the scrape (--wal-reserve).
	reasonDiskFull = "disk_full"
)

// failureReasons are initialised to zero so that rate() and alerts see them from the start.
var failureReasons = [...]string{reasonTransport, reasonTimeout, reasonStatus, reasonContentType,
	reasonTooLarge, reasonTruncated, reasonParse, reasonAuth, reasonAppend, reasonDiskFull}

// federate_requests_total type label values, as the seed.
const (
	requestTypeFederate  = "normal"
	requestTypeRecording = "recording"
)

// scrapeError is a failed scrape or query: the reason it is counted under and the cause.
type scrapeError struct {
	Reason string
	// Code is the HTTP status of a reasonStatus error, else 0.
	Code int
	Err  error
}

func (e *scrapeError) Error() string { return e.Err.Error() }
func (e *scrapeError) Unwrap() error { return e.Err }

// reasonOf returns the failure reason of err.
func reasonOf(err error) string {
	var se *scrapeError
	if errors.As(err, &se) {
		return se.Reason
	}
	return reasonTransport
}

// scrapeMetrics are the metrics of one source. The agent wraps the registerer with cluster_id.
type scrapeMetrics struct {
	requests     *prometheus.CounterVec
	duration     prometheus.Histogram
	bytes        prometheus.Counter
	failures     *prometheus.CounterVec
	lastSuccess  prometheus.Gauge
	overruns     prometheus.Counter
	ruleFailures *prometheus.CounterVec
}

func newScrapeMetrics(reg prometheus.Registerer) *scrapeMetrics {
	f := promauto.With(reg)
	m := &scrapeMetrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "federate_requests_total",
			Help: "Requests to the source, as the seed counted them: type is normal for /federate and recording for recording-rule queries; status_code is error when no response arrived.",
		}, []string{"type", "status_code"}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "collector_scrape_duration_seconds",
			Help:    "Duration of one federate scrape (one worker's request), from request to WAL commit, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_scrape_bytes_total",
			Help: "Decompressed bytes of federate bodies read.",
		}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_scrape_failures_total",
			Help: "Federate scrapes that appended nothing, by reason.",
		}, []string{"reason"}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_scrape_last_success_timestamp_seconds",
			Help: "End of the last scrape cycle in which every worker's scrape succeeded, in Unix seconds.",
		}),
		overruns: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_scrape_overruns_total",
			Help: "Scrape cycles that took longer than the interval; the missed ticks are skipped, not queued.",
		}),
		ruleFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_recording_rule_failures_total",
			Help: "Recording-rule evaluations that appended nothing, by rule.",
		}, []string{"rule"}),
	}
	for _, r := range failureReasons {
		m.failures.WithLabelValues(r)
	}
	return m
}

// scrape federates one group of matchers and ingests the body as one WAL commit. It returns a
// *scrapeError; it does not log.
func (s *Source) scrape(ctx context.Context, st *sourceState, matchers []string) error {
	start := s.clock.Now()
	defer func() { s.metrics.duration.Observe(s.clock.Now().Sub(start).Seconds()) }()
	ctx, cancel := context.WithTimeout(ctx, st.cfg.Timeout)
	defer cancel()
	u := *st.federate
	q := u.Query()
	for _, m := range matchers {
		q.Add("match[]", m)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return &scrapeError{Reason: reasonTransport, Err: fmt.Errorf("federate %s: %w", redactURL(st.federate), err)}
	}
	req.Header.Set("Accept", ingest.FederateAccept)
	if st.cfg.Compression == CompressionGzip {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity") // the default, see SourceConfig.Compression
	}
	req.Header.Set("User-Agent", s.agent)
	resp, err := st.client.Do(req)
	if err != nil {
		if !errors.Is(err, errAuth) {
			s.metrics.requests.WithLabelValues(requestTypeFederate, "error").Inc()
		}
		return requestError(ctx, "federate", st.federate, err)
	}
	defer drainClose(resp.Body)
	s.metrics.requests.WithLabelValues(requestTypeFederate, strconv.Itoa(resp.StatusCode)).Inc()
	if resp.StatusCode != http.StatusOK {
		return &scrapeError{Reason: reasonStatus, Code: resp.StatusCode, Err: fmt.Errorf("federate %s: status %d: %s", redactURL(st.federate), resp.StatusCode, bodySnippet(resp.Body, st.secrets()))}
	}
	ct := resp.Header.Get("Content-Type")
	if !isExpositionType(ct) {
		return &scrapeError{Reason: reasonContentType, Err: fmt.Errorf("federate %s: content type %q is not an exposition format: %s", redactURL(st.federate), ct, bodySnippet(resp.Body, st.secrets()))}
	}
	body, err := decodedBody(resp)
	if err != nil {
		return classifyBodyError(ctx, "federate", st.federate, err, st.cfg.LimitBytes)
	}
	lr := &limitedBody{r: body, limit: st.cfg.LimitBytes}
	_, err = s.ing.Ingest(lr, ct)
	s.metrics.bytes.Add(float64(lr.n))
	switch {
	case lr.err != nil:
		// The body, not its content, is at fault; whatever Ingest said follows from it.
		return classifyBodyError(ctx, "federate", st.federate, lr.err, st.cfg.LimitBytes)
	case err != nil:
		return ingestError(st.federate, err)
	}
	return nil
}

const defaultUserAgent = "collector"

// Request sizes of the federate requests.
const (
	// maxRequestURIBytes bounds the path and query of a federate request: proxies in front of a
	// Prometheus refuse longer request lines (nginx's default buffer is 8 KiB; beyond, 414 or a
	// broken pipe). /federate takes match[] only from the URL (Prometheus answers a POST with
	// 405), so a long list is cut into several requests instead.
	maxRequestURIBytes = 8000
	// manyMatchers is the count of matchers above which a warning says what they cost.
	manyMatchers = 10_000
)

// matchParamLen is the encoded name of the match[] parameter with its '=' and the '&' before it.
var matchParamLen = len(url.QueryEscape("match[]")) + 2

// chunkMatchers cuts matchers, in order, into runs whose encoded match[] parameters take at
// most budget bytes. A matcher longer than budget alone makes one run.
func chunkMatchers(matchers []string, budget int) [][]string {
	var out [][]string
	start, size := 0, 0
	for i, m := range matchers {
		n := matchParamLen + len(url.QueryEscape(m))
		if i > start && size+n > budget {
			out = append(out, matchers[start:i:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(matchers) {
		out = append(out, matchers[start:])
	}
	return out
}

// cutRequests cuts the groups into requests and adds the warnings about a large list.
func (st *sourceState) cutRequests() {
	budget := maxRequestURIBytes - len(st.federate.RequestURI())
	st.requests = make([][][]string, len(st.groups))
	for i, g := range st.groups {
		st.requests[i] = chunkMatchers(g, budget)
	}
	long := 0
	for _, m := range st.matchers {
		if matchParamLen+len(url.QueryEscape(m)) > budget {
			long++
		}
	}
	if long > 0 {
		st.warnings = append(st.warnings, fmt.Sprintf("%d matchers are longer than a request line proxies accept (%d bytes); each is sent alone, and a proxy may refuse it", long, maxRequestURIBytes))
	}
	if len(st.matchers) > manyMatchers {
		st.warnings = append(st.warnings, fmt.Sprintf("%d matchers (more than %d): each cycle sends them in %d /federate requests, each appended on its own; fewer, broader selectors (a regex on __name__) cost the source less", len(st.matchers), manyMatchers, st.requestCount()))
	}
}

// requestCount is the number of federate requests of a cycle.
func (st *sourceState) requestCount() int {
	n := 0
	for _, r := range st.requests {
		n += len(r)
	}
	return n
}

// requestError classifies an error of Do. The *url.Error wrapper is dropped: its URL holds
// every matcher.
func requestError(ctx context.Context, what string, u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	reason := reasonTransport
	switch {
	case errors.Is(err, errAuth):
		reason = reasonAuth
	case isTimeout(ctx, err):
		reason = reasonTimeout
	}
	return &scrapeError{Reason: reason, Err: fmt.Errorf("%s %s: %w", what, redactURL(u), err)}
}

// classifyBodyError classifies an error of reading the body of a request of kind what.
func classifyBodyError(ctx context.Context, what string, u *url.URL, err error, limit int64) error {
	var se *scrapeError
	switch {
	case errors.As(err, &se):
		return &scrapeError{Reason: se.Reason, Err: fmt.Errorf("%s %s: %w", what, redactURL(u), se.Err)}
	case errors.Is(err, ingest.ErrTooLarge):
		return &scrapeError{Reason: reasonTooLarge, Err: fmt.Errorf("%s %s: decompressed body exceeds the limit of %d bytes (limit_bytes, --limit-bytes)", what, redactURL(u), limit)}
	case isTimeout(ctx, err):
		return &scrapeError{Reason: reasonTimeout, Err: fmt.Errorf("%s %s: read body: %w", what, redactURL(u), err)}
	}
	return &scrapeError{Reason: reasonTruncated, Err: fmt.Errorf("%s %s: read body: %w", what, redactURL(u), err)}
}

// ingestError classifies an error of Ingest whose body read fine.
func ingestError(u *url.URL, err error) error {
	reason := reasonAppend
	var ie *ingest.IngestError
	if errors.As(err, &ie) {
		switch ie.Reason {
		case ingest.ReasonParse:
			reason = reasonParse
		case ingest.ReasonRead:
			reason = reasonTruncated
		case ingest.ReasonTooLarge:
			reason = reasonTooLarge
		case ingest.ReasonContentType:
			reason = reasonContentType
		case ingest.ReasonDiskFull:
			reason = reasonDiskFull
		}
	}
	return &scrapeError{Reason: reason, Err: fmt.Errorf("federate %s: %w", redactURL(u), err)}
}

func isTimeout(ctx context.Context, err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isExpositionType accepts the media types of the formats /federate answers with: the text
// format and protobuf. A missing Content-Type is refused (Prometheus always sets it; a proxy's
// page may not). The Ingester checks the parameters.
func isExpositionType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "text/plain" || mt == "application/vnd.google.protobuf"
}

// decodedBody returns the body, gunzipped when the server compressed it.
func decodedBody(resp *http.Response) (io.Reader, error) {
	switch ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); ce {
	case "", "identity":
		return resp.Body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bufio.NewReader(resp.Body))
		if err != nil {
			return nil, fmt.Errorf("gzip header: %w", err)
		}
		return zr, nil
	default:
		return nil, &scrapeError{Reason: reasonContentType, Err: fmt.Errorf("unsupported content encoding %q", ce)}
	}
}

// limitedBody reads at most limit bytes from r, then fails with ingest.ErrTooLarge (the Ingester's
// sentinel). It records the
// first error other than io.EOF, so that a failed body is told from a failed parse.
type limitedBody struct {
	r     io.Reader
	limit int64
	n     int64
	err   error
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if rest := l.limit - l.n + 1; int64(len(p)) > rest {
		p = p[:rest] // read one byte past the limit to tell "exactly the limit" from "over"
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.limit {
		l.n = l.limit
		l.err = ingest.ErrTooLarge
		return 0, l.err
	}
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

// drainClose reads what is left of a body, up to a bound, so that the connection can be reused,
// and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}

// bodySnippet returns the start of an error body, one line of printable characters with the
// secrets replaced, for an error message: enough to recognise a proxy's page. The secrets are
// replaced before the cut, so that none leaks partly.
func bodySnippet(r io.Reader, secrets []string) string {
	b, _ := io.ReadAll(io.LimitReader(r, 16<<10))
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, redactSecrets(string(b), secrets))
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "empty body"
	}
	return strconv.Quote(s)
}
