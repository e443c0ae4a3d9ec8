package shipper

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/config"
)

// sendTo sends one request to a server running handler and returns the error.
func sendTo(t *testing.T, handler http.HandlerFunc, opts Options) error {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL+"/api/v1/receive", opts)
	return c.Send(context.Background(), toSeries(testSeries()))
}

func respond(status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func TestClassification(t *testing.T) {
	clock := newFakeClock()
	future := clock.Now().Add(90 * time.Second).Format(http.TimeFormat)
	past := clock.Now().Add(-time.Hour).Format(http.TimeFormat)

	type want struct {
		ok          bool
		recoverable bool
		tooLarge    bool
		timing      bool
		tooOld      bool
		held        bool
		reason      string
		status      int
		retryAfter  time.Duration // 0: not set
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		url     string // instead of a server
		timeout time.Duration
		retry   string // Options.RetryOnStatus, when not the default
		want    want
	}{
		{name: "200", handler: respond(200, nil, "ok"), want: want{ok: true}},
		{name: "204", handler: respond(204, nil, ""), want: want{ok: true}},
		{name: "400 permanent", handler: respond(400, nil, "snappy decode error"),
			want: want{reason: "http_400", status: 400}},
		{name: "409 out of bounds is too old", handler: respond(409, nil, "store locally for endpoint 127.0.0.1:10901: add 3 samples: out of bounds"),
			want: want{timing: true, tooOld: true, reason: "http_409", status: 409}},
		{name: "409 without a known text is too old", handler: respond(409, nil, "conflict"),
			want: want{timing: true, tooOld: true, reason: "http_409", status: 409}},
		{name: "409 out of bounds beside out of order is too old", handler: respond(409, nil, "add 1 samples: out of order sample; add 2 samples: out of bounds"),
			want: want{timing: true, tooOld: true, reason: "http_409", status: 409}},
		{name: "400 out of order from Prometheus is timing", handler: respond(400, nil, "out of order sample\n"),
			want: want{timing: true, reason: "http_400", status: 400}},
		{name: "400 out of bounds is timing and too old", handler: respond(400, nil, "out of bounds"),
			want: want{timing: true, tooOld: true, reason: "http_400", status: 400}},
		{name: "400 out of bounds in the future is not too old", handler: respond(400, nil, "out of bounds: timestamp is too far in the future"),
			want: want{timing: true, reason: "http_400", status: 400}},
		{name: "400 duplicate timestamp is timing", handler: respond(400, nil, "duplicate sample for timestamp 1700000000000; overrides not allowed: existing 1, new value 2"),
			want: want{timing: true, reason: "http_400", status: 400}},
		{name: "400 too old sample (remote-write 2.0 form) is timing and too old", handler: respond(400, nil, `too old sample for series {__name__="up"}`),
			want: want{timing: true, tooOld: true, reason: "http_400", status: 400}},
		{name: "400 plain", handler: respond(400, nil, ""), want: want{reason: "http_400", status: 400}},
		{name: "409 naming only out of order samples is bisected, already held", handler: respond(409, nil, "add 3 samples: out of order sample"),
			want: want{timing: true, held: true, reason: "http_409", status: 409}},
		{name: "401 retried", handler: respond(401, map[string]string{"Retry-After": "3"}, "unauthorized"),
			want: want{recoverable: true, reason: "http_401", status: 401, retryAfter: 3 * time.Second}},
		{name: "403 retried", handler: respond(403, nil, "forbidden"), want: want{recoverable: true, reason: "http_403", status: 403}},
		{name: "404 retried", handler: respond(404, nil, ""), want: want{recoverable: true, reason: "http_404", status: 404}},
		{name: "405 retried", handler: respond(405, nil, ""), want: want{recoverable: true, reason: "http_405", status: 405}},
		{name: "407 retried", handler: respond(407, nil, ""), want: want{recoverable: true, reason: "http_407", status: 407}},
		{name: "411 retried", handler: respond(411, nil, ""), want: want{recoverable: true, reason: "http_411", status: 411}},
		{name: "415 retried", handler: respond(415, nil, ""), want: want{recoverable: true, reason: "http_415", status: 415}},
		{name: "421 retried", handler: respond(421, nil, ""), want: want{recoverable: true, reason: "http_421", status: 421}},
		{name: "425 retried", handler: respond(425, nil, ""), want: want{recoverable: true, reason: "http_425", status: 425}},
		{name: "431 retried", handler: respond(431, nil, ""), want: want{recoverable: true, reason: "http_431", status: 431}},
		{name: "418 permanent other 4xx", handler: respond(418, nil, ""), want: want{reason: "http_418", status: 418}},
		{name: "422 permanent", handler: respond(422, nil, "out of order sample"), want: want{reason: "http_422", status: 422}},
		{name: "404 permanent when left out of the retry set", retry: "401,429,5xx", handler: respond(404, nil, ""),
			want: want{reason: "http_404", status: 404}},
		{name: "422 retried when in the retry set", retry: "422,5xx", handler: respond(422, nil, ""),
			want: want{recoverable: true, reason: "http_422", status: 422}},
		{name: "503 permanent when left out of the retry set", retry: "401,429", handler: respond(503, map[string]string{"Retry-After": "5"}, ""),
			want: want{reason: "http_503", status: 503}},
		{name: "413 too large", handler: respond(413, map[string]string{"Retry-After": "5"}, "too many series"),
			want: want{tooLarge: true, reason: "http_413", status: 413}},
		{name: "429 retry-after seconds", handler: respond(429, map[string]string{"Retry-After": "7"}, ""),
			want: want{recoverable: true, reason: "http_429", status: 429, retryAfter: 7 * time.Second}},
		{name: "429 retry-after date", handler: respond(429, map[string]string{"Retry-After": future}, ""),
			want: want{recoverable: true, reason: "http_429", status: 429, retryAfter: 90 * time.Second}},
		{name: "429 retry-after past date", handler: respond(429, map[string]string{"Retry-After": past}, ""),
			want: want{recoverable: true, reason: "http_429", status: 429}},
		{name: "429 retry-after garbage", handler: respond(429, map[string]string{"Retry-After": "soon"}, ""),
			want: want{recoverable: true, reason: "http_429", status: 429}},
		{name: "408", handler: respond(408, nil, ""), want: want{recoverable: true, reason: "http_408", status: 408}},
		{name: "500", handler: respond(500, nil, "internal"), want: want{recoverable: true, reason: "http_500", status: 500}},
		{name: "503 retry-after", handler: respond(503, map[string]string{"Retry-After": "120"}, "hashring not ready"),
			want: want{recoverable: true, reason: "http_503", status: 503, retryAfter: 2 * time.Minute}},
		{name: "599 other 5xx", handler: respond(599, nil, ""), want: want{recoverable: true, reason: "http_599", status: 599}},
		{name: "307 not followed", handler: respond(307, map[string]string{"Location": "http://elsewhere.invalid/"}, ""),
			want: want{recoverable: true, reason: "http_3xx", status: 307}},
		{name: "connection refused", url: refusedURL(t), want: want{recoverable: true, reason: "network"}},
		{name: "connection reset mid-response", handler: resetMidResponse(t),
			want: want{recoverable: true, reason: "network"}},
		{name: "slow response beyond timeout", timeout: 100 * time.Millisecond,
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				<-r.Context().Done() // headers sent, the body never ends
			},
			want: want{ok: true}},
		{name: "no response within timeout", timeout: 100 * time.Millisecond,
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				<-r.Context().Done()
			},
			want: want{recoverable: true, reason: "timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.Now = clock.Now
			if tc.timeout > 0 {
				opts.Timeout = tc.timeout
			}
			if tc.retry != "" {
				set, err := ParseStatusSet(tc.retry)
				if err != nil {
					t.Fatal(err)
				}
				opts.RetryOnStatus = set
			}
			var err error
			if tc.url != "" {
				err = newTestClient(t, tc.url, opts).Send(context.Background(), toSeries(testSeries()))
			} else {
				err = sendTo(t, tc.handler, opts)
			}
			if tc.want.ok {
				if err != nil {
					t.Fatalf("Send = %v, want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Send = %v (%T), want *Error", err, err)
			}
			got := want{
				recoverable: e.Recoverable(), tooLarge: e.TooLarge(), timing: e.Timing(), tooOld: e.TooOld(), held: e.AlreadyHeld(), reason: e.Reason(), status: e.StatusCode(),
			}
			got.retryAfter, _ = e.RetryAfter()
			if ra, set := e.RetryAfter(); set != (ra > 0) {
				t.Errorf("RetryAfter() = %v, %v: set must mean positive", ra, set)
			}
			if got != tc.want {
				t.Fatalf("classification of %v:\n got %+v\nwant %+v", err, got, tc.want)
			}
			if e.Reason() == "timeout" && (!errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded)) {
				t.Errorf("timeout %v: want ErrTimeout and not context.DeadlineExceeded in the chain", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("Error() spans lines: %q", err.Error())
			}
		})
	}
}

// refusedURL returns a URL on which nothing listens.
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr + "/api/v1/receive"
}

// resetMidResponse writes half a status line and resets the connection.
func resetMidResponse(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Len")
		_ = buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST instead of FIN
		}
		_ = conn.Close()
	}
}

func TestTLSErrorClassification(t *testing.T) {
	srv := httptest.NewTLSServer(respond(204, nil, ""))
	t.Cleanup(srv.Close)
	// Verification is on by default: httptest's certificate is not in the system roots.
	err := newTestClient(t, srv.URL, DefaultOptions()).Send(context.Background(), toSeries(testSeries()))
	var e *Error
	if !errors.As(err, &e) || e.Reason() != "tls" || !e.Recoverable() {
		t.Fatalf("Send = %v, want a recoverable tls *Error", err)
	}
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Fatalf("x509.UnknownAuthorityError not in the chain of %v", err)
	}
}

func TestErrorBodyTruncatedAndOneLine(t *testing.T) {
	body := "first line\r\n\tsecond line\x00\xff" + strings.Repeat("é", 3000) // > 1 KiB, invalid UTF-8
	err := sendTo(t, respond(400, nil, body), DefaultOptions())
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Send = %v, want *Error", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "HTTP 400 Bad Request: first line second line é") {
		t.Fatalf("Error() = %q", msg)
	}
	if strings.ContainsAny(msg, "\r\n\t\x00") {
		t.Fatalf("Error() holds control characters: %q", msg)
	}
	if len(e.body) > maxErrBody+len("…") || !strings.HasSuffix(e.body, "…") {
		t.Fatalf("quoted body is %d bytes, want at most %d and an ellipsis", len(e.body), maxErrBody)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	const token = "eyJhbGciOiJSUzI1NiJ9.super-secret-token"
	echo := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "bad credentials: "+r.Header.Get("Authorization")+" "+token[:10])
	}
	t.Run("bearer echoed in body", func(t *testing.T) {
		opts := DefaultOptions()
		opts.HTTPClientConfig.BearerToken = token
		err := sendTo(t, echo, opts)
		if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "<redacted>") {
			t.Fatalf("Error() = %q, want the token redacted", err)
		}
	})
	t.Run("basic auth echoed in body", func(t *testing.T) {
		opts := DefaultOptions()
		opts.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "alice", Password: "pa55-w0rd-xyz"}
		err := sendTo(t, echo, opts)
		if err == nil || strings.Contains(err.Error(), "pa55-w0rd-xyz") || strings.Contains(err.Error(), "YWxpY2U6") {
			t.Fatalf("Error() = %q, want the credentials redacted", err)
		}
	})
	t.Run("url password on transport error", func(t *testing.T) {
		u := strings.Replace(refusedURL(t), "http://", "http://alice:url-pw-1234@", 1)
		err := newTestClient(t, u, DefaultOptions()).Send(context.Background(), toSeries(testSeries()))
		if err == nil || strings.Contains(err.Error(), "url-pw-1234") || strings.Contains(err.Error(), "alice") {
			t.Fatalf("Error() = %q, want no userinfo", err)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		set  bool
	}{
		{"", 0, false},
		{"0", 0, false},
		{"-5", 0, false},
		{" 30 ", 30 * time.Second, true},
		{"99999999999999999999", 0, false}, // overflows int64: not a number, not a date
		{"9223372036854775807", time.Duration(9223372036) * time.Second, true},
		{now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute, true},
		{now.Add(-time.Second).Format(http.TimeFormat), 0, false},
		{now.Format(http.TimeFormat), 0, false},
		{"Sat, 28 Nov 2026 10:01:00 GMT", time.Minute, true},
		{"Saturday, 28-Nov-26 10:01:00 GMT", time.Minute, true}, // RFC 850
		{"Sat Nov 28 10:01:00 2026", time.Minute, true},         // asctime
		{"tomorrow", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, set := parseRetryAfter(tc.in, now)
			if got != tc.want || set != tc.set {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, set, tc.want, tc.set)
			}
		})
	}
}

func TestSanitise(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		secrets        []string
	}{
		{name: "plain", in: "out of bounds", want: "out of bounds"},
		{name: "newlines and tabs", in: "a\r\n\tb\n\nc\n", want: "a b c"},
		{name: "control and invalid utf8", in: "a\x00\x1b[31mb\xffc", want: "a [31mb c"},
		{name: "secret", in: "token abcdef used", secrets: []string{"abcdef", ""}, want: "token <redacted> used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sanitise(tc.in, tc.secrets); got != tc.want {
				t.Fatalf("sanitise(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestStatusReason(t *testing.T) {
	for code, want := range map[int]string{
		400: "http_400", 409: "http_409", 413: "http_413", 429: "http_429", 503: "http_503",
		451: "http_451", 507: "http_507", 599: "http_599", 302: "http_3xx", 101: "http_1xx",
		700: "http_other", 99: "http_other",
	} {
		if got := statusReason(code); got != want {
			t.Errorf("statusReason(%d) = %q, want %q", code, got, want)
		}
	}
}
