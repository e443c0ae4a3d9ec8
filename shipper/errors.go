package shipper

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

var (
	// ErrInvalidURL is returned by New for an endpoint URL that is not absolute http(s) with a host.
	ErrInvalidURL = errors.New("invalid remote-write url")
	// ErrInvalidOptions is returned by New (and ValidateAuth) for contradictory or incomplete
	// Options (an http_config that prometheus/common/config refuses, two kinds of authorization,
	// userinfo in the URL besides another authorization, a malformed header ...).
	ErrInvalidOptions = errors.New("invalid shipper options")
	// ErrReservedHeader is returned by New when Options.Headers sets a header that the remote-write
	// protocol or the authorization options own (Content-Type, Authorization ...).
	ErrReservedHeader = errors.New("header is reserved")
	// ErrRequestTooLarge is wrapped by the *Error that Send returns when the encoded request
	// cannot be compressed as one snappy block (about 4 GiB); TooLarge reports true.
	ErrRequestTooLarge = errors.New("request too large to encode")
	// ErrTimeout is wrapped by the *Error that Send returns when Options.Timeout ran out. It does
	// not wrap context.DeadlineExceeded: that is reserved for the caller's own deadline.
	ErrTimeout = errors.New("request timed out")
	// ErrCredentials is returned by New (and CheckCredentialFiles) when a credential file cannot
	// be read, and wrapped by the *Error that Send returns when a credential or TLS file could not
	// be read for the request (nothing was sent). That *Error is Recoverable: the data stays
	// queued until the file is fixed.
	ErrCredentials = errors.New("credentials unavailable")
	// ErrInvalidRetryStatus is returned by ParseStatusSet for a list that is empty, malformed or
	// holds a status that is never retried (400, 409, 413).
	ErrInvalidRetryStatus = errors.New("invalid retry status")
	// ErrInvalidProtocol is returned by ParseProtocol and New for a protocol that is not auto,
	// v1, v2 or one of Prometheus' protobuf_message names.
	ErrInvalidProtocol = errors.New("invalid remote-write protocol")
	// ErrNotConfirmed is wrapped by the *Error that Send returns when a remote-write 2.0 request
	// got a 2xx without any X-Prometheus-Remote-Write-*-Written header: a 1.x receiver that
	// ignored the Content-Type and wrote nothing. Recoverable; ProtocolAuto falls back to 1.0.
	ErrNotConfirmed = errors.New("2xx without written counts to a remote-write 2.0 request")
	// ErrPartialWrite is wrapped by the *Error that Send returns when a 2xx to a remote-write 2.0
	// request counts fewer samples or histograms written than the request held, or an unreadable
	// count. Recoverable: the batch stays queued rather than count unconfirmed samples as sent.
	ErrPartialWrite = errors.New("2xx with fewer samples written than sent")

	// errLabelEncoding is wrapped by the error of a 2.0 encoding whose Series.Labels are not the
	// RW 1.0 label encoding (a bug of the caller: Send reports it as a permanent "encode" error).
	errLabelEncoding = errors.New("malformed label encoding")

	// errBodyReleased is returned by requestBody.Read after Send has handed the buffer back to
	// the pool. The transport sees it only if it was still writing a body the server had already
	// answered.
	errBodyReleased = errors.New("request body released")
)

// maxErrBody is how much of an error response body Error() quotes.
const maxErrBody = 1024

// Error is returned by Client.Send for every failed attempt except a cancellation by the caller's
// context (that is returned as the wrapped ctx.Err()). The queue decides by its methods, through
// interfaces it declares itself, whether to retry, split or drop. Error strings never contain
// credentials: URLs are printed redacted (redactURL) and known secrets (the configured ones and
// those of the URL, URLSecrets) are redacted from bodies.
type Error struct {
	endpoint      string        // URL redacted by redactURL
	statusCode    int           // 0 for transport and local errors
	status        string        // "503 Service Unavailable"
	body          string        // sanitised, single line, at most maxErrBody bytes (+ marker)
	reason        string        // stable label, see Reason
	recoverable   bool          // see Recoverable
	tooLarge      bool          // see TooLarge
	timing        bool          // see Timing
	tooOld        bool          // see TooOld
	retryAfter    time.Duration // valid if hasRetryAfter
	hasRetryAfter bool
	err           error // underlying cause; nil for HTTP status errors
}

// Error describes the failure in one line.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("remote write to ")
	b.WriteString(e.endpoint)
	if e.statusCode != 0 {
		b.WriteString(": server returned HTTP ")
		b.WriteString(e.status)
		if e.body != "" {
			b.WriteString(": ")
			b.WriteString(e.body)
		}
	}
	if e.err != nil {
		b.WriteString(": ")
		b.WriteString(e.err.Error())
	}
	return b.String()
}

// Unwrap returns the transport or local error, or nil for an HTTP status error.
func (e *Error) Unwrap() error { return e.err }

// Recoverable reports whether the same request may succeed later: network errors, timeouts,
// TLS handshake failures, unreadable credential files, the statuses of Options.RetryOnStatus
// (DefaultRetryOnStatus: 401, 403, 404 ... 429, 431 and 5xx) and unexpected non-2xx statuses
// (1xx, 3xx: redirects are not followed). The other 4xx and 5xx are not: they are permanent
// refusals (400, 409, and whatever the retry set leaves out), or TooLarge (413).
func (e *Error) Recoverable() bool { return e.recoverable }

// Timing reports whether the receiver refused the request with 400 for the timestamps of some
// of its samples: its body names an out-of-order or out-of-bounds sample, a duplicate sample for
// a timestamp, or a sample too old for the out-of-order window. This is what Prometheus' receiver
// answers when a request re-sent after a crash holds samples it already has; it rolls the whole
// request back, so the samples it did not name may be accepted in a smaller request. Any other
// 400 is about the request as a whole and must not be sent again.
func (e *Error) Timing() bool { return e.timing }

// TooOld reports whether the receiver refused samples as too old for its head, so that they may
// reach it only by backfill: a 409 (Thanos receive writes the valid samples of the request and
// refuses the rest) unless its body names only out-of-order or duplicate samples (a re-send of
// samples it holds), and a 400 whose body names out-of-bounds (not "too far in the future") or
// too-old samples. Timing is true as well: the request is bisected down to the refused samples.
func (e *Error) TooOld() bool { return e.tooOld }

// AlreadyHeld reports whether the receiver refused with 409 naming only out-of-order or
// duplicate samples: Thanos receive holds those series at or past their timestamps (written by
// an earlier request); Timing is true as well.
func (e *Error) AlreadyHeld() bool { return e.statusCode == http.StatusConflict && !e.tooOld }

// RetryAfter returns the delay the server asked for with Retry-After (delta-seconds or an
// HTTP-date in the future). It is set only on recoverable errors.
func (e *Error) RetryAfter() (time.Duration, bool) { return e.retryAfter, e.hasRetryAfter }

// TooLarge reports whether the server refused the request for its size (413) or it could not
// be encoded; the batch should be split.
func (e *Error) TooLarge() bool { return e.tooLarge }

// Reason is a short, stable, low-cardinality label for counters: "http_<code>" for 4xx and 5xx
// (at most 200 values), "http_1xx", "http_3xx" or "http_other" for the rest, "network",
// "timeout", "tls", "credentials", "too_large" and "encode" (a series the generated protobuf
// code refused; not recoverable) for errors without a status; "not_confirmed" and
// "partial_write" for a 2xx to a remote-write 2.0 request that does not confirm every sample
// (ErrNotConfirmed, ErrPartialWrite; recoverable).
func (e *Error) Reason() string { return e.reason }

// StatusCode is the HTTP status code, 0 when no response was received.
func (e *Error) StatusCode() int { return e.statusCode }

// statusReason maps a status code to its Reason label.
func statusReason(code int) string {
	switch code / 100 {
	case 1:
		return "http_1xx"
	case 3:
		return "http_3xx"
	case 4, 5:
		return "http_" + strconv.Itoa(code)
	}
	return "http_other"
}

// statusError classifies a non-2xx response by retry, the statuses to retry. excerpt is the
// start of the body as received (searched for timing refusals); it is quoted sanitised and cut,
// and secrets are redacted from the status line too.
func statusError(endpoint string, resp *http.Response, excerpt []byte, secrets []string, retry StatusSet, now time.Time) *Error {
	code := resp.StatusCode
	e := &Error{
		endpoint:   endpoint,
		statusCode: code,
		status:     statusText(resp, secrets),
		body:       errorBody(excerpt, secrets),
		reason:     statusReason(code),
	}
	switch {
	case code == http.StatusRequestEntityTooLarge:
		e.tooLarge = true
	case code == http.StatusBadRequest:
		// Permanent: the specification forbids sending a refused request again. Only the
		// samples a timing refusal does not name may be sent again, in smaller requests.
		e.timing = isTimingRefusal(excerpt)
		e.tooOld = e.timing && isTooOldRefusal(excerpt)
	case code == http.StatusConflict:
		// Thanos receive: the valid samples of the request were written, the refused ones are
		// named in the body. Bisected down to them; those refused as too old are deferred.
		e.timing = true
		e.tooOld = isTooOldRefusal(excerpt) || !isTimingRefusal(excerpt)
	case retry.Has(code):
		e.recoverable = true
	case code >= 400 && code < 600:
		// Permanent: a refusal of the samples (409), or a status left out of the retry set.
	default:
		// 1xx, 3xx and anything outside the registry: not a rejection of the data. Retrying keeps
		// it queued until the endpoint is fixed.
		e.recoverable = true
	}
	if e.recoverable {
		e.retryAfter, e.hasRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

func statusText(resp *http.Response, secrets []string) string {
	if resp.Status != "" {
		return sanitise(resp.Status, secrets)
	}
	return strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
}

// transportError classifies an error returned by the HTTP client when no status was received.
// The caller has already ruled out a cancellation of its own context.
func transportError(endpoint string, err error, timeout time.Duration) *Error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // its URL may carry userinfo; the endpoint is printed instead
	}
	e := &Error{endpoint: endpoint, reason: "network", recoverable: true, err: err}
	var (
		nerr net.Error
		cerr *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		hoe  x509.HostnameError
		cie  x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// Only the per-request timeout can be the cause here (the caller's context is not done);
		// drop context.DeadlineExceeded from the chain so it is not mistaken for a shutdown.
		e.reason = "timeout"
		e.err = fmt.Errorf("%w after %s", ErrTimeout, timeout)
	case errors.As(err, &cerr), errors.As(err, &uae), errors.As(err, &hoe), errors.As(err, &cie):
		e.reason = "tls"
	case errors.As(err, &nerr) && nerr.Timeout():
		e.reason = "timeout"
	}
	return e
}

// localError wraps a failure that happened before anything was sent.
func localError(endpoint, reason string, recoverable, tooLarge bool, err error) *Error {
	return &Error{endpoint: endpoint, reason: reason, recoverable: recoverable, tooLarge: tooLarge, err: err}
}

// parseRetryAfter reads a Retry-After value: delta-seconds or an HTTP-date. Only a positive delay
// is reported; a date in the past, zero, a negative number or garbage means "not set".
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0, false
		}
		const maxSecs = int64(1<<63-1) / int64(time.Second)
		if secs > maxSecs {
			secs = maxSecs
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, false
}

// redacted replaces credentials in printed URLs.
const redacted = "xxxxx"

// RedactURL returns u as it may be printed in a log line, an error string, a metric label or
// /readyz: userinfo removed, every query value replaced by xxxxx (keys kept, so that
// `?apikey=xxxxx` still says what was configured), no fragment. The agent prints its source URLs
// with it too.
func RedactURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, p := range parts {
			if k, _, ok := strings.Cut(p, "="); ok {
				parts[i] = k + "=" + redacted
			}
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	c.ForceQuery = false
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// URLSecrets returns the credentials of u that a server may echo in an error body: the
// password of the userinfo, the userinfo and its Basic authorization form (the transport sends
// userinfo as Basic auth), and each query value of at least 4 bytes, raw and unescaped (shorter
// ones are too common in any text to replace).
func URLSecrets(u *url.URL) []string {
	var out []string
	if u.User != nil {
		pw, _ := u.User.Password()
		userinfo := u.User.Username() + ":" + pw
		out = append(out, base64.StdEncoding.EncodeToString([]byte(userinfo)), u.User.String())
		if pw != "" {
			out = append(out, pw)
		}
	}
	for _, p := range strings.Split(u.RawQuery, "&") {
		_, v, ok := strings.Cut(p, "=")
		if !ok || len(v) < 4 {
			continue
		}
		out = append(out, v)
		if uv, err := url.QueryUnescape(v); err == nil && uv != v {
			out = append(out, uv)
		}
	}
	return out
}

// sanitise turns an untrusted excerpt into one printable line: invalid UTF-8 and control
// characters become spaces, runs of white space collapse, and every secret is replaced by
// "<redacted>".
func sanitise(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "<redacted>")
		}
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}
