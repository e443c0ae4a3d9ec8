package agent

import (
	"strings"
	"testing"
)

// The real RHACM ConfigMap (testdata/allowlist/rhacm-metrics-allowlist.yaml, copied from
// stolostron/multicluster-observability-operator at d2babeb) holds, in metrics_list.yaml, 216
// names (node_cpu_seconds_total twice), 13 matches, 4 renames, 15 recording rules and 1
// collect-rule group; in uwl_metrics_list.yaml 28 names, 8 matches, 1 rename, 6 recording rules,
// an empty rules and an empty collect_rules.
func TestLoadAllowlistRHACM(t *testing.T) {
	for _, tc := range []struct {
		name, path, key                               string
		names, matches, matchers, renames, rules, col int
	}{
		{"configmap platform", "testdata/allowlist/rhacm-metrics-allowlist.yaml", "", 216, 13, 228, 4, 15, 1},
		{"configmap uwl", "testdata/allowlist/rhacm-metrics-allowlist.yaml", UWLAllowlistKey, 28, 8, 36, 1, 6, 0},
		{"bare document", "testdata/allowlist/bare-metrics-list.yaml", "ignored.yaml", 216, 13, 228, 4, 15, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := LoadAllowlist(tc.path, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			rules, err := a.RecordingRuleList()
			if err != nil {
				t.Fatal(err)
			}
			got := []int{len(a.Names), len(a.Matches), len(a.Matchers()), len(a.Renames), len(rules), len(a.CollectRules)}
			want := []int{tc.names, tc.matches, tc.matchers, tc.renames, tc.rules, tc.col}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("names, matches, matchers, renames, rules, collect groups = %v, want %v", got, want)
				}
			}
			for _, m := range a.Matchers() {
				if err := ValidateMatcher(m); err != nil {
					t.Error(err)
				}
			}
			for _, r := range rules {
				if strings.Contains(r.Query, `\"`) {
					t.Errorf("rule %s kept RHACM's escapes: %s", r.Name, r.Query)
				}
			}
			if u := a.Unsupported(); len(u) != 0 {
				t.Errorf("unsupported %v", u)
			}
		})
	}
}

func TestAllowlistDetails(t *testing.T) {
	a, err := LoadAllowlist("testdata/allowlist/rhacm-metrics-allowlist.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	m := a.Matchers()
	if m[0] != `{__name__=":node_memory_MemAvailable_bytes:sum"}` {
		t.Errorf("first matcher %s", m[0])
	}
	if want := `{__name__="cluster_operator_up"}`; !containsString(m, want) {
		t.Errorf("trailing spaces not trimmed: no %s", want)
	}
	if want := `{__name__="container_memory_rss",container!=""}`; !containsString(m, want) {
		t.Errorf("match not wrapped in braces: no %s", want)
	}
	if a.Renames["mixin_pod_workload"] != "namespace_workload_pod:kube_pod_owner:relabel" {
		t.Errorf("renames %v", a.Renames)
	}
	rules, _ := a.RecordingRuleList()
	if want := `sum(container_memory_rss) by (container, namespace)`; rules[10].Query != want {
		t.Errorf("rule 10 %+v", rules[10])
	}
	if want := `sum(kube_pod_container_resource_requests{container!=""}) by (resource, namespace)`; rules[12].Query != want {
		t.Errorf("rule 12 %+v", rules[12])
	}
}

func TestParseAllowlistErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, key, want string }{
		{"missing key", "kind: ConfigMap\ndata:\n  a.yaml: |\n    names: [up]\n", "", `ConfigMap has no key "metrics_list.yaml" (keys: a.yaml)`},
		{"bad yaml", "names: [up\n", "", "decode"},
		{"bad match", "matches:\n  - __name__=~\"\n", "", "matcher"},
		{"bad rule", "recording_rules:\n  - record: a-b\n    expr: up\n", "", "not a valid metric name"},
		{"deprecated rules key", "rules:\n  - record: r\n    expr: sum(\n", "", `recording rule "r": parse query`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAllowlist([]byte(tc.doc), tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	a, err := ParseAllowlist([]byte("names: [up]\nfoo: 1\nrules:\n  - record: r\n    expr: up\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if u := a.Unsupported(); len(u) != 1 || u[0] != `unknown key "foo"` {
		t.Errorf("unsupported %v", u)
	}
	if r, _ := a.RecordingRuleList(); len(r) != 1 || r[0].Name != "r" {
		t.Errorf("deprecated rules not used: %v", r)
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
