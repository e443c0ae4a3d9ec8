package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/collector-dev/collector/agent"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "check configuration files",
		Subcommands: []*cli.Command{{
			Name:      "config",
			Usage:     "check configuration files as `promtool check config` does: syntax, every key, the values, the flags: section and the files they name; exit 0 when every file is valid, 1 otherwise",
			ArgsUsage: "FILE...",
			Action:    checkConfigAction,
		}},
	}
}

// checkConfigAction prints, for each file, "Checking FILE" and SUCCESS or FAILED with every error
// found (each with its line), like promtool. Warnings do not fail a file.
func checkConfigAction(c *cli.Context) error {
	if c.Args().Len() == 0 {
		return usagef("check config: give at least one FILE")
	}
	failed := 0
	for _, path := range c.Args().Slice() {
		fmt.Fprintf(c.App.Writer, "Checking %s\n", path)
		cfg, errs := agent.CheckConfig(path)
		if len(errs) == 0 {
			if _, err := newSettings(c, cfg.Flags); err != nil {
				errs = append(errs, err)
			}
		}
		for _, w := range cfg.Warnings {
			fmt.Fprintf(c.App.Writer, "  WARNING: %s\n", w)
		}
		if len(errs) > 0 {
			failed++
			fmt.Fprintf(c.App.ErrWriter, "  FAILED: %s: %d error(s)\n", path, len(errs))
			for _, err := range errs {
				fmt.Fprintf(c.App.ErrWriter, "    %v\n", err)
			}
			fmt.Fprintln(c.App.Writer)
			continue
		}
		fmt.Fprintf(c.App.Writer, "  SUCCESS: %s is valid collector configuration (%d sources, %d remote_write endpoints, %d flags)\n\n",
			path, len(cfg.Sources), len(cfg.Endpoints), len(cfg.Flags))
	}
	if failed > 0 {
		return exitError{code: 1}
	}
	return nil
}
