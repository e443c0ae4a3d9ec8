package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v3"
)

func TestLoadConfig(t *testing.T) {
	c, err := LoadConfig("testdata/config/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sources) != 2 {
		t.Fatalf("got %d sources, want 2", len(c.Sources))
	}
	p := c.Sources[0]
	if p.ID != "platform" || p.Interval != time.Minute || p.WorkerNumber != 2 || p.LimitBytes != 100<<20 {
		t.Errorf("platform source decoded as %+v", p)
	}
	if p.Labels["cluster"] != "local-cluster" || p.Renames["ALERTS"] != "alerts" {
		t.Errorf("labels %v renames %v", p.Labels, p.Renames)
	}
	if a := p.HTTPClientConfig.Authorization; a == nil || a.CredentialsFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("absolute credentials file changed to %+v", a)
	}
	if got, want := p.HTTPClientConfig.TLSConfig.CAFile, filepath.Join("testdata", "config", "service-ca.crt"); got != want {
		t.Errorf("relative CA file resolved to %q, want %q", got, want)
	}
	if want := []RecordingRule{{Name: "cluster:up:sum", Query: "sum(up)"}}; !reflect.DeepEqual(p.RecordingRules, want) {
		t.Errorf("rules %+v", p.RecordingRules)
	}
	if p.Elide != nil {
		t.Errorf("elide not given must stay nil, got %v", p.Elide)
	}
	if got := p.WithDefaults().Elide; !reflect.DeepEqual(got, DefaultElideLabels()) {
		t.Errorf("default elide %v", got)
	}
	u := c.Sources[1]
	if u.Elide == nil || len(u.Elide) != 0 || len(u.WithDefaults().Elide) != 0 {
		t.Errorf("elide: [] must mean none, got %#v", u.Elide)
	}
	if want := filepath.Join("testdata", "allowlist", "rhacm-metrics-allowlist.yaml"); u.Allowlist != want {
		t.Errorf("relative allowlist path resolved to %q, want %q", u.Allowlist, want)
	}
	if u.AllowlistKey != UWLAllowlistKey {
		t.Errorf("allowlist key %q", u.AllowlistKey)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"unknown-field.yaml", []string{"line 4", "intervall"}},
		{"duplicate-id.yaml", []string{`line 4, column 5: sources[1]: id "a" is already used by the source at line 2`}},
		{"bad-duration.yaml", []string{"line 4"}},
		{"bad-values.yaml", []string{
			`source "a"`, "from: url ftp://localhost:9090: scheme must be http or https",
			`matcher "up{"`, `matcher "{}"`, "worker_number -1 is negative", `compression "brotli": want gzip or none`,
			"http config: at most one of bearer_token & bearer_token_file must be configured",
		}},
		{"missing.yaml", []string{"read config testdata/config/missing.yaml"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := LoadConfig(filepath.Join("testdata", "config", tc.file))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigEmptyAndMultiDoc(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(empty)
	if err != nil || len(c.Sources) != 0 {
		t.Fatalf("empty file: %v %+v", err, c)
	}
	multi := filepath.Join(dir, "multi.yaml")
	if err := os.WriteFile(multi, []byte("sources: []\n---\nsources: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(multi); err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("multi-document: %v", err)
	}
}

func TestMergeFlagSource(t *testing.T) {
	file, err := LoadConfig("testdata/config/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		file    Config
		flags   *SourceConfig
		wantIDs []string
		wantErr string
	}{
		{name: "flags only", flags: &SourceConfig{ID: "c1", From: "http://localhost:9090"}, wantIDs: []string{"c1"}},
		{name: "file only", file: file, wantIDs: []string{"platform", "uwl"}},
		{name: "file and flags", file: file, flags: &SourceConfig{ID: "c1", From: "http://p:9090"}, wantIDs: []string{"platform", "uwl", "c1"}},
		{name: "duplicate id", file: file, flags: &SourceConfig{ID: "uwl", From: "http://p:9090"}, wantErr: `id "uwl" is already used`},
		{name: "flag source without id", flags: &SourceConfig{From: "http://p:9090"}, wantErr: "sources[0]: id is empty"},
		{name: "nothing", wantErr: "no source configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := MergeFlagSource(tc.file, tc.flags)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range c.Sources {
				ids = append(ids, s.ID)
			}
			if !reflect.DeepEqual(ids, tc.wantIDs) {
				t.Fatalf("ids %v, want %v", ids, tc.wantIDs)
			}
		})
	}
}

func TestSourceConfigValidate(t *testing.T) {
	ok := SourceConfig{ID: "c1", From: "http://localhost:9090"}
	for _, tc := range []struct {
		name    string
		mod     func(*SourceConfig)
		wantErr string
	}{
		{name: "minimal", mod: func(*SourceConfig) {}},
		{name: "bad id", mod: func(s *SourceConfig) { s.ID = "../x" }, wantErr: "id"},
		{name: "no host", mod: func(s *SourceConfig) { s.From = "http:///federate" }, wantErr: "no host"},
		{name: "password not echoed", mod: func(s *SourceConfig) { s.From = "ftp://u:secret@h" }, wantErr: "scheme"},
		{name: "bad from_query", mod: func(s *SourceConfig) { s.FromQuery = "localhost:9090" }, wantErr: "from_query"},
		{name: "bad label", mod: func(s *SourceConfig) { s.Labels = map[string]string{"a-b": "x"} }, wantErr: `label "a-b"`},
		{name: "empty label value", mod: func(s *SourceConfig) { s.Labels = map[string]string{"a": ""} }, wantErr: "empty value"},
		{name: "bad rename", mod: func(s *SourceConfig) { s.Renames = map[string]string{"a": "b-c"} }, wantErr: "rename"},
		{name: "anonymize without salt", mod: func(s *SourceConfig) { s.Anonymize = []string{"pod"} }, wantErr: "anonymize needs"},
		{name: "short interval", mod: func(s *SourceConfig) { s.Interval = time.Millisecond }, wantErr: "interval"},
		{name: "timeout over interval", mod: func(s *SourceConfig) { s.Interval, s.Timeout = time.Minute, 2*time.Minute }, wantErr: "timeout"},
		{name: "bad rule", mod: func(s *SourceConfig) { s.RecordingRules = []RecordingRule{{Name: "r", Query: "sum("}} }, wantErr: `recording_rules[0]: recording rule "r": parse query`},
		{name: "duplicate rule", mod: func(s *SourceConfig) {
			s.RecordingRules = []RecordingRule{{Name: "r", Query: "up"}, {Name: "r", Query: "up"}}
		}, wantErr: `name "r" is used twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			err := s.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q leaks the password", err)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	s := SourceConfig{ID: "c1", From: "http://localhost:9090"}.WithDefaults()
	if s.Interval != DefaultInterval || s.Timeout != 270*time.Second || s.LimitBytes != DefaultLimitBytes ||
		s.WorkerNumber != 1 || s.AllowlistKey != DefaultAllowlistKey {
		t.Fatalf("defaults %+v", s)
	}
	s = SourceConfig{Interval: 10 * time.Second}.WithDefaults()
	if s.Timeout != 9*time.Second {
		t.Fatalf("timeout %s", s.Timeout)
	}
}

func TestURLs(t *testing.T) {
	for _, tc := range []struct{ from, fromQuery, federate, query string }{
		{"http://localhost:9090", "", "http://localhost:9090/federate", "http://localhost:9090/api/v1/query"},
		{"http://localhost:9090/", "", "http://localhost:9090/federate", "http://localhost:9090/api/v1/query"},
		{"https://p:9091/prom/federate", "", "https://p:9091/prom/federate", "https://p:9091/prom/api/v1/query"},
		{"https://p:9091/custom", "https://q:9091", "https://p:9091/custom", "https://q:9091/api/v1/query"},
		{"https://p:9091", "https://q:9091/api/v1/query/", "https://p:9091/federate", "https://q:9091/api/v1/query"},
	} {
		t.Run(tc.from+" "+tc.fromQuery, func(t *testing.T) {
			f, err := federateURL(tc.from)
			if err != nil {
				t.Fatal(err)
			}
			q, err := queryURL(tc.fromQuery, tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if f.String() != tc.federate || q.String() != tc.query {
				t.Fatalf("got %s %s, want %s %s", f, q, tc.federate, tc.query)
			}
		})
	}
}

func TestParseRecordingRule(t *testing.T) {
	for _, tc := range []struct {
		in, wantErr string
		want        RecordingRule
	}{
		{in: `{"name":"a:b","query":"sum(up)"}`, want: RecordingRule{Name: "a:b", Query: "sum(up)"}},
		{in: `{"name":"a","query":"sum(up{job=\"x\"})"}`, want: RecordingRule{Name: "a", Query: `sum(up{job="x"})`}},
		{in: `{"name":"a"`, wantErr: "want {"},
		{in: `{"name":"a","query":"up","for":"1m"}`, wantErr: `unknown field "for"`},
		{in: `{"name":"a","query":"up"} x`, wantErr: "trailing data"},
		{in: `{"query":"up"}`, wantErr: "name is empty"},
		{in: `{"name":"a-b","query":"up"}`, wantErr: "not a valid metric name"},
		{in: `{"name":"a","query":""}`, wantErr: "query is empty"},
		{in: `{"name":"a","query":"sum(up"}`, wantErr: "parse query"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRecordingRule(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || r != tc.want {
				t.Fatalf("got %+v %v", r, err)
			}
		})
	}
}

func TestSecretRedacted(t *testing.T) {
	s := SourceConfig{ID: "c1", AnonymizeSalt: "salty", HTTPClientConfig: config.HTTPClientConfig{Authorization: &config.Authorization{Credentials: "tok3n"}}}
	y, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	// Not %#v: it prints Go syntax, prometheus/common/config's Secret included.
	for _, out := range []string{fmt.Sprintf("%v", s), fmt.Sprintf("%+v", s), string(y), string(j)} {
		if strings.Contains(out, "salty") || strings.Contains(out, "tok3n") || !strings.Contains(out, "secret") {
			t.Errorf("secret not redacted: %s", out)
		}
	}
	var back SourceConfig
	if err := yaml.Unmarshal([]byte("authorization: {credentials: abc}\nanonymize_salt: s\n"), &back); err != nil ||
		back.HTTPClientConfig.Authorization == nil || back.HTTPClientConfig.Authorization.Credentials != "abc" || back.AnonymizeSalt != "s" {
		t.Fatalf("decode secrets: %v %+v", err, back)
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
