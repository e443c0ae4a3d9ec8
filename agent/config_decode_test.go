package agent

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDecodeStrict: unknown keys are found at any depth (inlined structs, lists, maps of structs)
// with their line and column, all of them; inlined maps take any key; a type that decodes itself
// reports its own error only; decoding errors are placed at the innermost node.
func TestDecodeStrict(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		into       func() any
		want       []string
	}{
		{"nested in inline", "url: http://x\ntls_config:\n  ca_fil: a\n", func() any { r := defaultRemoteWriteConfig(); return &r },
			[]string{"line 3, column 3: field ca_fil not found in config.TLSConfig"}},
		{"in a list and a map", "write_relabel_configs:\n  - {actoin: drop}\nqueue_config: {max_shard: 1}\n", func() any { return &RemoteWriteConfig{} },
			[]string{"line 2, column 6: field actoin not found in relabel.Config", "line 3, column 16: field max_shard not found in agent.RemoteWriteQueueConfig"}},
		{"inlined map takes any key", "http_headers: {X-Any: {values: [a]}}\n", func() any { return &RemoteWriteConfig{} }, nil},
		{"self-decoding type", "interval: {a: 1}\n", func() any { return &map[string]FlagValue{} },
			[]string{"line 1: a flag's value is a scalar or a list of scalars"}},
		{"innermost failing node", "queue_config: {min_backoff: 1x, max_backoff: 2q}\n", func() any { return &RemoteWriteConfig{} },
			[]string{`line 1, column 29: unknown unit "x" in duration "1x"`, `line 1, column 46: unknown unit "q" in duration "2q"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tc.body), &n); err != nil {
				t.Fatal(err)
			}
			errs := decodeStrict(&n, tc.into())
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("errors %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d %q does not contain %q", i, got[i], w)
				}
			}
		})
	}
}
