package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// DefaultEvaluateInterval is the collect-rule evaluation period when a source does not set one
// (the seed's --evaluate-interval default). It is shortened to the source's interval when that
// is shorter, as RHACM's operator renders min(30s, interval).
const DefaultEvaluateInterval = 30 * time.Second

// CollectRule is one RHACM collect rule: while Expr, an instant query, returns a series that has
// been returned for at least For, the rule fires and its dynamic metrics (Names, and Matches with
// {{ $labels.x }} filled in from the firing series) are federated every evaluate interval. The
// flag form is the operator's JSON:
// {"name":"...","expr":"...","for":"2m","names":["..."],"matches":["__name__=\"...\",..."]}.
type CollectRule struct {
	Name string `yaml:"name" json:"name"`
	Expr string `yaml:"expr" json:"expr"`
	// For is a Prometheus duration ("2m", "0s"); empty means 0.
	For     string   `yaml:"for" json:"for"`
	Names   []string `yaml:"names" json:"names"`
	Matches []string `yaml:"matches" json:"matches"`
}

// ParseCollectRule parses the --collectrule flag: a JSON object with the keys name, expr, for,
// names and matches, validated (see CollectRule.Validate). Empty names, which the operator renders
// for a rule without names (["" ]), are dropped.
func ParseCollectRule(s string) (CollectRule, error) {
	var r CollectRule
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("parse collect rule %q: want {\"name\",\"expr\",\"for\",\"names\",\"matches\"}: %w", s, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, fmt.Errorf("parse collect rule %q: trailing data after the JSON object", s)
	}
	r = r.normalized()
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, nil
}

// normalized trims the names and matches and drops the empty ones.
func (r CollectRule) normalized() CollectRule {
	trim := func(in []string) []string {
		var out []string
		for _, s := range in {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	r.Name = strings.TrimSpace(r.Name)
	r.Names = trim(r.Names)
	r.Matches = trim(r.Matches)
	return r
}

// ForDuration returns For parsed; 0 when empty.
func (r CollectRule) ForDuration() (time.Duration, error) {
	if strings.TrimSpace(r.For) == "" {
		return 0, nil
	}
	d, err := model.ParseDuration(strings.TrimSpace(r.For))
	if err != nil {
		return 0, fmt.Errorf("collect rule %q: for %q: %w", r.Name, r.For, err)
	}
	return time.Duration(d), nil
}

// Validate checks the name, the expression (valid PromQL, bounded as a recording rule's query),
// the for duration, that there is at least one name or match, that names are metric names and
// that matches are valid templates.
func (r CollectRule) Validate() error {
	if r.Name == "" {
		return errors.New("collect rule: name is empty")
	}
	if strings.TrimSpace(r.Expr) == "" {
		return fmt.Errorf("collect rule %q: expr is empty", r.Name)
	}
	if err := checkRuleQuery(r.Expr); err != nil {
		return fmt.Errorf("collect rule %q: %w", r.Name, err)
	}
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	if _, err := p.ParseExpr(r.Expr); err != nil {
		return fmt.Errorf("collect rule %q: parse expr: %w", r.Name, err)
	}
	if _, err := r.ForDuration(); err != nil {
		return err
	}
	if len(r.Names) == 0 && len(r.Matches) == 0 {
		return fmt.Errorf("collect rule %q: no names and no matches", r.Name)
	}
	for _, n := range r.Names {
		if !model.LegacyValidation.IsValidMetricName(n) {
			return fmt.Errorf("collect rule %q: name %q is not a valid metric name", r.Name, n)
		}
	}
	for _, m := range r.Matches {
		if _, err := parseMatchTemplate(m); err != nil {
			return fmt.Errorf("collect rule %q: match %q: %w", r.Name, m, err)
		}
	}
	return nil
}

// parseMatchTemplate parses a match as a text/template in which $labels is the firing series'
// labels, as the seed and Prometheus alert templates do. No function is added to the builtins.
func parseMatchTemplate(m string) (*template.Template, error) {
	t, err := template.New("match").Option("missingkey=zero").Parse("{{$labels := .Labels}}" + m)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return t, nil
}

// CollectRuleGroup is one group of an allowlist's collect_rules: rules selected for a cluster by
// the match expressions of its selector.
type CollectRuleGroup struct {
	Group    string `yaml:"group"`
	Selector struct {
		MatchExpressions []SelectorExpression `yaml:"matchExpressions"`
	} `yaml:"selector"`
	Rules []AllowlistCollectRule `yaml:"rules"`
}

// SelectorExpression is a Kubernetes label-selector requirement. The only key RHACM knows is
// clusterType; the operators are In and NotIn.
type SelectorExpression struct {
	Key      string   `yaml:"key"`
	Operator string   `yaml:"operator"`
	Values   []string `yaml:"values"`
}

// AllowlistCollectRule is a collect rule as the allowlist writes it.
type AllowlistCollectRule struct {
	Collect        string `yaml:"collect"`
	Expr           string `yaml:"expr"`
	For            string `yaml:"for"`
	DynamicMetrics struct {
		Names   []string `yaml:"names"`
		Matches []string `yaml:"matches"`
	} `yaml:"dynamic_metrics"`
}

// clusterTypeKey is the selector key of collect-rule groups, and the label whose value (set by
// --label clusterType=SNO, as RHACM's operator renders it) is the cluster's type. No label: "".
const clusterTypeKey = "clusterType"

// CollectRuleGroups decodes and validates the collect_rules groups: known keys and operators,
// and rules as CollectRule.Validate checks them (expr with RHACM's \" escapes undone).
func (a Allowlist) CollectRuleGroups() ([]CollectRuleGroup, error) {
	out := make([]CollectRuleGroup, 0, len(a.CollectRules))
	for i, n := range a.CollectRules {
		var g CollectRuleGroup
		if err := n.Decode(&g); err != nil {
			return nil, fmt.Errorf("collect_rules[%d]: %w", i, err)
		}
		for _, e := range g.Selector.MatchExpressions {
			if e.Key != clusterTypeKey {
				return nil, fmt.Errorf("collect_rules group %q: selector key %q is not supported (only %s)", g.Group, e.Key, clusterTypeKey)
			}
			if e.Operator != "In" && e.Operator != "NotIn" {
				return nil, fmt.Errorf("collect_rules group %q: selector operator %q is not supported (In or NotIn)", g.Group, e.Operator)
			}
		}
		for _, r := range g.Rules {
			if err := r.rule().Validate(); err != nil {
				return nil, fmt.Errorf("collect_rules group %q: %w", g.Group, err)
			}
		}
		out = append(out, g)
	}
	return out, nil
}

func (r AllowlistCollectRule) rule() CollectRule {
	return CollectRule{
		Name: r.Collect, Expr: unescapeExpr(r.Expr), For: r.For,
		Names: r.DynamicMetrics.Names, Matches: r.DynamicMetrics.Matches,
	}.normalized()
}

// Selects reports whether the group applies to a cluster of type clusterType: every match
// expression holds (In: the type is one of the values; NotIn: it is none of them). A group
// without expressions applies to every cluster.
func (g CollectRuleGroup) Selects(clusterType string) bool {
	for _, e := range g.Selector.MatchExpressions {
		in := false
		for _, v := range e.Values {
			if strings.TrimSpace(v) == clusterType {
				in = true
			}
		}
		if in != (e.Operator == "In") {
			return false
		}
	}
	return true
}

// SelectedCollectRules returns the rules of the groups that select clusterType, in file order.
func (a Allowlist) SelectedCollectRules(clusterType string) ([]CollectRule, error) {
	groups, err := a.CollectRuleGroups()
	if err != nil {
		return nil, err
	}
	var out []CollectRule
	for _, g := range groups {
		if !g.Selects(clusterType) {
			continue
		}
		for _, r := range g.Rules {
			out = append(out, r.rule())
		}
	}
	return out, nil
}

// dynamicNames returns the metric names the rules federate dynamically: their names, and the
// __name__="..." of their matches (as the operator's getNameInMatch finds it).
func dynamicNames(rules []CollectRule) map[string]bool {
	out := map[string]bool{}
	for _, r := range rules {
		for _, n := range r.Names {
			out[n] = true
		}
		for _, m := range r.Matches {
			if n := nameInMatch(m); n != "" {
				out[n] = true
			}
		}
	}
	return out
}

// nameInMatch returns the value of the first __name__="..." in a match, "" if none: the
// operator's getNameInMatch (regexp __name__="([^,]*)").
func nameInMatch(m string) string {
	const key = `__name__="`
	i := strings.Index(m, key)
	if i < 0 {
		return ""
	}
	rest := m[i+len(key):]
	if j := strings.IndexByte(rest, ','); j >= 0 {
		rest = rest[:j]
	}
	j := strings.LastIndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

// StaticMatchers are the allowlist's Matchers without those of the metrics that the collect
// rules selected for clusterType federate dynamically: a name in dynamic is not federated
// statically, nor a match whose __name__ is in it, as RHACM's operator leaves them out of
// --match.
func (a Allowlist) StaticMatchers(clusterType string) ([]string, error) {
	rules, err := a.SelectedCollectRules(clusterType)
	if err != nil {
		return nil, err
	}
	return excludeDynamic(a.Matchers(), dynamicNames(rules)), nil
}

// excludeDynamic drops from matchers those naming one of dynamic by __name__="...".
func excludeDynamic(matchers []string, dynamic map[string]bool) []string {
	if len(dynamic) == 0 {
		return matchers
	}
	out := make([]string, 0, len(matchers))
	for _, m := range matchers {
		if n := nameInMatch(m); n != "" && dynamic[n] {
			continue
		}
		out = append(out, m)
	}
	return out
}
