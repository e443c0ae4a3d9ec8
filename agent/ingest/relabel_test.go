package ingest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v3"
)

// relabelRules decodes rules as the config file does, and validates them.
func relabelRules(t *testing.T, key, y string) []*relabel.Config {
	t.Helper()
	var cfgs []*relabel.Config
	if err := yaml.Unmarshal([]byte(y), &cfgs); err != nil {
		t.Fatal(err)
	}
	if err := ValidateRelabelConfigs(key, cfgs); err != nil {
		t.Fatal(err)
	}
	return cfgs
}

// TestIngestRelabel: a source's relabel_configs see the series as read (before elide removes the
// prometheus label), metric_relabel_configs see it as transformed (with clusterID); a series they
// drop is counted by reason, at its first scrape and, from the cache, at every later one; the
// WAL holds only what both kept, as they made it.
func TestIngestRelabel(t *testing.T) {
	now := time.UnixMilli(testNowMs)
	cfg := DefaultTransformConfig()
	cfg.ClusterID = "c1"
	cfg.RelabelConfigs = relabelRules(t, "relabel_configs", `
- {source_labels: [prometheus], regex: "user/.*", action: drop}
- {source_labels: [prometheus], target_label: source_prom}
`)
	cfg.MetricRelabelConfigs = relabelRules(t, "metric_relabel_configs", `
- {source_labels: [clusterID, job], regex: "c1;c", action: drop}
- {regex: instance, action: labeldrop}
`)
	ing, _ := newTestIngester(t, cfg, &now)
	body := func(ts int64) []byte {
		return fmt.Appendf(nil, `# TYPE up untyped
up{job="a",prometheus="openshift-monitoring/k8s",instance="x"} 1 %[1]d
up{job="b",prometheus="user/uwl",instance="y"} 1 %[1]d
up{job="c",prometheus="openshift-monitoring/k8s",instance="z"} 1 %[1]d
node_load1{job="a",prometheus="openshift-monitoring/k8s",instance="x"} 0.5 %[1]d
`, ts)
	}
	for scrape := range 2 {
		ts := testNowMs - 60000 + int64(scrape)*30000
		res, err := ing.Ingest(bytes.NewReader(body(ts)), textType)
		if err != nil {
			t.Fatal(err)
		}
		wantNew := 4
		if scrape > 0 {
			wantNew = 0 // the outcome of relabeling, drops included, comes from the cache
		}
		if res.Appended != 2 || res.NewSeries != wantNew || res.Dropped[DropRelabel] != 1 || res.Dropped[DropMetricRelabel] != 1 {
			t.Fatalf("scrape %d: %+v", scrape, res)
		}
		got, _ := readWAL(t, ing.w.Dir())
		want := []string{
			fmt.Sprintf(`up{clusterID="c1",job="a",source_prom="openshift-monitoring/k8s"} 1 %d`, ts),
			fmt.Sprintf(`node_load1{clusterID="c1",job="a",source_prom="openshift-monitoring/k8s"} 0.5 %d`, ts),
		}
		if last := got[len(got)-2:]; !slices.Equal(last, want) {
			t.Fatalf("scrape %d: wal holds\n%q\nwant\n%q", scrape, last, want)
		}
		now = now.Add(30 * time.Second)
	}
	for reason, want := range map[string]float64{DropRelabel: 2, DropMetricRelabel: 2} {
		if got := testutil.ToFloat64(ing.metrics.dropped.WithLabelValues(reason)); got != want {
			t.Errorf("collector_scrape_samples_dropped_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}
