package agent

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/collector-dev/collector/agent/ingest"
	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/shipper"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/storage/remote/azuread"
	"github.com/prometheus/sigv4"
)

// The shipper's client is the queue's sender: checked here, where the two meet.
var _ queue.Sender = (*shipper.Client)(nil)

// EndpointConfig describes one remote-write endpoint (Thanos receive on the hub). Every source's
// WAL is shipped to every endpoint, each with its own queue and durable position.
type EndpointConfig struct {
	// Name identifies the endpoint: it names the position files (positions/<name>.json in every
	// WAL) and labels the endpoint's metrics. Default: derived from the URL's host (see
	// WithDefaults). Changing it makes the endpoint start over from the oldest retained data.
	Name string `yaml:"name"`
	// URL is the remote-write URL, e.g. https://observatorium-api/api/metrics/v1/default/api/v1/receive.
	URL string `yaml:"url"`
	// HTTPClientConfig is Prometheus' http_config, keys inline as in a remote_write entry:
	// tls_config (ca_file, cert_file, key_file re-read when they change, server_name,
	// insecure_skip_verify, min_version), authorization, bearer_token_file, basic_auth, oauth2,
	// proxy_url, http_headers, enable_http2 ... (--to-upload-ca, --to-upload-cert,
	// --to-upload-key, --to-upload-token-file map onto it). Verification is on unless
	// insecure_skip_verify. follow_redirects is ignored: a redirect is never followed.
	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`
	// SigV4Config signs the requests for AWS (Amazon Managed Service for Prometheus).
	SigV4Config *sigv4.SigV4Config `yaml:"sigv4,omitempty"`
	// AzureADConfig authenticates to Azure Monitor. At most one of basic_auth, authorization,
	// oauth2, sigv4 and azuread is set.
	AzureADConfig *azuread.AzureADConfig `yaml:"azuread,omitempty"`
	// Tenant is sent in TenantHeader (default THANOS-TENANT) when set.
	Tenant       string `yaml:"tenant"`
	TenantHeader string `yaml:"tenant_header"`
	// Headers are extra request headers.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one request. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// RetryOnStatus lists the HTTP statuses retried until they succeed, comma-separated codes
	// and the class 5xx (--to-upload-retry-on-status). Any other 4xx or 5xx drops its batch,
	// counted; 400, 409 and 413 cannot be listed. Default shipper.DefaultRetryOnStatus.
	RetryOnStatus string `yaml:"retry_on_status"`
	// Protocol is the remote-write version sent (--to-upload-protocol): v1 (the default), v2, or
	// auto (2.0 until the endpoint answers 415 or a 2xx without written counts, then 1.0 for the
	// rest of the process).
	Protocol string `yaml:"protocol"`

	// Queue holds the queue_config settings of the endpoint's remote_write entry; nil fields keep
	// the `collector run` flags' values (see QueueOptions).
	Queue RemoteWriteQueueConfig `yaml:"-"`
	// WriteRelabelConfigs are applied once per series before it is sent to this endpoint.
	WriteRelabelConfigs []*relabel.Config `yaml:"-"`
	// ProtobufMessage is the remote_write entry's protobuf_message: ProtobufMessageV1 (the
	// default) or ProtobufMessageV2. It forces that version, as in Prometheus; it cannot be
	// combined with a Protocol that says otherwise.
	ProtobufMessage string `yaml:"protobuf_message"`
}

// ReplayPrefix starts the position names of `collector replay`; no endpoint name may start with
// it, so that a replay never moves an agent's position.
const ReplayPrefix = "replay-"

// resolvePaths makes the relative file paths of e relative to dir.
func (e *EndpointConfig) resolvePaths(dir string) {
	e.HTTPClientConfig.SetDirectory(dir)
}

// WithDefaults fills Name from the URL when it is empty.
func (e EndpointConfig) WithDefaults() EndpointConfig {
	if e.Name == "" {
		if u, err := url.Parse(e.URL); err == nil && u.Host != "" {
			e.Name = strings.NewReplacer(":", "_", "[", "", "]", "").Replace(u.Host)
		}
	}
	return e
}

// DefaultNames gives each endpoint without a name its default (WithDefaults: its host), and
// tells apart the endpoints it named on one host: host, host-2, host-3, ... (the --to-upload
// endpoints, which have no names, may share a host). Endpoints with names keep them.
func DefaultNames(eps []EndpointConfig) []EndpointConfig {
	out := make([]EndpointConfig, 0, len(eps))
	seen := map[string]int{}
	for _, e := range eps {
		if e.Name != "" {
			out = append(out, e)
			continue
		}
		e = e.WithDefaults()
		base := e.Name
		if n := seen[base]; n > 0 {
			e.Name = fmt.Sprintf("%s-%d", base, n+1)
		}
		seen[base]++
		out = append(out, e)
	}
	return out
}

// Validate checks the endpoint without touching files (the shipper loads them).
func (e EndpointConfig) Validate() error {
	if e.URL == "" {
		return fmt.Errorf("endpoint %q: url is required", e.Name)
	}
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint %q: url %q is not an http(s) URL with a host", e.Name, redactRawURL(e.URL))
	}
	hc := e.HTTPClientConfig // Validate fills defaults in: check a copy
	if err := shipper.ValidateAuth(&hc, e.SigV4Config, e.AzureADConfig); err != nil {
		return fmt.Errorf("endpoint %q: %w", e.Name, err)
	}
	if u.User != nil && (hc.BasicAuth != nil || hc.Authorization != nil || hc.OAuth2 != nil || e.SigV4Config != nil || e.AzureADConfig != nil) {
		// The URL's basic auth would win over the configured authorization on every request:
		// say so instead of silently ignoring one of the two.
		return fmt.Errorf("endpoint %q: url %q has userinfo (basic auth) and another authorization is set: give one of them", e.Name, redactURL(u))
	}
	if err := wal.ValidateID(e.Name); err != nil {
		return fmt.Errorf("endpoint name %q: %w", e.Name, err)
	}
	if strings.HasPrefix(e.Name, ReplayPrefix) {
		return fmt.Errorf("endpoint name %q: names starting with %q are reserved for the positions of collector replay: give the endpoint another name", e.Name, ReplayPrefix)
	}
	if err := ingest.ValidateRelabelConfigs("write_relabel_configs", e.WriteRelabelConfigs); err != nil {
		return fmt.Errorf("endpoint %q: %w", e.Name, err)
	}
	if e.RetryOnStatus != "" {
		if _, err := shipper.ParseStatusSet(e.RetryOnStatus); err != nil {
			return fmt.Errorf("endpoint %q: retry_on_status: %w", e.Name, err)
		}
	}
	if _, err := e.protocol(); err != nil {
		return fmt.Errorf("endpoint %q: %w", e.Name, err)
	}
	return nil
}

// protocol is the shipper protocol of Protocol and ProtobufMessage.
func (e EndpointConfig) protocol() (shipper.Protocol, error) {
	p, err := shipper.ParseProtocol(e.Protocol)
	if err != nil {
		return "", fmt.Errorf("protocol: %w", err)
	}
	if e.ProtobufMessage == "" {
		return p, nil
	}
	m, err := shipper.ParseProtocol(e.ProtobufMessage)
	if err != nil || strings.HasPrefix(e.ProtobufMessage, "v") || e.ProtobufMessage == string(shipper.ProtocolAuto) {
		return "", fmt.Errorf("protobuf_message %q: want prometheus.WriteRequest or io.prometheus.write.v2.Request", e.ProtobufMessage)
	}
	if e.Protocol != "" && p != m {
		return "", fmt.Errorf("protocol %q and protobuf_message %q disagree: give one of them", e.Protocol, e.ProtobufMessage)
	}
	return m, nil
}

// ShipperOptions returns the shipper settings of the endpoint.
func (e EndpointConfig) ShipperOptions(version string) shipper.Options {
	o := shipper.DefaultOptions()
	o.Version = version
	o.HTTPClientConfig = e.HTTPClientConfig
	o.SigV4Config = e.SigV4Config
	o.AzureADConfig = e.AzureADConfig
	o.Tenant = e.Tenant
	if e.TenantHeader != "" {
		o.TenantHeader = e.TenantHeader
	}
	o.Headers = e.Headers
	if e.Timeout > 0 {
		o.Timeout = e.Timeout
	}
	if set, err := shipper.ParseStatusSet(e.RetryOnStatus); err == nil {
		o.RetryOnStatus = set // else empty (the default) or refused by Validate
	}
	if p, err := e.protocol(); err == nil {
		o.Protocol = p // else refused by Validate
	}
	return o
}

// trackingSender remembers the outcome of the last request of one queue, for /readyz.
type trackingSender struct {
	queue.Sender
	mtx     sync.Mutex
	lastErr error // guarded by mtx
}

func (s *trackingSender) Send(ctx context.Context, series []queue.Series) error {
	err := s.Sender.Send(ctx, series)
	if ctx.Err() != nil {
		return err
	}
	s.mtx.Lock()
	s.lastErr = err
	s.mtx.Unlock()
	return err
}

// lastError returns the error of the last request, nil after a success.
func (s *trackingSender) lastError() error {
	s.mtx.Lock()
	defer s.mtx.Unlock()
	return s.lastErr
}
