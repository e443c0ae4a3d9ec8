package main

import (
	"strings"
	"time"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/agent/ingest"
	"github.com/collector-dev/collector/shipper"
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
		&cli.StringFlag{Name: "from-compression", Category: catSource, Value: agent.CompressionNone, Usage: "what federate requests accept: none (Accept-Encoding: identity) or gzip. At 200k series gzip costs the source Prometheus about 0.8 CPU-s per scrape and the collector 0.3 to 0.4 CPU-s per million samples to inflate, and saves nine tenths of the bytes (4.7 instead of 50 MB per scrape): gzip only for a source across a slow or metered link (docs/configuration.md)", EnvVars: env("from-compression")},
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
	flags = append(flags, backfillRunFlags()...)
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
