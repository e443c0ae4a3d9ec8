package agent

import (
	"slices"
	"strings"
	"testing"
)

// TestStaticExclusionRHACM: on the real default ConfigMap, a cluster of type SNO selects the
// SNOResourceUsage group's two rules, and its static matchers lose the 12 that name their
// dynamic metrics (7 names, 5 matches: container_memory_rss twice): 216, the seed's count,
// where collector federated all 228 before. Any other type selects nothing and keeps 228.
func TestStaticExclusionRHACM(t *testing.T) {
	a, err := LoadAllowlist("testdata/allowlist/rhacm-metrics-allowlist.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		clusterType     string
		rules, matchers int
	}{
		{"SNO", 2, 216},
		{"", 0, 228},
		{"OpenShift", 0, 228},
	} {
		rules, err := a.SelectedCollectRules(tc.clusterType)
		if err != nil {
			t.Fatal(err)
		}
		static, err := a.StaticMatchers(tc.clusterType)
		if err != nil {
			t.Fatal(err)
		}
		if len(rules) != tc.rules || len(static) != tc.matchers {
			t.Errorf("clusterType %q: %d rules, %d static matchers; want %d, %d", tc.clusterType, len(rules), len(static), tc.rules, tc.matchers)
		}
		if tc.clusterType != "SNO" {
			continue
		}
		names := []string{rules[0].Name, rules[1].Name}
		if !slices.Equal(names, []string{"SNOHighCPUUsage", "SNOHighMemoryUsage"}) {
			t.Errorf("rules %v", names)
		}
		if strings.Contains(rules[0].Expr, `\"`) || rules[0].For != "2m" {
			t.Errorf("rule %+v: escapes kept or for lost", rules[0])
		}
		for _, m := range static {
			for _, dyn := range []string{"container_memory_rss", "container_cpu_cfs_periods_total", "kube_pod_container_resource_limits"} {
				if strings.Contains(m, `"`+dyn+`"`) {
					t.Errorf("static matcher %s names dynamic metric %s", m, dyn)
				}
			}
		}
	}
}

// TestCollectRuleGroupSelector: In and NotIn on clusterType, every expression must hold, no
// expression selects every cluster; other keys and operators are refused.
func TestCollectRuleGroupSelector(t *testing.T) {
	g := func(exprs ...SelectorExpression) CollectRuleGroup {
		var c CollectRuleGroup
		c.Selector.MatchExpressions = exprs
		return c
	}
	in := SelectorExpression{Key: "clusterType", Operator: "In", Values: []string{"SNO", "HyperShift"}}
	notIn := SelectorExpression{Key: "clusterType", Operator: "NotIn", Values: []string{"SNO"}}
	for _, tc := range []struct {
		g    CollectRuleGroup
		ct   string
		want bool
	}{
		{g(in), "SNO", true}, {g(in), "HyperShift", true}, {g(in), "", false},
		{g(notIn), "SNO", false}, {g(notIn), "", true},
		{g(in, notIn), "SNO", false}, {g(in, notIn), "HyperShift", true},
		{g(), "anything", true},
	} {
		if got := tc.g.Selects(tc.ct); got != tc.want {
			t.Errorf("%+v selects %q: %v, want %v", tc.g.Selector, tc.ct, got, tc.want)
		}
	}
	for _, doc := range []string{
		"collect_rules:\n- group: g\n  selector: {matchExpressions: [{key: region, operator: In, values: [x]}]}\n",
		"collect_rules:\n- group: g\n  selector: {matchExpressions: [{key: clusterType, operator: Exists}]}\n",
		"collect_rules:\n- group: g\n  rules: [{collect: r, expr: 'up >', dynamic_metrics: {names: [up]}}]\n",
	} {
		if _, err := ParseAllowlist([]byte(doc), ""); err == nil {
			t.Errorf("accepted:\n%s", doc)
		}
	}
}

// TestParseCollectRule: the operator's rendering of both default SNO rules parses: a rule
// without matches has "matches":[], one without names "names":[""] (the operator joins an empty
// list into one empty string), which is dropped.
func TestParseCollectRule(t *testing.T) {
	cpu := `{"name":"SNOHighCPUUsage","expr":"(1 - avg(rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))) * 100 > 70","for":"2m","names":["container_cpu_cfs_periods_total","kube_pod_container_resource_limits"],"matches":[]}`
	r, err := ParseCollectRule(cpu)
	if err != nil {
		t.Fatal(err)
	}
	if r.Expr != `(1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m]))) * 100 > 70` || len(r.Names) != 2 || len(r.Matches) != 0 {
		t.Errorf("parsed %+v", r)
	}
	noNames := `{"name":"m","expr":"up","for":"0s","names":[""],"matches":["__name__=\"container_memory_rss\",container!=\"\""]}`
	if r, err = ParseCollectRule(noNames); err != nil || len(r.Names) != 0 || len(r.Matches) != 1 {
		t.Errorf("parsed %+v, %v", r, err)
	}
	for _, bad := range []string{
		`{"name":"m","expr":"up","names":[""],"matches":[]}`, // nothing to collect
		`{"name":"m","expr":"up","names":["a-b"]}`,           // not a metric name
		`{"name":"m","expr":"up","for":"2 minutes","names":["a"]}`,
		`{"name":"m","expr":"up","names":["a"]} {}`,
		`{"name":"","expr":"up","names":["a"]}`,
	} {
		if _, err := ParseCollectRule(bad); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
