// Command collector moves metrics from a cluster's Prometheus to a Thanos hub without losing a
// sample: it federates, appends each scrape to a write-ahead log per cluster ID, and ships the log
// over Prometheus remote-write from a durable position.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args))
}

// run executes the command line and returns the process exit code: 0 on success, 1 when the
// command failed, 2 for a usage error.
func run(args []string) int {
	app := newApp()
	if err := app.Run(args); err != nil {
		fmt.Fprintf(os.Stderr, "collector: %v\n", err)
		if _, ok := err.(usageError); ok {
			return 2
		}
		return 1
	}
	return 0
}

// usageError marks a command-line mistake; it exits with code 2.
type usageError struct{ error }

func newApp() *cli.App {
	return &cli.App{
		Name:    "collector",
		Usage:   "federate a Prometheus into a per-cluster WAL and ship it losslessly over remote-write",
		Version: version,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Commands: []*cli.Command{
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "collector %s\n", version)
					return nil
				},
			},
		},
	}
}
