package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/collector-dev/collector/wal"
)

// printDeferredTable prints, when any consumer deferred samples, what waits for backfill and the
// backfill's progress.
func printDeferredTable(w io.Writer, sts []wal.Status, now time.Time) {
	show := false
	for _, st := range sts {
		for _, cs := range st.Consumers {
			show = show || cs.Deferred > 0 || cs.DeadLetter != nil
		}
	}
	if !show {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tENDPOINT\tDEFERRED\tAWAITING BACKFILL\tRANGE\tPASS IN PROGRESS\tBACKFILLED\tBLOCKS\tLAST PASS")
	for _, st := range sts {
		for _, cs := range st.Consumers {
			if cs.Deferred == 0 && cs.DeadLetter == nil {
				continue
			}
			var dl wal.DeferredStatus
			if cs.DeadLetter != nil {
				dl = *cs.DeadLetter
			}
			rng := "-"
			if dl.Samples > 0 {
				rng = fmt.Sprintf("%s .. %s", dl.Oldest.Format(time.RFC3339), dl.Newest.Format(time.RFC3339))
			}
			pass := "-"
			if len(dl.Backfill.Blocks) > 0 {
				n, b := dl.Backfill.Pending()
				pass = fmt.Sprintf("%d/%d blocks uploaded, %d samples to go", len(dl.Backfill.Blocks)-b, len(dl.Backfill.Blocks), n)
			}
			last := ago(dl.Backfill.LastPass, now)
			if dl.Backfill.LastError != "" {
				last = "failed: " + dl.Backfill.LastError
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d (%d segments)\t%s\t%s\t%d\t%d\t%s\n", st.ClusterID, cs.Name, cs.Deferred,
				dl.Samples, dl.Segments, rng, pass, dl.Backfill.Backfilled, dl.Backfill.BlocksUploaded, last)
		}
	}
	tw.Flush()
}
