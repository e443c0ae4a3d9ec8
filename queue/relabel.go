package queue

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/collector-dev/collector/wal"
)

// ReasonWriteRelabel counts the samples of series that the endpoint's write_relabel_configs drop.
// It is the user's configuration, not a loss, but it is counted like every other drop.
const ReasonWriteRelabel = "write_relabel"

// relabeled is the outcome of the write relabeling of one series.
type relabeled struct {
	in, out labels.Labels // in: the reader's labels it was computed from
	keep    bool
}

// writeRelabeler applies Options.WriteRelabelConfigs once per series: the outcome is cached by
// series ref and used while the reader's labels of the ref stay the same (a ref reissued with
// other labels after a writer restart is relabeled again). The cache holds the series seen in
// the current and the previous segment, so it does not outgrow the live series. Not safe for
// concurrent use: owned by the tailer.
type writeRelabeler struct {
	cfgs      []*relabel.Config
	lb        *labels.Builder
	segment   int
	cur, prev map[wal.SeriesRef]relabeled
}

// newWriteRelabeler returns nil when there is no rule: nothing to do, nothing cached.
func newWriteRelabeler(cfgs []*relabel.Config) *writeRelabeler {
	if len(cfgs) == 0 {
		return nil
	}
	return &writeRelabeler{cfgs: cfgs, lb: labels.NewBuilder(labels.EmptyLabels()), segment: -1, cur: map[wal.SeriesRef]relabeled{}}
}

// startRecord ages the cache when a record of a new segment starts.
func (w *writeRelabeler) startRecord(segment int) {
	if segment != w.segment {
		w.segment = segment
		w.prev, w.cur = w.cur, make(map[wal.SeriesRef]relabeled, len(w.cur))
	}
}

// apply returns the labels to send for series ref with the reader's labels lset, and false when
// the rules drop the series. Comparing lset with the cached input is cheap: the reader hands out
// the same labels for a ref until it is redefined.
func (w *writeRelabeler) apply(ref wal.SeriesRef, lset labels.Labels) (labels.Labels, bool) {
	if e, ok := w.cur[ref]; ok && labels.Equal(e.in, lset) {
		return e.out, e.keep
	}
	e, ok := w.prev[ref]
	if !ok || !labels.Equal(e.in, lset) {
		w.lb.Reset(lset)
		keep := relabel.ProcessBuilder(w.lb, w.cfgs...)
		out := w.lb.Labels()
		e = relabeled{in: lset, out: out, keep: keep && out.Get(labels.MetricName) != ""}
	}
	w.cur[ref] = e
	return e.out, e.keep
}
