package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/queue/replay"
	"github.com/collector-dev/collector/shipper"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"
)

func replayCommand() *cli.Command {
	flags := append(logFlags(),
		&cli.StringFlag{Name: "wal-dir", Value: defaultWAL, Usage: "directory of the WALs (or of one cluster's WAL)", EnvVars: env("wal-dir")},
		&cli.StringFlag{Name: "id", Usage: "only this cluster ID", DefaultText: "every WAL in --wal-dir", EnvVars: env("id")},
		&cli.StringFlag{Name: "since", Usage: "only samples at or after this time: RFC 3339, or a duration before now (6h)", DefaultText: "no limit", EnvVars: env("replay-since")},
		&cli.StringFlag{Name: "until", Usage: "only samples at or before this time: RFC 3339, or a duration before now", DefaultText: "no limit", EnvVars: env("replay-until")},
		&cli.BoolFlag{Name: "all", Usage: "everything retained (the default)", EnvVars: env("replay-all")},
		&cli.BoolFlag{Name: "undelivered", Usage: "only what --consumer has not delivered yet", EnvVars: env("replay-undelivered")},
		&cli.StringFlag{Name: "consumer", Usage: "the agent endpoint whose position --undelivered starts from", DefaultText: "the only one", EnvVars: env("replay-consumer")},
		&cli.BoolFlag{Name: "resume", Usage: "continue an interrupted replay from its own position (give the same range flags)", EnvVars: env("replay-resume")},
		&cli.BoolFlag{Name: "dry-run", Usage: "count what would be sent, send nothing", EnvVars: env("replay-dry-run")},
		&cli.StringFlag{Name: "name", Usage: "name of the replay's own position file; starts with " + agent.ReplayPrefix, DefaultText: agent.ReplayPrefix + "<endpoint>", EnvVars: env("replay-name")},
		&cli.DurationFlag{Name: "flush-deadline", Value: 30 * time.Second, Usage: "how long an interrupted replay keeps sending before it stops", EnvVars: env("replay-flush-deadline")},
		&cli.IntFlag{Name: "max-shards", Value: queue.DefaultOptions().MaxShards, Usage: "maximum concurrent requests", EnvVars: env("replay-max-shards")},
		&cli.IntFlag{Name: "max-samples-per-send", Value: queue.DefaultOptions().MaxSamplesPerSend, Usage: "samples per remote-write request", EnvVars: env("replay-max-samples-per-send")},
	)
	for _, f := range runFlags() {
		if n := f.Names()[0]; strings.HasPrefix(n, "to-upload") {
			if n == "to-upload" {
				f = withDefault(sliceFlag("to-upload", catUpload, "remote-write URL to replay to (exactly one, unless --dry-run)"), "none")
			}
			flags = append(flags, f)
		}
	}
	return &cli.Command{
		Name:  "replay",
		Usage: "ship WAL contents to an endpoint (after an outage, or to another hub) without disturbing a running agent",
		Description: "The replay reads the WAL files without the agent's lock and keeps its own position\n" +
			"(positions/replay-<endpoint>.json): a crashed replay continues with --resume, and no agent\n" +
			"position moves. The position file registers the replay: the agent does not truncate what the\n" +
			"replay has not read while the file is less than 10m old (renewed every minute, removed at the\n" +
			"end). It exits 1 when anything was dropped, segments it was to read were missing (deleted\n" +
			"before it got there) or it was interrupted. Flags are also read\n" +
			"from the environment: the agent's names for the shared ones (COLLECTOR_WAL_DIR, COLLECTOR_ID,\n" +
			"COLLECTOR_TO_UPLOAD...), COLLECTOR_REPLAY_<FLAG> for the replay's own.",
		Flags:  showDefaults(flags),
		Action: replayAction,
	}
}

func replayAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("unexpected argument %q", c.Args().First())
	}
	logger, err := newLogger(c.App.ErrWriter, c)
	if err != nil {
		return err
	}
	if c.Bool("resume") && c.Bool("undelivered") {
		return usagef("--resume and --undelivered are exclusive: --resume continues from the replay's own position")
	}
	for _, n := range []string{"max-shards", "max-samples-per-send"} {
		if c.Int(n) <= 0 {
			return usagef("--%s %d: want a positive number", n, c.Int(n))
		}
	}
	if c.Duration("flush-deadline") < 0 {
		return usagef("--flush-deadline %v: want 0 or more", c.Duration("flush-deadline"))
	}
	if c.Bool("all") && c.Bool("undelivered") {
		return usagef("--all and --undelivered are exclusive")
	}
	now := time.Now()
	minT, err := parseTimeFlag(c, "since", now)
	if err != nil {
		return err
	}
	maxT, err := parseTimeFlag(c, "until", now)
	if err != nil {
		return err
	}
	if minT != 0 && maxT != 0 && maxT < minT {
		return usagef("--until is before --since")
	}
	eps, err := endpointsFromFlags(c, "to-upload")
	if err != nil {
		return err
	}
	if len(eps) == 0 && !c.Bool("dry-run") {
		return usagef("--to-upload is required")
	}
	if len(eps) > 1 {
		return usagef("--to-upload: give exactly one endpoint")
	}
	name := c.String("name")
	if name == "" && len(eps) == 1 {
		name = agent.ReplayPrefix + eps[0].Name
	}
	if name == "" {
		name = agent.ReplayPrefix + "dry-run"
	}
	if err := wal.ValidateID(name); err != nil {
		return usagef("--name: %v", err)
	}
	if !strings.HasPrefix(name, agent.ReplayPrefix) {
		// An agent's endpoint never has such a name: a replay cannot move an agent's position.
		return usagef("--name %q: must start with %q", name, agent.ReplayPrefix)
	}
	refs, err := resolveWALs(c.String("wal-dir"), c.String("id"))
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	var sender queue.Sender // nil for a dry run
	if !c.Bool("dry-run") {
		client, err := shipper.New(logger.WithField("endpoint", eps[0].Name), prometheus.NewRegistry(), eps[0].URL, eps[0].ShipperOptions(version))
		if err != nil {
			return err
		}
		defer client.Close()
		sender = client
	}
	opts := replay.DefaultOptions()
	opts.Name, opts.Prefix = name, agent.ReplayPrefix
	opts.MinTime, opts.MaxTime = minT, maxT
	opts.Undelivered, opts.Endpoint = c.Bool("undelivered"), c.String("consumer")
	opts.Resume = c.Bool("resume")
	opts.DryRun = c.Bool("dry-run")
	opts.FlushDeadline = c.Duration("flush-deadline")
	opts.MaxShards = c.Int("max-shards")
	opts.MaxSamplesPerSend = c.Int("max-samples-per-send")
	opts.KeepAlive = agent.ReplayKeepAlive
	opts.Out, opts.Progress = c.App.Writer, c.App.ErrWriter
	rp, err := replay.New(logger, sender, opts)
	if err != nil {
		return err
	}
	targets := make([]replay.Target, 0, len(refs))
	for _, ref := range refs {
		targets = append(targets, replay.Target{ID: ref.id, Dir: ref.dir})
	}
	err = rp.Run(ctx, targets, sigs)
	if ce := (*replay.ConsumerError)(nil); errors.As(err, &ce) {
		return usageError{err}
	}
	return err
}

// parseTimeFlag reads an RFC 3339 time or a duration before now; 0 when unset.
func parseTimeFlag(c *cli.Context, name string, now time.Time) (int64, error) {
	v := c.String(name)
	if v == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UnixMilli(), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d).UnixMilli(), nil
	}
	return 0, usagef("--%s %q: want an RFC 3339 time or a duration like 6h", name, v)
}
