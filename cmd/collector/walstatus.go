package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/collector-dev/collector/queue/replay"
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
			Flags: showDefaults([]cli.Flag{
				&cli.StringFlag{Name: "wal-dir", Value: defaultWAL, Usage: "directory of the WALs (or of one cluster's WAL)", EnvVars: env("wal-dir")},
				&cli.StringFlag{Name: "id", Usage: "only this cluster ID", DefaultText: "every WAL in --wal-dir", EnvVars: env("id")},
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json", EnvVars: env("output")},
			}),
			Action: walStatusAction,
		}},
	}
}

func walStatusAction(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("unexpected argument %q", c.Args().First())
	}
	out := c.String("output")
	if out != "table" && out != "json" {
		return usagef("--output %q: want table or json", out)
	}
	dir := c.String("wal-dir")
	refs, err := resolveWALs(dir, c.String("id"))
	if err != nil {
		return err
	}
	var sts []wal.Status
	for _, r := range refs {
		st, err := wal.ReadStatus(r.dir)
		if err != nil {
			if errors.Is(err, wal.ErrNotWAL) || errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cluster %s: %s is not a WAL directory", r.id, r.dir)
			}
			return err
		}
		st.ClusterID = r.id
		sts = append(sts, st)
	}
	now := time.Now()
	if out == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(statusReport(dir, sts, now))
	}
	printStatusTable(c.App.Writer, sts, now)
	return nil
}

// walRef is one WAL directory and its cluster ID.
type walRef struct{ id, dir string }

// resolveWALs returns the WALs to read: the one of id below base, or every WAL below base, or
// base itself when it is the directory of one WAL (one cluster's directory copied alone).
func resolveWALs(base, id string) ([]walRef, error) {
	isWAL := func(dir string) bool {
		ids, err := wal.ListClusters(filepath.Dir(filepath.Clean(dir)))
		return err == nil && slices.Contains(ids, filepath.Base(filepath.Clean(dir)))
	}
	if id != "" {
		if err := wal.ValidateID(id); err != nil {
			return nil, usagef("--id: %v", err)
		}
		dir := filepath.Join(base, id)
		switch {
		case isWAL(dir):
			return []walRef{{id, dir}}, nil
		case filepath.Base(filepath.Clean(base)) == id && isWAL(base):
			return []walRef{{id, base}}, nil
		}
		return nil, fmt.Errorf("cluster %s: %s is not a WAL directory (no segments, no lock file)", id, dir)
	}
	ids, err := wal.ListClusters(base)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		if isWAL(base) {
			return []walRef{{filepath.Base(filepath.Clean(base)), base}}, nil
		}
		return nil, fmt.Errorf("%s is not a WAL directory: it holds no cluster directory with segments or a lock file", base)
	}
	refs := make([]walRef, len(ids))
	for i, id := range ids {
		refs[i] = walRef{id, filepath.Join(base, id)}
	}
	return refs, nil
}

// The JSON report: wal.Status with the ages a script would otherwise compute.
type (
	jsonReport struct {
		WALDir   string        `json:"wal_dir"`
		Time     time.Time     `json:"time"`
		Clusters []jsonCluster `json:"clusters"`
	}
	jsonCluster struct {
		wal.Status
		Consumers []jsonConsumer `json:"consumers"`
	}
	jsonConsumer struct {
		wal.ConsumerStatus
		// OldestUndeliveredAge is how old the oldest undelivered sample is, in seconds (0 when
		// everything is delivered).
		OldestUndeliveredAge float64 `json:"oldest_undelivered_age_seconds"`
		// DroppedTotal sums Dropped, Evicted and Lost.
		DroppedTotal int64 `json:"dropped_samples_total"`
	}
)

func statusReport(dir string, sts []wal.Status, now time.Time) jsonReport {
	r := jsonReport{WALDir: dir, Time: now.UTC(), Clusters: []jsonCluster{}}
	for _, st := range sts {
		jc := jsonCluster{Status: st, Consumers: []jsonConsumer{}}
		for _, cs := range st.Consumers {
			jcs := jsonConsumer{ConsumerStatus: cs}
			if !cs.OldestUndelivered.IsZero() {
				jcs.OldestUndeliveredAge = now.Sub(cs.OldestUndelivered).Seconds()
			}
			for _, n := range cs.Dropped {
				jcs.DroppedTotal += n
			}
			for _, n := range cs.Evicted {
				jcs.DroppedTotal += n
			}
			for _, n := range cs.Lost {
				jcs.DroppedTotal += n
			}
			jc.Consumers = append(jc.Consumers, jcs)
		}
		r.Clusters = append(r.Clusters, jc)
	}
	return r
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
			switch {
			case cs.PositionError != "":
				pos = "unusable (restarts at oldest)"
			case cs.NoPosition:
				pos = "none yet (starts at oldest)"
			case cs.Start != nil:
				pos = fmt.Sprintf("%s (%s: starts at %s)", pos, strings.ReplaceAll(cs.PositionAdjusted, "_", " "), cs.Start)
			}
			dropped := map[string]int64{}
			for r, n := range cs.Dropped {
				dropped[r] += n
			}
			for r, n := range cs.Evicted {
				dropped["evicted_"+r] += n
			}
			for r, n := range cs.Lost {
				dropped["lost_"+r] += n
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", st.ClusterID, cs.Name, pos, cs.UndeliveredSamples,
				humanBytes(cs.UndeliveredBytes), ago(cs.OldestUndelivered, now), cs.Delivered, replay.FormatReasons(dropped))
		}
	}
	tw.Flush()
	printDeferredTable(w, sts, now)
	for _, st := range sts {
		for _, c := range st.Corruption {
			fmt.Fprintf(w, "warning: cluster %s: %s\n", st.ClusterID, c)
		}
		for _, c := range st.Warnings {
			fmt.Fprintf(w, "warning: cluster %s: %s\n", st.ClusterID, c)
		}
	}
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
