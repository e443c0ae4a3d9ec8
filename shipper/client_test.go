package shipper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote/azuread"
	"github.com/prometheus/sigv4"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// fakeClock is a settable Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testLogger returns a logger whose entries are kept in the hook, for assertions on logs.
func testLogger() (*logrus.Logger, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	return l, hook
}

// received is what a test server saw of one request.
type received struct {
	header http.Header
	req    prompb.WriteRequest
	err    error  // decoding error
	peerCN string // common name of the client certificate, if any
}

// newRecordingServer answers every request with status and hands what it received to the
// returned channel (buffered; the test reads one entry per request).
func newRecordingServer(t *testing.T, status int) (*httptest.Server, <-chan received) {
	t.Helper()
	ch := make(chan received, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- decodeRequest(r)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func decodeRequest(r *http.Request) received {
	rec := received{header: r.Header.Clone()}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		rec.peerCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rec.err = fmt.Errorf("read body: %w", err)
		return rec
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		rec.err = fmt.Errorf("snappy decode: %w", err)
		return rec
	}
	if err := rec.req.Unmarshal(raw); err != nil {
		rec.err = fmt.Errorf("unmarshal: %w", err)
	}
	return rec
}

// next returns the next received request or fails after a deadline.
func next(t *testing.T, ch <-chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("server could not decode the request: %v", r.err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the server")
		return received{}
	}
}

func newTestClient(t *testing.T, rawURL string, opts Options) *Client {
	t.Helper()
	log, _ := testLogger()
	c, err := New(log, prometheus.NewRegistry(), rawURL, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testSeries() []prompb.TimeSeries {
	return []prompb.TimeSeries{
		{
			Labels:  lbls("__name__", "up", "job", "kubelet", "namespace", "openshift-monitoring"),
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1764324000000}, {Value: 0, Timestamp: 1764324030000}},
		},
		{
			Labels:  lbls("__name__", "node_load1", "instance", "10.0.0.1:9100"),
			Samples: []prompb.Sample{{Value: 0.25, Timestamp: 1764324000000}},
		},
	}
}

func TestSendHeadersAndBody(t *testing.T) {
	srv, ch := newRecordingServer(t, http.StatusNoContent)
	opts := DefaultOptions()
	opts.Version = "1.2.3"
	opts.Tenant = "cluster-a"
	opts.Headers = map[string]string{"X-Scope": "hub", "x-lower-case": "ok"}
	c := newTestClient(t, srv.URL+"/api/v1/receive", opts)

	series := testSeries()
	if err := c.Send(context.Background(), toSeries(series)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := next(t, ch)
	for name, want := range map[string]string{
		"Content-Encoding":                  "snappy",
		"Content-Type":                      "application/x-protobuf",
		"X-Prometheus-Remote-Write-Version": "0.1.0",
		"User-Agent":                        "collector/1.2.3",
		"Thanos-Tenant":                     "cluster-a",
		"X-Scope":                           "hub",
		"X-Lower-Case":                      "ok",
		"Authorization":                     "",
	} {
		t.Run(name, func(t *testing.T) {
			if v := got.header.Get(name); v != want {
				t.Errorf("header %s = %q, want %q", name, v, want)
			}
		})
	}
	if !reflect.DeepEqual(got.req.Timeseries, series) {
		t.Fatalf("body round trip:\n got %+v\nwant %+v", got.req.Timeseries, series)
	}
}

func TestNewValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		url    string
		mutate func(*Options)
		want   error
	}{
		{name: "ftp scheme", url: "ftp://host/x", want: ErrInvalidURL},
		{name: "no host", url: "http:///api/v1/receive", want: ErrInvalidURL},
		{name: "relative", url: "/api/v1/receive", want: ErrInvalidURL},
		{name: "unparseable", url: "http://[::1", want: ErrInvalidURL},
		{name: "bad url with password", url: "ftp://user:hunter2secret@host/", want: ErrInvalidURL},
		{name: "reserved content type", url: "http://h/", want: ErrReservedHeader,
			mutate: func(o *Options) { o.Headers = map[string]string{"content-type": "text/plain"} }},
		{name: "reserved user agent", url: "http://h/", want: ErrReservedHeader,
			mutate: func(o *Options) { o.Headers = map[string]string{"User-Agent": "x"} }},
		{name: "reserved rw version", url: "http://h/", want: ErrReservedHeader,
			mutate: func(o *Options) { o.Headers = map[string]string{"X-Prometheus-Remote-Write-Version": "2.0.0"} }},
		{name: "reserved authorization", url: "http://h/", want: ErrReservedHeader,
			mutate: func(o *Options) { o.Headers = map[string]string{"Authorization": "Bearer x"} }},
		{name: "tenant header overridden", url: "http://h/", want: ErrReservedHeader,
			mutate: func(o *Options) { o.Tenant = "a"; o.Headers = map[string]string{"thanos-tenant": "b"} }},
		{name: "header with newline", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) { o.Headers = map[string]string{"X-A": "a\r\nInjected: 1"} }},
		{name: "bad header name", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) { o.Headers = map[string]string{"X A": "a"} }},
		{name: "two kinds of auth", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) {
				o.HTTPClientConfig.BearerToken = "t"
				o.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "u", Password: "p"}
			}},
		{name: "authorization and sigv4", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) {
				o.HTTPClientConfig.Authorization = &config.Authorization{Credentials: "t"}
				o.SigV4Config = &sigv4.SigV4Config{Region: "eu-west-1"}
			}},
		{name: "basic auth and azuread", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) {
				o.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "u", Password: "p"}
				o.AzureADConfig = &azuread.AzureADConfig{ManagedIdentity: &azuread.ManagedIdentityConfig{ClientID: "00000000-0000-0000-0000-000000000000"}}
			}},
		{name: "sigv4 and azuread", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) {
				o.SigV4Config = &sigv4.SigV4Config{Region: "eu-west-1"}
				o.AzureADConfig = &azuread.AzureADConfig{ManagedIdentity: &azuread.ManagedIdentityConfig{ClientID: "00000000-0000-0000-0000-000000000000"}}
			}},
		{name: "sigv4 access key without secret", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) { o.SigV4Config = &sigv4.SigV4Config{Region: "eu-west-1", AccessKey: "AKID"} }},
		{name: "userinfo and authorization", url: "http://u:hunter2secret@h/", want: ErrInvalidOptions,
			mutate: func(o *Options) { o.HTTPClientConfig.Authorization = &config.Authorization{Credentials: "t"} }},
		{name: "token and token file", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) {
				o.HTTPClientConfig.BearerToken = "t"
				o.HTTPClientConfig.BearerTokenFile = "/nonexistent"
			}},
		{name: "password and password file", url: "http://h/", want: ErrInvalidOptions,
			mutate: func(o *Options) {
				o.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "u", Password: "p", PasswordFile: "/x"}
			}},
		{name: "missing token file", url: "http://h/", want: ErrCredentials,
			mutate: func(o *Options) { o.HTTPClientConfig.BearerTokenFile = "/nonexistent/token" }},
		{name: "missing password file", url: "http://h/", want: ErrCredentials,
			mutate: func(o *Options) {
				o.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "u", PasswordFile: "/nonexistent/pw"}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			if tc.mutate != nil {
				tc.mutate(&opts)
			}
			log, _ := testLogger()
			_, err := New(log, prometheus.NewRegistry(), tc.url, opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("New(%q) = %v, want %v", tc.url, err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2secret") {
				t.Fatalf("error leaks the URL password: %v", err)
			}
		})
	}
}

func TestEndpointAndUserinfo(t *testing.T) {
	srv, ch := newRecordingServer(t, http.StatusOK)
	u, _ := url.Parse(srv.URL + "/api/v1/receive?x=1")
	u.User = url.UserPassword("alice", "s3cr3t-pw")
	c := newTestClient(t, u.String(), DefaultOptions())
	if got, want := c.Endpoint(), srv.URL+"/api/v1/receive?x=xxxxx"; got != want {
		t.Fatalf("Endpoint() = %q, want %q", got, want)
	}
	if err := c.Send(context.Background(), toSeries(testSeries())); err != nil {
		t.Fatal(err)
	}
	got := next(t, ch)
	r := &http.Request{Header: got.header}
	if user, pw, ok := r.BasicAuth(); !ok || user != "alice" || pw != "s3cr3t-pw" {
		t.Fatalf("userinfo not sent as basic auth: %q %q %v", user, pw, ok)
	}
}

func TestDefaultOptions(t *testing.T) {
	d := DefaultOptions()
	if d.Timeout != 30*time.Second || d.TenantHeader != "THANOS-TENANT" || d.HTTPClientConfig.EnableHTTP2 ||
		d.Now == nil || d.HTTPClientConfig.TLSConfig.InsecureSkipVerify || d.HTTPClientConfig.ProxyFromEnvironment {
		t.Fatalf("unexpected defaults: %+v", d)
	}
	// Zero Options get the defaults too.
	c := newTestClient(t, "http://127.0.0.1:1/", Options{})
	if c.opts.Timeout != d.Timeout || c.opts.Now == nil || c.opts.RetryOnStatus != d.RetryOnStatus {
		t.Fatalf("zero Options not defaulted: %+v", c.opts)
	}
}

// connCounter counts the TCP connections a test server accepted.
func connCounter(srv *httptest.Server) *atomic.Int32 {
	var n atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func TestConnectionReuse(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		// Alternate success with error bodies longer than what Error() quotes: they must be
		// drained for the connection to be reused.
		if calls.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(strings.Repeat("out of order sample\n", 1000)))
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(strings.Repeat("ok", 5000)))
	}))
	conns := connCounter(srv)
	srv.Start()
	t.Cleanup(srv.Close)

	c := newTestClient(t, srv.URL, DefaultOptions())
	for i := 0; i < 10; i++ {
		_ = c.Send(context.Background(), toSeries(testSeries()))
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 10 sequential requests, want 1", n)
	}
}

func TestProxyFromOptions(t *testing.T) {
	target := "http://receive.hub.invalid:19291/api/v1/receive"
	var seen atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.String()) // a forward proxy gets the absolute URL
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(proxy.Close)
	proxyURL, _ := url.Parse(proxy.URL)

	opts := DefaultOptions()
	opts.HTTPClientConfig.ProxyURL = config.URL{URL: proxyURL}
	c := newTestClient(t, target, opts)
	if err := c.Send(context.Background(), toSeries(testSeries())); err != nil {
		t.Fatalf("Send through proxy: %v", err)
	}
	if got, _ := seen.Load().(string); got != target {
		t.Fatalf("proxy saw %q, want %q", got, target)
	}
}

// blockingServer holds every request until the client gives up or the test ends; started
// receives a value when a request arrived.
func blockingServer(t *testing.T) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	started := make(chan struct{}, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client going away
		started <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, started
}

func TestSendCallerCancellation(t *testing.T) {
	srv, started := blockingServer(t)
	c := newTestClient(t, srv.URL, DefaultOptions())

	t.Run("canceled in flight", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Send(ctx, toSeries(testSeries())) }()
		<-started
		cancel()
		err := <-done
		assertCallerError(t, err, context.Canceled)
	})
	t.Run("already canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assertCallerError(t, c.Send(ctx, toSeries(testSeries())), context.Canceled)
	})
	t.Run("caller deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		assertCallerError(t, c.Send(ctx, toSeries(testSeries())), context.DeadlineExceeded)
	})
}

func assertCallerError(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("Send = %v, want %v", err, want)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Fatalf("caller cancellation returned as *Error (reason %s)", e.Reason())
	}
}

func TestSendConcurrent(t *testing.T) {
	srv, ch := newRecordingServer(t, http.StatusOK)
	opts := DefaultOptions()
	c := newTestClient(t, srv.URL, opts)

	const workers, perWorker = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				series := manySeries(20+w, 1+i)
				series[0].Labels = lbls("__name__", "worker", "id", fmt.Sprint(w*100+i))
				errs <- c.Send(context.Background(), toSeries(series))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Send: %v", err)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < workers*perWorker; i++ {
		r := next(t, ch)
		w := (len(r.req.Timeseries) - 20)
		want := manySeries(20+w, len(r.req.Timeseries[1].Samples))
		id := r.req.Timeseries[0].Labels[1].Value
		if !reflect.DeepEqual(r.req.Timeseries[1:], want[1:]) {
			t.Fatalf("request %s corrupted", id)
		}
		seen[id] = true
	}
	if len(seen) != workers*perWorker {
		t.Fatalf("got %d distinct requests, want %d", len(seen), workers*perWorker)
	}
}

// The queue declares these interfaces; *Client and *Error must keep satisfying them.
var (
	_ interface {
		Send(context.Context, []Series) error
	} = (*Client)(nil)
	_ interface {
		error
		Unwrap() error
		Recoverable() bool
		RetryAfter() (time.Duration, bool)
		TooLarge() bool
		Reason() string
		StatusCode() int
	} = (*Error)(nil)
)

func TestHTTP2Option(t *testing.T) {
	for _, tc := range []struct {
		name   string
		enable bool
		want   string
	}{
		{name: "default HTTP/1.1", want: "HTTP/1.1"},
		{name: "EnableHTTP2", enable: true, want: "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			protos := make(chan string, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				protos <- r.Proto
			}))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			t.Cleanup(srv.Close)
			opts := DefaultOptions()
			opts.HTTPClientConfig.EnableHTTP2 = tc.enable
			opts.HTTPClientConfig.TLSConfig.InsecureSkipVerify = true
			if err := newTestClient(t, srv.URL, opts).Send(context.Background(), toSeries(testSeries())); err != nil {
				t.Fatal(err)
			}
			if got := <-protos; got != tc.want {
				t.Fatalf("protocol %s, want %s", got, tc.want)
			}
		})
	}
}

// TestEarlyResponseReleasesBody has the server answer before reading a large body, so the
// transport may still be writing the pooled buffer when Send returns and reuses it (net/http
// allows closing a request body after RoundTrip returned); requestBody.release guards that.
func TestEarlyResponseReleasesBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL, DefaultOptions())

	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]prompb.TimeSeries, 20000)
	for i := range big {
		big[i].Labels = lbls("__name__", "random", "v", fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()))
		big[i].Samples = []prompb.Sample{{Value: rng.Float64(), Timestamp: int64(i)}}
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				err := c.Send(context.Background(), toSeries(big))
				var e *Error
				if !errors.As(err, &e) || !e.TooLarge() {
					t.Errorf("Send = %v, want a TooLarge *Error", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
