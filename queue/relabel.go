package queue

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// ReasonWriteRelabel counts the samples of series that the endpoint's write_relabel_configs drop.
// It is the user's configuration, not a loss, but it is counted like every other drop.
const ReasonWriteRelabel = "write_relabel"

// writeRelabeler applies Options.WriteRelabelConfigs to the labels of a series. The tailer calls
// it once per series: its outcome is part of what the reader keeps per series
// (tailer.deriveLabels, wal.Reader.Derived), so a ref reissued with other labels after a writer
// restart is relabeled again and a series the reader forgets takes its outcome along. Not safe
// for concurrent use: owned by the tailer.
type writeRelabeler struct {
	cfgs []*relabel.Config
	lb   *labels.Builder
}

// newWriteRelabeler returns nil when there is no rule: nothing to do.
func newWriteRelabeler(cfgs []*relabel.Config) *writeRelabeler {
	if len(cfgs) == 0 {
		return nil
	}
	return &writeRelabeler{cfgs: cfgs, lb: labels.NewBuilder(labels.EmptyLabels())}
}

// apply returns the labels to send for a series with the labels lset, and false when the rules
// drop the series (or leave it without a metric name).
func (w *writeRelabeler) apply(lset labels.Labels) (labels.Labels, bool) {
	w.lb.Reset(lset)
	keep := relabel.ProcessBuilder(w.lb, w.cfgs...)
	out := w.lb.Labels()
	return out, keep && out.Get(labels.MetricName) != ""
}
