package agent

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/storage/remote/azuread"
	"github.com/prometheus/sigv4"

	"github.com/collector-dev/collector/agent/ingest"
	"github.com/collector-dev/collector/queue"
)

// Values of protobuf_message (Prometheus' names of the two remote-write protocols).
const (
	ProtobufMessageV1 = "prometheus.WriteRequest"
	ProtobufMessageV2 = "io.prometheus.write.v2.Request"
)

// RemoteWriteConfig is one entry of the configuration file's remote_write: list. It has the keys
// of Prometheus' remote_write entry, so that the block of a Prometheus configuration can be
// pasted as it is, plus collector's tenant, tenant_header, retry_on_status and protocol. LoadConfig turns
// each entry into an EndpointConfig (see Endpoint); docs/configuration.md says what each key does.
type RemoteWriteConfig struct {
	URL  string `yaml:"url"`
	Name string `yaml:"name"`
	// RemoteTimeout bounds one request. Default 30s.
	RemoteTimeout model.Duration    `yaml:"remote_timeout"`
	Headers       map[string]string `yaml:"headers"`
	// WriteRelabelConfigs are applied once per series before it is sent (queue.Options).
	WriteRelabelConfigs []*relabel.Config `yaml:"write_relabel_configs"`
	// ProtobufMessage picks the protocol: ProtobufMessageV1 (the default) or ProtobufMessageV2.
	ProtobufMessage string `yaml:"protobuf_message"`
	// HTTPClientConfig is Prometheus' http_config, inline: tls_config, authorization,
	// basic_auth, oauth2, bearer_token(_file), proxy settings, http_headers, ...
	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`
	// QueueConfig settings given here replace those of the `collector run` flags for this
	// endpoint; the others keep the flags' values (not Prometheus' defaults).
	QueueConfig   RemoteWriteQueueConfig `yaml:"queue_config"`
	SigV4Config   *sigv4.SigV4Config     `yaml:"sigv4"`
	AzureADConfig *azuread.AzureADConfig `yaml:"azuread"`

	// Keys of Prometheus that collector accepts and does not implement: a value that asks for
	// something collector does not do is reported by Warnings.
	MetadataConfig       *RemoteWriteMetadataConfig `yaml:"metadata_config"`
	SendExemplars        bool                       `yaml:"send_exemplars"`
	SendNativeHistograms bool                       `yaml:"send_native_histograms"`
	RoundRobinDNS        bool                       `yaml:"round_robin_dns"`
	FailedRequestLogging bool                       `yaml:"failed_request_logging"`
	ConvertNHCBToClassic bool                       `yaml:"convert_nhcb_to_classic"`
	// GoogleIAMConfig is refused: collector has no Google IAM authentication.
	GoogleIAMConfig map[string]any `yaml:"google_iam"`

	// Tenant is sent in TenantHeader (default THANOS-TENANT) when set.
	Tenant       string `yaml:"tenant"`
	TenantHeader string `yaml:"tenant_header"`
	// RetryOnStatus: see EndpointConfig.RetryOnStatus.
	RetryOnStatus string `yaml:"retry_on_status"`
	// Protocol: see EndpointConfig.Protocol (v1, v2 or auto; protobuf_message forces one).
	Protocol string `yaml:"protocol"`
}

// RemoteWriteQueueConfig is Prometheus' queue_config. A key left out is nil: the endpoint keeps
// the value of the `collector run` flag (--max-shards, ...), not Prometheus' default.
type RemoteWriteQueueConfig struct {
	Capacity          *int            `yaml:"capacity"`
	MaxShards         *int            `yaml:"max_shards"`
	MinShards         *int            `yaml:"min_shards"`
	MaxSamplesPerSend *int            `yaml:"max_samples_per_send"`
	BatchSendDeadline *model.Duration `yaml:"batch_send_deadline"`
	MinBackoff        *model.Duration `yaml:"min_backoff"`
	MaxBackoff        *model.Duration `yaml:"max_backoff"`
	// RetryOnRateLimit is accepted; collector always retries a 429 (it is about the endpoint,
	// never about the samples), so false is ignored with a warning.
	RetryOnRateLimit *bool           `yaml:"retry_on_http_429"`
	SampleAgeLimit   *model.Duration `yaml:"sample_age_limit"`
}

// RemoteWriteMetadataConfig is Prometheus' metadata_config. collector sends no metadata.
type RemoteWriteMetadataConfig struct {
	Send              *bool          `yaml:"send"`
	SendInterval      model.Duration `yaml:"send_interval"`
	MaxSamplesPerSend int            `yaml:"max_samples_per_send"`
}

// defaultRemoteWriteConfig is what a remote_write entry starts from: Prometheus' defaults of the
// keys collector implements (remote_timeout 30s, HTTP/2 off, redirects followed).
func defaultRemoteWriteConfig() RemoteWriteConfig {
	hc := config.DefaultHTTPClientConfig
	hc.EnableHTTP2 = false
	return RemoteWriteConfig{RemoteTimeout: model.Duration(30 * time.Second), HTTPClientConfig: hc}
}

// validate checks what Prometheus checks of an entry and collector refuses, beyond what
// EndpointConfig.Validate checks of the endpoint it becomes (url, credentials), which stops at
// the first error: the relabel rules are checked here too.
// Errors do not name the entry: the caller does.
func (r RemoteWriteConfig) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	// Headers set by collector; Prometheus refuses them too.
	reserved := []string{"authorization", "content-encoding", "content-type", "user-agent", "x-prometheus-remote-write-version"}
	for h := range r.Headers {
		for _, res := range reserved {
			if strings.EqualFold(h, res) {
				add("headers: %s is set by collector (credentials go in authorization, basic_auth, oauth2, sigv4 or azuread)", http.CanonicalHeaderKey(h))
			}
		}
	}
	switch r.ProtobufMessage {
	case "", ProtobufMessageV1, ProtobufMessageV2:
	default:
		add("protobuf_message %q: want %s or %s", r.ProtobufMessage, ProtobufMessageV1, ProtobufMessageV2)
	}
	if err := ingest.ValidateRelabelConfigs("write_relabel_configs", r.WriteRelabelConfigs); err != nil {
		errs = append(errs, err)
	}
	if r.GoogleIAMConfig != nil {
		add("google_iam is not supported by collector: use authorization, oauth2 or a token file")
	}
	if r.RemoteTimeout <= 0 {
		add("remote_timeout %s must be positive", r.RemoteTimeout)
	}
	if err := r.QueueConfig.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (q RemoteWriteQueueConfig) validate() error {
	var errs []error
	for _, v := range []struct {
		name string
		n    *int
	}{{"capacity", q.Capacity}, {"max_shards", q.MaxShards}, {"min_shards", q.MinShards}, {"max_samples_per_send", q.MaxSamplesPerSend}} {
		if v.n != nil && *v.n <= 0 {
			errs = append(errs, fmt.Errorf("queue_config: %s %d must be positive", v.name, *v.n))
		}
	}
	for _, v := range []struct {
		name string
		d    *model.Duration
	}{{"batch_send_deadline", q.BatchSendDeadline}, {"min_backoff", q.MinBackoff}, {"max_backoff", q.MaxBackoff}} {
		if v.d != nil && *v.d <= 0 {
			errs = append(errs, fmt.Errorf("queue_config: %s %s must be positive", v.name, *v.d))
		}
	}
	if q.SampleAgeLimit != nil && *q.SampleAgeLimit < 0 {
		errs = append(errs, fmt.Errorf("queue_config: sample_age_limit %s must not be negative", *q.SampleAgeLimit))
	}
	if q.MinShards != nil && q.MaxShards != nil && *q.MinShards > *q.MaxShards {
		errs = append(errs, fmt.Errorf("queue_config: min_shards %d is greater than max_shards %d", *q.MinShards, *q.MaxShards))
	}
	if q.MinBackoff != nil && q.MaxBackoff != nil && *q.MinBackoff > *q.MaxBackoff {
		errs = append(errs, fmt.Errorf("queue_config: min_backoff %s is greater than max_backoff %s", *q.MinBackoff, *q.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Warnings lists the settings of the entry that collector accepts and ignores, for the log and
// `collector check config`.
func (r RemoteWriteConfig) Warnings() []string {
	var w []string
	ignored := func(key, why string) { w = append(w, fmt.Sprintf("%s is ignored: %s", key, why)) }
	if r.MetadataConfig != nil && (r.MetadataConfig.Send == nil || *r.MetadataConfig.Send) {
		ignored("metadata_config", "collector sends no metadata (/federate has none)")
	}
	if r.SendExemplars {
		ignored("send_exemplars", "/federate carries no exemplars")
	}
	if r.SendNativeHistograms {
		ignored("send_native_histograms", "the WAL holds float samples; native histograms are dropped at ingestion")
	}
	if r.RoundRobinDNS {
		ignored("round_robin_dns", "not implemented")
	}
	if r.FailedRequestLogging {
		ignored("failed_request_logging", "failures are logged once per change of state")
	}
	if r.ConvertNHCBToClassic {
		ignored("convert_nhcb_to_classic", "the WAL holds no native histograms")
	}
	if q := r.QueueConfig.RetryOnRateLimit; q != nil && !*q {
		ignored("queue_config.retry_on_http_429: false", "collector always retries a 429, which is about the endpoint, not the samples")
	}
	return w
}

// Endpoint returns the endpoint the entry describes, with its default name. Relative file paths
// are resolved by LoadConfig before.
func (r RemoteWriteConfig) Endpoint() EndpointConfig {
	e := EndpointConfig{
		Name:                r.Name,
		URL:                 r.URL,
		Tenant:              r.Tenant,
		TenantHeader:        r.TenantHeader,
		Headers:             r.Headers,
		Timeout:             time.Duration(r.RemoteTimeout),
		RetryOnStatus:       r.RetryOnStatus,
		Queue:               r.QueueConfig,
		WriteRelabelConfigs: r.WriteRelabelConfigs,
		HTTPClientConfig:    r.HTTPClientConfig,
		SigV4Config:         r.SigV4Config,
		AzureADConfig:       r.AzureADConfig,
		ProtobufMessage:     r.ProtobufMessage,
		Protocol:            r.Protocol,
	}
	return e.WithDefaults()
}

// QueueOptions returns base (the options of the `collector run` flags) with the queue_config
// settings of the endpoint and its write relabeling. When the file raises max_samples_per_send
// over the flags' capacity without setting capacity, capacity grows to two requests' worth (the
// queue needs at least one); likewise max_shards follows a raised min_shards and max_backoff a
// raised min_backoff.
func (e EndpointConfig) QueueOptions(base queue.Options) queue.Options {
	o, q := base, e.Queue
	setInt := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setDur := func(dst *time.Duration, v *model.Duration) {
		if v != nil {
			*dst = time.Duration(*v)
		}
	}
	setInt(&o.MaxSamplesPerSend, q.MaxSamplesPerSend)
	setInt(&o.Capacity, q.Capacity)
	if q.MaxSamplesPerSend != nil && q.Capacity == nil && o.Capacity < o.MaxSamplesPerSend {
		o.Capacity = 2 * o.MaxSamplesPerSend
	}
	setInt(&o.MinShards, q.MinShards)
	setInt(&o.MaxShards, q.MaxShards)
	if q.MinShards != nil && q.MaxShards == nil && o.MaxShards < o.MinShards {
		o.MaxShards = o.MinShards
	}
	setDur(&o.BatchSendDeadline, q.BatchSendDeadline)
	setDur(&o.MinBackoff, q.MinBackoff)
	setDur(&o.MaxBackoff, q.MaxBackoff)
	if q.MinBackoff != nil && q.MaxBackoff == nil && o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	setDur(&o.SampleAgeLimit, q.SampleAgeLimit)
	o.WriteRelabelConfigs = e.WriteRelabelConfigs
	return o
}
