package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCollectRule: a collect rule against a real source Prometheus starts firing after its for,
// and its dynamic metrics (a name, and a match templated with the firing series' job) arrive at
// the receiver every evaluate interval (1s) as their own scrapes, while the static federation
// runs once an hour and names only up. The firing state is saved next to the WAL; after a
// restart whose rule has for: 1h the rule still fires at once, so the dynamic metrics go on.
func TestCollectRule(t *testing.T) {
	t.Parallel()
	tails := &logTails{}
	src := startPrometheus(t, tails, "source", promConfig{Config: sourceConfig})
	rcv := startPrometheus(t, tails, "receiver", promConfig{Config: receiverConfig, Receiver: true})
	const id = "e2e-collectrule"
	rule := func(forDur string) string {
		return fmt.Sprintf(`{"name":"SourceUp","expr":"max by (job) (up{job=\"prometheus\"}) > 0","for":"%s",`+
			`"names":["prometheus_build_info"],"matches":["__name__=\"prometheus_tsdb_head_series\",job=\"{{ $labels.job }}\""]}`, forDur)
	}
	col := newCollector(t, tails, "collector", id,
		"--from", src.URL(),
		"--match", `{__name__="up"}`,
		"--to-upload", rcv.WriteURL(),
		"--interval", "1h",
		"--evaluate-interval", "1s",
		"--batch-send-deadline", "200ms",
	)
	col.perStart = func(n int) []string {
		if n == 1 {
			return []string{"--collectrule", rule("2s")}
		}
		return []string{"--collectrule", rule("1h")}
	}
	col.start()

	cluster := fmt.Sprintf(`clusterID=%q`, id)
	samples := func(sel string) (int, error) {
		ss, err := rawSamples(rcv.URL(), fmt.Sprintf(`%s[1h]`, sel), time.Time{})
		if err != nil {
			return 0, err
		}
		n := 0
		for _, s := range ss {
			n += len(s)
		}
		return n, nil
	}
	build := fmt.Sprintf(`prometheus_build_info{%s}`, cluster)
	head := fmt.Sprintf(`prometheus_tsdb_head_series{%s,job="prometheus"}`, cluster)
	// One static scrape an hour, at start: five samples of each dynamic metric can only come from
	// the evaluations.
	eventually(t, 90*time.Second, "dynamic metrics at the receiver at the evaluate interval", func() error {
		for _, sel := range []string{build, head} {
			n, err := samples(sel)
			if err != nil {
				return err
			}
			if n < 5 {
				return fmt.Errorf("%s: %d samples, want 5 or more", sel, n)
			}
		}
		return nil
	})
	// The template took the firing series' job: the other job's head series is not federated.
	if n, err := samples(fmt.Sprintf(`prometheus_tsdb_head_series{%s,job="other"}`, cluster)); err != nil || n != 0 {
		t.Errorf("job=other head series: %d samples (%v), want none", n, err)
	}
	m, err := col.metrics()
	if err != nil {
		t.Fatal(err)
	}
	if f, a := sumMetric(m, "collector_collectrule_firing_series"), sumMetric(m, "collector_collectrule_active_matchers"); f != 1 || a != 2 {
		t.Errorf("firing series %v, active matchers %v; want 1 and 2", f, a)
	}
	col.stop(stopTimeout)

	var state struct {
		Rules map[string]map[string]struct {
			Labels  map[string]string `json:"labels"`
			FiredAt time.Time         `json:"fired_at"`
		} `json:"rules"`
	}
	raw, err := os.ReadFile(filepath.Join(col.dir(), "collectrules.sidecar.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatal(err)
	}
	if s := state.Rules["SourceUp"]; len(s) != 1 {
		t.Fatalf("saved state %s, want one firing series of SourceUp", raw)
	}

	before, err := samples(build)
	if err != nil {
		t.Fatal(err)
	}
	col.start() // for: 1h now; the saved state says it fires already
	eventually(t, 90*time.Second, "dynamic metrics after a restart", func() error {
		n, err := samples(build)
		if err != nil {
			return err
		}
		if n < before+5 {
			return fmt.Errorf("%s: %d samples, want %d or more", build, n, before+5)
		}
		return nil
	})
	col.stop(stopTimeout)
}
