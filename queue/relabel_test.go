package queue

import (
	"context"
	"github.com/collector-dev/collector/wal"
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

// TestWriteRelabelOncePerSeries: the tailer relabels and encodes a series once, at its first
// sample, and the reader keeps the outcome with the series (wal.Reader.Derived): later samples
// use it even when the rules would now decide otherwise; a dropped series is kept as droppedLabels.
func TestWriteRelabelOncePerSeries(t *testing.T) {
	keepAll := relabelRule(t, relabel.Config{SourceLabels: model.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp(".+"), Action: relabel.Keep})
	dropAll := relabelRule(t, relabel.Config{SourceLabels: model.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp(".+"), Action: relabel.Drop})
	w := openWAL(t)
	fill(t, w, 2, 1, 1000)
	r, err := wal.NewReader(w.Dir(), wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := r.Next(context.Background())
	if err != nil || len(b.Samples) != 2 {
		t.Fatalf("read the scrape: %d samples, %v", len(b.Samples), err)
	}
	q := &Queue{opts: fastOptions("hub")}
	q.opts.WriteRelabelConfigs = []*relabel.Config{keepAll}
	tl := (&tailer{q: q, r: r, dir: w.Dir()}).init()
	first, second := b.Samples[0].Ref, b.Samples[1].Ref
	lbl, ok := r.Derived(first, tl.derive)
	lset, _ := r.Labels(first)
	if !ok || lbl != string(wal.AppendLabels(nil, lset)) {
		t.Fatalf("first series encoded as %q, %v", lbl, ok)
	}
	tl.relabel.cfgs = []*relabel.Config{dropAll} // from now on only new series see it
	if again, _ := r.Derived(first, tl.derive); again != lbl {
		t.Fatalf("series relabeled again although its labels did not change: %q", again)
	}
	if dropped, ok := r.Derived(second, tl.derive); !ok || dropped != droppedLabels {
		t.Fatalf("series dropped by the rules encoded as %q, %v", dropped, ok)
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
