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
	"text/tabwriter"
	"time"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/queue/backfill"
	"github.com/collector-dev/collector/queue/replay"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

const catBackfill = "Backfill (samples refused as too old)"

// backfillRunFlags are the flags of `run` that make the agent backfill on its own.
func backfillRunFlags() []cli.Flag {
	d := backfill.DefaultOptions()
	return []cli.Flag{
		&cli.StringFlag{Name: "backfill.objstore-config-file", Category: catBackfill, Usage: "objstore YAML of the hub's bucket (Thanos' --objstore.config-file format); when set, samples the receiver refused as too old are uploaded as blocks every --backfill.interval", DefaultText: "none", EnvVars: env("backfill.objstore-config-file"), TakesFile: true},
		sliceFlag("backfill.label", catBackfill, "external label k=v of the backfilled blocks (the receiver's, e.g. its tenant label tenant_id=...), repeatable or comma-separated"),
		&cli.StringFlag{Name: "backfill.replica-label", Category: catBackfill, Value: d.ReplicaLabel, Usage: "external label set to a value unique to each block (keeps it out of other blocks' compaction groups); make it a --query.replica-label of Thanos query (empty: none)", EnvVars: env("backfill.replica-label")},
		&cli.DurationFlag{Name: "backfill.interval", Category: catBackfill, Value: agent.DefaultBackfillInterval, Usage: "how often deferred samples are backfilled", EnvVars: env("backfill.interval")},
		&cli.DurationFlag{Name: "backfill.block-duration", Category: catBackfill, Value: d.BlockDuration, Usage: "time range of one block, aligned", EnvVars: env("backfill.block-duration")},
	}
}

// backfillOptions reads the backfill flags (with prefix "backfill." for run, "" for the command).
func backfillOptions(c flagGetter, prefix string) (backfill.Options, error) {
	o := backfill.DefaultOptions()
	o.ReplicaLabel = c.String(prefix + "replica-label")
	o.BlockDuration = c.Duration(prefix + "block-duration")
	if o.BlockDuration <= 0 {
		return o, usagef("--%sblock-duration %v: want a positive duration", prefix, o.BlockDuration)
	}
	b := labels.NewBuilder(labels.EmptyLabels())
	for _, v := range c.StringSlice(prefix + "label") {
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" || !model.LabelName(k).IsValid() {
				return o, usagef("--%slabel %q: want name=value", prefix, kv)
			}
			b.Set(k, strings.Trim(val, `"`))
		}
	}
	o.ExternalLabels = b.Labels()
	if o.ReplicaLabel != "" && o.ExternalLabels.Has(o.ReplicaLabel) {
		return o, usagef("--%slabel sets %q, the replica label: each block gets its own value", prefix, o.ReplicaLabel)
	}
	return o, nil
}

// openBucket reads an objstore configuration file and opens the bucket.
func openBucket(path string) (backfill.Bucket, error) {
	conf, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read objstore configuration: %w", err)
	}
	bkt, err := backfill.NewBucket(conf)
	if err != nil {
		return nil, fmt.Errorf("objstore configuration %s: %w", path, err)
	}
	return bkt, nil
}

func backfillCommand() *cli.Command {
	d := backfill.DefaultOptions()
	flags := append(logFlags(),
		&cli.StringFlag{Name: "wal-dir", Value: defaultWAL, Usage: "directory of the WALs (or of one cluster's WAL)", EnvVars: env("wal-dir")},
		&cli.StringFlag{Name: "id", Usage: "only this cluster ID", DefaultText: "every WAL in --wal-dir", EnvVars: env("id")},
		&cli.StringFlag{Name: "endpoint", Usage: "only the samples deferred by this endpoint (its position name)", DefaultText: "every endpoint", EnvVars: env("backfill-endpoint")},
		&cli.StringFlag{Name: "objstore.config-file", Usage: "objstore YAML of the hub's bucket, as Thanos components take it (type S3, AZURE, FILESYSTEM, SWIFT, COS, ALIYUNOSS, BOS, OCI, OBS; GCS through type S3); required unless --dry-run", DefaultText: "none", EnvVars: env("backfill.objstore-config-file"), TakesFile: true},
		sliceFlag("label", "", "external label k=v of the blocks (the receiver's, e.g. tenant_id=...), repeatable or comma-separated"),
		&cli.StringFlag{Name: "replica-label", Value: d.ReplicaLabel, Usage: "external label set to a value unique to each block; make it a --query.replica-label of Thanos query (empty: none)", EnvVars: env("backfill.replica-label")},
		&cli.DurationFlag{Name: "block-duration", Value: d.BlockDuration, Usage: "time range of one block, aligned", EnvVars: env("backfill.block-duration")},
		&cli.BoolFlag{Name: "dry-run", Usage: "show what is deferred and the blocks a pass would write; write and upload nothing", EnvVars: env("backfill-dry-run")},
	)
	return &cli.Command{
		Name:  "backfill",
		Usage: "upload the samples the receiver refused as too old (deferred) as TSDB blocks to the hub's bucket",
		Description: "After an outage longer than the receiver's head window, the samples Thanos receive refused\n" +
			"(409, out of bounds) are kept in a dead-letter log per cluster and endpoint\n" +
			"(<wal>/deferred/<endpoint>/). This command shows them, writes them as 2h TSDB blocks with a\n" +
			"Thanos meta.json and uploads them, with a progress bar. It is resumable: uploaded blocks are\n" +
			"recorded and a re-run skips them; the dead-letter segments are removed only after every block\n" +
			"of the pass is uploaded. It works beside a running agent (the segment the agent writes is left\n" +
			"for the next pass) and on a copied PVC. `run --backfill.objstore-config-file` does the same on\n" +
			"its own. It exits 1 when a pass failed.",
		Flags:  showDefaults(flags),
		Action: backfillAction,
	}
}

// deadLetter is one dead-letter directory to backfill.
type deadLetter struct {
	cluster, endpoint, dir string
	plan                   backfill.Plan
}

func backfillAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("unexpected argument %q", c.Args().First())
	}
	logger, err := newLogger(c.App.ErrWriter, c)
	if err != nil {
		return err
	}
	opts, err := backfillOptions(c, "")
	if err != nil {
		return err
	}
	conf := c.String("objstore.config-file")
	if conf == "" && !c.Bool("dry-run") {
		return usagef("--objstore.config-file: required unless --dry-run")
	}
	refs, err := resolveWALs(c.String("wal-dir"), c.String("id"))
	if err != nil {
		return err
	}
	var dls []deadLetter
	for _, r := range refs {
		eps, err := wal.DeferredConsumers(r.dir)
		if err != nil {
			return err
		}
		for _, ep := range eps {
			if e := c.String("endpoint"); e != "" && e != ep {
				continue
			}
			dir := wal.DeferredDir(r.dir, ep)
			p, err := backfill.Inspect(dir, opts.BlockDuration)
			if err != nil {
				return fmt.Errorf("cluster %s, endpoint %s: %w", r.id, ep, err)
			}
			dls = append(dls, deadLetter{cluster: r.id, endpoint: ep, dir: dir, plan: p})
		}
	}
	total := printPlans(c.App.Writer, dls)
	if c.Bool("dry-run") || total == 0 {
		return nil
	}
	bkt, err := openBucket(conf)
	if err != nil {
		return err
	}
	defer bkt.Close()
	bf, err := backfill.New(logger, prometheus.NewRegistry(), bkt, opts)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	prog := replay.NewProgress(c.App.Writer, logger, total, time.Now)
	var done int64
	var errs []error
	for _, d := range dls {
		// A pass in progress is resumed first; the segments it did not cover need a second one.
		passes := 1
		if len(d.plan.State.Segments) > 0 {
			passes = 2
		}
		for range passes {
			base := done
			res, err := bf.Run(ctx, d.dir, func(n, _ int64) { prog.Update(base + n) })
			done = base + res.Samples
			if err != nil {
				errs = append(errs, fmt.Errorf("cluster %s, endpoint %s: %w", d.cluster, d.endpoint, err))
				break
			}
			prog.Update(done)
		}
	}
	prog.Finish(done)
	fmt.Fprintf(c.App.Writer, "backfilled %d samples\n", done)
	if len(errs) > 0 {
		return exitError{code: 1, msg: "backfill incomplete (a re-run resumes): " + errors.Join(errs...).Error()}
	}
	return nil
}

// printPlans prints what each dead-letter log holds and returns the samples to backfill.
func printPlans(w io.Writer, dls []deadLetter) int64 {
	if len(dls) == 0 {
		fmt.Fprintln(w, "nothing deferred")
		return 0
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tENDPOINT\tDEFERRED SAMPLES\tRANGE\tBLOCKS\tPASS IN PROGRESS\tBACKFILLED BEFORE")
	var total int64
	for _, d := range dls {
		p := d.plan
		rng := "-"
		if p.Samples > 0 {
			rng = fmt.Sprintf("%s .. %s", time.UnixMilli(p.MinTime).UTC().Format(time.RFC3339), time.UnixMilli(p.MaxTime).UTC().Format(time.RFC3339))
		}
		pass := "-"
		n := p.Samples
		if len(p.State.Segments) > 0 {
			pending, blocks := p.State.Pending()
			pass = fmt.Sprintf("%d of %d blocks to upload", blocks, len(p.State.Blocks))
			n = pending
		}
		total += n
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%d\n", d.cluster, d.endpoint, p.Samples, rng, len(p.Windows), pass, p.State.Backfilled)
	}
	tw.Flush()
	for _, d := range dls {
		for _, t := range d.plan.Torn {
			fmt.Fprintf(w, "warning: cluster %s, endpoint %s: %v\n", d.cluster, d.endpoint, t)
		}
	}
	return total
}

// backfillRunOptions returns the agent's backfill options, nil when
// --backfill.objstore-config-file is not set. It leaves Bucket nil: startUp opens it
// (openRunBucket) and closes it on any later failure.
func backfillRunOptions(c flagGetter) (*agent.BackfillOptions, error) {
	opts, err := backfillOptions(c, "backfill.")
	if err != nil {
		return nil, err
	}
	if c.String("backfill.objstore-config-file") == "" {
		return nil, nil
	}
	if c.Duration("backfill.interval") <= 0 {
		return nil, usagef("--backfill.interval %v: want a positive duration", c.Duration("backfill.interval"))
	}
	return &agent.BackfillOptions{Options: opts, Interval: c.Duration("backfill.interval")}, nil
}

// bucketOpener opens the bucket of an objstore configuration file: openBucket, or a test's
// wrapper of it.
type bucketOpener func(path string) (backfill.Bucket, error)

// openRunBucket opens the bucket of run's --backfill.objstore-config-file.
func openRunBucket(open bucketOpener, c flagGetter) (backfill.Bucket, error) {
	bkt, err := open(c.String("backfill.objstore-config-file"))
	if err != nil {
		return nil, usagef("--backfill.objstore-config-file: %v", err)
	}
	return bkt, nil
}

// closeBackfillBucket closes the backfill bucket of o, if there is one. The bucket holds nothing
// of ours (uploads finished or resume at the next pass), so an error is only logged.
func closeBackfillBucket(logger logrus.FieldLogger, o *agent.BackfillOptions) {
	if o == nil || o.Bucket == nil {
		return
	}
	if err := o.Bucket.Close(); err != nil {
		logger.WithError(err).Warn("close the backfill bucket; nothing was lost, its connections end with the process")
	}
}
