package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Client-side constants of the connection to a source.
const (
	dialTimeout         = 30 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	// idleConnTimeout keeps connections across scrapes at the default interval.
	idleConnTimeout = 6 * time.Minute
	// tokenMaxAge forces a re-read of the token file even when its mtime and size look unchanged
	// (a rotation within the file system's timestamp granularity, with the same length).
	tokenMaxAge = time.Minute
)

// errAuth marks errors of the source's credentials (token file, TLS files): counted as reason
// "auth".
var errAuth = errors.New("source credentials")

// sourceClient is the HTTP client of one source: TLS verified unless InsecureSkipVerify is set,
// an optional client certificate, a bearer token re-read when its file changes, keep-alive and
// no transparent decompression (the scraper counts and limits decompressed bytes itself). The
// TLS files are stat'ed before each request and the transport rebuilt when one changed. It is
// safe for concurrent use.
type sourceClient struct {
	auth  AuthConfig
	token *tokenSource

	mtx sync.Mutex
	// rt and tlsStamp are guarded by mtx. tlsStamp fingerprints the TLS files rt was built from.
	rt       *http.Transport
	tlsStamp string
}

// newSourceClient builds the client and loads the TLS files once, so that a bad file is an error
// at construction.
func newSourceClient(auth AuthConfig, now func() time.Time) (*sourceClient, error) {
	c := &sourceClient{auth: auth, token: newTokenSource(string(auth.Token), auth.TokenFile, now)}
	if _, err := c.transport(); err != nil {
		return nil, err
	}
	if _, err := c.token.Token(); err != nil {
		return nil, err
	}
	return c, nil
}

// Do sends req with the bearer token. The caller closes the body.
func (c *sourceClient) Do(req *http.Request) (*http.Response, error) {
	rt, err := c.transport()
	if err != nil {
		return nil, err
	}
	tok, err := c.token.Token()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return rt.RoundTrip(req)
}

// Close releases idle connections.
func (c *sourceClient) Close() {
	c.mtx.Lock()
	defer c.mtx.Unlock()
	if c.rt != nil {
		c.rt.CloseIdleConnections()
	}
}

// transport returns the transport for the current TLS files, rebuilding it when one changed.
func (c *sourceClient) transport() (*http.Transport, error) {
	stamp, err := fileStamp(c.auth.CAFile, c.auth.CertFile, c.auth.KeyFile)
	if err != nil {
		return nil, err
	}
	c.mtx.Lock()
	defer c.mtx.Unlock()
	if c.rt != nil && stamp == c.tlsStamp {
		return c.rt, nil
	}
	cfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if c.rt != nil {
		c.rt.CloseIdleConnections()
	}
	c.rt = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: tlsHandshakeTimeout,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     idleConnTimeout,
		DisableCompression:  true,
		ForceAttemptHTTP2:   true,
	}
	c.tlsStamp = stamp
	return c.rt, nil
}

func (c *sourceClient) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.auth.InsecureSkipVerify} //nolint:gosec // only when set explicitly
	if c.auth.CAFile != "" {
		pem, err := os.ReadFile(c.auth.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file %s: %w: %w", c.auth.CAFile, errAuth, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: %w: no PEM certificate in it", c.auth.CAFile, errAuth)
		}
		cfg.RootCAs = pool
	}
	if c.auth.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.auth.CertFile, c.auth.KeyFile)
		if err != nil {
			// The error of LoadX509KeyPair names the problem, never the key material.
			return nil, fmt.Errorf("load client certificate %s and key %s: %w: %w", c.auth.CertFile, c.auth.KeyFile, errAuth, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// fileStamp fingerprints files by modification time and size; empty paths are skipped.
func fileStamp(paths ...string) (string, error) {
	var b strings.Builder
	for _, p := range paths {
		if p == "" {
			b.WriteString("-;")
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("stat %s: %w: %w", p, errAuth, err)
		}
		fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}

// tokenSource yields the bearer token: a static one, or the content of a file (whitespace
// trimmed, any format). The file is stat'ed at every call and re-read when its mtime or size
// changed or the last read is older than tokenMaxAge. The token never appears in an error.
type tokenSource struct {
	static string
	path   string
	now    func() time.Time

	mtx sync.Mutex
	// token, stamp and readAt are guarded by mtx: the token read at readAt from the file as
	// fingerprinted by stamp.
	token  string
	stamp  string
	readAt time.Time
}

func newTokenSource(static, path string, now func() time.Time) *tokenSource {
	if now == nil {
		now = time.Now
	}
	return &tokenSource{static: static, path: path, now: now}
}

// current returns the token last returned, without touching the file (for redaction).
func (t *tokenSource) current() string {
	if t.path == "" {
		return t.static
	}
	t.mtx.Lock()
	defer t.mtx.Unlock()
	return t.token
}

// Token returns the current token, "" when none is configured.
func (t *tokenSource) Token() (string, error) {
	if t.path == "" {
		return t.static, nil
	}
	stamp, err := fileStamp(t.path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t.mtx.Lock()
	defer t.mtx.Unlock()
	now := t.now()
	if t.token != "" && stamp == t.stamp && now.Sub(t.readAt) < tokenMaxAge {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w: %w", t.path, errAuth, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s: %w: empty", t.path, errAuth)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("token file %s: %w: more than one line", t.path, errAuth)
	}
	t.token, t.stamp, t.readAt = tok, stamp, now
	return tok, nil
}
