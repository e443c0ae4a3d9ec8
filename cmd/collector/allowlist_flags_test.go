package main

import (
	"path/filepath"
	"testing"
)

// TestAllowlistFlags: --allowlist is repeatable (the first is the default list, the others
// custom lists), --allowlist-key picks the user-workload key and --uwl-allowlist adds
// namespaced lists, from the command line, the environment and the config file's flags: section.
// The running binary logs how many matchers its source federates.
func TestAllowlistFlags(t *testing.T) {
	t.Parallel()
	td, err := filepath.Abs("../../agent/testdata/allowlist")
	if err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(td, "rhacm-metrics-allowlist.yaml")
	custom := filepath.Join(td, "custom-metrics-allowlist.yaml")
	uwl := filepath.Join(td, "uwl-custom-allowlist.yaml")
	cfg := filepath.Join(t.TempDir(), "collector.yaml")
	writeFile(t, cfg, `
flags:
  id: c1
  allowlist: ['`+def+`', '`+custom+`']
  allowlist-key: uwl_metrics_list.yaml
  uwl-allowlist: ['app-a=`+uwl+`']
`)
	// Counts from agent.TestLoadAllowlistsMerge: the default platform list has 228 matchers, 227
	// with the custom one; the user-workload list 36, 38 with the namespaced one.
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want float64
	}{
		{"default", nil, []string{"--id", "c1", "--allowlist", def}, 228},
		{"default and custom", nil, []string{"--id", "c1", "--allowlist", def, "--allowlist", custom}, 227},
		{"user workload", nil, []string{"--id", "c1", "--allowlist", def, "--allowlist", custom, "--allowlist-key", "uwl_metrics_list.yaml", "--uwl-allowlist", "app-a=" + uwl}, 38},
		{"environment", []string{"COLLECTOR_ALLOWLIST=" + def, "COLLECTOR_ALLOWLIST_KEY=uwl_metrics_list.yaml", "COLLECTOR_UWL_ALLOWLIST=" + uwl}, []string{"--id", "c1"}, 38},
		{"config file", nil, []string{"--config", cfg}, 38},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := startedSettings(t, tc.env, tc.args...)
			if l["matchers"] != tc.want {
				t.Errorf("matchers %v, want %v", l["matchers"], tc.want)
			}
		})
	}
}
