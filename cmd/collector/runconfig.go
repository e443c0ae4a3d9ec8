package main

import (
	"fmt"
	"time"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/agent/ingest"
	"github.com/collector-dev/collector/shipper"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/util/compression"
	"github.com/urfave/cli/v2"
)

// buildConfig reads the --config file and resolves the flags against it: the file's sources and
// endpoints, plus the source the flags describe (when --id is set anywhere) and the --to-upload
// endpoints. Files named by flags (match file, allowlist, salt, tokens) are read by the agent.
// Every error is a usage error (exit 2).
func buildConfig(c *cli.Context) (agent.Config, settings, error) {
	var file agent.Config
	path := c.String("config")
	if path != "" {
		var err error
		if file, err = agent.LoadConfig(path); err != nil {
			return agent.Config{}, settings{}, usagef("--config: %w", err)
		}
	}
	s, err := newSettings(c, file.Flags)
	if err != nil {
		if path != "" {
			err = usagef("--config %s: %w", path, err)
		}
		return agent.Config{}, s, err
	}
	if err := refuseTelemeterFlags(s); err != nil {
		return agent.Config{}, s, err
	}
	var flagSrc *agent.SourceConfig
	id, err := flagClusterID(s)
	if err != nil {
		return agent.Config{}, s, err
	}
	if id != "" {
		src, err := sourceFromFlags(s, id)
		if err != nil {
			return agent.Config{}, s, err
		}
		flagSrc = &src
	} else if path == "" || len(file.Sources) == 0 {
		return agent.Config{}, s, usagef("--id is required (or --label clusterID=<id>, or --config with sources)")
	}
	cfg, err := agent.MergeFlagSource(file, flagSrc)
	if err != nil {
		return agent.Config{}, s, usageError{err}
	}
	flagEps, err := endpointsFromFlags(s, "to-upload")
	if err != nil {
		return agent.Config{}, s, err
	}
	if cfg.Endpoints, err = agent.MergeFlagEndpoints(file.Endpoints, flagEps); err != nil {
		return agent.Config{}, s, usagef("--to-upload and the config file's remote_write: %w", err)
	}
	if len(cfg.Endpoints) == 0 {
		return agent.Config{}, s, usagef("--to-upload is required (or --config with remote_write)")
	}
	cfg.Flags = nil
	return cfg, s, nil
}

// sourceFromFlags is the source the flags describe, for cluster id (flagClusterID).
func sourceFromFlags(c flagGetter, id string) (agent.SourceConfig, error) {
	anonymize, err := csvValues("anonymize-labels", c.StringSlice("anonymize-labels"))
	if err != nil {
		return agent.SourceConfig{}, err
	}
	s := agent.SourceConfig{
		ID:                id,
		From:              c.String("from"),
		FromQuery:         c.String("from-query"),
		Matchers:          c.StringSlice("match"),
		MatchFile:         c.String("match-file"),
		AllowlistKey:      c.String("allowlist-key"),
		UWLAllowlists:     c.StringSlice("uwl-allowlist"),
		Interval:          c.Duration("interval"),
		Timeout:           c.Duration("scrape-timeout"),
		LimitBytes:        c.Int64("limit-bytes"),
		Compression:       c.String("from-compression"),
		WorkerNumber:      c.Int("worker-number"),
		AnonymizeSalt:     agent.Secret(c.String("anonymize-salt")),
		AnonymizeSaltFile: c.String("anonymize-salt-file"),
		Anonymize:         anonymize,
		HTTPClientConfig:  sourceHTTPConfig(c),
	}
	if al := c.StringSlice("allowlist"); len(al) > 0 {
		s.Allowlist = al[0]
		if len(al) > 1 {
			s.CustomAllowlists = al[1:]
		}
	}
	if s.Interval < time.Second {
		return s, usagef("--interval %v: want at least 1s", s.Interval)
	}
	if s.Timeout < 0 || s.Timeout > s.Interval {
		return s, usagef("--scrape-timeout %v: want between 0 (90%% of --interval) and --interval", s.Timeout)
	}
	if s.LimitBytes <= 0 {
		return s, usagef("--limit-bytes %d: want a positive number", s.LimitBytes)
	}
	if s.Compression != agent.CompressionGzip && s.Compression != agent.CompressionNone {
		return s, usagef("--from-compression %q: want %s or %s", s.Compression, agent.CompressionGzip, agent.CompressionNone)
	}
	if s.WorkerNumber <= 0 {
		return s, usagef("--worker-number %d: want a positive number", s.WorkerNumber)
	}
	if c.String("from-token") != "" && c.String("from-token-file") != "" {
		// The seed ignored --from-token then; say so instead of guessing.
		return s, usagef("--from-token and --from-token-file are exclusive")
	}
	if (c.String("from-cert-file") == "") != (c.String("from-key-file") == "") {
		return s, usagef("--from-cert-file and --from-key-file go together")
	}
	if len(s.Anonymize) > 0 && s.AnonymizeSalt == "" && s.AnonymizeSaltFile == "" {
		return s, usagef("--anonymize-labels needs --anonymize-salt or --anonymize-salt-file")
	}
	if s.AnonymizeSalt != "" && s.AnonymizeSaltFile != "" {
		return s, usagef("--anonymize-salt and --anonymize-salt-file are exclusive")
	}
	if c.IsSet("elide-label") {
		if s.Elide, err = csvValues("elide-label", c.StringSlice("elide-label")); err != nil {
			return s, err
		}
		if s.Elide == nil {
			s.Elide = []string{}
		}
	}
	kvs, err := csvValues("label", c.StringSlice("label"))
	if err != nil {
		return s, err
	}
	for _, kv := range kvs {
		lp, err := ingest.ParseLabelPair(kv)
		if err != nil {
			return s, usagef("--label %q: %v", kv, err)
		}
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[lp.Name] = lp.Value
	}
	renames, err := csvValues("rename", c.StringSlice("rename"))
	if err != nil {
		return s, err
	}
	for _, r := range renames {
		old, nw, err := ingest.ParseRename(r)
		if err != nil {
			return s, usagef("--rename %q: %v", r, err)
		}
		if s.Renames == nil {
			s.Renames = map[string]string{}
		}
		s.Renames[old] = nw
	}
	for _, r := range c.StringSlice("recordingrule") {
		rule, err := agent.ParseRecordingRule(r)
		if err != nil {
			return s, usagef("--recordingrule: %v", err)
		}
		s.RecordingRules = append(s.RecordingRules, rule)
	}
	for _, r := range c.StringSlice("collectrule") {
		rule, err := agent.ParseCollectRule(r)
		if err != nil {
			return s, usagef("--collectrule: %v", err)
		}
		s.CollectRules = append(s.CollectRules, rule)
	}
	if s.EvaluateInterval = c.Duration("evaluate-interval"); c.IsSet("evaluate-interval") && s.EvaluateInterval < time.Second {
		return s, usagef("--evaluate-interval %v: want at least 1s", s.EvaluateInterval)
	}
	for _, m := range s.Matchers {
		if err := agent.ValidateMatcher(m); err != nil {
			return s, usagef("--match %q: %v", m, err)
		}
	}
	return s, nil
}

func buildOptions(c flagGetter) (agent.Options, error) {
	o := agent.DefaultOptions()
	o.Version = version
	o.Listen = c.String("listen")
	if err := validateListen(o.Listen); err != nil {
		return o, usagef("--listen %q: %v", o.Listen, err)
	}
	o.EnablePprof = c.Bool("enable-pprof")
	o.EnableLifecycle = c.Bool("web.enable-lifecycle")
	o.WALDir = c.String("wal-dir")
	o.TruncateInterval = c.Duration("wal-truncate-interval")
	if o.Source.Ingest.SampleLimit = c.Int("sample-limit"); o.Source.Ingest.SampleLimit <= 0 {
		return o, usagef("--sample-limit %d: want a positive number", o.Source.Ingest.SampleLimit)
	}
	if o.WALDir == "" {
		return o, usagef("--wal-dir: want a directory")
	}

	o.WAL.Compression = compression.Type(c.String("wal-compression"))
	o.WAL.Fsync = wal.FsyncPolicy(c.String("wal-fsync"))
	o.WAL.SegmentSize = c.Int("wal-segment-size")
	o.WAL.MaxSize = c.Int64("wal-max-size")
	o.WAL.MaxAge = c.Duration("wal-max-age")
	o.WAL.ReserveBytes = c.Int64("wal-reserve")
	o.WAL.Retention = c.Duration("wal-retention")
	switch o.WAL.Compression {
	case compression.None, compression.Snappy, compression.Zstd:
	default:
		return o, usagef("--wal-compression %q: want none, snappy or zstd", o.WAL.Compression)
	}
	switch o.WAL.Fsync {
	case wal.FsyncScrape, wal.FsyncInterval, wal.FsyncSegment:
	default:
		return o, usagef("--wal-fsync %q: want scrape, interval or segment", o.WAL.Fsync)
	}
	if o.WAL.SegmentSize <= 0 || o.WAL.SegmentSize%(32<<10) != 0 {
		return o, usagef("--wal-segment-size %d: want a positive multiple of 32768", o.WAL.SegmentSize)
	}
	for _, chk := range []struct {
		name string
		bad  bool
		want string
	}{
		{"wal-max-size", o.WAL.MaxSize < 0, "0 (no cap) or more"},
		{"wal-reserve", o.WAL.ReserveBytes < 0, "0 (no check) or more"},
		{"wal-max-age", o.WAL.MaxAge < 0, "0 (no cap) or more"},
		{"wal-retention", o.WAL.Retention < 0, "0 or more"},
		{"wal-truncate-interval", o.TruncateInterval <= 0, "a positive duration"},
	} {
		if chk.bad {
			return o, usagef("--%s %s: want %s", chk.name, c.String(chk.name), chk.want)
		}
	}

	o.Queue.MaxSamplesPerSend = c.Int("max-samples-per-send")
	o.Queue.BatchSendDeadline = c.Duration("batch-send-deadline")
	o.Queue.MinShards = c.Int("min-shards")
	o.Queue.MaxShards = c.Int("max-shards")
	o.Queue.MinBackoff = c.Duration("min-backoff")
	o.Queue.MaxBackoff = c.Duration("max-backoff")
	o.Queue.SampleAgeLimit = c.Duration("sample-age-limit")
	o.Queue.FlushDeadline = c.Duration("flush-deadline")
	bo, err := backfillRunOptions(c)
	if err != nil {
		return o, err
	}
	o.Backfill = bo
	if o.Queue.Capacity < o.Queue.MaxSamplesPerSend {
		o.Queue.Capacity = 2 * o.Queue.MaxSamplesPerSend // two requests' worth, as the default
	}
	for _, chk := range []struct {
		name string
		bad  bool
		want string
	}{
		{"max-samples-per-send", o.Queue.MaxSamplesPerSend <= 0, "a positive number"},
		{"batch-send-deadline", o.Queue.BatchSendDeadline <= 0, "a positive duration"},
		{"min-shards", o.Queue.MinShards <= 0, "a positive number"},
		{"max-shards", o.Queue.MaxShards < o.Queue.MinShards, "at least --min-shards"},
		{"min-backoff", o.Queue.MinBackoff <= 0, "a positive duration"},
		{"max-backoff", o.Queue.MaxBackoff < o.Queue.MinBackoff, "at least --min-backoff"},
		{"sample-age-limit", o.Queue.SampleAgeLimit < 0, "0 (never drop) or more"},
		{"flush-deadline", o.Queue.FlushDeadline < 0, "0 or more"},
	} {
		if chk.bad {
			return o, usagef("--%s %v: want %s", chk.name, flagText(c, chk.name), chk.want)
		}
	}
	return o, nil
}

// flagText is the value of a numeric or duration flag as given.
func flagText(c flagGetter, name string) string {
	switch name {
	case "max-samples-per-send", "min-shards", "max-shards":
		return fmt.Sprint(c.Int(name))
	}
	return c.Duration(name).String()
}

// endpointsFromFlags builds an endpoint per --to-upload URL with the shared TLS and auth flags.
// Two URLs on one host get distinct names (agent.DefaultNames: host, host-2, ...).
func endpointsFromFlags(c flagGetter, flag string) ([]agent.EndpointConfig, error) {
	if (c.String("to-upload-cert") == "") != (c.String("to-upload-key") == "") {
		return nil, usagef("--to-upload-cert and --to-upload-key go together")
	}
	if _, err := shipper.ParseStatusSet(c.String("to-upload-retry-on-status")); err != nil {
		return nil, usagef("--to-upload-retry-on-status: %v", err)
	}
	var eps []agent.EndpointConfig
	for _, u := range c.StringSlice(flag) {
		eps = append(eps, agent.EndpointConfig{
			URL:              u,
			HTTPClientConfig: uploadHTTPConfig(c),
			Tenant:           c.String("to-upload-tenant"),
			Timeout:          c.Duration("to-upload-timeout"),
			RetryOnStatus:    c.String("to-upload-retry-on-status"),
			Protocol:         c.String("to-upload-protocol"),
		})
	}
	eps = agent.DefaultNames(eps)
	for _, e := range eps {
		if err := e.Validate(); err != nil {
			return nil, usagef("--%s: %v", flag, err)
		}
	}
	if c.Duration("to-upload-timeout") <= 0 {
		return nil, usagef("--to-upload-timeout %v: want a positive duration", c.Duration("to-upload-timeout"))
	}
	return eps, nil
}

// sourceHTTPConfig maps the --from-* connection flags onto Prometheus' http_config: a literal
// --from-token becomes authorization.credentials (a config.Secret, redacted when printed),
// --from-token-file authorization.credentials_file (re-read at every request). No proxy and no
// redirects, as the seed (the source is in-cluster).
func sourceHTTPConfig(c flagGetter) config.HTTPClientConfig {
	hc := config.HTTPClientConfig{
		TLSConfig: config.TLSConfig{
			CAFile:             c.String("from-ca-file"),
			CertFile:           c.String("from-cert-file"),
			KeyFile:            c.String("from-key-file"),
			InsecureSkipVerify: c.Bool("from-insecure-skip-verify"),
		},
	}
	if tok, file := c.String("from-token"), c.String("from-token-file"); tok != "" || file != "" {
		hc.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(tok), CredentialsFile: file}
	}
	return hc
}

// uploadHTTPConfig maps the --to-upload-* connection flags onto Prometheus' http_config of every
// --to-upload endpoint. The proxy comes from the environment (HTTPS_PROXY, NO_PROXY), as the
// seeds' default transport did; HTTP/1.1 as Prometheus' remote_write.
func uploadHTTPConfig(c flagGetter) config.HTTPClientConfig {
	hc := config.HTTPClientConfig{
		TLSConfig: config.TLSConfig{
			CAFile:             c.String("to-upload-ca"),
			CertFile:           c.String("to-upload-cert"),
			KeyFile:            c.String("to-upload-key"),
			InsecureSkipVerify: c.Bool("to-upload-insecure-skip-verify"),
		},
		ProxyConfig: config.ProxyConfig{ProxyFromEnvironment: true},
	}
	if file := c.String("to-upload-token-file"); file != "" {
		hc.Authorization = &config.Authorization{Type: "Bearer", CredentialsFile: file}
	}
	return hc
}
