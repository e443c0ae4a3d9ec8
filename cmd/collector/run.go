package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/collector-dev/collector/agent"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

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
	return runAgent(c, sigs, openBucket)
}

// runAgent starts the agent and runs it until it stops on its own or by sigs; open opens the
// backfill bucket (openBucket, or a test's wrapper). The bucket is closed on every way out once
// it is opened: by startUp when the start-up fails, here once the agent has stopped. A stop
// during the start-up abandons it, bucket included, to the end of the process.
func runAgent(c *cli.Context, sigs <-chan os.Signal, open bucketOpener) error {
	type startResult struct {
		st  *started
		err error
	}
	startc := make(chan startResult, 1)
	go func() {
		st, err := startUp(c, open)
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
	defer closeBackfillBucket(logger, opts.Backfill) // after Run returned: nothing uses it any more

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

// startUp resolves the configuration, opens the backfill bucket with open and builds the agent
// (opening the WALs); it binds the HTTP listener before touching the disk. On error, whatever it
// opened is closed.
func startUp(c *cli.Context, open bucketOpener) (_ *started, err error) {
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
	if opts.Backfill != nil {
		if opts.Backfill.Bucket, err = openRunBucket(open, s); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				closeBackfillBucket(logger, opts.Backfill)
			}
		}()
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
