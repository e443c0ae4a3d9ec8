package shipper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/storage/remote/azuread"
	"github.com/prometheus/sigv4"
	"github.com/sirupsen/logrus"
)

// maxDrain bounds how much of a response body is read to let the connection be reused; a longer
// body closes the connection instead.
const maxDrain = 64 << 10

// maxRedactWindow is how much of an error body is searched for secrets before it is cut to
// maxErrBody, so that a secret straddling the cut cannot leak partly.
const maxRedactWindow = 16 << 10

// Options configures a Client. Start from DefaultOptions; zero values of Version, Timeout,
// TenantHeader and Now also mean the default.
type Options struct {
	// Version is sent as User-Agent: collector/<Version>.
	Version string
	// Timeout bounds one request: connecting, sending and reading the whole response.
	Timeout time.Duration

	// HTTPClientConfig is Prometheus' http_config (github.com/prometheus/common/config): TLS
	// (ca_file, cert_file and key_file re-read when they change, server_name, min_version,
	// insecure_skip_verify), authorization (credentials or credentials_file, re-read at every
	// request), basic_auth, oauth2, bearer_token(_file), proxy_url / no_proxy /
	// proxy_from_environment / proxy_connect_header, http_headers and enable_http2 (HTTP/1.1
	// only when false, its zero value, as in Prometheus' remote_write: one TCP connection per
	// shard spreads the load over receivers behind a load balancer). follow_redirects is
	// ignored: a redirect is never followed, it would resend the body elsewhere. Basic auth from
	// URL userinfo also works, when none of the authorization options is set.
	HTTPClientConfig config.HTTPClientConfig
	// SigV4Config signs requests for AWS (Amazon Managed Service for Prometheus), as
	// remote_write's sigv4. Exclusive with every other authorization.
	SigV4Config *sigv4.SigV4Config
	// AzureADConfig authenticates to Azure Monitor, as remote_write's azuread. Exclusive with
	// every other authorization.
	AzureADConfig *azuread.AzureADConfig

	// Headers are added to every request. Headers the protocol owns (Content-Type,
	// Content-Encoding, User-Agent, X-Prometheus-Remote-Write-Version, Authorization ...) are
	// rejected by New.
	Headers map[string]string
	// Tenant, when not empty, is sent in the TenantHeader header.
	Tenant       string
	TenantHeader string

	// Now is the clock for Retry-After dates and the last-success timestamp; nil means
	// time.Now.
	Now func() time.Time

	// RetryOnStatus are the statuses reported as Recoverable; any other 4xx or 5xx is a
	// permanent refusal, except 413 (TooLarge). The zero value means DefaultRetryStatuses();
	// build others with ParseStatusSet, which refuses 400, 409 and 413.
	RetryOnStatus StatusSet

	// Protocol is the remote-write message sent (see Protocol); "" means ProtocolV1.
	Protocol Protocol
}

// DefaultOptions returns the defaults: Version "dev", Timeout 30s, the zero http_config (TLS
// verification on with the system roots, no authorization, no proxy, HTTP/1.1), TenantHeader
// "THANOS-TENANT" (Thanos receive's default) without a tenant, time.Now and
// DefaultRetryOnStatus.
func DefaultOptions() Options {
	return Options{
		Version:       "dev",
		Timeout:       30 * time.Second,
		TenantHeader:  "THANOS-TENANT",
		Now:           time.Now,
		RetryOnStatus: DefaultRetryStatuses(),
	}
}

// withDefaults fills the zero values that have no meaning of their own.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Version == "" {
		o.Version = d.Version
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.TenantHeader == "" {
		o.TenantHeader = d.TenantHeader
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	if o.RetryOnStatus == (StatusSet{}) {
		o.RetryOnStatus = d.RetryOnStatus
	}
	return o
}

// Client sends remote-write requests to one endpoint. It is safe for concurrent use; one Client
// serves all shards of a queue and keeps one connection per concurrent request alive.
type Client struct {
	log      logrus.FieldLogger
	url      string // the URL as configured, with userinfo: only given to the transport
	endpoint string // the URL redacted (redactURL), for logs and errors
	// urlSecrets are the credentials in the URL (URLSecrets), redacted from error bodies.
	urlSecrets []string
	opts       Options
	headers    http.Header // common headers, never modified after New
	// base is the round tripper of prometheus/common/config, which owns the connections;
	// client's transport may wrap it (SigV4, Azure AD).
	base    http.RoundTripper
	client  *http.Client
	metrics *metrics
	pool    encoderPool // buffers used while a request is encoded
	bodies  bodyPool    // the compressed requests, while they are sent
	proto   *negotiator // the message sent: 1.0 or 2.0
	// templates holds the compressed 1.0 requests whose series repeat (template.go).
	templates *templateCache
}

// New returns a Client for the remote-write URL rawURL (http or https with a host). It checks the
// HTTP settings (ValidateAuth), reads the credential and certificate files once and fails if they
// are unusable.
func New(logger logrus.FieldLogger, reg prometheus.Registerer, rawURL string, opts Options) (*Client, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if _, err := ParseProtocol(string(opts.Protocol)); err != nil {
		return nil, fmt.Errorf("configure remote write to %s: %w", RedactURL(u), err)
	}
	endpoint := RedactURL(u)
	log := logger.WithFields(logrus.Fields{"component": "shipper", "url": endpoint})

	headers, err := buildHeaders(&opts)
	if err != nil {
		return nil, fmt.Errorf("configure remote write to %s: %w", endpoint, err)
	}
	hc := opts.HTTPClientConfig // Validate fills it in: the caller's copy stays as it was
	if err := ValidateAuth(&hc, opts.SigV4Config, opts.AzureADConfig); err != nil {
		return nil, fmt.Errorf("configure remote write to %s: %w: %w", endpoint, ErrInvalidOptions, err)
	}
	if u.User != nil && hasAuth(&hc, opts.SigV4Config, opts.AzureADConfig) {
		// The configured authorization would be ignored (the URL's basic auth is set first):
		// say so instead of sending one of the two silently.
		return nil, fmt.Errorf("configure remote write to %s: %w: the URL has userinfo (basic auth) and another authorization is set: give one of them", endpoint, ErrInvalidOptions)
	}
	if err := CheckCredentialFiles(&hc); err != nil {
		return nil, fmt.Errorf("configure remote write to %s: %w", endpoint, err)
	}
	rt, base, err := newRoundTripper("collector_shipper", hc, opts.SigV4Config, opts.AzureADConfig)
	if err != nil {
		return nil, fmt.Errorf("configure remote write to %s: %w", endpoint, err)
	}
	opts.HTTPClientConfig = hc
	c := &Client{
		log:        log,
		url:        u.String(),
		endpoint:   endpoint,
		urlSecrets: URLSecrets(u),
		opts:       opts,
		headers:    headers,
		base:       base,
		client: &http.Client{
			Transport: rt,
			// A redirect of a POST would resend the body elsewhere, maybe without TLS: the
			// 3xx is returned (and retried) instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		metrics: newMetrics(reg),
		proto:   newNegotiator(opts.Protocol),
	}
	c.templates = newTemplateCache()
	c.setProtocolMetric()
	return c, nil
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL, which may hold a password
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w %s: scheme must be http or https", ErrInvalidURL, RedactURL(u))
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%w %s: no host", ErrInvalidURL, RedactURL(u))
	}
	return u, nil
}

// Endpoint returns the URL redacted (userinfo and query values replaced), for logs.
func (c *Client) Endpoint() string { return c.endpoint }

// Close closes the idle keep-alive connections. Requests in flight are not interrupted (cancel
// their contexts); a later Send still works and dials anew.
func (c *Client) Close() error {
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
	return nil
}

// send delivers series as one remote-write request, 2.0 if v2 is set, else 1.0, in one attempt.
// Send says what it returns.
func (c *Client) send(ctx context.Context, series []Series, v2 bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remote write to %s: %w", c.endpoint, err)
	}
	payload, err := c.encode(series, v2)
	switch {
	case errors.Is(err, ErrRequestTooLarge):
		return localError(c.endpoint, "too_large", false, true, err)
	case err != nil:
		return localError(c.endpoint, "encode", false, false, fmt.Errorf("encode request: %w", err))
	}
	defer c.bodies.put(payload)

	reqCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	body := &requestBody{buf: *payload}
	defer body.release() // runs before the buffer goes back to the pool
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.url, nil)
	if err != nil {
		return localError(c.endpoint, "network", true, false, fmt.Errorf("build request: %w", err))
	}
	req.Header = c.headers.Clone()
	if v2 {
		setV2Headers(req.Header)
	}
	req.Body = body
	req.ContentLength = int64(len(*payload))

	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("remote write to %s: %w", c.endpoint, cerr)
		}
		var perr *fs.PathError
		if errors.As(err, &perr) { // a credential or TLS file unreadable: nothing was sent
			return localError(c.endpoint, "credentials", true, false, fmt.Errorf("%w: %w", ErrCredentials, perr))
		}
		c.metrics.request("error", time.Since(start).Seconds())
		return transportError(c.endpoint, err, c.opts.Timeout)
	}

	var excerpt []byte
	if resp.StatusCode/100 != 2 {
		excerpt, _ = io.ReadAll(io.LimitReader(resp.Body, maxRedactWindow))
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain) // lets the transport reuse the connection
	_ = resp.Body.Close()
	c.metrics.request(strconv.Itoa(resp.StatusCode), time.Since(start).Seconds())
	c.metrics.sentBytes.Add(float64(len(*payload)))

	if resp.StatusCode/100 == 2 {
		if v2 {
			if err := c.checkWritten(resp, series); err != nil {
				return err
			}
		}
		c.metrics.sentSamples.Add(float64(countSamples(series)))
		c.metrics.lastSuccess.Set(float64(c.opts.Now().UnixNano()) / 1e9)
		return nil
	}
	secrets := append(Secrets(&c.opts.HTTPClientConfig), c.urlSecrets...)
	return statusError(c.endpoint, resp, excerpt, secrets, c.opts.RetryOnStatus, c.opts.Now())
}

// encode returns the compressed request of series in a buffer of c.bodies, which the caller puts
// back. A 1.0 request over the series of an earlier one is rendered from its template
// (template.go) when there is one.
func (c *Client) encode(series []Series, v2 bool) (*[]byte, error) {
	key, cacheable := uint64(0), false
	if !v2 {
		key, cacheable = templateKey(series)
		if cacheable {
			if t := c.templates.find(key, series); t != nil {
				bp := c.bodies.get(len(t.comp))
				*bp = t.render((*bp)[:0], series)
				c.metrics.templates.WithLabelValues("hit").Inc()
				return bp, nil
			}
		}
	}
	// The encoder's buffers (the uncompressed message, the snappy output sized for the worst
	// case) go back to the pool as soon as the request is compressed; what stays for the round
	// trip is a copy of its size. With 50 shards in flight that is the difference between about
	// 4.5 MiB and 0.3 MiB a request (BenchmarkHeapInFlight).
	enc := c.pool.get()
	defer c.pool.put(enc)
	var block []byte
	var err error
	if v2 {
		block, err = enc.encodeV2(series)
	} else {
		block, err = enc.encode(series)
	}
	if err != nil {
		return nil, err
	}
	if cacheable {
		result := "miss"
		if c.templates.learn(key, series, enc.proto, block) {
			result = "built"
		}
		c.metrics.templates.WithLabelValues(result).Inc()
	}
	bp := c.bodies.get(len(block))
	*bp = append((*bp)[:0], block...) // within its capacity
	return bp, nil
}

// errorBody turns the start of an error response into a redacted line of at most maxErrBody
// bytes (plus an ellipsis when cut).
func errorBody(excerpt []byte, secrets []string) string {
	s := sanitise(string(excerpt), secrets)
	if len(s) <= maxErrBody {
		return s
	}
	cut := maxErrBody
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}

func countSamples(series []Series) int {
	n := 0
	for i := range series {
		n += len(series[i].Samples)
	}
	return n
}
