package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/urfave/cli/v2"
)

func walCommand() *cli.Command {
	return &cli.Command{
		Name:  "wal",
		Usage: "inspect the write-ahead logs",
		Subcommands: []*cli.Command{{
			Name:  "status",
			Usage: "backlog per cluster ID and endpoint, from the files alone (works beside a running agent and on a copied PVC)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "wal-dir", Value: defaultWAL, Usage: "directory of the WALs", EnvVars: env("wal-dir")},
				&cli.StringFlag{Name: "id", Usage: "only this cluster ID", EnvVars: env("id")},
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json"},
			},
			Action: walStatusAction,
		}},
	}
}

func walStatusAction(c *cli.Context) error {
	out := c.String("output")
	if out != "table" && out != "json" {
		return usagef("--output %q: want table or json", out)
	}
	dir := c.String("wal-dir")
	var ids []string
	if id := c.String("id"); id != "" {
		if err := wal.ValidateID(id); err != nil {
			return usagef("--id: %v", err)
		}
		ids = []string{id}
	} else {
		var err error
		if ids, err = wal.ListClusters(dir); err != nil {
			return err
		}
		if len(ids) == 0 {
			return fmt.Errorf("%s holds no WAL (no cluster directory with segments or a lock file)", dir)
		}
	}
	var sts []wal.Status
	for _, id := range ids {
		st, err := wal.ReadStatus(filepath.Join(dir, id))
		if err != nil {
			if errors.Is(err, wal.ErrNotWAL) || errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cluster %s: %s is not a WAL directory", id, filepath.Join(dir, id))
			}
			return err
		}
		sts = append(sts, st)
	}
	if out == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"wal_dir": dir, "clusters": sts})
	}
	printStatusTable(c.App.Writer, sts, time.Now())
	return nil
}

func printStatusTable(w io.Writer, sts []wal.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tSEGMENTS\tSIZE\tSAMPLES\tOLDEST\tNEWEST")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%d (%d-%d)\t%s\t%d\t%s\t%s\n", st.ClusterID, st.Segments, st.FirstSegment, st.LastSegment,
			humanBytes(st.Bytes), st.Samples, ago(st.OldestSample, now), ago(st.NewestSample, now))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tENDPOINT\tPOSITION\tUNDELIVERED\tBYTES\tOLDEST UNDELIVERED\tDELIVERED\tDROPPED")
	for _, st := range sts {
		for _, cs := range st.Consumers {
			pos := cs.Position.String()
			if cs.PositionError != "" {
				pos = "unusable (restarts at oldest)"
			}
			dropped := map[string]int64{}
			for r, n := range cs.Dropped {
				dropped[r] += n
			}
			for r, n := range cs.Evicted {
				dropped["evicted_"+r] += n
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", st.ClusterID, cs.Name, pos, cs.UndeliveredSamples,
				humanBytes(cs.UndeliveredBytes), ago(cs.OldestUndelivered, now), cs.Delivered, reasons(dropped))
		}
	}
	tw.Flush()
	for _, st := range sts {
		for _, c := range st.Corruption {
			fmt.Fprintf(w, "warning: cluster %s: %s\n", st.ClusterID, c)
		}
	}
}

func reasons(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
