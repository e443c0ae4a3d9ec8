package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/shipper"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/sirupsen/logrus"
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

type replayPlan struct {
	id       string
	dir      string
	start    wal.Position
	minT     int64
	maxT     int64
	consumer string
	// resumed is the replay's own state when it resumes: the baseline of its counters.
	resumed wal.ConsumerState
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

	var client *shipper.Client
	if !c.Bool("dry-run") {
		client, err = shipper.New(logger.WithField("endpoint", eps[0].Name), prometheus.NewRegistry(), eps[0].URL, eps[0].ShipperOptions(version))
		if err != nil {
			return err
		}
		defer client.Close()
	}
	var dropped int64
	var missing int
	for _, ref := range refs {
		id, dir := ref.id, ref.dir
		plan := replayPlan{id: id, dir: dir, minT: minT, maxT: maxT, consumer: name}
		if !c.Bool("resume") {
			if plan.start, err = replayStart(c, dir); err != nil {
				return err
			}
		} else if st, err := wal.ReadPosition(dir, name); err == nil {
			plan.start = st.Position
			plan.resumed = st
		} else {
			logger.WithError(err).WithField("cluster_id", id).Warn("no usable replay position to resume from; starting at the oldest retained data")
		}
		if !c.Bool("dry-run") {
			// Register: the position file is the replay's lease on the WAL; a running agent does
			// not truncate what it has not read (see agent.ReplayLeaseTTL). A fresh replay's
			// counters start at zero.
			st := plan.resumed
			st.Position, st.Updated = plan.start, time.Now()
			if err := wal.CommitPosition(dir, name, st); err != nil {
				return fmt.Errorf("cluster %s: register replay: %w", id, err)
			}
		}
		total, err := countRange(ctx, plan)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", id, err)
		}
		if c.Bool("dry-run") {
			fmt.Fprintf(c.App.Writer, "cluster %s: would send %d samples from position %v%s\n", id, total, plan.start, rangeText(minT, maxT))
			continue
		}
		n, m, err := replayOne(ctx, c, logger, client, plan, total, sigs)
		dropped += n
		missing += m
		if err != nil {
			return err
		}
	}
	switch {
	case missing > 0 && dropped > 0:
		return exitError{code: 1, msg: fmt.Sprintf("replay dropped %d samples and skipped %d missing segments (see the summary above)", dropped, missing)}
	case missing > 0:
		return exitError{code: 1, msg: fmt.Sprintf("replay skipped %d missing segments: deleted before it could read them, their samples were not sent (see the summary above)", missing)}
	case dropped > 0:
		return exitError{code: 1, msg: fmt.Sprintf("replay dropped %d samples (see the summary above)", dropped)}
	}
	return nil
}

// replayStart is where a fresh replay starts: the oldest retained data (--all), or a consumer's
// position (--undelivered).
func replayStart(c *cli.Context, dir string) (wal.Position, error) {
	if !c.Bool("undelivered") {
		return wal.Position{}, nil
	}
	consumer := c.String("consumer")
	if consumer == "" {
		names, err := wal.Consumers(dir)
		if err != nil {
			return wal.Position{}, err
		}
		var agents []string
		for _, n := range names {
			if !strings.HasPrefix(n, "replay") {
				agents = append(agents, n)
			}
		}
		if len(agents) != 1 {
			return wal.Position{}, usagef("--undelivered: name the endpoint with --consumer (positions found: %s)", strings.Join(agents, ", "))
		}
		consumer = agents[0]
	}
	st, err := wal.ReadPosition(dir, consumer)
	if err != nil {
		return wal.Position{}, fmt.Errorf("--undelivered: %w", err)
	}
	return st.Position, nil
}

// countRange counts the samples a replay of plan would send.
func countRange(ctx context.Context, plan replayPlan) (int64, error) {
	r, err := wal.NewReader(plan.dir, plan.start, wal.ReaderOptions{})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var n int64
	for {
		b, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		var ce *wal.CorruptionError
		if errors.As(err, &ce) {
			if err := r.SkipSegment(); err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
		n += inRange(b.Samples, plan.minT, plan.maxT)
	}
}

func inRange(samples []record.RefSample, minT, maxT int64) int64 {
	if minT == 0 && maxT == 0 {
		return int64(len(samples))
	}
	var n int64
	for _, s := range samples {
		if (minT == 0 || s.T >= minT) && (maxT == 0 || s.T <= maxT) {
			n++
		}
	}
	return n
}

// replayOne ships one cluster's WAL and returns the samples dropped and the segments found
// missing (deleted before the replay read them).
func replayOne(ctx context.Context, c *cli.Context, logger *logrus.Logger, client *shipper.Client, plan replayPlan, total int64, sigs <-chan os.Signal) (int64, int, error) {
	log := logger.WithFields(logrus.Fields{"cluster_id": plan.id, "consumer": plan.consumer})
	opts := queue.DefaultOptions()
	opts.Consumer = plan.consumer
	opts.StopAtEnd = true
	opts.MinTime, opts.MaxTime = plan.minT, plan.maxT
	opts.FlushDeadline = c.Duration("flush-deadline")
	opts.MaxShards = c.Int("max-shards")
	opts.MaxSamplesPerSend = c.Int("max-samples-per-send")
	opts.Capacity = max(opts.Capacity, 2*opts.MaxSamplesPerSend)
	opts.KeepAlive = agent.ReplayKeepAlive // renews the lease while the endpoint is down
	q, err := queue.New(log, prometheus.NewRegistry(), queue.DirSource(plan.dir), client, opts)
	if err != nil {
		return 0, 0, err
	}
	// The queue's counters are cumulative over the runs of one replay (they live in its position
	// file); this run's are the difference.
	start := queue.Stats{Delivered: plan.resumed.Delivered, Dropped: plan.resumed.Dropped}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- q.Run(runCtx) }()
	p := newProgress(c.App.ErrWriter, log, total)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	interrupted := false
	for {
		select {
		case err := <-done:
			st := q.Stats()
			sent := st.Delivered - start.Delivered
			p.finish(sent)
			var dropped int64
			drops := map[string]int64{}
			for r, n := range st.Dropped {
				if d := n - start.Dropped[r]; d > 0 {
					drops[r] = d
					dropped += d
				}
			}
			fmt.Fprintf(c.App.Writer, "cluster %s: sent %d samples, dropped %d (%s), skipped outside the range %d, missing segments %d%s\n",
				plan.id, sent, dropped, reasons(drops), st.Filtered, st.MissingSegments, rangeText(plan.minT, plan.maxT))
			if st.MissingSegments > 0 {
				log.WithField("segments", st.MissingSegments).Error("wal segments were deleted before the replay read them (evicted by a cap, or truncated after the replay's lease expired): their samples were not sent")
			}
			if interrupted {
				return dropped, st.MissingSegments, exitError{code: 1, msg: fmt.Sprintf("replay interrupted at %v; continue with --resume", st.Position)}
			}
			if err == nil {
				// Done: release the lease; nothing is left to resume.
				err = wal.RemovePosition(plan.dir, plan.consumer)
			}
			return dropped, st.MissingSegments, err
		case <-tick.C:
			p.update(q.Stats().Delivered - start.Delivered)
		case <-sigs:
			if !interrupted {
				interrupted = true
				log.Warn("interrupted: flushing what is in flight, then stopping; continue with --resume")
				stop()
			} else {
				q.Abort()
			}
		}
	}
}

func rangeText(minT, maxT int64) string {
	if minT == 0 && maxT == 0 {
		return ""
	}
	f := func(t int64) string {
		if t == 0 {
			return "-"
		}
		return time.UnixMilli(t).UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf(" (range %s .. %s)", f(minT), f(maxT))
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
