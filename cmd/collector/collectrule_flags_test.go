package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/collector-dev/collector/agent"
)

// operatorCollectRule is --collectrule as RHACM's operator renders the default allowlist's
// SNOHighMemoryUsage rule: the expr keeps the allowlist's \" escapes, matches are JSON strings.
const operatorCollectRule = `{"name":"SNOHighMemoryUsage","expr":"(1 - sum(:node_memory_MemAvailable_bytes:sum) / sum(kube_node_status_allocatable{resource=\"memory\"})) * 100 > 70","for":"2m","names":["kube_pod_container_resource_limits","kube_pod_container_resource_requests","namespace_workload_pod:kube_pod_owner:relabel"],"matches":["__name__=\"container_memory_cache\",container!=\"\"","__name__=\"container_memory_rss\",container!=\"\""]}`

// TestCollectRuleFlags: --collectrule in the operator's JSON and --evaluate-interval reach the
// source, from the command line, the environment or the config file's flags: section.
func TestCollectRuleFlags(t *testing.T) {
	t.Parallel()
	want := agent.CollectRule{
		Name:    "SNOHighMemoryUsage",
		Expr:    `(1 - sum(:node_memory_MemAvailable_bytes:sum) / sum(kube_node_status_allocatable{resource="memory"})) * 100 > 70`,
		For:     "2m",
		Names:   []string{"kube_pod_container_resource_limits", "kube_pod_container_resource_requests", "namespace_workload_pod:kube_pod_owner:relabel"},
		Matches: []string{`__name__="container_memory_cache",container!=""`, `__name__="container_memory_rss",container!=""`},
	}
	check := func(t *testing.T, s settings) {
		t.Helper()
		src, err := sourceFromFlags(s, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if len(src.CollectRules) != 1 || !reflect.DeepEqual(src.CollectRules[0], want) {
			t.Errorf("collect rules %+v, want [%+v]", src.CollectRules, want)
		}
		if src.EvaluateInterval != 15*time.Second {
			t.Errorf("evaluate interval %v, want 15s", src.EvaluateInterval)
		}
	}
	t.Run("command line", func(t *testing.T) {
		check(t, fileSettings(t, nil, "--id", "c1", "--collectrule", operatorCollectRule, "--evaluate-interval", "15s"))
	})
	t.Run("config file", func(t *testing.T) {
		check(t, fileSettings(t, map[string]agent.FlagValue{
			"collectrule":       {Values: []string{operatorCollectRule}},
			"evaluate-interval": {Values: []string{"15s"}},
		}, "--id", "c1"))
	})
	t.Run("default", func(t *testing.T) {
		src, err := sourceFromFlags(fileSettings(t, nil, "--id", "c1", "--interval", "10s"), "c1")
		if err != nil {
			t.Fatal(err)
		}
		if got := src.WithDefaults().EvaluateInterval; got != 10*time.Second {
			t.Errorf("evaluate interval with --interval 10s: %v, want 10s (min(30s, interval))", got)
		}
		if got := (agent.SourceConfig{}).WithDefaults().EvaluateInterval; got != 30*time.Second {
			t.Errorf("default evaluate interval %v, want 30s", got)
		}
	})
}
