// Command collector moves metrics from a cluster's Prometheus to a Thanos hub without losing a
// sample: it federates, appends each scrape to a write-ahead log per cluster ID, and ships the log
// over Prometheus remote-write from a durable position.
//
// Without a command, as `collector --flag ...` or under a seed's name (metrics-collector,
// telemeter-client), it runs `run`: the seeds' command lines work unchanged.
//
// Exit codes: 0 success, 1 the command failed (or, for replay, dropped samples), 2 usage error (an
// unknown flag, a bad value), with one line on standard error naming the flag.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	runtimeDefaults(os.Getenv)
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// gcPercent is the garbage collector's target when GOGC is not set: the heap may grow 25 % past
// what the last collection left live instead of Go's 100 %. The collector allocates little in
// steady state, so the lower target costs little CPU at 200k series and more at 1M, where each
// collection marks about 600 MB: measured with make bench-e2e, GOGC 50: 251 MiB peak and 0.90
// CPU-s per million samples at 200k, 1024-1029 MiB and 0.70-0.76 at 1M; GOGC 25: 239 MiB and
// 0.93 at 200k, 916 MiB and 0.90 at 1M (35: 923 MiB and 0.90). Memory is what a cluster limits
// and kills for, so the default favours it; vmagent defaults to GOGC 30 for the same reason and
// Prometheus 3 to 75.
const gcPercent = 25

// procs is the number of Ps (threads running Go code at once) when GOMAXPROCS is not set: one,
// instead of one per core (or per core of the cgroup's CPU limit). The collector's work comes in
// bursts (a scrape, then the shards' requests) passed between a few goroutines; with two Ps each
// hand-off wakes the other P's thread, which spins looking for work and parks again. Measured with
// make bench-e2e on 2 cores, GOMAXPROCS 1 against the runtime's 2: 0.74-0.84 against 0.89-0.96
// CPU-s per million samples at 200k series (interleaved runs), 0.85 against 0.96 at 1M, whose
// first scrape took 7.0 CPU-s in 8 s against 8.7 in 9 s and whose 5-minute backlog drained in 27
// against 30 s. One core sends 2M to 3M samples a second (queue's BenchmarkEndToEnd: 0.32-0.5
// CPU-s per million), so one P slows a drain only where the receiver takes more than that from
// one client. GOMAXPROCS in the environment overrides it.
const procs = 1

// runtimeDefaults sets gcPercent and procs where the environment leaves GOGC and GOMAXPROCS
// unset (the runtime applied those it sets).
func runtimeDefaults(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(procs)
	}
}

// run executes the command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	var names []string
	for _, c := range app.Commands {
		names = append(names, c.Names()...)
	}
	err := app.Run(impliedRun(args, names))
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(stderr, "collector: %s\n", ee.msg)
		}
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) || isFlagError(err) {
		msg := oneLine(err.Error())
		if isFlagError(err) {
			msg = flagNames(msg)
		}
		fmt.Fprintf(stderr, "collector: %v\n", msg)
		return 2
	}
	fmt.Fprintf(stderr, "collector: %v\n", oneLine(err.Error()))
	return 1
}

// longFlag matches a long flag name written with one dash by the flag package ("-interval").
var longFlag = regexp.MustCompile(`(^|[ :"])-([a-zA-Z][a-zA-Z0-9]*(?:-[a-zA-Z0-9]+)+|[a-zA-Z][a-zA-Z0-9]+)\b`)

// flagNames rewrites the flag package's "-name" as "--name", as the help writes them.
func flagNames(s string) string { return longFlag.ReplaceAllString(s, "$1--$2") }

// usageError marks a command-line mistake; it exits with code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError ends the process with code after printing msg (when not empty).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// isFlagError recognises the flag package's and urfave/cli's parse errors, which are not typed.
func isFlagError(err error) bool {
	s := err.Error()
	for _, p := range []string{"flag provided but not defined", "invalid value", "flag needs an argument", "Required flag", "Required flags"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func newApp(stdout, stderr io.Writer) *cli.App {
	onUsage := func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	cmds := []*cli.Command{
		runCommand(),
		walCommand(),
		replayCommand(),
		checkCommand(),
		backfillCommand(),
		{
			Name:  "version",
			Usage: "print the version",
			Action: func(c *cli.Context) error {
				fmt.Fprintf(c.App.Writer, "collector %s\n", version)
				return nil
			},
		},
	}
	cmds[1].Action = unknownCommand // wal without a known subcommand
	cmds[3].Action = unknownCommand // check without a known subcommand
	// A usage error is one line naming the flag, not the whole help.
	var setUsage func([]*cli.Command)
	setUsage = func(cs []*cli.Command) {
		for _, c := range cs {
			c.OnUsageError = onUsage
			setUsage(c.Subcommands)
		}
	}
	setUsage(cmds)
	return &cli.App{
		Name:    "collector",
		Usage:   "federate a Prometheus into a per-cluster WAL and ship it losslessly over remote-write",
		Version: version,
		Writer:  stdout, ErrWriter: stderr,
		HideHelpCommand:           true,
		DisableSliceFlagSeparator: true,
		OnUsageError:              onUsage,
		Commands:                  cmds,
		Action:                    unknownCommand,
	}
}

// unknownCommand shows the help without arguments and refuses an unknown command with one line.
func unknownCommand(c *cli.Context) error {
	if c.Args().Len() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	return usagef("unknown command %q (see collector --help)", c.Args().First())
}

// logFlags are shared by every command.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: env("log-level")},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: env("log-format")},
	}
}

// newLogger builds the logger from --log-level and --log-format (they take effect: the seed's
// --log-level never did).
func newLogger(w io.Writer, c flagGetter) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(w)
	if err := setLogLevel(l, c); err != nil {
		return nil, err
	}
	return l, nil
}

// setLogLevel applies --log-level and --log-format to l; on error l is unchanged.
func setLogLevel(l *logrus.Logger, c flagGetter) error {
	lvl, err := logrus.ParseLevel(c.String("log-level"))
	if err != nil || lvl > logrus.DebugLevel || lvl < logrus.ErrorLevel {
		return usagef("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	var f logrus.Formatter
	switch c.String("log-format") {
	case "text":
		f = &logrus.TextFormatter{FullTimestamp: true, DisableColors: true}
	case "json":
		f = &logrus.JSONFormatter{}
	default:
		return usagef("--log-format %q: want text or json", c.String("log-format"))
	}
	l.SetLevel(lvl)
	l.SetFormatter(f)
	return nil
}

// env returns the environment variable of a flag: COLLECTOR_ and the name in upper snake case.
func env(name string) []string {
	return []string{"COLLECTOR_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))}
}
