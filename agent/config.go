package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/collector-dev/collector/agent/ingest"
	"github.com/collector-dev/collector/shipper"
	"github.com/collector-dev/collector/wal"
)

// Defaults of a source. They are applied by SourceConfig.WithDefaults to the fields left zero.
const (
	// DefaultInterval is the scrape period: RHACM's ObservabilityAddon default (300s).
	DefaultInterval = 5 * time.Minute
	// DefaultLimitBytes caps one federate body after decompression: 1 GiB, RHACM's
	// scrapeSizeLimitBytes default. The seeds' 200 KiB failed real clusters (telemeter#342); the cap
	// is a guard against a runaway response, not a tuning knob.
	DefaultLimitBytes = 1 << 30
	// CompressionGzip and CompressionNone are the values of SourceConfig.Compression.
	CompressionGzip = "gzip"
	CompressionNone = "none"
	// DefaultMatcher is federated when a source names no matcher at all (the seeds' default).
	DefaultMatcher = `{__name__="up"}`
	// DefaultAllowlistKey is the ConfigMap key read from an allowlist file (platform Prometheus).
	// RHACM's user-workload list is under UWLAllowlistKey.
	DefaultAllowlistKey = "metrics_list.yaml"
	// UWLAllowlistKey is the key of RHACM's user-workload-monitoring allowlist.
	UWLAllowlistKey = "uwl_metrics_list.yaml"
	// timeoutFraction of the interval is the default per-request timeout.
	timeoutFraction = 0.9
	// minInterval is the shortest accepted interval.
	minInterval = time.Second
)

// DefaultElideLabels returns the labels dropped from every series when a source does not say
// (SourceConfig.Elide nil): RHACM metrics-collector's default.
func DefaultElideLabels() []string {
	return ingest.DefaultElideLabels()
}

// Config is the agent's configuration file: the sources to federate, the endpoints to ship to,
// and values of `collector run` flags. See LoadConfig and docs/configuration.md.
type Config struct {
	Sources []SourceConfig `yaml:"sources"`
	// RemoteWrite are the file's remote_write entries (Prometheus' format), as read. LoadConfig
	// turns each into an element of Endpoints.
	RemoteWrite []RemoteWriteConfig `yaml:"remote_write"`
	// Endpoints are remote-write endpoints besides the --to-upload ones; every source is shipped
	// to each of them. Names are unique (see EndpointConfig.WithDefaults for the default name).
	Endpoints []EndpointConfig `yaml:"-"`
	// Flags maps `collector run` flag names (without dashes) to values, for the flags not set on
	// the command line or in the environment. The agent does not read it: the cmd package applies
	// it, and refuses names that are not flags of `collector run`.
	Flags map[string]FlagValue `yaml:"flags"`
	// Warnings are the settings of the file that are accepted and ignored, each with its line
	// (LoadConfig). The cmd package logs them once.
	Warnings []string `yaml:"-"`
	// srcLines and rwLines are the lines of Sources and RemoteWrite in the file, rwWhat names
	// the remote_write entries for messages (LoadConfig).
	srcLines, rwLines []int
	rwWhat            []string
}

// FlagValue is the value of one flag in the flags: section: a scalar, or a list of scalars for
// a repeatable flag, kept as the text the flag would be given on the command line.
type FlagValue struct {
	// Values holds one element for a scalar.
	Values []string
	// Line is the line of the value in the file, for messages.
	Line int
}

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (v *FlagValue) UnmarshalYAML(n *yaml.Node) error {
	v.Line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return fmt.Errorf("line %d: flag has no value", n.Line)
		}
		v.Values = []string{n.Value}
	case yaml.SequenceNode:
		v.Values = []string{}
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
				return fmt.Errorf("line %d: a flag's list holds scalars only", e.Line)
			}
			v.Values = append(v.Values, e.Value)
		}
	default:
		return fmt.Errorf("line %d: a flag's value is a scalar or a list of scalars", n.Line)
	}
	return nil
}

// SourceConfig describes one federated Prometheus. It is a plain value: the cmd package fills it
// from flags (one source), LoadConfig from YAML (several). A zero field means its default (see
// WithDefaults).
type SourceConfig struct {
	// ID is the cluster ID: it names the WAL, is the cluster_id of the source's metrics, and is
	// set as the clusterID label of every series unless Labels sets clusterID (TransformConfig).
	ID string `yaml:"id"`
	// From is the Prometheus URL. An empty path becomes /federate; a trailing / is trimmed.
	From string `yaml:"from"`
	// FromQuery is the query API used by recording rules. Empty: From with its /federate suffix (or
	// empty path) replaced by /api/v1/query. An empty path becomes /api/v1/query.
	FromQuery string `yaml:"from_query"`
	// Matchers are match[] selectors. With MatchFile and the allowlist's, they are federated in this
	// order, duplicates removed; DefaultMatcher when there are none.
	Matchers []string `yaml:"matchers"`
	// MatchFile holds one selector a line; blank lines and lines starting with # are ignored. It is
	// read when the source is built or reloaded.
	MatchFile string `yaml:"match_file"`
	// Allowlist is an RHACM observability-metrics-allowlist file: a ConfigMap, or the bare document
	// of one of its keys. See LoadAllowlist.
	Allowlist string `yaml:"allowlist"`
	// AllowlistKey picks the ConfigMap key. Default DefaultAllowlistKey; UWLAllowlistKey for the
	// user-workload Prometheus.
	AllowlistKey string `yaml:"allowlist_key"`
	// CustomAllowlists are custom allowlist files (observability-metrics-custom-allowlist),
	// read under AllowlistKey and merged into Allowlist in order: see MergeAllowlists.
	CustomAllowlists []string `yaml:"custom_allowlists"`
	// UWLAllowlists are user-workload allowlists, [NAMESPACE=]PATH (UWLAllowlistSpec): the
	// UWLAllowlistKey document of a ConfigMap in an application namespace, merged after the others
	// with the namespace injected as a matcher. For the source federating the user-workload
	// Prometheus.
	UWLAllowlists []string `yaml:"uwl_allowlists"`
	// Labels are set on every series, replacing a label of the same name.
	Labels map[string]string `yaml:"labels"`
	// Renames map exact metric names to new ones. They win over the allowlist's renames.
	Renames map[string]string `yaml:"renames"`
	// Elide lists labels dropped from every series. nil means DefaultElideLabels; an empty list
	// (elide: []) drops nothing.
	Elide []string `yaml:"elide"`
	// Anonymize lists labels whose values are hashed with the salt.
	Anonymize []string `yaml:"anonymize"`
	// AnonymizeSalt, or AnonymizeSaltFile (read when built or reloaded, whitespace trimmed), is the
	// salt. One of them is required with Anonymize.
	AnonymizeSalt     Secret `yaml:"anonymize_salt"`
	AnonymizeSaltFile string `yaml:"anonymize_salt_file"`
	// Interval is the scrape period. Default DefaultInterval.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one federate or query request, body included. Default 90% of Interval, so
	// that a hung request ends before the next tick. It may not exceed Interval.
	Timeout time.Duration `yaml:"timeout"`
	// LimitBytes caps a response body after decompression; a larger scrape is rejected whole.
	// Default DefaultLimitBytes.
	LimitBytes int64 `yaml:"limit_bytes"`
	// Compression is what federate requests accept: "none" (the default, also when empty:
	// Accept-Encoding: identity) or "gzip". The source is in-cluster: gzip would cost it about
	// 0.8 CPU-s per 200k-series scrape and the collector its inflate, to save network bytes that
	// are cheap there (docs/configuration.md, "Federate compression"). A gzipped body is inflated
	// either way.
	Compression string `yaml:"compression"`
	// WorkerNumber spreads the matchers round-robin over that many parallel requests, each its own
	// scrape and WAL commit. Default 1. More workers than matchers are clamped to the number of
	// matchers (the seed refused to start; the matchers may come from files that change on reload).
	WorkerNumber int `yaml:"worker_number"`
	// HTTPClientConfig is how to connect to the source (federate and query alike): Prometheus'
	// http_config keys inline (tls_config, authorization, bearer_token_file, basic_auth, oauth2,
	// proxy_url, follow_redirects, enable_http2, http_headers ...), see
	// github.com/prometheus/common/config. Verification is on unless
	// tls_config.insecure_skip_verify; TLS and credential files are re-read when they change.
	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`
	// RecordingRules are instant queries evaluated every interval against FromQuery; each result
	// series is stored under the rule's name.
	RecordingRules []RecordingRule `yaml:"recording_rules"`
	// CollectRules are RHACM collect rules (see CollectRule), besides those of the allowlist's
	// collect_rules groups selected for this cluster.
	CollectRules []CollectRule `yaml:"collect_rules"`
	// EvaluateInterval is the collect-rule evaluation period. Default DefaultEvaluateInterval, or
	// Interval when that is shorter.
	EvaluateInterval time.Duration `yaml:"evaluate_interval"`
	// RelabelConfigs are Prometheus relabeling rules applied to each federated series' labels as
	// they come from the source, before the transforms (labels, renames, elide, anonymize). A
	// source has one fixed target, so there is no target relabeling: these rules see the series,
	// including the labels that elide would remove. Once per series (at its first scrape).
	RelabelConfigs []*relabel.Config `yaml:"relabel_configs"`
	// MetricRelabelConfigs are applied after the transforms, to the labels that would be
	// written. Once per series.
	MetricRelabelConfigs []*relabel.Config `yaml:"metric_relabel_configs"`
}

// Secret is a string that prints, and marshals, as "<secret>": a SourceConfig can be logged or
// dumped whole without leaking its token or salt. Convert with string(s) to use it.
type Secret string

const redacted = "<secret>"

// String returns "<secret>", or "" when empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString is String, for %#v.
func (s Secret) GoString() string { return s.String() }

// MarshalYAML redacts.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// RecordingRule is an instant query whose result is stored as series named Name. The flag form is
// the seed's JSON: {"name":"...","query":"..."}.
type RecordingRule struct {
	Name  string `yaml:"name" json:"name"`
	Query string `yaml:"query" json:"query"`
}

// ParseRecordingRule parses the --recordingrule flag: a JSON object with exactly the keys name
// and query, both valid (see RecordingRule.Validate).
func ParseRecordingRule(s string) (RecordingRule, error) {
	var r RecordingRule
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("parse recording rule %q: want {\"name\":\"...\",\"query\":\"...\"}: %w", s, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, fmt.Errorf("parse recording rule %q: trailing data after the JSON object", s)
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, nil
}

// Validate checks that the name is a valid metric name and the query valid PromQL (experimental
// functions allowed).
func (r RecordingRule) Validate() error {
	if r.Name == "" {
		return errors.New("recording rule: name is empty")
	}
	if !model.LegacyValidation.IsValidMetricName(r.Name) {
		return fmt.Errorf("recording rule %q: name is not a valid metric name", r.Name)
	}
	if strings.TrimSpace(r.Query) == "" {
		return fmt.Errorf("recording rule %q: query is empty", r.Name)
	}
	if err := checkRuleQuery(r.Query); err != nil {
		return fmt.Errorf("recording rule %q: %w", r.Name, err)
	}
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	if _, err := p.ParseExpr(r.Query); err != nil {
		return fmt.Errorf("recording rule %q: parse query: %w", r.Name, err)
	}
	return nil
}

// resolvePaths makes the relative file paths of s relative to dir.
func (s *SourceConfig) resolvePaths(dir string) {
	s.HTTPClientConfig.SetDirectory(dir)
	for _, p := range []*string{&s.MatchFile, &s.Allowlist, &s.AnonymizeSaltFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i, p := range s.CustomAllowlists {
		if p != "" && !filepath.IsAbs(p) {
			s.CustomAllowlists[i] = filepath.Join(dir, p)
		}
	}
	for i, v := range s.UWLAllowlists {
		if ns, p := SplitUWLAllowlist(v); p != "" && !filepath.IsAbs(p) {
			if s.UWLAllowlists[i] = filepath.Join(dir, p); ns != "" {
				s.UWLAllowlists[i] = ns + "=" + s.UWLAllowlists[i]
			}
		}
	}
}

// MergeFlagSource returns the sources of the file followed by the source described by flags.
// The rule: flags describe at most one source (the cmd package passes it when --from is set
// explicitly, and nil otherwise; it requires --id); a file's sources are kept as they are; a
// flag source whose id is also in the file is an error. The result is validated.
// The file's endpoints and flags are kept.
func MergeFlagSource(file Config, flags *SourceConfig) (Config, error) {
	out := file
	out.Sources = append([]SourceConfig(nil), file.Sources...)
	if flags != nil {
		out.Sources = append(out.Sources, *flags)
	}
	if err := out.Validate(); err != nil {
		return out, err
	}
	return out, nil
}

// MergeFlagEndpoints returns the endpoints of the file followed by the endpoints described by
// flags (--to-upload), each with its default name. A name used twice is an error: give the file's
// endpoint another name.
func MergeFlagEndpoints(file, flags []EndpointConfig) ([]EndpointConfig, error) {
	out := make([]EndpointConfig, 0, len(file)+len(flags))
	for _, e := range file {
		out = append(out, e.WithDefaults())
	}
	for _, e := range flags {
		out = append(out, e.WithDefaults())
	}
	if err := (Config{Endpoints: out}).validateEndpoints(); err != nil {
		return nil, err
	}
	return out, nil
}

// Validate checks the whole configuration: at least one source, unique ids, each source as by
// SourceConfig.Validate, and each endpoint as by EndpointConfig.Validate with unique names
// (defaults applied). It does no I/O. It does not require an endpoint: New does.
func (c Config) Validate() error {
	if len(c.Sources) == 0 {
		return errors.New("no source configured: give --from and --id, or a config file with sources")
	}
	return errors.Join(c.validateSources(), c.validateEndpoints())
}

func (c Config) validateEndpoints() error {
	seen := map[string]int{}
	var errs []error
	for i, e := range c.Endpoints {
		e = e.WithDefaults()
		if err := e.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %d: %w", i+1, err))
			continue
		}
		if j, ok := seen[e.Name]; ok {
			errs = append(errs, fmt.Errorf("endpoint %d (%s): name %q is already used by endpoint %d (two URLs on one host need names)", i+1, redactRawURL(e.URL), e.Name, j+1))
			continue
		}
		seen[e.Name] = i
	}
	return errors.Join(errs...)
}

func (c Config) validateSources() error {
	seen := map[string]int{}
	var errs []error
	for i, s := range c.Sources {
		if err := s.Validate(); err != nil {
			if s.ID == "" {
				err = fmt.Errorf("sources[%d]: %w", i, err)
			}
			errs = append(errs, err)
			continue
		}
		if j, ok := seen[s.ID]; ok {
			errs = append(errs, fmt.Errorf("sources[%d]: id %q is already used by sources[%d]", i, s.ID, j))
			continue
		}
		seen[s.ID] = i
	}
	return errors.Join(errs...)
}

// WithDefaults returns s with every zero field set to its default.
func (s SourceConfig) WithDefaults() SourceConfig {
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = time.Duration(float64(s.Interval) * timeoutFraction)
	}
	if s.LimitBytes == 0 {
		s.LimitBytes = DefaultLimitBytes
	}
	if s.WorkerNumber == 0 {
		s.WorkerNumber = 1
	}
	if s.Elide == nil {
		s.Elide = DefaultElideLabels()
	}
	if s.AllowlistKey == "" {
		s.AllowlistKey = DefaultAllowlistKey
	}
	if s.EvaluateInterval == 0 {
		s.EvaluateInterval = min(DefaultEvaluateInterval, s.Interval)
	}
	return s
}

// Validate checks the source with its defaults applied. It reads no file: the match file, the
// allowlist and the salt file are checked when the source is built. Errors start with the id.
func (s SourceConfig) Validate() error {
	if err := s.WithDefaults().validate(); err != nil {
		if s.ID != "" {
			return fmt.Errorf("source %q: %w", s.ID, err)
		}
		return err
	}
	return nil
}

func (s SourceConfig) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.ID == "" {
		add("id is empty")
	} else if err := wal.ValidateID(s.ID); err != nil {
		add("id: %w", err)
	}
	if _, err := federateURL(s.From); err != nil {
		add("from: %w", err)
	}
	if s.FromQuery != "" {
		if _, err := queryURL(s.FromQuery, ""); err != nil {
			add("from_query: %w", err)
		}
	}
	for _, m := range s.Matchers {
		if err := ValidateMatcher(m); err != nil {
			errs = append(errs, err)
		}
	}
	for k, v := range s.Labels {
		if !model.LegacyValidation.IsValidLabelName(k) {
			add("label %q: invalid label name", k)
		}
		if v == "" {
			add("label %q: empty value", k)
		}
	}
	for k, v := range s.Renames {
		if !model.LegacyValidation.IsValidMetricName(k) || !model.LegacyValidation.IsValidMetricName(v) {
			add("rename %q=%q: invalid metric name", k, v)
		}
	}
	for _, l := range s.Elide {
		if !model.LegacyValidation.IsValidLabelName(l) {
			add("elide %q: invalid label name", l)
		}
	}
	for _, l := range s.Anonymize {
		if !model.LegacyValidation.IsValidLabelName(l) {
			add("anonymize %q: invalid label name", l)
		}
	}
	if s.AnonymizeSalt != "" && s.AnonymizeSaltFile != "" {
		add("anonymize_salt and anonymize_salt_file are exclusive")
	}
	if len(s.Anonymize) > 0 && s.AnonymizeSalt == "" && s.AnonymizeSaltFile == "" {
		add("anonymize needs anonymize_salt or anonymize_salt_file")
	}
	if s.Interval < minInterval {
		add("interval %s is shorter than %s", s.Interval, minInterval)
	}
	if s.EvaluateInterval < minInterval {
		add("evaluate_interval %s is shorter than %s", s.EvaluateInterval, minInterval)
	}
	seenCR := map[string]bool{}
	for _, r := range s.CollectRules {
		r = r.normalized()
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		} else if seenCR[r.Name] {
			add("collect rule %q is defined twice", r.Name)
		}
		seenCR[r.Name] = true
	}
	if s.Timeout < 0 || s.Timeout > s.Interval {
		add("timeout %s is not between 0 and the interval %s", s.Timeout, s.Interval)
	}
	if s.LimitBytes < 0 {
		add("limit_bytes %d is negative", s.LimitBytes)
	}
	if s.Compression != "" && s.Compression != CompressionGzip && s.Compression != CompressionNone {
		add("compression %q: want %s or %s", s.Compression, CompressionGzip, CompressionNone)
	}
	if s.WorkerNumber < 0 {
		add("worker_number %d is negative", s.WorkerNumber)
	}
	hc := s.HTTPClientConfig // ValidateAuth fills defaults in: check a copy
	if err := shipper.ValidateAuth(&hc, nil, nil); err != nil {
		add("http config: %w", err)
	} else if hc.BasicAuth != nil || hc.Authorization != nil || hc.OAuth2 != nil {
		// The URL's basic auth would win over the configured authorization on every request:
		// say so instead of silently ignoring one of the two.
		for _, u := range []struct{ key, raw string }{{"from", s.From}, {"from_query", s.FromQuery}} {
			if pu, err := url.Parse(u.raw); err == nil && pu.User != nil {
				add("%s: url %s has userinfo (basic auth) and another authorization is set: give one of them", u.key, redactURL(pu))
			}
		}
	}
	if err := ingest.ValidateRelabelConfigs("relabel_configs", s.RelabelConfigs); err != nil {
		errs = append(errs, err)
	}
	if err := ingest.ValidateRelabelConfigs("metric_relabel_configs", s.MetricRelabelConfigs); err != nil {
		errs = append(errs, err)
	}
	names := map[string]bool{}
	for i, r := range s.RecordingRules {
		if err := r.Validate(); err != nil {
			add("recording_rules[%d]: %w", i, err)
			continue
		}
		if names[r.Name] {
			add("recording_rules[%d]: name %q is used twice", i, r.Name)
		}
		names[r.Name] = true
	}
	return errors.Join(errs...)
}

// ReadMatchFile reads a match file: one selector a line; blank lines and lines whose first
// non-blank character is # are ignored. Every selector is validated; errors name the line.
func ReadMatchFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read match file %s: %w", path, err)
	}
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := ValidateMatcher(line); err != nil {
			return nil, fmt.Errorf("match file %s line %d: %w", path, i+1, err)
		}
		out = append(out, line)
	}
	return out, nil
}

// ValidateMatcher checks a match[] selector as Prometheus parses it, and that it does not select
// everything (at least one matcher must not match the empty string, as PromQL requires). Every
// selector of a source, a match file, an allowlist or a collect rule passes it.
func ValidateMatcher(m string) error {
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(m)
	if err != nil {
		return fmt.Errorf("matcher %q: %w", m, err)
	}
	for _, lm := range ms {
		if !lm.Matches("") {
			return nil
		}
	}
	return fmt.Errorf("matcher %q: needs at least one matcher that does not match the empty string", m)
}

// federateURL applies the seed's --from rule: a trailing / is trimmed and an empty path becomes
// /federate. The scheme must be http or https, and the host present.
func federateURL(from string) (*url.URL, error) {
	u, err := parseHTTPURL(from)
	if err != nil {
		return nil, err
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if u.Path == "" {
		u.Path = "/federate"
	}
	u.RawPath = ""
	return u, nil
}

// queryURL returns the query API URL: fromQuery with an empty path made /api/v1/query, or, when
// fromQuery is empty, the federate URL with its /federate suffix (or empty path) replaced.
func queryURL(fromQuery, from string) (*url.URL, error) {
	if fromQuery == "" {
		u, err := federateURL(from)
		if err != nil {
			return nil, err
		}
		u.Path = strings.TrimSuffix(u.Path, "/federate") + "/api/v1/query"
		u.RawQuery = ""
		return u, nil
	}
	u, err := parseHTTPURL(fromQuery)
	if err != nil {
		return nil, err
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if u.Path == "" {
		u.Path = "/api/v1/query"
	}
	u.RawPath = ""
	return u, nil
}

func parseHTTPURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("url is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error holds the whole string, which may carry a password: say less.
		return nil, errors.New("url does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %s: scheme must be http or https", redactURL(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url %s: no host", redactURL(u))
	}
	return u, nil
}
