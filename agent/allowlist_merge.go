package agent

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Custom allowlists, merged as RHACM's operator merges the observability-metrics-custom-allowlist
// ConfigMaps into the default observability-metrics-allowlist (MergeAllowlist, mergeMetrics and
// mergeCollectorRuleGroupList in stolostron/multicluster-observability-operator):
//
//   - names and matches: the custom entries are appended; an entry "-x" removes x from the merged
//     list (default and earlier customs alike); duplicates are removed, first occurrence kept;
//   - renames: a custom rename replaces the default one of the same metric;
//   - recording rules: appended, a custom list's recording_rules, or its deprecated rules when it
//     has no recording_rules key; a rule identical (record and expr) to an earlier one is dropped;
//   - collect_rules: groups appended; a group named "-g" removes group g.
//
// Lists are merged in order, the first being the default. A "-" entry of the first list removes
// nothing and is dropped (the operator would pass it on as a selector that matches nothing).
//
// User-workload lists (UWLAllowlistKey of a ConfigMap in an application namespace) have that
// namespace injected: name x becomes the match __name__="x",namespace="<ns>" and each match m
// becomes m,namespace="<ns>", so that the list selects only that namespace's series. The
// operator injects the namespace into names; matches are injected too so that a namespaced list
// never selects another namespace's series.

// UWLAllowlistSpec is the form of a user-workload allowlist flag or uwl_allowlists entry:
// [NAMESPACE=]PATH. Without NAMESPACE the ConfigMap's metadata.namespace is used.
const UWLAllowlistSpec = "[NAMESPACE=]PATH"

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// SplitUWLAllowlist splits a [NAMESPACE=]PATH value. The part before the first = is a
// namespace when it is a valid Kubernetes namespace name; otherwise the whole value is the path.
func SplitUWLAllowlist(v string) (namespace, path string) {
	if i := strings.IndexByte(v, '='); i > 0 && i <= 63 && dns1123Label.MatchString(v[:i]) {
		return v[:i], v[i+1:]
	}
	return "", v
}

// MergeAllowlists merges lists in order, the first being the default one, as described above.
func MergeAllowlists(lists ...Allowlist) Allowlist {
	var out Allowlist
	for i, l := range lists {
		out.Names = mergeEntries(out.Names, l.Names)
		out.Matches = mergeEntries(out.Matches, l.Matches)
		for k, v := range l.Renames {
			if out.Renames == nil {
				out.Renames = map[string]string{}
			}
			out.Renames[k] = v
		}
		rules := l.RecordingRules
		if i == 0 {
			// The default list keeps both keys, as LoadAllowlist always has.
			rules = append(append([]AllowlistRule(nil), l.RecordingRules...), l.Rules...)
		} else if l.RecordingRules == nil {
			rules = l.Rules
		}
		out.RecordingRules = mergeRules(out.RecordingRules, rules)
		out.CollectRules = mergeCollectRules(out.CollectRules, l.CollectRules)
		for k, v := range l.Other {
			if out.Other == nil {
				out.Other = map[string]yaml.Node{}
			}
			out.Other[k] = v
		}
	}
	return out
}

// mergeEntries is the operator's mergeMetrics: add's entries appended to base, "-x" entries
// removing x from the result, duplicates removed.
func mergeEntries(base, add []string) []string {
	removed := map[string]bool{}
	all := append([]string(nil), base...)
	for _, e := range add {
		e = strings.TrimSpace(e)
		if r, ok := strings.CutPrefix(e, "-"); ok {
			removed[strings.TrimSpace(r)] = true
			continue
		}
		all = append(all, e)
	}
	seen := map[string]bool{}
	out := []string{}
	for _, e := range all {
		if e == "" || seen[e] || removed[e] {
			continue
		}
		seen[e] = true
		out = append(out, e)
	}
	return out
}

func mergeRules(base, add []AllowlistRule) []AllowlistRule {
	out := base
	for _, r := range add {
		dup := false
		for _, o := range out {
			if strings.TrimSpace(o.Record) == strings.TrimSpace(r.Record) && unescapeExpr(o.Expr) == unescapeExpr(r.Expr) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, r)
		}
	}
	return out
}

// mergeCollectRules is the operator's mergeCollectorRuleGroupList; a group's name is its group
// key.
func mergeCollectRules(base, add []yaml.Node) []yaml.Node {
	name := func(n yaml.Node) string {
		var g struct {
			Group string `yaml:"group"`
		}
		_ = n.Decode(&g) // a group that is not a mapping has no name; it is kept as is
		return strings.TrimSpace(g.Group)
	}
	removed := map[string]bool{}
	all := append([]yaml.Node(nil), base...)
	for _, g := range add {
		if r, ok := strings.CutPrefix(name(g), "-"); ok {
			removed[r] = true
			continue
		}
		all = append(all, g)
	}
	var out []yaml.Node
	for _, g := range all {
		if !removed[name(g)] {
			out = append(out, g)
		}
	}
	return out
}

// InjectNamespace returns a copy of a whose names and matches select only namespace ns: the
// names become matches. Removal entries ("-x") are injected too, so that they remove the
// namespaced entry.
func (a Allowlist) InjectNamespace(ns string) Allowlist {
	out := a
	out.Names = nil
	out.Matches = make([]string, 0, len(a.Names)+len(a.Matches))
	inject := func(e string, name bool) {
		e = strings.TrimSpace(e)
		neg := ""
		if r, ok := strings.CutPrefix(e, "-"); ok {
			neg, e = "-", strings.TrimSpace(r)
		}
		if e == "" {
			return
		}
		if name {
			e = fmt.Sprintf("__name__=%q", e)
		} else {
			e = strings.TrimSuffix(strings.TrimPrefix(e, "{"), "}")
		}
		out.Matches = append(out.Matches, fmt.Sprintf("%s%s,namespace=%q", neg, e, ns))
	}
	for _, n := range a.Names {
		inject(n, true)
	}
	for _, m := range a.Matches {
		inject(m, false)
	}
	return out
}

// LoadAllowlists reads and merges the allowlists of s: Allowlist (the default list) and
// CustomAllowlists under AllowlistKey, then UWLAllowlists under UWLAllowlistKey with their
// namespace injected. ok is false when s names no allowlist.
func (s SourceConfig) LoadAllowlists() (merged Allowlist, ok bool, err error) {
	s = s.WithDefaults()
	var lists []Allowlist
	for _, p := range append([]string{s.Allowlist}, s.CustomAllowlists...) {
		if p == "" {
			continue
		}
		a, err := LoadAllowlist(p, s.AllowlistKey)
		if err != nil {
			return Allowlist{}, false, err
		}
		lists = append(lists, a)
	}
	for _, v := range s.UWLAllowlists {
		ns, p := SplitUWLAllowlist(v)
		data, err := os.ReadFile(p)
		if err != nil {
			return Allowlist{}, false, fmt.Errorf("read uwl allowlist %s: %w", p, err)
		}
		if ns == "" {
			var cm struct {
				Metadata struct {
					Namespace string `yaml:"namespace"`
				} `yaml:"metadata"`
			}
			_ = yaml.Unmarshal(data, &cm) // a document ParseAllowlist cannot decode fails below
			ns = cm.Metadata.Namespace
		}
		a, err := ParseAllowlist(data, UWLAllowlistKey)
		if err != nil {
			return Allowlist{}, false, fmt.Errorf("uwl allowlist %s: %w", p, err)
		}
		if ns == "" {
			return Allowlist{}, false, fmt.Errorf("uwl allowlist %s: no namespace: give %s or a ConfigMap with metadata.namespace", p, UWLAllowlistSpec)
		}
		lists = append(lists, a.InjectNamespace(ns))
	}
	if len(lists) == 0 {
		return Allowlist{}, false, nil
	}
	return MergeAllowlists(lists...), true, nil
}
