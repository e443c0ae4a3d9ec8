package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	defaultCM = "testdata/allowlist/rhacm-metrics-allowlist.yaml"
	customCM  = "testdata/allowlist/custom-metrics-allowlist.yaml"
	custom2CM = "testdata/allowlist/custom-metrics-allowlist-2.yaml"
	uwlCM     = "testdata/allowlist/uwl-custom-allowlist.yaml"
)

// TestLoadAllowlistsMerge merges RHACM's default ConfigMap with custom ones the way the operator
// does: adds, "-name" and "-match" removals, "-group" removals, renames that override, rules
// appended, and user-workload lists with their namespace injected.
func TestLoadAllowlistsMerge(t *testing.T) {
	type want struct {
		matchers, noMatchers []string // present, absent
		nMatchers            int
		renames              map[string]string
		rules, noRules       []string
		nRules               int
		groups               []string
	}
	for _, tc := range []struct {
		name string
		cfg  SourceConfig
		want want
	}{
		{
			name: "default only",
			cfg:  SourceConfig{Allowlist: defaultCM},
			want: want{
				matchers:  []string{`{__name__="cluster_infrastructure_provider"}`, `{__name__="acm_managed_cluster_labels"}`, `{__name__="container_memory_rss",id="/system.slice"}`},
				nMatchers: 228,
				renames:   map[string]string{"mixin_pod_workload": "namespace_workload_pod:kube_pod_owner:relabel"},
				nRules:    15,
				groups:    []string{"SNOResourceUsage"},
			},
		},
		{
			name: "default and custom",
			cfg:  SourceConfig{Allowlist: defaultCM, CustomAllowlists: []string{customCM}},
			want: want{
				matchers:   []string{`{__name__="node_load15"}`, `{__name__="up"}`, `{__name__="kube_node_info",node!=""}`, `{__name__="container_memory_rss",container!=""}`},
				noMatchers: []string{`{__name__="cluster_infrastructure_provider"}`, `{__name__="acm_managed_cluster_labels"}`, `{__name__="container_memory_rss",id="/system.slice"}`},
				// 228 - 2 names - 1 match + 1 name (up is already there) + 1 match.
				nMatchers: 227,
				renames: map[string]string{
					"mixin_pod_workload":               "custom_pod_workload",
					"node_load15":                      "custom_load15",
					"etcd_mvcc_db_total_size_in_bytes": "etcd_debugging_mvcc_db_total_size_in_bytes",
				},
				// The identical copy of a default rule is dropped.
				rules:  []string{"custom:node_load15:max", "apiserver_request_duration_seconds:histogram_quantile_99"},
				nRules: 16,
				groups: []string{"CustomHighCPU"},
			},
		},
		{
			name: "two customs in order",
			cfg:  SourceConfig{Allowlist: defaultCM, CustomAllowlists: []string{customCM, custom2CM}},
			want: want{
				matchers:   []string{`{__name__="acm_managed_cluster_labels"}`},
				noMatchers: []string{`{__name__="node_load15"}`, `{__name__="cluster_infrastructure_provider"}`},
				nMatchers:  227,
				rules:      []string{"custom:node_load15:max", "custom:up:count"},
				nRules:     17,
				groups:     []string{"CustomHighCPU"},
			},
		},
		{
			name: "custom key selects the user-workload lists",
			cfg:  SourceConfig{Allowlist: defaultCM, AllowlistKey: UWLAllowlistKey, CustomAllowlists: []string{customCM}},
			want: want{
				matchers:   []string{`{__name__="custom_uwl_metric"}`, `{__name__="up"}`},
				noMatchers: []string{`{__name__="ALERTS"}`},
				nMatchers:  36,
				renames:    map[string]string{"etcd_mvcc_db_total_size_in_bytes": "etcd_debugging_mvcc_db_total_size_in_bytes"},
				nRules:     6,
			},
		},
		{
			name: "user-workload list of a namespace",
			cfg:  SourceConfig{Allowlist: defaultCM, AllowlistKey: UWLAllowlistKey, UWLAllowlists: []string{uwlCM}},
			want: want{
				matchers: []string{
					`{__name__="http_requests_total",namespace="app-a"}`,
					`{__name__="http_request_duration_seconds_bucket",le!="",namespace="app-a"}`,
					// A namespaced removal removes only the namespaced entry: the default stays.
					`{__name__="etcd_server_has_leader"}`,
				},
				noMatchers: []string{`{__name__="http_requests_total"}`},
				nMatchers:  38,
				renames:    map[string]string{"http_requests_total": "app_http_requests_total"},
				nRules:     6,
			},
		},
		{
			name: "user-workload list with the namespace given",
			cfg:  SourceConfig{UWLAllowlists: []string{"app-b=" + uwlCM}},
			want: want{
				matchers:   []string{`{__name__="http_requests_total",namespace="app-b"}`},
				noMatchers: []string{`{__name__="http_requests_total",namespace="app-a"}`},
				nMatchers:  2,
			},
		},
		{
			name: "customs without a default",
			cfg:  SourceConfig{CustomAllowlists: []string{customCM}},
			want: want{
				matchers:  []string{`{__name__="node_load15"}`, `{__name__="up"}`, `{__name__="kube_node_info",node!=""}`},
				nMatchers: 3,
				nRules:    2,
				groups:    []string{"CustomHighCPU"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ok, err := tc.cfg.LoadAllowlists()
			if err != nil || !ok {
				t.Fatalf("LoadAllowlists: %v, %v", ok, err)
			}
			ms := a.Matchers()
			for _, m := range ms {
				if err := ValidateMatcher(m); err != nil {
					t.Error(err)
				}
			}
			if len(ms) != tc.want.nMatchers {
				t.Errorf("%d matchers, want %d", len(ms), tc.want.nMatchers)
			}
			for _, m := range tc.want.matchers {
				if !slices.Contains(ms, m) {
					t.Errorf("matcher %s missing", m)
				}
			}
			for _, m := range tc.want.noMatchers {
				if slices.Contains(ms, m) {
					t.Errorf("matcher %s not removed", m)
				}
			}
			for k, v := range tc.want.renames {
				if a.Renames[k] != v {
					t.Errorf("rename %s = %q, want %q", k, a.Renames[k], v)
				}
			}
			rules, err := a.RecordingRuleList()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range rules {
				names = append(names, r.Name)
			}
			if len(rules) != tc.want.nRules {
				t.Errorf("%d rules, want %d: %v", len(rules), tc.want.nRules, names)
			}
			for _, r := range tc.want.rules {
				if !slices.Contains(names, r) {
					t.Errorf("rule %s missing", r)
				}
			}
			var groups []string
			for _, g := range a.CollectRules {
				var v struct {
					Group string `yaml:"group"`
				}
				if err := g.Decode(&v); err != nil {
					t.Fatal(err)
				}
				groups = append(groups, v.Group)
			}
			if !slices.Equal(groups, tc.want.groups) {
				t.Errorf("collect-rule groups %v, want %v", groups, tc.want.groups)
			}
		})
	}
}

func TestLoadAllowlistsErrors(t *testing.T) {
	dir := t.TempDir()
	bare := filepath.Join(dir, "uwl.yaml")
	if err := os.WriteFile(bare, []byte("names: [a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("matches: [\"-a=b{\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  SourceConfig
		want string
	}{
		{"none", SourceConfig{}, ""},
		{"missing custom", SourceConfig{Allowlist: defaultCM, CustomAllowlists: []string{filepath.Join(dir, "nope.yaml")}}, "read allowlist"},
		{"custom without the key", SourceConfig{Allowlist: defaultCM, CustomAllowlists: []string{uwlCM}}, `ConfigMap has no key "metrics_list.yaml"`},
		{"bad removal", SourceConfig{CustomAllowlists: []string{bad}}, "allowlist " + bad},
		{"uwl without namespace", SourceConfig{UWLAllowlists: []string{bare}}, "no namespace"},
		{"missing uwl", SourceConfig{UWLAllowlists: []string{"ns=" + filepath.Join(dir, "nope.yaml")}}, "read uwl allowlist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok, err := tc.cfg.LoadAllowlists()
			if tc.want == "" {
				if err != nil || ok {
					t.Fatalf("got %v, %v; want no allowlist", ok, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSplitUWLAllowlist(t *testing.T) {
	for _, tc := range []struct{ in, ns, path string }{
		{"app-a=/etc/a.yaml", "app-a", "/etc/a.yaml"},
		{"/etc/a.yaml", "", "/etc/a.yaml"},
		{"dir/x=y.yaml", "", "dir/x=y.yaml"},
		{"App=a.yaml", "", "App=a.yaml"},
		{"=a.yaml", "", "=a.yaml"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if ns, p := SplitUWLAllowlist(tc.in); ns != tc.ns || p != tc.path {
				t.Errorf("got %q, %q; want %q, %q", ns, p, tc.ns, tc.path)
			}
		})
	}
}

// TestSourceCustomAllowlists builds a source from a config file naming the allowlists with
// relative paths, and checks what it federates.
func TestSourceCustomAllowlists(t *testing.T) {
	abs, err := filepath.Abs("testdata/allowlist")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"rhacm-metrics-allowlist.yaml", "custom-metrics-allowlist.yaml", "uwl-custom-allowlist.yaml"} {
		if err := os.Symlink(filepath.Join(abs, f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	cfgYAML := `sources:
- id: c1
  from: http://localhost:9090
  allowlist: rhacm-metrics-allowlist.yaml
  allowlist_key: uwl_metrics_list.yaml
  custom_allowlists: [custom-metrics-allowlist.yaml]
  uwl_allowlists: [app-c=uwl-custom-allowlist.yaml]
`
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sources[0]
	if want := "app-c=" + filepath.Join(dir, "uwl-custom-allowlist.yaml"); s.UWLAllowlists[0] != want {
		t.Errorf("uwl allowlist resolved to %q, want %q", s.UWLAllowlists[0], want)
	}
	st, err := buildState(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{`{__name__="custom_uwl_metric"}`, `{__name__="http_requests_total",namespace="app-c"}`} {
		if !slices.Contains(st.matchers, m) {
			t.Errorf("matcher %s missing", m)
		}
	}
	if slices.Contains(st.matchers, `{__name__="ALERTS"}`) {
		t.Error("ALERTS not removed")
	}
}
