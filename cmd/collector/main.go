// Command collector moves metrics from a cluster's Prometheus to a Thanos hub without losing a
// sample: it federates, appends each scrape to a write-ahead log per cluster ID, and ships the log
// over Prometheus remote-write from a durable position.
//
// Exit codes: 0 success, 1 the command failed (or, for replay, dropped samples), 2 usage error (an
// unknown flag, a bad value), with one line on standard error naming the flag.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(args)
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
	fmt.Fprintf(stderr, "collector: %v\n", oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || isFlagError(err) {
		return 2
	}
	return 1
}

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
		{
			Name:  "version",
			Usage: "print the version",
			Action: func(c *cli.Context) error {
				fmt.Fprintf(c.App.Writer, "collector %s\n", version)
				return nil
			},
		},
	}
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
	}
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
func newLogger(c *cli.Context) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(c.App.ErrWriter)
	lvl, err := logrus.ParseLevel(c.String("log-level"))
	if err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	l.SetLevel(lvl)
	switch c.String("log-format") {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, usagef("--log-format %q: want text or json", c.String("log-format"))
	}
	return l, nil
}

// env returns the environment variable of a flag: COLLECTOR_ and the name in upper snake case.
func env(name string) []string {
	return []string{"COLLECTOR_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}
