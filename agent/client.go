package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/prometheus/common/config"

	"github.com/collector-dev/collector/shipper"
)

// errAuth marks errors of the source's credentials (token, password and TLS files): counted as
// reason "auth".
var errAuth = errors.New("source credentials")

// sourceClient is the HTTP client of one source, built by prometheus/common/config from the
// source's http_config: TLS verified unless insecure_skip_verify is set, CA, client certificate
// and key re-read when their content changes (checked at every request), credentials files
// re-read at every request, proxy only when configured, redirects followed only with
// follow_redirects (then without credentials to another host), keep-alive, no transparent
// decompression (the scraper counts and limits decompressed bytes itself), and the reads of a
// large body paced (pacedConn). It is safe for concurrent use.
type sourceClient struct {
	cfg    config.HTTPClientConfig // validated
	client *http.Client
}

// newSourceClient checks cfg, reads the TLS and credential files once and builds the client, so
// that a bad file is an error at construction.
func newSourceClient(cfg config.HTTPClientConfig) (*sourceClient, error) {
	if err := shipper.ValidateAuth(&cfg, nil, nil); err != nil {
		return nil, fmt.Errorf("http config: %w", err)
	}
	if err := shipper.CheckCredentialFiles(&cfg); err != nil {
		return nil, fmt.Errorf("%w: %w", errAuth, err)
	}
	client, err := config.NewClientFromConfig(cfg, "collector_source", config.WithDialContextFunc(dialPaced))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errAuth, err)
	}
	client.Transport = authErrorRoundTripper{client.Transport}
	return &sourceClient{cfg: cfg, client: client}, nil
}

// Do sends req. The caller closes the body.
func (c *sourceClient) Do(req *http.Request) (*http.Response, error) {
	return c.client.Do(req)
}

// Close releases idle connections.
func (c *sourceClient) Close() { c.client.CloseIdleConnections() }

// secrets returns the current credentials, for redaction from quoted bodies.
func (c *sourceClient) secrets() []string { return shipper.Secrets(&c.cfg) }

// authErrorRoundTripper marks with errAuth the errors of reading a credential or TLS file (the
// library wraps the *fs.PathError): nothing was sent, the request is not counted as one.
type authErrorRoundTripper struct{ next http.RoundTripper }

func (rt authErrorRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	var perr *fs.PathError
	if err != nil && errors.As(err, &perr) {
		return nil, fmt.Errorf("%w: %w", errAuth, err)
	}
	return resp, err
}

func (rt authErrorRoundTripper) CloseIdleConnections() {
	if ci, ok := rt.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
