package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v3"

	"github.com/collector-dev/collector/wal"
)

// relabelRules decodes rules as the config file does, and validates them.
func relabelRules(t *testing.T, key, y string) []*relabel.Config {
	t.Helper()
	var cfgs []*relabel.Config
	if err := yaml.Unmarshal([]byte(y), &cfgs); err != nil {
		t.Fatal(err)
	}
	if err := validateRelabelConfigs(key, cfgs); err != nil {
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

// TestSourceRelabelValidation: rules that Prometheus refuses are refused with the list's name.
func TestSourceRelabelValidation(t *testing.T) {
	var bad []*relabel.Config
	if err := yaml.Unmarshal([]byte("- {action: replace, regex: x}\n"), &bad); err != nil {
		t.Fatal(err)
	}
	s := SourceConfig{ID: "a", From: "http://x", MetricRelabelConfigs: bad, RelabelConfigs: []*relabel.Config{nil}}
	err := s.Validate()
	for _, want := range []string{"metric_relabel_configs[0]: relabel configuration for replace action requires 'target_label' value", "relabel_configs[0]: empty rule"} {
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
}

// TestRunRemoteWriteEntries: the agent built from a file's remote_write entries ships each
// endpoint as its entry says: the endpoint whose write_relabel_configs drop every series gets no
// request and counts the drops in its position, the other endpoint gets the samples.
func TestRunRemoteWriteEntries(t *testing.T) {
	src := newFederateServer(t)
	dropped := newWriteReceiver(t, http.StatusNoContent)
	kept := newWriteReceiver(t, http.StatusNoContent)
	path := filepath.Join(t.TempDir(), "collector.yaml")
	body := fmt.Sprintf(`sources:
  - {id: c1, from: %q, interval: 1s}
remote_write:
  - name: filtered
    url: %s/api/v1/write
    write_relabel_configs:
      - {source_labels: [__name__], regex: up, action: drop}
    queue_config: {max_samples_per_send: 10, capacity: 20}
  - name: all
    url: %s/api/v1/write
`, src.URL, dropped.URL, kept.URL)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t)
	a, err := New(discardLogger(), prometheus.NewRegistry(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	pos := func(ep string) wal.ConsumerState {
		st, _ := wal.ReadPosition(filepath.Join(opts.WALDir, "c1"), ep)
		return st
	}
	waitFor(t, "samples delivered to all and dropped by the rules of filtered", 10*time.Second, func() bool {
		return pos("all").Delivered > 0 && pos("filtered").Dropped["write_relabel"] > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := dropped.requests.Load(); n != 0 {
		t.Errorf("the endpoint whose rules drop every series got %d requests", n)
	}
	if st := pos("filtered"); st.Delivered != 0 {
		t.Errorf("filtered: %d samples delivered", st.Delivered)
	}
}
