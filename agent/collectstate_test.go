package agent

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestCollectStateMachine drives one rule's series through evaluations at given times: pending,
// firing after for, kept firing while it is gone less than 15 minutes, resolved after, and a
// pending series forgotten when it goes, or restarted after a gap.
func TestCollectStateMachine(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := map[string]string{"instance": "a"}
	b := map[string]string{"instance": "b"}
	type step struct {
		at      time.Duration // since t0
		result  []map[string]string
		pending int
		firing  int
	}
	for _, tc := range []struct {
		name  string
		for_  time.Duration
		steps []step
	}{
		{"for 0 fires at once", 0, []step{{0, []map[string]string{a}, 0, 1}}},
		{"pending then firing after for", 2 * time.Minute, []step{
			{0, []map[string]string{a}, 1, 0},
			{time.Minute, []map[string]string{a}, 1, 0},
			{2*time.Minute - time.Second, []map[string]string{a}, 1, 0},
			{2 * time.Minute, []map[string]string{a}, 0, 1},
		}},
		{"pending gone is forgotten", 2 * time.Minute, []step{
			{0, []map[string]string{a}, 1, 0},
			{time.Minute, nil, 0, 0},
			{2 * time.Minute, []map[string]string{a}, 1, 0}, // for starts again
			{3 * time.Minute, []map[string]string{a}, 1, 0},
			{4 * time.Minute, []map[string]string{a}, 0, 1},
		}},
		{"pending after a gap restarts its for", 2 * time.Minute, []step{
			{0, []map[string]string{a}, 1, 0},
			{10 * time.Minute, []map[string]string{a}, 1, 0}, // gap > maxGap (1m): active again from 10m
			{11 * time.Minute, []map[string]string{a}, 1, 0},
			{12 * time.Minute, []map[string]string{a}, 0, 1},
		}},
		{"firing resolves after 15 minutes gone", 0, []step{
			{0, []map[string]string{a}, 0, 1},
			{time.Minute, nil, 0, 1},
			{15*time.Minute - time.Second, nil, 0, 1},
			{15 * time.Minute, nil, 0, 0},
		}},
		{"firing back within 15 minutes keeps firing", 0, []step{
			{0, []map[string]string{a}, 0, 1},
			{10 * time.Minute, nil, 0, 1},
			{14 * time.Minute, []map[string]string{a}, 0, 1},
			{28 * time.Minute, nil, 0, 1},
			{29 * time.Minute, nil, 0, 0},
		}},
		{"series are independent", time.Minute, []step{
			{0, []map[string]string{a}, 1, 0},
			{time.Minute, []map[string]string{a, b}, 1, 1},
			{2 * time.Minute, []map[string]string{b}, 0, 2},
			{3 * time.Minute, nil, 0, 2},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCollectState()
			for i, s := range tc.steps {
				c.observe("r", tc.for_, time.Minute, s.result, t0.Add(s.at))
				if p, f := c.counts("r"); p != s.pending || f != s.firing {
					t.Fatalf("step %d at %v: pending %d firing %d, want %d %d", i, s.at, p, f, s.pending, s.firing)
				}
				// The state survives a round trip through its persisted form at every step.
				raw, err := c.marshal()
				if err != nil {
					t.Fatal(err)
				}
				if c, err = unmarshalCollectState(raw); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestCollectRuleRendering: names become {__name__="..."} matchers, matches are rendered with the
// firing series' $labels, wrapped in braces, deduplicated and sorted; a pending series
// contributes nothing; a rendering that is not a selector is reported, not federated.
func TestCollectRuleRendering(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := CollectRule{
		Name:  "HighCPU",
		Expr:  "sum by (namespace, pod) (rate(container_cpu_usage_seconds_total[5m])) > 1",
		For:   "1m",
		Names: []string{"kube_pod_container_resource_limits"},
		Matches: []string{
			`__name__="container_cpu_usage_seconds_total",namespace="{{ $labels.namespace }}"`,
			`{__name__="x",pod="{{$labels.pod}}",missing="{{ $labels.nope }}"}`,
		},
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	c := newCollectState()
	c.observe(r.Name, time.Minute, time.Minute, []map[string]string{{"namespace": "ns1", "pod": "p1"}, {"namespace": "ns2", "pod": `p"2`}}, t0)
	if got, errs := c.activeMatchers(r); got != nil || errs != nil {
		t.Fatalf("pending: %v %v, want nothing", got, errs)
	}
	c.observe(r.Name, time.Minute, time.Minute, []map[string]string{{"namespace": "ns1", "pod": "p1"}, {"namespace": "ns2", "pod": `p"2`}}, t0.Add(time.Minute))
	got, errs := c.activeMatchers(r)
	want := []string{
		`{__name__="container_cpu_usage_seconds_total",namespace="ns1"}`,
		`{__name__="container_cpu_usage_seconds_total",namespace="ns2"}`,
		`{__name__="kube_pod_container_resource_limits"}`,
		`{__name__="x",pod="p1",missing=""}`,
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "HighCPU") {
		t.Errorf("errors %v, want one: the second series' pod label p\"2 breaks the selector", errs)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("matchers\n%q\nwant\n%q", got, want)
	}
	if _, err := parseMatchTemplate(`{{ $labels.x `); err == nil {
		t.Error("an unterminated template parses")
	}
	if err := (CollectRule{Name: "r", Expr: "up", Names: []string{"up"}, Matches: []string{"{{ .Foo "}}).Validate(); err == nil {
		t.Error("a rule with a bad template validates")
	}
}
