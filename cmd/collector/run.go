package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/agent/ingest"
	"github.com/collector-dev/collector/shipper"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/config"
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

// withDefault sets the text --help shows as the default of f.
func withDefault(f *cli.StringSliceFlag, text string) *cli.StringSliceFlag {
	f.DefaultText = text
	return f
}

// sliceFlag is a repeatable flag. CSV ones are parsed as CSV records as the seed's were
// (--label a=b,c=d, --label "a=b"; see csvValues); the others (matchers, rules) never split.
func sliceFlag(name, cat, usage string) *cli.StringSliceFlag {
	return &cli.StringSliceFlag{Name: name, Category: cat, Usage: usage, EnvVars: env(name)}
}

func runFlags() []cli.Flag {
	d := agent.DefaultOptions()
	qo := d.Queue
	wo := d.WAL
	flags := append(logFlags(),
		&cli.StringFlag{Name: "config", Category: catGeneral, Usage: "YAML file with sources, endpoints and flag values; see docs/configuration.md", EnvVars: env("config"), TakesFile: true},
		&cli.StringFlag{Name: "listen", Category: catGeneral, Value: "localhost:9002", Usage: "address of /metrics, /healthz, /readyz and /-/reload (empty: none)", EnvVars: env("listen")},
		&cli.BoolFlag{Name: "enable-pprof", Category: catGeneral, Usage: "serve /debug/pprof on --listen", EnvVars: env("enable-pprof")},
		&cli.BoolFlag{Name: "web.enable-lifecycle", Category: catGeneral, Usage: "allow POST/PUT /-/reload on --listen (403 without it, as Prometheus); SIGHUP always reloads", EnvVars: env("web.enable-lifecycle")},

		&cli.StringFlag{Name: "id", Category: catSource, Usage: "cluster ID: names the WAL and is set as label clusterID unless --label sets it; required unless --config lists the sources", DefaultText: "none", EnvVars: env("id")},
		&cli.StringFlag{Name: "from", Category: catSource, Value: defaultFrom, Usage: "Prometheus to federate; an empty path becomes /federate", EnvVars: seedEnv("from", "FROM")},
		&cli.StringFlag{Name: "from-query", Category: catSource, Usage: "query API for recording rules", DefaultText: "<from>/api/v1/query", EnvVars: seedEnv("from-query", "FROM_QUERY")},
		withDefault(sliceFlag("match", catSource, "match[] selector, repeatable"), agent.DefaultMatcher),
		&cli.StringFlag{Name: "match-file", Category: catSource, Usage: "file of selectors, one a line (# comments)", EnvVars: env("match-file"), TakesFile: true},
		sliceFlag("allowlist", catSource, "RHACM allowlist ConfigMap (or the document of its key) to take names, matches, renames and recording rules from, repeatable: the first is the default list, the others custom lists merged into it in order (- entries remove)"),
		&cli.StringFlag{Name: "allowlist-key", Category: catSource, Value: agent.DefaultAllowlistKey, Usage: "ConfigMap key read from --allowlist files (" + agent.UWLAllowlistKey + " for the user-workload Prometheus)", EnvVars: env("allowlist-key")},
		sliceFlag("uwl-allowlist", catSource, "user-workload allowlist "+agent.UWLAllowlistSpec+": the "+agent.UWLAllowlistKey+" of a ConfigMap in an application namespace, merged after --allowlist with namespace=NAMESPACE added to each entry (default: the ConfigMap's namespace), repeatable"),
		&cli.DurationFlag{Name: "interval", Category: catSource, Value: agent.DefaultInterval, Usage: "scrape period", EnvVars: env("interval")},
		&cli.DurationFlag{Name: "scrape-timeout", Category: catSource, Usage: "timeout of one federate request", DefaultText: "90% of --interval", EnvVars: env("scrape-timeout")},
		&cli.Int64Flag{Name: "limit-bytes", Category: catSource, Value: agent.DefaultLimitBytes, Usage: "maximum decompressed federate body; a larger scrape is rejected whole", EnvVars: env("limit-bytes")},
		&cli.IntFlag{Name: "sample-limit", Category: catGeneral, Value: ingest.DefaultIngestOptions().SampleLimit, Usage: "maximum samples in one scrape; a larger scrape is rejected whole (it is buffered until its commit)", EnvVars: env("sample-limit")},
		&cli.IntFlag{Name: "worker-number", Category: catSource, Value: 1, Usage: "parallel federate requests the matchers are spread over", EnvVars: env("worker-number")},
		&cli.StringFlag{Name: "from-token", Category: catSource, Usage: "bearer token for the source", EnvVars: env("from-token")},
		&cli.StringFlag{Name: "from-token-file", Category: catSource, Usage: "file holding the source's bearer token, re-read when it changes", EnvVars: env("from-token-file"), TakesFile: true},
		&cli.StringFlag{Name: "from-ca-file", Category: catSource, Usage: "CA verifying the source's certificate", EnvVars: env("from-ca-file"), TakesFile: true},
		&cli.StringFlag{Name: "from-cert-file", Aliases: []string{"tls-cert-file"}, Category: catSource, Usage: "client certificate for mTLS to the source", EnvVars: env("from-cert-file"), TakesFile: true},
		&cli.StringFlag{Name: "from-key-file", Aliases: []string{"tls-private-key-file"}, Category: catSource, Usage: "client key for mTLS to the source", EnvVars: env("from-key-file"), TakesFile: true},
		&cli.BoolFlag{Name: "from-insecure-skip-verify", Category: catSource, Usage: "do not verify the source's certificate", EnvVars: env("from-insecure-skip-verify")},
		sliceFlag("recordingrule", catSource, `recording rule {"name":"...","query":"..."}, repeatable`),
		sliceFlag("collectrule", catSource, `collect rule {"name":"...","expr":"...","for":"2m","names":[...],"matches":[...]}, repeatable`),
		&cli.DurationFlag{Name: "evaluate-interval", Category: catSource, Usage: "collect-rule evaluation period (and period of their federation while they fire)", DefaultText: "30s, or --interval when shorter", EnvVars: env("evaluate-interval")},

		sliceFlag("label", catTransf, "k=v set on every series, repeatable or comma-separated"),
		sliceFlag("rename", catTransf, "OLD=NEW metric rename, repeatable or comma-separated"),
		withDefault(sliceFlag("elide-label", catTransf, "label dropped from every series, repeatable"), strings.Join(agent.DefaultElideLabels(), ", ")),
		sliceFlag("anonymize-labels", catTransf, "labels whose values are hashed, repeatable or comma-separated"),
		&cli.StringFlag{Name: "anonymize-salt", Category: catTransf, Usage: "salt of --anonymize-labels", EnvVars: env("anonymize-salt")},
		&cli.StringFlag{Name: "anonymize-salt-file", Category: catTransf, Usage: "file holding the salt", EnvVars: env("anonymize-salt-file"), TakesFile: true},

		withDefault(seedEnvSlice(sliceFlag("to-upload", catUpload, "remote-write URL, repeatable: each gets its own queue and position (named after its host)"), "TO"), "none"),
		&cli.StringFlag{Name: "to-upload-ca", Category: catUpload, Usage: "CA verifying the hub's certificate", EnvVars: env("to-upload-ca"), TakesFile: true},
		&cli.StringFlag{Name: "to-upload-cert", Category: catUpload, Usage: "client certificate for mTLS to the hub", EnvVars: env("to-upload-cert"), TakesFile: true},
		&cli.StringFlag{Name: "to-upload-key", Category: catUpload, Usage: "client key for mTLS to the hub", EnvVars: env("to-upload-key"), TakesFile: true},
		&cli.BoolFlag{Name: "to-upload-insecure-skip-verify", Category: catUpload, Usage: "do not verify the hub's certificate", EnvVars: env("to-upload-insecure-skip-verify")},
		&cli.StringFlag{Name: "to-upload-token-file", Category: catUpload, Usage: "bearer token file for the hub, re-read when it changes", EnvVars: env("to-upload-token-file"), TakesFile: true},
		&cli.StringFlag{Name: "to-upload-tenant", Category: catUpload, Usage: "tenant sent in the THANOS-TENANT header", EnvVars: env("to-upload-tenant")},
		&cli.DurationFlag{Name: "to-upload-timeout", Category: catUpload, Value: 30 * time.Second, Usage: "timeout of one remote-write request", EnvVars: env("to-upload-timeout")},
		&cli.StringFlag{Name: "to-upload-retry-on-status", Category: catUpload, Value: shipper.DefaultRetryOnStatus, Usage: "HTTP statuses retried until they succeed (codes and the class 5xx, comma-separated); any other 4xx or 5xx drops its request's samples, counted. 400, 409 and 413 cannot be listed", EnvVars: env("to-upload-retry-on-status")},

		&cli.StringFlag{Name: "to-upload-protocol", Category: catUpload, Value: string(shipper.ProtocolV1), Usage: "remote-write version sent: v1, v2, or auto (2.0 until the endpoint answers 415 or a 2xx without written counts, then 1.0 for the rest of the process)", EnvVars: env("to-upload-protocol")},

		&cli.StringFlag{Name: "to", Category: catUpload, Usage: "telemeter-client's Telemeter server: refused, the /authorize + /upload protocol is not supported (use --to-upload)", EnvVars: env("to")},
		&cli.StringFlag{Name: "to-auth", Category: catUpload, Usage: "telemeter-client's /authorize URL: refused, as --to", EnvVars: env("to-auth")},
		&cli.StringFlag{Name: "to-token", Category: catUpload, Usage: "telemeter-client's /authorize token: refused (use --to-upload-token-file)", EnvVars: env("to-token")},
		&cli.StringFlag{Name: "to-token-file", Category: catUpload, Usage: "telemeter-client's /authorize token file: refused (use --to-upload-token-file)", EnvVars: env("to-token-file"), TakesFile: true},

		&cli.StringFlag{Name: "wal-dir", Category: catWAL, Value: defaultWAL, Usage: "directory of the WALs, one subdirectory per cluster ID (the PVC)", EnvVars: env("wal-dir")},
		&cli.StringFlag{Name: "wal-compression", Category: catWAL, Value: string(wo.Compression), Usage: "none, snappy or zstd", EnvVars: env("wal-compression")},
		&cli.StringFlag{Name: "wal-fsync", Category: catWAL, Value: string(wo.Fsync), Usage: "scrape (fsync every append), interval or segment", EnvVars: env("wal-fsync")},
		&cli.IntFlag{Name: "wal-segment-size", Category: catWAL, Value: wo.SegmentSize, Usage: "segment size in bytes (multiple of 32768)", EnvVars: env("wal-segment-size")},
		&cli.Int64Flag{Name: "wal-max-size", Category: catWAL, Usage: "bytes per WAL above which the oldest segments are evicted even if undelivered (0: no cap)", EnvVars: env("wal-max-size")},
		&cli.Int64Flag{Name: "wal-reserve", Category: catWAL, Value: wo.ReserveBytes, Usage: "free bytes a scrape must leave on the WAL's file system, room for positions and the checkpoint that truncation needs to free space (0: no check)", EnvVars: env("wal-reserve")},
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
		&cli.DurationFlag{Name: "flush-deadline", Category: catQueue, Value: qo.FlushDeadline, Usage: "how long shutdown keeps sending before it stops; it stops at once when the endpoint fails (the rest stays in the WAL)", EnvVars: env("flush-deadline")},
	)
	return showDefaults(flags)
}

// showDefaults makes --help show a default for every flag: "none" where there is none.
func showDefaults(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			if f.Value == "" && f.DefaultText == "" {
				f.DefaultText = "none"
			}
		case *cli.StringSliceFlag:
			if f.DefaultText == "" {
				f.DefaultText = "none"
			}
		}
	}
	return flags
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "federate, append to the WAL and ship it (the agent)",
		Description: "Every flag is also read from the environment (COLLECTOR_<FLAG>, e.g. COLLECTOR_WAL_DIR) and from\n" +
			"the flags: section of the --config file. Precedence: command line, then environment, then the\n" +
			"config file, then the default. The flags describe one source (--id, --from, ...) and\n" +
			"the --to-upload endpoints; the config file may list more sources and endpoints (see\n" +
			"docs/configuration.md).\n" +
			"SIGTERM/SIGINT stop scraping, flush while requests succeed (at most --flush-deadline), commit\n" +
			"the positions and exit 0 (1 when a position could not be committed; see docs/operations.md);\n" +
			"a second signal stops at once. SIGHUP or POST /-/reload re-reads the config file and the files\n" +
			"the sources name (match files, allowlists, tokens, certificates) without touching the WAL.",
		Flags:  runFlags(),
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("unexpected argument %q", c.Args().First())
	}
	// Signals are taken over before anything is read: the start-up (config file, WAL open and
	// repair, rule parsing) runs in its own goroutine, and a SIGTERM or SIGINT during it ends the
	// process at once. Abandoning it is safe: the WAL survives a kill at any point, and the next
	// start repairs what this one was doing.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	type startResult struct {
		st  *started
		err error
	}
	startc := make(chan startResult, 1)
	go func() {
		st, err := startUp(c)
		startc <- startResult{st, err}
	}()
	var st *started
	for st == nil {
		select {
		case r := <-startc:
			if r.err != nil {
				return r.err
			}
			st = r.st
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				continue // nothing runs yet: the start-up reads the current files anyway
			}
			return exitError{code: 0, msg: fmt.Sprintf("%v during the start-up: stopped before running (the next start resumes; the WAL is crash-safe)", sig)}
		}
	}
	a, logger, opts, reload := st.agent, st.logger, st.opts, st.opts.Reload

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopping := false
	for {
		select {
		case err := <-done:
			return err
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				if err := reload(); err != nil {
					logger.WithError(err).Error("reload refused; the running configuration is kept")
				} else {
					logger.Info("configuration reloaded")
				}
			case !stopping:
				stopping = true
				logger.WithFields(logrus.Fields{"signal": sig.String(), "flush_deadline": opts.Queue.FlushDeadline.String()}).
					Info("draining: scraping stopped, flushing while requests succeed until the flush deadline; a second signal stops at once")
				cancel()
			default:
				logger.Warn("second signal: cancelling requests in flight; what they held stays in the WAL")
				a.Abort()
			}
		}
	}
}

// started is what startUp built.
type started struct {
	agent  *agent.Agent
	logger *logrus.Logger
	opts   agent.Options
}

// startUp resolves the configuration and builds the agent (opening the WALs); it binds the HTTP
// listener before touching the disk.
func startUp(c *cli.Context) (*started, error) {
	cfg, s, err := buildConfig(c)
	if err != nil {
		return nil, err
	}
	logger, err := newLogger(c.App.ErrWriter, s)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings { // logged once, at start-up
		logger.WithField("config", c.String("config")).Warn(w)
	}
	opts, err := buildOptions(s)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Gatherer = reg

	var a *agent.Agent
	opts.Reload = func() error {
		cfg, ns, err := buildConfig(c)
		if err != nil {
			return err
		}
		if err := a.Reload(cfg); err != nil {
			return err
		}
		if changed := restartOnly(s, ns); len(changed) > 0 {
			logger.WithField("flags", strings.Join(changed, ",")).Warn("reload: these flags changed but need a restart; their running values are kept")
		}
		if err := setLogLevel(logger, ns); err != nil {
			logger.WithError(err).Warn("reload: log settings not changed")
		}
		return nil
	}
	if a, err = agent.New(logger, reg, cfg, opts); err != nil {
		return nil, err
	}
	logger.WithFields(logrus.Fields{
		"version": version, "sources": len(cfg.Sources), "endpoints": len(cfg.Endpoints), "wal_dir": opts.WALDir,
		"from_config_file": strings.Join(s.fileFlagNames(), ","),
	}).Info("collector starting")
	logger.WithFields(logrus.Fields{
		"interval": s.value("interval"), "batch_send_deadline": opts.Queue.BatchSendDeadline.String(),
		"flush_deadline": opts.Queue.FlushDeadline.String(), "max_shards": opts.Queue.MaxShards,
		"wal_segment_size": opts.WAL.SegmentSize, "wal_fsync": string(opts.WAL.Fsync),
	}).Debug("settings")
	return &started{agent: a, logger: logger, opts: opts}, nil
}

// restartOnly returns the flags outside the sources' and endpoints' settings whose value differs
// between two resolutions: they take effect only at a restart.
func restartOnly(old, cur settings) []string {
	var out []string
	for _, f := range runFlags() {
		cf, ok := f.(cli.CategorizableFlag)
		if !ok {
			continue
		}
		switch cf.GetCategory() {
		case catSource, catTransf, catUpload, "":
			continue // sources reload; endpoints are checked by the agent; log flags reload
		}
		n := f.Names()[0]
		if old.value(n) != cur.value(n) {
			out = append(out, "--"+n)
		}
	}
	return out
}

// fileFlagNames returns the flags taken from the config file, sorted.
func (s settings) fileFlagNames() []string {
	out := make([]string, 0, len(s.fromFile))
	for n := range s.fromFile {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

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
		if err := (agent.SourceConfig{ID: "x", From: "http://x", Matchers: []string{m}}).Validate(); err != nil {
			return s, usagef("--match %q: %v", m, errors.Unwrap(err))
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
// Two URLs on one host get distinct names (host, host-2, ...).
func endpointsFromFlags(c flagGetter, flag string) ([]agent.EndpointConfig, error) {
	if (c.String("to-upload-cert") == "") != (c.String("to-upload-key") == "") {
		return nil, usagef("--to-upload-cert and --to-upload-key go together")
	}
	if _, err := shipper.ParseStatusSet(c.String("to-upload-retry-on-status")); err != nil {
		return nil, usagef("--to-upload-retry-on-status: %v", err)
	}
	var eps []agent.EndpointConfig
	seen := map[string]int{}
	for _, u := range c.StringSlice(flag) {
		e := agent.EndpointConfig{
			URL:              u,
			HTTPClientConfig: uploadHTTPConfig(c),
			Tenant:           c.String("to-upload-tenant"),
			Timeout:          c.Duration("to-upload-timeout"),
			RetryOnStatus:    c.String("to-upload-retry-on-status"),
			Protocol:         c.String("to-upload-protocol"),
		}.WithDefaults()
		base := e.Name
		if n := seen[base]; n > 0 {
			e.Name = fmt.Sprintf("%s-%d", base, n+1)
		}
		seen[base]++
		if err := e.Validate(); err != nil {
			return nil, usagef("--%s: %v", flag, err)
		}
		eps = append(eps, e)
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
