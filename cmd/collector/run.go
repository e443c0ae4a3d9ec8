package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/prometheus/util/compression"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

const (
	catSource   = "Source (federate)"
	catTransf   = "Transforms"
	catUpload   = "Remote write (hub)"
	catWAL      = "WAL"
	catQueue    = "Queue"
	catGeneral  = "General"
	defaultWAL  = "data/wal"
	defaultFrom = "http://localhost:9090"
)

// sliceFlag is a repeatable flag. CSV ones split each value on commas as the seed's did
// (--label a=b,c=d); the others (matchers, rules) never split.
func sliceFlag(name, cat, usage string) *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: name, Category: cat, Usage: usage, EnvVars: env(name)}
}

func runFlags() []cli.Flag {
	d := agent.DefaultOptions()
	qo := d.Queue
	wo := d.WAL
	return append(logFlags(),
		&cli.StringFlag{Name: "config", Category: catGeneral, Usage: "YAML file with sources (and endpoints); see docs/configuration.md", EnvVars: env("config"), TakesFile: true},
		&cli.StringFlag{Name: "listen", Category: catGeneral, Value: "localhost:9002", Usage: "address of /metrics, /healthz, /readyz and /-/reload (empty: none)", EnvVars: env("listen")},
		&cli.BoolFlag{Name: "enable-pprof", Category: catGeneral, Usage: "serve /debug/pprof on --listen", EnvVars: env("enable-pprof")},

		&cli.StringFlag{Name: "id", Category: catSource, Usage: "cluster ID: names the WAL and is set as label clusterID unless --label sets it; required unless --config lists the sources", EnvVars: env("id")},
		&cli.StringFlag{Name: "from", Category: catSource, Value: defaultFrom, Usage: "Prometheus to federate; an empty path becomes /federate", EnvVars: env("from")},
		&cli.StringFlag{Name: "from-query", Category: catSource, Usage: "query API for recording rules (default <from>/api/v1/query)", EnvVars: env("from-query")},
		sliceFlag("match", catSource, `match[] selector, repeatable (default {__name__="up"})`),
		&cli.StringFlag{Name: "match-file", Category: catSource, Usage: "file of selectors, one a line (# comments)", EnvVars: env("match-file"), TakesFile: true},
		&cli.StringFlag{Name: "allowlist", Category: catSource, Usage: "RHACM observability-metrics-allowlist ConfigMap (or its metrics_list.yaml) to take names, matches, renames and recording rules from", EnvVars: env("allowlist"), TakesFile: true},
		&cli.DurationFlag{Name: "interval", Category: catSource, Value: agent.DefaultInterval, Usage: "scrape period", EnvVars: env("interval")},
		&cli.DurationFlag{Name: "scrape-timeout", Category: catSource, Usage: "timeout of one federate request (default 90% of --interval)", EnvVars: env("scrape-timeout")},
		&cli.Int64Flag{Name: "limit-bytes", Category: catSource, Value: agent.DefaultLimitBytes, Usage: "maximum decompressed federate body; a larger scrape is rejected whole", EnvVars: env("limit-bytes")},
		&cli.IntFlag{Name: "worker-number", Category: catSource, Value: 1, Usage: "parallel federate requests the matchers are spread over", EnvVars: env("worker-number")},
		&cli.StringFlag{Name: "from-token", Category: catSource, Usage: "bearer token for the source", EnvVars: env("from-token")},
		&cli.StringFlag{Name: "from-token-file", Category: catSource, Usage: "file holding the source's bearer token, re-read when it changes", EnvVars: env("from-token-file"), TakesFile: true},
		&cli.StringFlag{Name: "from-ca-file", Category: catSource, Usage: "CA verifying the source's certificate", EnvVars: env("from-ca-file"), TakesFile: true},
		&cli.StringFlag{Name: "from-cert-file", Aliases: []string{"tls-cert-file"}, Category: catSource, Usage: "client certificate for mTLS to the source", EnvVars: env("from-cert-file"), TakesFile: true},
		&cli.StringFlag{Name: "from-key-file", Aliases: []string{"tls-private-key-file"}, Category: catSource, Usage: "client key for mTLS to the source", EnvVars: env("from-key-file"), TakesFile: true},
		&cli.BoolFlag{Name: "from-insecure-skip-verify", Category: catSource, Usage: "do not verify the source's certificate", EnvVars: env("from-insecure-skip-verify")},
		sliceFlag("recordingrule", catSource, `recording rule {"name":"...","query":"..."}, repeatable`),

		sliceFlag("label", catTransf, "k=v set on every series, repeatable or comma-separated"),
		sliceFlag("rename", catTransf, "OLD=NEW metric rename, repeatable or comma-separated"),
		sliceFlag("elide-label", catTransf, "label dropped from every series, repeatable (default prometheus, prometheus_replica, managed_cluster)"),
		sliceFlag("anonymize-labels", catTransf, "labels whose values are hashed, repeatable or comma-separated"),
		&cli.StringFlag{Name: "anonymize-salt", Category: catTransf, Usage: "salt of --anonymize-labels", EnvVars: env("anonymize-salt")},
		&cli.StringFlag{Name: "anonymize-salt-file", Category: catTransf, Usage: "file holding the salt", EnvVars: env("anonymize-salt-file"), TakesFile: true},

		sliceFlag("to-upload", catUpload, "remote-write URL, repeatable: each gets its own queue and position"),
		&cli.StringFlag{Name: "to-upload-ca", Category: catUpload, Usage: "CA verifying the hub's certificate", EnvVars: env("to-upload-ca"), TakesFile: true},
		&cli.StringFlag{Name: "to-upload-cert", Category: catUpload, Usage: "client certificate for mTLS to the hub", EnvVars: env("to-upload-cert"), TakesFile: true},
		&cli.StringFlag{Name: "to-upload-key", Category: catUpload, Usage: "client key for mTLS to the hub", EnvVars: env("to-upload-key"), TakesFile: true},
		&cli.BoolFlag{Name: "to-upload-insecure-skip-verify", Category: catUpload, Usage: "do not verify the hub's certificate", EnvVars: env("to-upload-insecure-skip-verify")},
		&cli.StringFlag{Name: "to-upload-token-file", Category: catUpload, Usage: "bearer token file for the hub, re-read when it changes", EnvVars: env("to-upload-token-file"), TakesFile: true},
		&cli.StringFlag{Name: "to-upload-tenant", Category: catUpload, Usage: "tenant sent in the THANOS-TENANT header", EnvVars: env("to-upload-tenant")},
		&cli.DurationFlag{Name: "to-upload-timeout", Category: catUpload, Value: 30 * time.Second, Usage: "timeout of one remote-write request", EnvVars: env("to-upload-timeout")},

		&cli.StringFlag{Name: "wal-dir", Category: catWAL, Value: defaultWAL, Usage: "directory of the WALs, one subdirectory per cluster ID (the PVC)", EnvVars: env("wal-dir")},
		&cli.StringFlag{Name: "wal-compression", Category: catWAL, Value: string(wo.Compression), Usage: "none, snappy or zstd", EnvVars: env("wal-compression")},
		&cli.StringFlag{Name: "wal-fsync", Category: catWAL, Value: string(wo.Fsync), Usage: "scrape (fsync every append), interval or segment", EnvVars: env("wal-fsync")},
		&cli.IntFlag{Name: "wal-segment-size", Category: catWAL, Value: wo.SegmentSize, Usage: "segment size in bytes (multiple of 32768)", EnvVars: env("wal-segment-size")},
		&cli.Int64Flag{Name: "wal-max-size", Category: catWAL, Usage: "bytes per WAL above which the oldest segments are evicted even if undelivered (0: no cap)", EnvVars: env("wal-max-size")},
		&cli.DurationFlag{Name: "wal-max-age", Category: catWAL, Usage: "age above which segments are evicted even if undelivered (0: no cap)", EnvVars: env("wal-max-age")},
		&cli.DurationFlag{Name: "wal-retention", Category: catWAL, Usage: "keep delivered segments this long for replay", EnvVars: env("wal-retention")},
		&cli.DurationFlag{Name: "wal-truncate-interval", Category: catWAL, Value: d.TruncateInterval, Usage: "how often WALs are truncated and caps applied", EnvVars: env("wal-truncate-interval")},

		&cli.IntFlag{Name: "max-samples-per-send", Category: catQueue, Value: qo.MaxSamplesPerSend, Usage: "samples per remote-write request", EnvVars: env("max-samples-per-send")},
		&cli.DurationFlag{Name: "batch-send-deadline", Category: catQueue, Value: qo.BatchSendDeadline, Usage: "longest wait for a batch to fill", EnvVars: env("batch-send-deadline")},
		&cli.IntFlag{Name: "min-shards", Category: catQueue, Value: qo.MinShards, Usage: "minimum concurrent requests per endpoint and cluster", EnvVars: env("min-shards")},
		&cli.IntFlag{Name: "max-shards", Category: catQueue, Value: qo.MaxShards, Usage: "maximum concurrent requests per endpoint and cluster", EnvVars: env("max-shards")},
		&cli.DurationFlag{Name: "min-backoff", Category: catQueue, Value: qo.MinBackoff, Usage: "first retry delay", EnvVars: env("min-backoff")},
		&cli.DurationFlag{Name: "max-backoff", Category: catQueue, Value: qo.MaxBackoff, Usage: "longest retry delay (Retry-After may ask for more)", EnvVars: env("max-backoff")},
		&cli.DurationFlag{Name: "sample-age-limit", Category: catQueue, Usage: "drop (and count) samples older than this at send time; 0 never drops", EnvVars: env("sample-age-limit")},
		&cli.DurationFlag{Name: "flush-deadline", Category: catQueue, Value: qo.FlushDeadline, Usage: "how long shutdown keeps sending before it stops (the rest stays in the WAL)", EnvVars: env("flush-deadline")},
	)
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "federate, append to the WAL and ship it (the agent)",
		Description: "Precedence of settings: command-line flag, then environment variable (COLLECTOR_<FLAG>),\n" +
			"then the --config file, then the default. Flags describe one source (--id, --from, ...); the\n" +
			"--config file may list more. SIGTERM/SIGINT drain and exit; SIGHUP or POST /-/reload reloads.",
		Flags:  runFlags(),
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("unexpected argument %q", c.Args().First())
	}
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	cfg, err := buildConfig(c)
	if err != nil {
		return err
	}
	opts, err := buildOptions(c)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Gatherer = reg

	var a *agent.Agent
	reload := func() error {
		cfg, err := buildConfig(c)
		if err != nil {
			return err
		}
		return a.Reload(cfg)
	}
	opts.Reload = reload
	a, err = agent.New(logger, reg, cfg, opts)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	logger.WithFields(logrus.Fields{"version": version, "sources": len(cfg.Sources), "endpoints": len(opts.Endpoints), "wal_dir": opts.WALDir}).Info("collector running")
	stopping := false
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			return nil
		case s := <-sigs:
			switch {
			case s == syscall.SIGHUP:
				if err := reload(); err != nil {
					logger.WithError(err).Error("reload refused; the running configuration is kept")
				} else {
					logger.Info("configuration reloaded")
				}
			case !stopping:
				stopping = true
				logger.WithField("signal", s.String()).Info("draining: scraping stopped, flushing until --flush-deadline; a second signal stops at once")
				cancel()
			default:
				logger.Warn("second signal: cancelling requests in flight; what they held stays in the WAL")
				a.Abort()
			}
		}
	}
}

// buildConfig assembles the sources: the --config file's, then the one the flags describe (when
// --id is set). Files named by flags (match file, allowlist, salt) are read by the agent.
func buildConfig(c *cli.Context) (agent.Config, error) {
	var file agent.Config
	if path := c.String("config"); path != "" {
		var err error
		if file, err = agent.LoadConfig(path); err != nil {
			return agent.Config{}, fmt.Errorf("--config %s: %w", path, err)
		}
	}
	var flagSrc *agent.SourceConfig
	if c.IsSet("id") || c.String("config") == "" {
		if c.String("id") == "" {
			return agent.Config{}, usagef("--id is required (or --config with sources)")
		}
		s, err := sourceFromFlags(c)
		if err != nil {
			return agent.Config{}, err
		}
		flagSrc = &s
	}
	cfg, err := agent.MergeFlagSource(file, flagSrc)
	if err != nil {
		return agent.Config{}, usageError{err}
	}
	return cfg, nil
}

func sourceFromFlags(c *cli.Context) (agent.SourceConfig, error) {
	s := agent.SourceConfig{
		ID:                c.String("id"),
		From:              c.String("from"),
		FromQuery:         c.String("from-query"),
		Matchers:          c.StringSlice("match"),
		MatchFile:         c.String("match-file"),
		Allowlist:         c.String("allowlist"),
		Interval:          c.Duration("interval"),
		Timeout:           c.Duration("scrape-timeout"),
		LimitBytes:        c.Int64("limit-bytes"),
		WorkerNumber:      c.Int("worker-number"),
		AnonymizeSalt:     agent.Secret(c.String("anonymize-salt")),
		AnonymizeSaltFile: c.String("anonymize-salt-file"),
		Anonymize:         csv(c.StringSlice("anonymize-labels")),
		Auth: agent.AuthConfig{
			Token:              agent.Secret(c.String("from-token")),
			TokenFile:          c.String("from-token-file"),
			CAFile:             c.String("from-ca-file"),
			CertFile:           c.String("from-cert-file"),
			KeyFile:            c.String("from-key-file"),
			InsecureSkipVerify: c.Bool("from-insecure-skip-verify"),
		},
	}
	if s.Interval <= 0 {
		return s, usagef("--interval %v must be positive", s.Interval)
	}
	if s.LimitBytes <= 0 {
		return s, usagef("--limit-bytes %d must be positive", s.LimitBytes)
	}
	if s.WorkerNumber <= 0 {
		return s, usagef("--worker-number %d must be positive", s.WorkerNumber)
	}
	if s.Auth.Token != "" && s.Auth.TokenFile != "" {
		// The seed ignored --from-token then; say so instead of guessing.
		return s, usagef("--from-token and --from-token-file are exclusive")
	}
	if c.IsSet("elide-label") {
		s.Elide = c.StringSlice("elide-label")
	}
	for _, kv := range csv(c.StringSlice("label")) {
		lp, err := agent.ParseLabelPair(kv)
		if err != nil {
			return s, usagef("--label %q: %v", kv, err)
		}
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[lp.Name] = lp.Value
	}
	for _, r := range csv(c.StringSlice("rename")) {
		old, nw, err := agent.ParseRename(r)
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
			return s, usagef("--recordingrule %q: %v", r, err)
		}
		s.RecordingRules = append(s.RecordingRules, rule)
	}
	return s, nil
}

// csv splits every value on commas, dropping empty parts.
func csv(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func buildOptions(c *cli.Context) (agent.Options, error) {
	o := agent.DefaultOptions()
	o.Version = version
	o.Listen = c.String("listen")
	o.EnablePprof = c.Bool("enable-pprof")
	o.WALDir = c.String("wal-dir")
	o.TruncateInterval = c.Duration("wal-truncate-interval")

	o.WAL.Compression = compression.Type(c.String("wal-compression"))
	o.WAL.Fsync = wal.FsyncPolicy(c.String("wal-fsync"))
	o.WAL.SegmentSize = c.Int("wal-segment-size")
	o.WAL.MaxSize = c.Int64("wal-max-size")
	o.WAL.MaxAge = c.Duration("wal-max-age")
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
	if o.WAL.MaxSize < 0 || o.WAL.MaxAge < 0 || o.WAL.Retention < 0 {
		return o, usagef("--wal-max-size, --wal-max-age and --wal-retention must not be negative")
	}
	if o.TruncateInterval <= 0 {
		return o, usagef("--wal-truncate-interval %v must be positive", o.TruncateInterval)
	}

	o.Queue.MaxSamplesPerSend = c.Int("max-samples-per-send")
	o.Queue.BatchSendDeadline = c.Duration("batch-send-deadline")
	o.Queue.MinShards = c.Int("min-shards")
	o.Queue.MaxShards = c.Int("max-shards")
	o.Queue.MinBackoff = c.Duration("min-backoff")
	o.Queue.MaxBackoff = c.Duration("max-backoff")
	o.Queue.SampleAgeLimit = c.Duration("sample-age-limit")
	o.Queue.FlushDeadline = c.Duration("flush-deadline")
	for name, bad := range map[string]bool{
		"max-samples-per-send": o.Queue.MaxSamplesPerSend <= 0,
		"batch-send-deadline":  o.Queue.BatchSendDeadline <= 0,
		"min-shards":           o.Queue.MinShards <= 0,
		"max-shards":           o.Queue.MaxShards < o.Queue.MinShards,
		"min-backoff":          o.Queue.MinBackoff <= 0,
		"max-backoff":          o.Queue.MaxBackoff < o.Queue.MinBackoff,
		"sample-age-limit":     o.Queue.SampleAgeLimit < 0,
		"flush-deadline":       o.Queue.FlushDeadline < 0,
	} {
		if bad {
			return o, usagef("--%s: out of range (see collector run --help)", name)
		}
	}

	eps, err := endpointsFromFlags(c, "to-upload")
	if err != nil {
		return o, err
	}
	if len(eps) == 0 {
		return o, usagef("--to-upload is required")
	}
	o.Endpoints = eps
	return o, nil
}

// endpointsFromFlags builds an endpoint per --to-upload URL with the shared TLS and auth flags.
func endpointsFromFlags(c *cli.Context, flag string) ([]agent.EndpointConfig, error) {
	var eps []agent.EndpointConfig
	seen := map[string]int{}
	for _, u := range c.StringSlice(flag) {
		e := agent.EndpointConfig{
			URL:                u,
			CAFile:             c.String("to-upload-ca"),
			CertFile:           c.String("to-upload-cert"),
			KeyFile:            c.String("to-upload-key"),
			InsecureSkipVerify: c.Bool("to-upload-insecure-skip-verify"),
			BearerTokenFile:    c.String("to-upload-token-file"),
			Tenant:             c.String("to-upload-tenant"),
			Timeout:            c.Duration("to-upload-timeout"),
		}.WithDefaults()
		// Two URLs on one host get distinct names.
		if n := seen[e.Name]; n > 0 {
			e.Name = fmt.Sprintf("%s-%d", e.Name, n+1)
		}
		seen[e.Name]++
		if err := e.Validate(); err != nil {
			return nil, usagef("--%s: %v", flag, err)
		}
		eps = append(eps, e)
	}
	if len(eps) > 0 && (c.String("to-upload-cert") == "") != (c.String("to-upload-key") == "") {
		return nil, usagef("--to-upload-cert and --to-upload-key go together")
	}
	return eps, nil
}
