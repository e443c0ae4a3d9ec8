package queue

import (
	"context"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
)

func relabelRule(t *testing.T, c relabel.Config) *relabel.Config {
	t.Helper()
	d := relabel.DefaultRelabelConfig
	if c.Regex.Regexp == nil {
		c.Regex = d.Regex
	}
	if c.Separator == "" {
		c.Separator = d.Separator
	}
	if c.Replacement == "" {
		c.Replacement = d.Replacement
	}
	if err := c.Validate(model.UTF8Validation); err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestWriteRelabel: the endpoint's rules rewrite the labels that are sent, a series they drop is
// never sent and its samples are counted as dropped with reason write_relabel (in Stats, the
// position's counters and the metric), and the position passes them.
func TestWriteRelabel(t *testing.T) {
	w := openWAL(t)
	const nSeries, scrapes = 4, 3
	total := fill(t, w, nSeries, scrapes, 1000)

	var mu sync.Mutex
	sent := map[string]int{}
	s := newFakeSender(func(_ context.Context, _ int, series []prompb.TimeSeries) error {
		mu.Lock()
		defer mu.Unlock()
		for _, ts := range series {
			b := labels.NewScratchBuilder(len(ts.Labels))
			for _, l := range ts.Labels {
				b.Add(l.Name, l.Value)
			}
			sent[b.Labels().String()] += len(ts.Samples)
		}
		return nil
	})
	o := fastOptions("hub")
	o.StopAtEnd = true
	o.WriteRelabelConfigs = []*relabel.Config{
		relabelRule(t, relabel.Config{SourceLabels: model.LabelNames{"instance"}, Regex: relabel.MustNewRegexp("host-[13]"), Action: relabel.Drop}),
		relabelRule(t, relabel.Config{SourceLabels: model.LabelNames{"job"}, TargetLabel: "team", Replacement: "t-$1", Action: relabel.Replace}),
		relabelRule(t, relabel.Config{Regex: relabel.MustNewRegexp("job"), Action: relabel.LabelDrop}),
	}
	q, err := New(testLogger(), nil, w, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		`{__name__="test_metric", instance="host-0", team="t-test"}`: scrapes,
		`{__name__="test_metric", instance="host-2", team="t-test"}`: scrapes,
	}
	if len(sent) != len(want) {
		t.Fatalf("sent %v, want %v", sent, want)
	}
	for k, n := range want {
		if sent[k] != n {
			t.Errorf("series %s: sent %d samples, want %d (sent: %v)", k, sent[k], n, sent)
		}
	}
	st := q.Stats()
	if got := st.Dropped[ReasonWriteRelabel]; got != 2*scrapes {
		t.Errorf("dropped[write_relabel] = %d, want %d", got, 2*scrapes)
	}
	if st.Delivered+st.Dropped[ReasonWriteRelabel] != int64(total) {
		t.Errorf("delivered %d + dropped %v != appended %d", st.Delivered, st.Dropped, total)
	}
	if got := testutil.ToFloat64(q.metrics.samplesDropped.WithLabelValues(ReasonWriteRelabel)); got != 2*scrapes {
		t.Errorf("collector_queue_samples_dropped_total{reason=write_relabel} = %v, want %d", got, 2*scrapes)
	}
}

// TestWriteRelabelerCache: a series is relabeled once and the outcome reused while its labels stay
// the same; a ref redefined with other labels is relabeled again; an entry not seen for a whole
// segment is forgotten.
func TestWriteRelabelerCache(t *testing.T) {
	keepAll := relabelRule(t, relabel.Config{SourceLabels: model.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp(".+"), Action: relabel.Keep})
	dropAll := relabelRule(t, relabel.Config{SourceLabels: model.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp(".+"), Action: relabel.Drop})
	w := newWriteRelabeler([]*relabel.Config{keepAll})
	a := labels.FromStrings("__name__", "a")
	w.startRecord(0)
	if _, keep := w.apply(1, a); !keep {
		t.Fatal("keep rule dropped the series")
	}
	w.cfgs = []*relabel.Config{dropAll} // the cached outcome must be used from now on
	if _, keep := w.apply(1, a); !keep {
		t.Fatal("series relabeled again although its labels did not change")
	}
	w.startRecord(1) // the entry moves to prev and is promoted when seen
	if _, keep := w.apply(1, a); !keep {
		t.Fatal("series relabeled again in the next segment")
	}
	if _, keep := w.apply(1, labels.FromStrings("__name__", "b")); keep {
		t.Fatal("ref redefined with other labels was not relabeled again")
	}
	w.startRecord(2)
	w.startRecord(3) // not seen in segment 2: forgotten
	if len(w.cur)+len(w.prev) != 0 {
		t.Fatalf("cache holds %d+%d entries after two segments without the series", len(w.cur), len(w.prev))
	}
	if newWriteRelabeler(nil) != nil {
		t.Fatal("a relabeler without rules")
	}
}

// TestWriteRelabelInvalidRule: New refuses a rule that does not validate.
func TestWriteRelabelInvalidRule(t *testing.T) {
	o := fastOptions("hub")
	o.WriteRelabelConfigs = []*relabel.Config{{Action: relabel.Replace, Regex: relabel.MustNewRegexp("x")}}
	if _, err := New(testLogger(), nil, openWAL(t), newFakeSender(nil), o); err == nil {
		t.Fatal("New accepted a replace rule without target_label")
	}
}
