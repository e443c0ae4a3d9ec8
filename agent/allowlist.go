package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Allowlist is one document of RHACM's observability-metrics-allowlist ConfigMap, taken as is:
//
//   - names become {__name__="<name>"} matchers;
//   - matches (selector bodies without braces, as RHACM writes them) become {<match>} matchers;
//   - renames are metric renames;
//   - recording_rules (record/expr), and the deprecated rules key of older RHACM releases, become
//     recording rules. RHACM pastes expr into a JSON string, so its expressions carry \" escapes:
//     an expr that decodes as the body of a JSON string is decoded, any other is used verbatim;
//   - collect_rules groups (see CollectRuleGroups) select collect rules by the cluster's type; the
//     metrics those rules federate dynamically are left out of the static matchers
//     (StaticMatchers), as RHACM's operator leaves them out of --match;
//   - in a custom list, "-" entries remove: see MergeAllowlists (allowlist_merge.go).
//
// Unknown keys are ignored, as RHACM ignores them, and reported by Unsupported.
type Allowlist struct {
	Names          []string             `yaml:"names"`
	Matches        []string             `yaml:"matches"`
	Renames        map[string]string    `yaml:"renames"`
	RecordingRules []AllowlistRule      `yaml:"recording_rules"`
	Rules          []AllowlistRule      `yaml:"rules"`
	CollectRules   []yaml.Node          `yaml:"collect_rules"`
	Other          map[string]yaml.Node `yaml:",inline"`
}

// AllowlistRule is an RHACM recording rule.
type AllowlistRule struct {
	Record string `yaml:"record"`
	Expr   string `yaml:"expr"`
}

// LoadAllowlist reads an allowlist file: either a ConfigMap, whose data[key] is the document
// (key DefaultAllowlistKey when empty; UWLAllowlistKey for user workloads), or a bare document,
// for which key is ignored. The matchers and rules are validated.
func LoadAllowlist(path, key string) (Allowlist, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Allowlist{}, fmt.Errorf("read allowlist %s: %w", path, err)
	}
	a, err := ParseAllowlist(data, key)
	if err != nil {
		return a, fmt.Errorf("allowlist %s: %w", path, err)
	}
	return a, nil
}

// ParseAllowlist is LoadAllowlist on bytes.
func ParseAllowlist(data []byte, key string) (Allowlist, error) {
	if key == "" {
		key = DefaultAllowlistKey
	}
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		return Allowlist{}, fmt.Errorf("decode: %w", err)
	}
	doc := data
	if _, isCM := top["data"]; isCM || top["kind"].Value == "ConfigMap" {
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal(data, &cm); err != nil {
			return Allowlist{}, fmt.Errorf("decode ConfigMap: %w", err)
		}
		s, ok := cm.Data[key]
		if !ok {
			keys := make([]string, 0, len(cm.Data))
			for k := range cm.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return Allowlist{}, fmt.Errorf("ConfigMap has no key %q (keys: %s)", key, strings.Join(keys, ", "))
		}
		doc = []byte(s)
	}
	var a Allowlist
	if err := yaml.Unmarshal(doc, &a); err != nil {
		return Allowlist{}, fmt.Errorf("decode %s: %w", key, err)
	}
	for i := range a.Names {
		a.Names[i] = strings.TrimSpace(a.Names[i])
	}
	if err := a.validate(); err != nil {
		return a, fmt.Errorf("%s: %w", key, err)
	}
	return a, nil
}

func (a Allowlist) validate() error {
	if _, err := a.RecordingRuleList(); err != nil {
		return err
	}
	if _, err := a.CollectRuleGroups(); err != nil {
		return err
	}
	// A removal entry ("-x", see MergeAllowlists) is checked as what it removes.
	trim := func(l []string) []string {
		out := make([]string, len(l))
		for i, e := range l {
			out[i] = strings.TrimPrefix(strings.TrimSpace(e), "-")
		}
		return out
	}
	for _, m := range (Allowlist{Names: trim(a.Names), Matches: trim(a.Matches)}).Matchers() {
		if err := ValidateMatcher(m); err != nil {
			return err
		}
	}
	return nil
}

// Matchers returns the match[] selectors: names first, then matches, in file order, duplicates
// removed. Removal entries ("-x", see MergeAllowlists) are not selectors and are left out.
func (a Allowlist) Matchers() []string {
	out := make([]string, 0, len(a.Names)+len(a.Matches))
	for _, n := range a.Names {
		if n != "" && !strings.HasPrefix(n, "-") {
			out = append(out, fmt.Sprintf("{__name__=%q}", n))
		}
	}
	for _, m := range a.Matches {
		if m = strings.TrimSpace(m); m == "" || strings.HasPrefix(m, "-") {
			continue
		}
		if !strings.HasPrefix(m, "{") {
			m = "{" + m + "}"
		}
		out = append(out, m)
	}
	return dedup(out)
}

// RecordingRuleList returns recording_rules followed by the deprecated rules, validated.
func (a Allowlist) RecordingRuleList() ([]RecordingRule, error) {
	var out []RecordingRule
	for _, r := range append(append([]AllowlistRule(nil), a.RecordingRules...), a.Rules...) {
		rr := RecordingRule{Name: strings.TrimSpace(r.Record), Query: unescapeExpr(r.Expr)}
		if err := rr.Validate(); err != nil {
			return nil, err
		}
		out = append(out, rr)
	}
	return out, nil
}

// Unsupported describes what the allowlist holds that the agent ignores: unknown keys. Empty
// when everything is used.
func (a Allowlist) Unsupported() []string {
	var out []string
	keys := make([]string, 0, len(a.Other))
	for k := range a.Other {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, fmt.Sprintf("unknown key %q", k))
	}
	return out
}

// unescapeExpr undoes RHACM's \" escapes: the operator formats expr into
// --recordingrule={"name":"%s","query":"%s"}, so the expression is the body of a JSON string.
func unescapeExpr(expr string) string {
	expr = strings.TrimSpace(expr)
	if !strings.Contains(expr, `\`) {
		return expr
	}
	var s string
	if err := json.Unmarshal([]byte(`"`+expr+`"`), &s); err != nil {
		return expr
	}
	return s
}

func dedup(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
